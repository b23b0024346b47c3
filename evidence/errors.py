"""One exception family: every error a user can cause is an :class:`EvidenceError`.

The command line prints ``str(error)`` on one line (plus ``error.details`` where
present) and exits non-zero; a traceback is shown only with ``--debug``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "EvidenceError",
    "ValidationError",
    "ConvergenceError",
    "ModelError",
    "DatabaseError",
    "SelectionError",
    "NotFoundError",
]


class EvidenceError(Exception):
    """Base class of every user-facing error.

    Parameters
    ----------
    message
        One clear sentence: what is wrong, where, and which rule it breaks.
    details
        Optional machine-readable details (e.g. a list of failing cells).
    """

    exit_code: int = 1

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class ValidationError(EvidenceError):
    """Input data break a rule. ``failures`` lists every failing cell.

    Each failure is a dict with the keys ``file``, ``sheet``, ``row``, ``column``,
    ``value`` and ``rule``; ``row`` is the 1-based row number as a spreadsheet shows
    it (the header is row 1), or ``None`` where the failure concerns a whole column
    or file.
    """

    exit_code = 2

    def __init__(self, message: str, failures: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, details=failures or [])
        self.failures: list[dict[str, Any]] = failures or []


class ConvergenceError(EvidenceError):
    """An iterative estimator did not converge."""


class ModelError(EvidenceError):
    """A model cannot be fitted to these data (k too small, singular design, ...)."""


class DatabaseError(EvidenceError):
    """The database cannot be reached, is not migrated, or refused a change."""


class SelectionError(EvidenceError):
    """A view's selection expression is malformed or names an unknown field."""


class NotFoundError(EvidenceError):
    """A named view, study, revision or file does not exist."""
