"""The evidence store: tables, engines, write transactions, migrations and history."""

from evidence.db.engine import (
    WriteTransaction,
    current_revision,
    get_engine,
    write_transaction,
)
from evidence.db.history import Change, RestoreResult, list_changes, restore, state_as_of
from evidence.db.models import DATA_TABLES, NATURAL_KEYS, metadata

__all__ = [
    "DATA_TABLES",
    "NATURAL_KEYS",
    "Change",
    "RestoreResult",
    "WriteTransaction",
    "current_revision",
    "get_engine",
    "list_changes",
    "metadata",
    "restore",
    "state_as_of",
    "write_transaction",
]
