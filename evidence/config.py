"""Settings read from the environment."""

from __future__ import annotations

import getpass
import os
import sys
import sysconfig
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
    """Where ``migrations/``, ``schemas/`` and ``seeds/`` are: the source tree (a checkout or
    an editable install), else ``<prefix>/share/evidence`` of a normal install (the
    ``data-files`` of ``pyproject.toml``)."""
    source = Path(__file__).resolve().parent.parent
    if (source / "migrations").is_dir():
        return source
    for prefix in (sysconfig.get_path("data"), sys.prefix):
        installed = Path(prefix) / "share" / "evidence"
        if (installed / "migrations").is_dir():
            return installed
    return source
