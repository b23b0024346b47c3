"""Reading the history the triggers write: list changes, restore rows, past states.

Every insert, update and delete of a data table is a ``change_log`` row (old and new
row as JSON) belonging to a ``revision`` (see ``migrations/versions/0002``). This
module reads them back:

* :func:`list_changes` -- filter by table, record, author, time or revision;
* :func:`restore` -- bring back a deleted row together with every row deleted with it
  (a study with its arms, outcomes, timepoints, results, effect sizes, moderator values
  and risk-of-bias judgements); the restore is itself a recorded write;
* :func:`state_as_of` -- the rows of a table as they stood at a data revision.

Notes
-----
Revisions are numbered in commit order on both databases: one writer at a time (SQLite's
write lock; on PostgreSQL an advisory lock every writer, ``evidence`` or plain SQL, holds
from taking its number until it commits; migration 0006).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from evidence.db.engine import current_revision, database_error, write_transaction
from evidence.db.models import DATA_TABLES, NATURAL_KEYS, metadata
from evidence.errors import DatabaseError, NotFoundError

__all__ = [
    "Change",
    "RestoreResult",
    "current_revision",
    "decode_row",
    "list_changes",
    "restore",
    "state_as_of",
]

_change_log = metadata.tables["change_log"]
_revision = metadata.tables["revision"]


@dataclass(frozen=True)
class Change:
    """One logged row change and the revision it belongs to."""

    id: int
    revision_id: int
    table_name: str
    row_id: int
    op: str
    old_values: dict[str, Any] | None
    new_values: dict[str, Any] | None
    changed_at: dt.datetime
    author: str | None
    message: str | None
    source: str
    command: str | None = field(default=None, repr=False)
    #: Natural key of the study the row belongs to (``SIM-001``), when it belongs to one.
    study: str | None = None

    @property
    def changed_columns(self) -> tuple[str, ...]:
        """Columns whose value differs between old and new (every column on insert/delete)."""
        old, new = self.old_values or {}, self.new_values or {}
        names = list(new or old)
        return tuple(n for n in names if old.get(n) != new.get(n))

    @property
    def key(self) -> str | None:
        """The row's natural key (``study_key``, ``arm_key``, ...), when its table has one."""
        column = NATURAL_KEYS.get(self.table_name)
        values = self.new_values or self.old_values or {}
        return None if column is None else values.get(column)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (timestamps as ISO 8601 text)."""
        return {
            "id": self.id,
            "revision": self.revision_id,
            "table": self.table_name,
            "row_id": self.row_id,
            "key": self.key,
            "op": self.op,
            "old_values": self.old_values,
            "new_values": self.new_values,
            "changed_at": self.changed_at.isoformat(),
            "author": self.author,
            "message": self.message,
            "source": self.source,
            "study": self.study,
        }


@dataclass(frozen=True)
class RestoreResult:
    """What :func:`restore` brought back, in which revision."""

    revision_id: int
    deleted_in: int
    rows: dict[str, int]

    def __str__(self) -> str:
        counts = ", ".join(f"{n} {t}" for t, n in self.rows.items())
        return (
            f"revision {self.revision_id}: restored {counts}"
            f" (deleted in revision {self.deleted_in})"
        )


# ------------------------------------------------------------------------- decoding


def decode_row(table: str, values: str | dict[str, Any] | None) -> dict[str, Any] | None:
    """Turn a logged JSON row into Python values typed by the table's columns.

    SQLite logs booleans as 0/1 and timestamps as ``YYYY-MM-DD HH:MM:SS.ffffff``;
    PostgreSQL as true/false and ISO 8601. Both decode to the same values.
    """
    if values is None:
        return None
    raw = json.loads(values) if isinstance(values, str) else dict(values)
    columns = metadata.tables[table].columns
    return {
        name: _decode(columns[name].type, value) if name in columns else value
        for name, value in raw.items()
    }


def _decode(type_: sa.types.TypeEngine, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(type_, sa.DateTime):
        return dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if isinstance(type_, sa.Date):
        return dt.date.fromisoformat(value[:10]) if isinstance(value, str) else value
    if isinstance(type_, sa.Boolean):
        return bool(value)
    if isinstance(type_, sa.Float):
        return float(value)
    if isinstance(type_, sa.Integer) and not isinstance(value, bool):
        return int(value)
    return value


# ------------------------------------------------------------------------- listing


def _json_field(connection: Connection, column: sa.ColumnElement, key: str) -> sa.ColumnElement:
    """``column ->> key`` for the connected dialect (the JSON is stored as text)."""
    if connection.dialect.name == "postgresql":
        return sa.cast(column, postgresql.JSONB).op("->>")(key)
    return sa.func.json_extract(column, f"$.{key}")


def _as_bound(value: str | dt.date | dt.datetime | None, *, upper: bool) -> dt.datetime | None:
    """A time bound; a bare date means the whole day (``until`` includes it)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = (
                dt.date.fromisoformat(value)
                if len(value) == 10
                else dt.datetime.fromisoformat(value)
            )
        except ValueError as error:
            raise DatabaseError(
                f"{'until' if upper else 'since'} {value!r} is not a date or time"
                " (use YYYY-MM-DD or YYYY-MM-DDTHH:MM)"
            ) from error
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value
    start = dt.datetime.combine(value, dt.time())
    return start + dt.timedelta(days=1) if upper else start


def _record_rows(
    connection: Connection, table: str | None, record: str | int
) -> dict[str, set[int]]:
    """Row ids (per table) of a record and of the rows that belong to it.

    *record* is a row id (with *table*) or a natural key (``SIM-001``, ``A1``). The rows
    that reference it (an arm of a study, an effect size of a result) belong to it.
    """
    tables = [table] if table else [t for t in DATA_TABLES if t in NATURAL_KEYS]
    matched: dict[str, set[int]] = {}
    text = str(record)
    for name in tables:
        if text.isdigit():
            ids = {int(text)} if table else set()
        else:
            column = NATURAL_KEYS.get(name)
            if column is None:
                continue
            c = _change_log.c
            query = (
                sa.select(c.row_id)
                .distinct()
                .where(
                    c.table_name == name,
                    sa.or_(
                        _json_field(connection, c.new_values, column) == text,
                        _json_field(connection, c.old_values, column) == text,
                    ),
                )
            )
            ids = set(connection.execute(query).scalars())
        if ids:
            matched.setdefault(name, set()).update(ids)
    if not matched:
        return matched
    return _with_dependents(connection, matched)


def _references() -> list[tuple[str, str, str]]:
    """(child table, foreign-key column, parent table) for every data-table reference."""
    out = []
    for name in DATA_TABLES:
        for fk in metadata.tables[name].foreign_keys:
            if fk.column.table.name in DATA_TABLES:
                out.append((name, fk.parent.name, fk.column.table.name))
    return out


def _with_dependents(
    connection: Connection,
    roots: dict[str, set[int]],
    *,
    revision_id: int | None = None,
    op: str | None = None,
) -> dict[str, set[int]]:
    """Add to *roots* every logged row that references one of them, transitively."""
    found = {t: set(ids) for t, ids in roots.items()}
    frontier = {t: set(ids) for t, ids in roots.items()}
    c = _change_log.c
    references = _references()
    while frontier:
        next_frontier: dict[str, set[int]] = {}
        for child, column, parent in references:
            parents = frontier.get(parent)
            if not parents:
                continue
            ids_text = [str(i) for i in parents]
            values = (
                c.old_values if op == "delete" else sa.func.coalesce(c.new_values, c.old_values)
            )
            query = (
                sa.select(c.row_id)
                .distinct()
                .where(
                    c.table_name == child,
                    sa.cast(_json_field(connection, values, column), sa.String).in_(ids_text),
                )
            )
            if revision_id is not None:
                query = query.where(c.revision_id == revision_id)
            if op is not None:
                query = query.where(c.op == op)
            new = set(connection.execute(query).scalars()) - found.get(child, set())
            if new:
                found.setdefault(child, set()).update(new)
                next_frontier.setdefault(child, set()).update(new)
        frontier = next_frontier
    return found


def list_changes(
    engine: Engine | Connection,
    *,
    table: str | None = None,
    record: str | int | None = None,
    author: str | None = None,
    since: str | dt.date | dt.datetime | None = None,
    until: str | dt.date | dt.datetime | None = None,
    revision: int | None = None,
    limit: int | None = None,
) -> list[Change]:
    """Logged changes, oldest first, filtered by every argument given.

    Parameters
    ----------
    table
        A data table (``study``, ``result``, ...).
    record
        A row id (with *table*) or a natural key (``SIM-001``). Without *table*, a
        record's changes include those of the rows that belong to it (a study's arms,
        results, effect sizes, ...); with *table*, only that table's rows are listed.
    author
        Who made the change (the revision's author).
    since, until
        Time bounds (UTC); a bare date ``YYYY-MM-DD`` covers the whole day.
    revision
        Only this data revision.
    limit
        Only the newest *limit* changes (still listed oldest first).
    """
    if table is not None and table not in DATA_TABLES:
        raise NotFoundError(
            f"table {table!r} is not a data table; choose one of {', '.join(DATA_TABLES)}"
        )
    if record is not None and table is None and str(record).isdigit():
        raise NotFoundError(
            f"record {record} is a row id: name its table too (--table study --record"
            f" {record}); a natural key such as SIM-001 needs no table"
        )
    lower, upper = _as_bound(since, upper=False), _as_bound(until, upper=True)
    c, r = _change_log.c, _revision.c
    query = sa.select(
        c.id,
        c.revision_id,
        c.table_name,
        c.row_id,
        c.op,
        c.old_values,
        c.new_values,
        c.changed_at,
        r.author,
        r.message,
        r.source,
        r.command,
    ).join(_revision, r.id == c.revision_id)
    if author is not None:
        query = query.where(r.author == author)
    if lower is not None:
        query = query.where(c.changed_at >= lower)
    if upper is not None:
        query = query.where(c.changed_at < upper)
    if revision is not None:
        query = query.where(c.revision_id == revision)
    with _connection(engine) as connection:
        if record is not None:
            rows = _record_rows(connection, table, record)
            if table is not None:
                rows = {table: rows[table]} if table in rows else {}
            if not rows:
                return []
            query = query.where(
                sa.or_(*(sa.and_(c.table_name == t, c.row_id.in_(ids)) for t, ids in rows.items()))
            )
        elif table is not None:
            query = query.where(c.table_name == table)
        if limit is not None:
            query = query.order_by(c.id.desc()).limit(limit)
        else:
            query = query.order_by(c.id)
        try:
            result = connection.execute(query).all()
            changes = [_change(row) for row in result]
            keys = _study_keys(connection, changes)
        except sa.exc.DBAPIError as error:
            raise database_error(error) from error
    changes = [replace(c, study=keys[c.id]) if c.id in keys else c for c in changes]
    return sorted(changes, key=lambda change: change.id)


def _last_logged(connection: Connection, table: str, ids: set[int], column: str) -> dict[int, Any]:
    """``row id -> column`` as last logged (deleted rows included), for *ids* of *table*."""
    if not ids:
        return {}
    c = _change_log.c
    out: dict[int, Any] = {}
    ordered = sorted(ids)
    for start in range(0, len(ordered), 500):
        rows = connection.execute(
            sa.select(c.row_id, c.new_values, c.old_values)
            .where(c.table_name == table, c.row_id.in_(ordered[start : start + 500]))
            .order_by(c.id)
        ).all()
        for row_id, new, old in rows:
            values = json.loads(new or old or "{}")
            if values.get(column) is not None:
                out[row_id] = values[column]
    return out


def _study_keys(connection: Connection, changes: list[Change]) -> dict[int, str]:
    """Change id -> key of the study its row belongs to (through its result or arm)."""
    study_of: dict[int, int] = {}
    via: dict[str, dict[int, int]] = {"result": {}, "arm": {}}
    for change in changes:
        values = change.new_values or change.old_values or {}
        if change.table_name == "study":
            study_of[change.id] = change.row_id
        elif values.get("study_id") is not None:
            study_of[change.id] = int(values["study_id"])
        elif values.get("result_id") is not None:
            via["result"][change.id] = int(values["result_id"])
        elif values.get("arm_id") is not None:
            via["arm"][change.id] = int(values["arm_id"])
    for table, pending in via.items():
        parents = _last_logged(connection, table, set(pending.values()), "study_id")
        for change_id, parent in pending.items():
            if parent in parents:
                study_of[change_id] = int(parents[parent])
    keys = _last_logged(connection, "study", set(study_of.values()), "study_key")
    return {cid: keys[sid] for cid, sid in study_of.items() if sid in keys}


def _change(row: sa.Row) -> Change:
    return Change(
        id=row.id,
        revision_id=row.revision_id,
        table_name=row.table_name,
        row_id=row.row_id,
        op=row.op,
        old_values=decode_row(row.table_name, row.old_values),
        new_values=decode_row(row.table_name, row.new_values),
        changed_at=row.changed_at,
        author=row.author,
        message=row.message,
        source=row.source,
        command=row.command,
    )


class _connection:
    """Use a given connection, or open (and close) one from an engine."""

    def __init__(self, bind: Engine | Connection) -> None:
        self.bind = bind
        self.owned: Connection | None = None

    def __enter__(self) -> Connection:
        if isinstance(self.bind, Connection):
            return self.bind
        try:
            self.owned = self.bind.connect()
        except sa.exc.DBAPIError as error:
            raise database_error(error) from error
        return self.owned

    def __exit__(self, *exc: object) -> None:
        if self.owned is not None:
            self.owned.close()


# ------------------------------------------------------------------------- restore


def restore(
    engine: Engine,
    table: str,
    key: str | int,
    *,
    author: str | None = None,
    message: str | None = None,
) -> RestoreResult:
    """Bring back a deleted row, with every row deleted with it, as a new revision.

    Parameters
    ----------
    table
        The deleted row's table (``study``).
    key
        Its row id or natural key (``SIM-001``). With several deleted rows of that key,
        the most recently deleted one is restored.
    author, message
        Recorded on the restoring revision.

    Returns
    -------
    RestoreResult
        The new revision and how many rows of each table came back (with their
        original ids and values).

    Raises
    ------
    NotFoundError
        No deletion of that row is logged.
    DatabaseError
        The row exists again, or a row it needs (its review) is gone, or a restored
        key is taken by a newer row.
    """
    if table not in DATA_TABLES:
        raise NotFoundError(
            f"table {table!r} is not a data table; choose one of {', '.join(DATA_TABLES)}"
        )
    c = _change_log.c
    with _connection(engine) as connection:
        live = _live_row(connection, table, key)
        if live is not None:
            raise DatabaseError(f"{table} {key!r} exists (row {live}); nothing to restore")
        deletion = _find_deletion(connection, table, key)
        row_id, deleted_in = deletion.row_id, deletion.revision_id
        if _exists(connection, table, row_id):
            raise DatabaseError(f"{table} {key!r} exists (row {row_id}); nothing to restore")
        rows = _with_dependents(connection, {table: {row_id}}, revision_id=deleted_in, op="delete")
        logged = connection.execute(
            sa.select(c.table_name, c.row_id, c.old_values)
            .where(c.revision_id == deleted_in, c.op == "delete")
            .order_by(c.id)
        ).all()
    restored: dict[str, list[dict[str, Any]]] = {}
    for name, rid, old in logged:
        if rid in rows.get(name, ()):
            restored.setdefault(name, []).append(decode_row(name, old) or {})
    root = restored[table][0]
    _check_parents(engine, table, root, key)
    note = message or f"restore {table} {key} deleted in revision {deleted_in}"
    counts: dict[str, int] = {}
    try:
        with write_transaction(
            engine, author=author, message=note, command=f"restore {table} {key}"
        ) as write:
            for target in metadata.sorted_tables:
                values = restored.get(target.name)
                if values:
                    write.connection.execute(target.insert(), values)
                    counts[target.name] = len(values)
    except sa.exc.IntegrityError as error:
        text = str(error.orig).strip().splitlines()[0]
        raise DatabaseError(
            f"cannot restore {table} {key!r}: a row now in the database conflicts ({text})"
        ) from error
    return RestoreResult(revision_id=write.revision_id, deleted_in=deleted_in, rows=counts)


def _find_deletion(connection: Connection, table: str, key: str | int) -> sa.Row:
    c = _change_log.c
    query = sa.select(c.row_id, c.revision_id).where(c.table_name == table, c.op == "delete")
    text = str(key)
    column = NATURAL_KEYS.get(table)
    if text.isdigit():
        query = query.where(c.row_id == int(text))
    elif column is not None:
        query = query.where(_json_field(connection, c.old_values, column) == text)
    else:
        raise NotFoundError(f"table {table!r} has no natural key; give the row id")
    found = connection.execute(query.order_by(c.id.desc()).limit(1)).first()
    if found is None:
        raise NotFoundError(f"no deleted {table} {key!r} in the history")
    return found


def _live_row(connection: Connection, table: str, key: str | int) -> int | None:
    """Id of the row *key* names in *table* now (None when there is none)."""
    target = metadata.tables[table]
    column = NATURAL_KEYS.get(table)
    if str(key).isdigit():
        condition = target.c.id == int(key)
    elif column is not None:
        condition = target.c[column] == str(key)
    else:
        return None
    return connection.execute(sa.select(target.c.id).where(condition).limit(1)).scalar()


def _exists(connection: Connection, table: str, row_id: int) -> bool:
    target = metadata.tables[table]
    return (
        connection.execute(sa.select(target.c.id).where(target.c.id == row_id)).first() is not None
    )


def _check_parents(engine: Engine, table: str, row: dict[str, Any], key: str | int) -> None:
    """The rows a restored root references must exist (its review, its study...)."""
    with _connection(engine) as connection:
        for fk in metadata.tables[table].foreign_keys:
            value = row.get(fk.parent.name)
            if value is None:
                continue
            parent = fk.column.table
            if not _exists(connection, parent.name, value):
                raise DatabaseError(
                    f"cannot restore {table} {key!r}: its {parent.name} (row {value}) no"
                    f" longer exists; restore the {parent.name} first"
                )


# ------------------------------------------------------------------------- as of


def state_as_of(engine: Engine | Connection, table: str, revision: int) -> list[dict[str, Any]]:
    """The rows of *table* as they stood after data revision *revision*, by id.

    Rebuilt from ``change_log`` alone: the last logged version of each row with
    ``revision_id <= revision``, leaving out rows whose last change is a delete.
    """
    if table not in DATA_TABLES:
        raise NotFoundError(
            f"table {table!r} is not a data table; choose one of {', '.join(DATA_TABLES)}"
        )
    c = _change_log.c
    last = (
        sa.select(sa.func.max(c.id).label("id"))
        .where(c.table_name == table, c.revision_id <= revision)
        .group_by(c.row_id)
        .subquery()
    )
    query = (
        sa.select(c.row_id, c.new_values)
        .join(last, last.c.id == c.id)
        .where(c.op != "delete")
        .order_by(c.row_id)
    )
    with _connection(engine) as connection:
        rows = connection.execute(query).all()
    return [decode_row(table, values) or {} for _, values in rows]
