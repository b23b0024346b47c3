"""evidence: the database and engine for living systematic reviews."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
