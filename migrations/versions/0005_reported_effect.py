"""A reported effect size on a result row: yi_reported and vi_reported.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

Why: some sources give only an effect size and its sampling variance for a comparison (a
Metapsy database's ``precalc_g`` and ``precalc_g_se``, a trial's adjusted SMD). The result
row keeps them as reported, so the effect size computed from the row (formula
``SMD:reported``, the lowest priority) is traceable to stored numbers like every other.

Both columns are nullable floats. On SQLite they are added with ``ALTER TABLE ... ADD
COLUMN`` (no table rebuild, so the SQL views of 0004 stay in place), and the history
triggers of ``result`` are re-created with the extended column list, so the new columns are
logged (the column lists of 0002 are frozen; they are taken from 0002 and extended here, so
this revision never changes either). PostgreSQL's history function logs whole rows and needs
no change.

Downgrade drops both columns and restores 0002's triggers of ``result``. While any value
is stored in them it refuses unless ``-x drop_data=yes`` (``evidence db downgrade REV
--yes --drop-data``; ``evidence.db.migrate.guard_downgrade``); with it, the values are
first set to NULL in a data revision of their own ("downgrade 0005 drops ..."), so that
``change_log`` keeps every one of them with its row, and views computed before say stale.
On SQLite the two views of 0004 are dropped around the column drops and re-created from
their stored SQL (which keeps a rebuilt ``analysis_dataset`` with its moderator columns).
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op

from evidence.db.migrate import guard_downgrade

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_COLUMNS = ("yi_reported", "vi_reported")
_VIEWS = ("pooled_estimate", "analysis_dataset")


def _history(extended: bool) -> ModuleType:
    """Revision 0002's trigger helpers, with ``result``'s column list extended or not."""
    path = Path(__file__).with_name("0002_history_triggers.py")
    spec = importlib.util.spec_from_file_location("_evidence_0002_triggers", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if extended:
        extra = " " + " ".join(NEW_COLUMNS)
        module.COLUMNS = {**module.COLUMNS, "result": module.COLUMNS["result"] + extra}
        module.REAL_COLUMNS = {
            **module.REAL_COLUMNS,
            "result": module.REAL_COLUMNS["result"] + extra,
        }
    return module


def _drop_result_triggers() -> None:
    for operation in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS history_result_{operation}_revision")
        op.execute(f"DROP TRIGGER IF EXISTS history_result_{operation}")


def _create_result_triggers(extended: bool) -> None:
    for statement in _history(extended).sqlite_trigger_statements("result"):
        op.execute(statement)


def upgrade() -> None:
    for name in NEW_COLUMNS:
        op.add_column("result", sa.Column(name, sa.Double(), nullable=True))
    if op.get_context().dialect.name == "sqlite":
        _drop_result_triggers()
        _create_result_triggers(extended=True)


def downgrade() -> None:
    guard_downgrade(
        revision, columns=[("result", name) for name in NEW_COLUMNS], keep_in_history=True
    )
    if op.get_context().dialect.name != "sqlite":
        for name in NEW_COLUMNS:
            op.drop_column("result", name)
        return
    bind = op.get_bind()
    views = {
        name: sql
        for name, sql in bind.execute(
            sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'view'")
        ).all()
        if name in _VIEWS
    }
    for name in _VIEWS:
        if name in views:
            op.execute(f"DROP VIEW {name}")
    _drop_result_triggers()  # they name the columns: SQLite refuses the drop otherwise
    for name in NEW_COLUMNS:
        op.execute(f"ALTER TABLE result DROP COLUMN {name}")
    _create_result_triggers(extended=False)
    for name in reversed(_VIEWS):
        if name in views:
            op.execute(views[name])
