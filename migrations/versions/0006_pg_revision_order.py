"""PostgreSQL: data revisions are numbered in commit order (one writer at a time).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29

Why: a data revision number says "the data as they stood after this write"; freshness,
``--as-of`` and ``evidence diff`` rely on every revision below a committed one being
committed too. SQLite guarantees it (one writer at a time, ``BEGIN IMMEDIATE``). On
PostgreSQL a revision took its number at its transaction's first write, so with two
concurrent writers revision 5 could commit after revision 6: a view refreshed between the
two commits stored a result "at revision 6" that left out revision 5, and recomputing it
as of revision 6 gave another number.

Every writer now takes one transaction-level advisory lock before it takes a revision
number and keeps it until it commits or rolls back: ``evidence`` writes in
``evidence.db.engine.write_transaction`` (before inserting their ``revision`` row), plain
SQL in the history trigger function (before inserting the ``sql`` revision of its
transaction's first changed row). Writers are serialised, as on SQLite; readers are never
blocked. The lock key below is the same constant as ``REVISION_LOCK_KEY`` in
``evidence/db/engine.py`` (written out here so this revision never changes).

SQLite: nothing to do. Downgrade restores revision 0002's trigger function (it drops no
table or column, so no data).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: pg_advisory_xact_lock key of data revisions ("evid" as a 32-bit integer).
REVISION_LOCK_KEY = 1702259044

_FUNCTION = """
CREATE OR REPLACE FUNCTION evidence_history() RETURNS trigger LANGUAGE plpgsql AS $$
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
    IF rev IS NULL THEN{lock}
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

_LOCK = f"\n        PERFORM pg_advisory_xact_lock({REVISION_LOCK_KEY});"


def upgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(_FUNCTION.replace("{lock}", _LOCK))


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute(_FUNCTION.replace("{lock}", ""))
