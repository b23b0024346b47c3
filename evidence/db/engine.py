"""Engines and the one way to write: :func:`write_transaction`.

SQLite runs with foreign keys on, WAL journaling and a busy timeout; the driver's own
transaction handling is replaced by explicit ``BEGIN`` statements (the SQLAlchemy recipe
for pysqlite), so that DDL and DML alike are transactional and a write transaction takes
the write lock up front (``BEGIN IMMEDIATE``). PostgreSQL is reached through psycopg 3
(``postgresql+psycopg://``).

Every write through :func:`write_transaction` belongs to one ``revision`` row; the history
triggers installed by the migrations log each changed row against it (see
``migrations/versions/0002_history_triggers.py`` for the design).
"""

from __future__ import annotations

import importlib
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from evidence.config import database_url, default_author
from evidence.db.models import utcnow
from evidence.errors import DatabaseError, EvidenceError

__all__ = [
    "get_engine",
    "write_transaction",
    "WriteTransaction",
    "current_revision",
    "is_sqlite",
    "is_postgresql",
    "database_error",
    "WRITE_OPTIONS",
    "on_commit",
]

_WRITE_OPTION = "evidence_write"
#: Execution options for a connection that writes: on SQLite its transactions begin with
#: ``BEGIN IMMEDIATE`` (the write lock is taken up front).
WRITE_OPTIONS: dict[str, Any] = {_WRITE_OPTION: True}

_COMMIT_HOOKS: list[Callable[[Engine, int], None]] = []


def on_commit(hook: Callable[[Engine, int], None]) -> Callable[[Engine, int], None]:
    """Register *hook(engine, revision_id)*, run after every write that changed data.

    Layers above the database (the living views) register here, so that a write through
    :func:`write_transaction` brings them up to date before it returns, without this
    layer importing them. A hook that raises an :class:`~evidence.errors.EvidenceError`
    does not undo the committed write; what it maintains is detected as stale at its next
    read. Registering the same hook twice has no effect.
    """
    if hook not in _COMMIT_HOOKS:
        _COMMIT_HOOKS.append(hook)
    return hook


SQLITE_BUSY_TIMEOUT_MS = 30_000

#: PostgreSQL: the transaction-level advisory lock every writer holds from taking its
#: revision number until it commits, so revisions are numbered in commit order (the
#: plain-SQL trigger function of migration 0006 takes the same key).
REVISION_LOCK_KEY = 1702259044


def _normalise_url(url: str) -> str:
    """Map bare PostgreSQL URLs onto the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def get_engine(url: str | None = None, *, foreign_keys: bool = True, **kwargs: Any) -> Engine:
    """Create an engine for *url* (default: :func:`evidence.config.database_url`).

    Parameters
    ----------
    url
        A SQLAlchemy URL. ``postgresql://`` is mapped to ``postgresql+psycopg://``.
    foreign_keys
        SQLite only: enforce foreign keys (the default). The migrations switch them off
        while tables are rebuilt and check them afterwards.
    **kwargs
        Passed to :func:`sqlalchemy.create_engine`.

    Returns
    -------
    sqlalchemy.engine.Engine
    """
    url = _normalise_url(database_url(url))
    try:
        engine = sa.create_engine(url, **kwargs)
    except (sa.exc.ArgumentError, ImportError) as error:
        raise DatabaseError(f"cannot use database URL {url!r}: {error}") from error
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, foreign_keys=foreign_keys)
    return engine


def _configure_sqlite(engine: Engine, *, foreign_keys: bool) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself (see the "begin" listener).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        # Statement journals in memory: every statement on a table with (history) triggers
        # opens one, and a temporary file per row of a bulk insert costs more than the
        # insert itself (100,000 logged result rows: 4.7 s -> 2.0 s).
        cursor.execute("PRAGMA temp_store = MEMORY")
        # REPLACE conflict resolution deletes rows; log those deletions too.
        cursor.execute("PRAGMA recursive_triggers = ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(_WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def is_sqlite(bind: Engine | Connection) -> bool:
    """Whether *bind* talks to SQLite."""
    return bind.dialect.name == "sqlite"


def is_postgresql(bind: Engine | Connection) -> bool:
    """Whether *bind* talks to PostgreSQL."""
    return bind.dialect.name == "postgresql"


def database_error(error: Exception, url: object = None) -> DatabaseError:
    """Turn a driver error into a one-line :class:`DatabaseError`.

    A missing ``revision`` (or any other) table means the database is not migrated.
    """
    text = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
    where = f" at {url}" if url else ""
    lowered = text.lower()
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        return DatabaseError(
            f"the database{where} is not migrated ({text}); run `evidence db upgrade`"
        )
    return DatabaseError(f"the database{where} refused the operation: {text}")


class WriteTransaction:
    """What :func:`write_transaction` yields: the connection and the revision number.

    Unpacks as ``(connection, revision_id)``. After the block, :attr:`changed` tells
    whether any row changed (a write that changed nothing leaves no revision behind).
    """

    __slots__ = ("connection", "revision_id", "changed")

    def __init__(self, connection: Connection, revision_id: int) -> None:
        self.connection = connection
        self.revision_id = revision_id
        self.changed: bool | None = None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.connection, self.revision_id))

    def __repr__(self) -> str:
        return f"WriteTransaction(revision_id={self.revision_id}, changed={self.changed})"


@contextmanager
def write_transaction(
    engine: Engine,
    *,
    author: str | None = None,
    message: str | None = None,
    command: str | None = None,
) -> Iterator[WriteTransaction]:
    """Open one transaction that becomes one data revision; commit all or nothing.

    Parameters
    ----------
    engine
        From :func:`get_engine`.
    author
        Who makes the change; default :func:`evidence.config.default_author`.
    message
        Why (shown by ``evidence history``).
    command
        The command line or operation that made the change.

    Yields
    ------
    WriteTransaction
        ``(connection, revision_id)``: write with ``connection`` (Core ``execute`` with a
        list of parameter dicts is the fastest bulk insert), or bind a
        ``sqlmodel.Session(bind=connection)`` to it. Do not commit: leaving the block
        commits, an exception rolls everything back.

    Notes
    -----
    One writer at a time: on SQLite ``BEGIN IMMEDIATE`` takes the write lock, on
    PostgreSQL the advisory lock :data:`REVISION_LOCK_KEY` is held until the transaction
    ends, so revision numbers follow commits and every revision below a committed one is
    committed. The ``revision`` row is inserted first. On SQLite its id is published in the
    one-row table ``open_revision`` (deleted again before commit, so no other
    transaction ever sees it); on PostgreSQL in the transaction-local settings
    ``evidence.revision`` and ``evidence.author``. The triggers read it for each changed
    row. If nothing changed, the revision row is removed before commit.
    """
    who = default_author(author)
    try:
        connection = engine.connect()
    except sa.exc.DBAPIError as error:
        raise database_error(error, engine.url.render_as_string(hide_password=True)) from error
    with connection:
        connection = connection.execution_options(**{_WRITE_OPTION: True})
        try:
            transaction = connection.begin()
            revision_id = _open_revision(connection, who, message, command)
        except sa.exc.DBAPIError as error:
            raise database_error(error, engine.url.render_as_string(hide_password=True)) from error
        write = WriteTransaction(connection, revision_id)
        try:
            yield write
            write.changed = _close_revision(connection, revision_id)
        except BaseException:
            if transaction.is_active:  # a Session on the connection may have rolled it back
                transaction.rollback()
            raise
        try:
            transaction.commit()
        except sa.exc.DBAPIError as error:
            raise database_error(error) from error
    if write.changed:
        _run_commit_hooks(engine, revision_id)


#: Modules that register commit hooks when imported. They are imported at the first commit,
#: by name, so that a write through any entry point (the CLI, ``evidence.ingest`` from Python)
#: keeps the living views fresh while this layer never imports the layers above it.
HOOK_PROVIDERS = ("evidence.views.refresh",)


def _load_hook_providers() -> None:
    for name in HOOK_PROVIDERS:
        if name not in sys.modules:
            importlib.import_module(name)


def _run_commit_hooks(engine: Engine, revision_id: int) -> None:
    _load_hook_providers()
    for hook in tuple(_COMMIT_HOOKS):
        try:
            hook(engine, revision_id)
        except EvidenceError:
            pass  # the data are committed; what the hook keeps is found stale when next read


def _open_revision(
    connection: Connection, author: str, message: str | None, command: str | None
) -> int:
    if not is_sqlite(connection):
        # Revision numbers follow commits: hold the writers' lock until this transaction
        # ends (SQLite's BEGIN IMMEDIATE already does; see migration 0006).
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": REVISION_LOCK_KEY})
    revision_id = connection.execute(
        sa.text(
            "INSERT INTO revision (created_at, author, message, source, command)"
            " VALUES (:created_at, :author, :message, 'evidence', :command) RETURNING id"
        ).bindparams(sa.bindparam("created_at", type_=sa.DateTime)),
        {"created_at": utcnow(), "author": author, "message": message, "command": command},
    ).scalar_one()
    if is_sqlite(connection):
        connection.execute(
            sa.text(
                "INSERT OR REPLACE INTO open_revision (id, revision_id, author, stamp)"
                " VALUES (1, :revision_id, :author, NULL)"
            ),
            {"revision_id": revision_id, "author": author},
        )
    else:
        connection.execute(
            sa.text(
                "SELECT set_config('evidence.revision', :revision_id, true),"
                " set_config('evidence.author', :author, true)"
            ),
            {"revision_id": str(revision_id), "author": author},
        )
    return int(revision_id)


def _close_revision(connection: Connection, revision_id: int) -> bool:
    """Unpublish the revision; drop it when it logged no change. Returns whether it did."""
    if is_sqlite(connection):
        connection.execute(sa.text("DELETE FROM open_revision"))
    else:
        connection.execute(
            sa.text(
                "SELECT set_config('evidence.revision', '', true),"
                " set_config('evidence.author', '', true)"
            )
        )
    changed = connection.execute(
        sa.text("SELECT 1 FROM change_log WHERE revision_id = :r LIMIT 1"), {"r": revision_id}
    ).first()
    if changed is None:
        try:
            with connection.begin_nested():
                connection.execute(
                    sa.text("DELETE FROM revision WHERE id = :r"), {"r": revision_id}
                )
        except sa.exc.IntegrityError:
            pass  # something written in this transaction refers to the revision: keep it
        return False
    return True


def current_revision(engine: Engine | Connection) -> int:
    """The latest data revision number (0 for a database nobody has written to)."""
    query = sa.text("SELECT max(id) FROM revision")
    try:
        if isinstance(engine, Connection):
            value = engine.execute(query).scalar()
        else:
            with engine.connect() as connection:
                value = connection.execute(query).scalar()
    except sa.exc.DBAPIError as error:
        raise database_error(error) from error
    return int(value or 0)
