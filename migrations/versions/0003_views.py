"""Tables of the living analysis views: analysis_view and view_result.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

Why: an analysis view (a selection, a model, its options, moderators or a subgroup) lives
in the database, from the codebook's analysis plan or from an analyst, and every result
computed for it is kept with the fingerprint of its inputs and the data revision it saw,
so that staleness can be detected and any past estimate reproduced.

The tables get no history triggers: results are derived data (reproducible from the
logged records, the view and the engine version), and logging them would open a data
revision on every refresh. Downgrade drops both tables; it refuses while they hold rows
(an analyst's view definitions and a view's past results exist nowhere else;
``evidence.db.migrate.guard_downgrade``) unless ``-x drop_data=yes`` (``evidence db
downgrade REV --yes --drop-data``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (column types such as sqlmodel.sql.sqltypes.AutoString)
from alembic import op

from evidence.db.migrate import guard_downgrade

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "analysis_view",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("review_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("selection", sa.Text(), nullable=False),
        sa.Column("measure", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("model", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("moderators", sa.Text(), nullable=False),
        sa.Column("subgroup", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(), server_default=sa.func.current_timestamp(), nullable=False
        ),
        sa.Column("author", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.CheckConstraint(
            "model IN ('rma', 'three-level', 'che')", name=op.f("ck_analysis_view_model")
        ),
        sa.CheckConstraint(
            "source IN ('codebook', 'analyst')", name=op.f("ck_analysis_view_source")
        ),
        sa.ForeignKeyConstraint(
            ["review_id"],
            ["review.id"],
            name=op.f("fk_analysis_view_review_id_review"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analysis_view")),
        sa.UniqueConstraint("review_id", "name", name=op.f("uq_analysis_view_review_id_name")),
    )
    op.create_table(
        "view_result",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("view_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("revision_count", sa.Integer(), nullable=False),
        sa.Column("checked_revision", sa.Integer(), nullable=False),
        sa.Column("checked_count", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("engine_version", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column(
            "computed_at", sa.DateTime(), server_default=sa.func.current_timestamp(), nullable=False
        ),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("study_ids", sa.Text(), nullable=True),
        sa.Column("k_studies", sa.Integer(), nullable=True),
        sa.Column("k_effects", sa.Integer(), nullable=True),
        sa.Column("estimate", sa.Double(), nullable=True),
        sa.Column("se", sa.Double(), nullable=True),
        sa.Column("ci_lb", sa.Double(), nullable=True),
        sa.Column("ci_ub", sa.Double(), nullable=True),
        sa.Column("pi_lb", sa.Double(), nullable=True),
        sa.Column("pi_ub", sa.Double(), nullable=True),
        sa.Column("pval", sa.Double(), nullable=True),
        sa.Column("tau2", sa.Double(), nullable=True),
        sa.Column("I2", sa.Double(), nullable=True),
        sa.Column("QM", sa.Double(), nullable=True),
        sa.Column("QMp", sa.Double(), nullable=True),
        sa.Column("current", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.ForeignKeyConstraint(
            ["view_id"],
            ["analysis_view.id"],
            name=op.f("fk_view_result_view_id_analysis_view"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_view_result")),
    )
    with op.batch_alter_table("view_result", schema=None) as batch_op:
        batch_op.create_index("ix_view_result_view_current", ["view_id", "current"], unique=False)
        batch_op.create_index(batch_op.f("ix_view_result_view_id"), ["view_id"], unique=False)


def downgrade() -> None:
    guard_downgrade(revision, tables=("analysis_view", "view_result"))
    with op.batch_alter_table("view_result", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_view_result_view_id"))
        batch_op.drop_index("ix_view_result_view_current")

    op.drop_table("view_result")
    op.drop_table("analysis_view")
