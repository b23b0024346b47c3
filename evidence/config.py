"""Settings read from the environment."""

from __future__ import annotations

import getpass
import os
from pathlib import Path

__all__ = ["DEFAULT_DATABASE_URL", "database_url", "default_author", "project_root"]

DEFAULT_DATABASE_URL = "sqlite:///evidence.db"


def database_url(url: str | None = None) -> str:
    """The database URL: the argument, else ``EVIDENCE_DATABASE_URL``, else ./evidence.db."""
    return url or os.environ.get("EVIDENCE_DATABASE_URL") or DEFAULT_DATABASE_URL


def default_author(author: str | None = None) -> str:
    """Who is making a change: the argument, else ``EVIDENCE_AUTHOR``, else the OS user."""
    if author:
        return author
    env = os.environ.get("EVIDENCE_AUTHOR")
    if env:
        return env
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no user database entry
        return "unknown"


def project_root() -> Path:
    """The source tree that holds ``migrations/``, ``schemas/`` and ``seeds/``."""
    return Path(__file__).resolve().parent.parent
