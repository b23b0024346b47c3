"""The evidence store: tables, engines, write transactions, migrations and history."""

from evidence.db.engine import (
    WriteTransaction,
    current_revision,
    get_engine,
    write_transaction,
)
from evidence.db.models import DATA_TABLES, NATURAL_KEYS, metadata

__all__ = [
    "DATA_TABLES",
    "NATURAL_KEYS",
    "WriteTransaction",
    "current_revision",
    "get_engine",
    "metadata",
    "write_transaction",
]
