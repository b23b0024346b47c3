"""Record every change of every data table in change_log, by database triggers.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Why: nothing may be lost, whoever makes the change. Triggers (not ORM events) log every
insert, update and delete of the data tables, so edits made with plain SQL (sqlite3,
psql) are recorded too. Each logged row holds the old and the new row as JSON and belongs
to a data revision (a ``revision`` row), which later work uses for freshness and as-of
queries.

Design
------
Writes through ``evidence`` (``evidence.db.engine.write_transaction``) insert their
``revision`` row first and publish its id for the rest of their transaction:

* SQLite: in the one-row table ``open_revision`` (id = 1, revision_id, author, stamp =
  NULL). The row is deleted again before commit, and SQLite has one writer at a time, so
  no other transaction ever sees it. For each data table two triggers per operation:
  a BEFORE trigger that opens a revision when none is open, and an AFTER trigger that
  inserts one change_log row reading ``open_revision`` by primary key (one cheap lookup
  per row). A plain-SQL statement finds no open revision: the BEFORE trigger inserts a
  ``revision`` (source ``sql``; SQLite cannot tell the OS user, so author is NULL) and
  publishes it with ``stamp`` = the statement's time. SQLite keeps ``'now'`` fixed for
  one statement, so all rows of that statement share the revision; the next statement
  gets a new one (two statements within the same millisecond share one).
* PostgreSQL: one plpgsql function ``evidence_history()`` on every data table. The
  revision id and author come from the transaction-local settings ``evidence.revision``
  and ``evidence.author`` (``set_config(..., true)``). A plain-SQL transaction has none:
  its first changed row inserts a ``revision`` (source ``sql``, author ``session_user``,
  command = the SQL text) and sets them, so the whole transaction shares one revision.

Updates that change no value are not logged (and open no revision). Floating-point
values are written with 17 significant digits in SQLite (``json_object`` alone keeps
15), so old values restore exactly. ``change_log`` is append-only: updating or deleting
its rows is refused.

Downgrade drops the triggers and functions only; the history (``revision``,
``change_log``, tables of 0001) stays. SQLite's ``open_revision`` holds a row only inside a
write transaction; it is counted like any dropped table
(``evidence.db.migrate.guard_downgrade``), so it never holds data when it goes.

The column lists below are frozen copies of revision 0001's tables: a later revision that
adds or renames a column of a data table must recreate that table's SQLite triggers (and
SQLite batch operations, which rebuild a table, drop its triggers).
"""

from collections.abc import Sequence

from alembic import op

from evidence.db.migrate import guard_downgrade

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Columns of each logged table, as revision 0001 created them.
COLUMNS: dict[str, str] = {
    "review": "id name title codebook_name codebook codebook_sha256 created_at updated_at",
    "study": "id review_id study_key citation doi year country design n_total simulated notes",
    "arm": "id study_id arm_key label role description n_randomized",
    "outcome": "id study_id outcome_key domain construct instrument direction unit",
    "timepoint": "id study_id timepoint_key label weeks",
    "result": (
        "id study_id result_key outcome_id timepoint_id arm1_id arm2_id"
        " n1i m1i sd1i n2i m2i sd2i m1i_pre sd1i_pre m2i_pre sd2i_pre"
        " m1i_change sd1i_change m2i_change sd2i_change ri event1i event2i"
        " di ti pi fi ori ci_lb ci_ub source_report location coder coded_at notes"
    ),
    "effect_size": (
        "id result_id measure yi vi formula inputs flipped imputed_r ri_used cluster"
        " n_split computed_at engine_version"
    ),
    "moderator": "id review_id name level type unit levels derived_from description",
    "moderator_value": "id moderator_id study_id arm_id result_id value_text value_num",
    "risk_of_bias": "id study_id result_id tool domain judgement support",
}

#: Floating-point columns (written with full precision).
REAL_COLUMNS: dict[str, str] = {
    "timepoint": "weeks",
    "result": (
        "n1i m1i sd1i n2i m2i sd2i m1i_pre sd1i_pre m2i_pre sd2i_pre"
        " m1i_change sd1i_change m2i_change sd2i_change ri event1i event2i"
        " di ti pi fi ori ci_lb ci_ub"
    ),
    "effect_size": "yi vi ri_used",
    "moderator_value": "value_num",
}

OPS = ("insert", "update", "delete")

# ---------------------------------------------------------------------------- SQLite

_NOW_MS = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
_NOW_TS = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"  # SQLAlchemy's DATETIME text form
_NO_OPEN_REVISION = (
    "NOT EXISTS (SELECT 1 FROM open_revision"
    f" WHERE id = 1 AND (stamp IS NULL OR stamp = {_NOW_MS}))"
)


def _json_value(table: str, column: str, row: str) -> str:
    if column in REAL_COLUMNS.get(table, "").split():
        value = f"{row}.{column}"
        return (
            f"CASE WHEN typeof({value}) = 'real' AND abs({value}) <= 1.7976931348623157e308"
            f" THEN json(printf('%!.17g', {value})) ELSE {value} END"
        )
    return f"{row}.{column}"


def _json_row(table: str, row: str) -> str:
    pairs = ", ".join(f"'{c}', {_json_value(table, c, row)}" for c in COLUMNS[table].split())
    return f"json_object({pairs})"


def _changed(table: str) -> str:
    return " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in COLUMNS[table].split())


def sqlite_trigger_statements(table: str) -> list[str]:
    """CREATE TRIGGER statements logging *table* (SQLite)."""
    statements = []
    for operation in OPS:
        event = operation.upper()
        when = _NO_OPEN_REVISION
        if operation == "update":
            when = f"({_changed(table)}) AND {when}"
        statements.append(
            f"CREATE TRIGGER history_{table}_{operation}_revision BEFORE {event} ON {table}"
            f" WHEN {when} BEGIN"
            " INSERT INTO revision (created_at, author, message, source, command)"
            f" VALUES ({_NOW_TS}, NULL, NULL, 'sql', NULL);"
            " INSERT OR REPLACE INTO open_revision (id, revision_id, author, stamp)"
            f" VALUES (1, last_insert_rowid(), NULL, {_NOW_MS});"
            " END"
        )
        old = "NULL" if operation == "insert" else _json_row(table, "OLD")
        new = "NULL" if operation == "delete" else _json_row(table, "NEW")
        row_id = "OLD.id" if operation == "delete" else "NEW.id"
        when_changed = f" WHEN {_changed(table)}" if operation == "update" else ""
        statements.append(
            f"CREATE TRIGGER history_{table}_{operation} AFTER {event} ON {table}{when_changed}"
            " BEGIN"
            " INSERT INTO change_log"
            " (revision_id, table_name, row_id, op, old_values, new_values, changed_at, author)"
            f" SELECT revision_id, '{table}', {row_id}, '{operation}', {old}, {new},"
            f" {_NOW_TS}, author FROM open_revision WHERE id = 1;"
            " END"
        )
    return statements


def _upgrade_sqlite() -> None:
    op.execute(
        "CREATE TABLE open_revision ("
        " id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),"
        " revision_id INTEGER NOT NULL,"
        " author VARCHAR,"
        " stamp VARCHAR)"
    )
    for table in COLUMNS:
        for statement in sqlite_trigger_statements(table):
            op.execute(statement)
    for operation in ("update", "delete"):
        op.execute(
            f"CREATE TRIGGER history_change_log_no_{operation} BEFORE {operation.upper()}"
            " ON change_log BEGIN"
            " SELECT RAISE(ABORT, 'change_log is append-only: history is never changed');"
            " END"
        )


def _downgrade_sqlite() -> None:
    guard_downgrade(revision, tables=("open_revision",))
    for operation in ("update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS history_change_log_no_{operation}")
    for table in COLUMNS:
        for operation in OPS:
            op.execute(f"DROP TRIGGER IF EXISTS history_{table}_{operation}_revision")
            op.execute(f"DROP TRIGGER IF EXISTS history_{table}_{operation}")
    op.execute("DROP TABLE IF EXISTS open_revision")


# ------------------------------------------------------------------------ PostgreSQL

PG_FUNCTION = """
CREATE FUNCTION evidence_history() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rev bigint := nullif(current_setting('evidence.revision', true), '')::bigint;
    old_row jsonb;
    new_row jsonb;
BEGIN
    IF TG_OP <> 'INSERT' THEN old_row := to_jsonb(OLD); END IF;
    IF TG_OP <> 'DELETE' THEN new_row := to_jsonb(NEW); END IF;
    IF TG_OP = 'UPDATE' AND old_row = new_row THEN
        RETURN NULL;
    END IF;
    IF rev IS NULL THEN
        INSERT INTO revision (created_at, author, message, source, command)
        VALUES (timezone('utc', statement_timestamp()), session_user, NULL, 'sql',
                left(current_query(), 2000))
        RETURNING id INTO rev;
        PERFORM set_config('evidence.revision', rev::text, true);
        PERFORM set_config('evidence.author', session_user, true);
    END IF;
    INSERT INTO change_log
        (revision_id, table_name, row_id, op, old_values, new_values, changed_at, author)
    VALUES (rev, TG_TABLE_NAME, (coalesce(new_row, old_row) ->> 'id')::bigint, lower(TG_OP),
            old_row::text, new_row::text, timezone('utc', clock_timestamp()),
            nullif(current_setting('evidence.author', true), ''));
    RETURN NULL;
END
$$
"""

PG_APPEND_ONLY = """
CREATE FUNCTION evidence_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'change_log is append-only: history is never changed';
END
$$
"""


def _upgrade_postgresql() -> None:
    op.execute(PG_FUNCTION)
    op.execute(PG_APPEND_ONLY)
    for table in COLUMNS:
        op.execute(
            f"CREATE TRIGGER history_{table} AFTER INSERT OR UPDATE OR DELETE ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION evidence_history()"
        )
    op.execute(
        "CREATE TRIGGER history_change_log_append_only BEFORE UPDATE OR DELETE ON change_log"
        " FOR EACH ROW EXECUTE FUNCTION evidence_history_append_only()"
    )


def _downgrade_postgresql() -> None:
    op.execute("DROP TRIGGER IF EXISTS history_change_log_append_only ON change_log")
    for table in COLUMNS:
        op.execute(f"DROP TRIGGER IF EXISTS history_{table} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS evidence_history_append_only()")
    op.execute("DROP FUNCTION IF EXISTS evidence_history()")


# ---------------------------------------------------------------------------- dispatch


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "sqlite":
        _upgrade_sqlite()
    elif dialect == "postgresql":
        _upgrade_postgresql()
    else:  # pragma: no cover - only the two supported databases
        raise NotImplementedError(
            f"history triggers are written for SQLite and PostgreSQL, not {dialect}"
        )


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "sqlite":
        _downgrade_sqlite()
    elif dialect == "postgresql":
        _downgrade_postgresql()
