"""Create the tables of an evidence base.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Why: the data model contract (reviews, studies, arms, outcomes, timepoints, results,
effect sizes, moderators and their values, risk of bias) plus the history tables
(revision, change_log) that the next revision's triggers write to. Column lists are
written out here, not imported from the models, so this revision never changes.

Downgrade drops every table, so it refuses while any table holds rows (the error names
each table and its rows; ``evidence.db.migrate.guard_downgrade``); pass ``-x
drop_data=yes`` (``evidence db downgrade base --yes --drop-data``) to drop them anyway.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (column types such as sqlmodel.sql.sqltypes.AutoString)
from alembic import op

from evidence.db.migrate import guard_downgrade

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "review",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("codebook_name", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("codebook", sa.Text(), nullable=True),
        sa.Column("codebook_sha256", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(), server_default=sa.func.current_timestamp(), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(), server_default=sa.func.current_timestamp(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review")),
        sa.UniqueConstraint("name", name=op.f("uq_review_name")),
    )
    op.create_table(
        "revision",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(), server_default=sa.func.current_timestamp(), nullable=False
        ),
        sa.Column("author", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("command", sa.Text(), nullable=True),
        sa.CheckConstraint("source IN ('evidence', 'sql')", name=op.f("ck_revision_source")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_revision")),
    )
    op.create_table(
        "change_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("revision_id", sa.Integer(), nullable=False),
        sa.Column("table_name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("row_id", sa.Integer(), nullable=False),
        sa.Column("op", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("old_values", sa.Text(), nullable=True),
        sa.Column("new_values", sa.Text(), nullable=True),
        sa.Column(
            "changed_at", sa.DateTime(), server_default=sa.func.current_timestamp(), nullable=False
        ),
        sa.Column("author", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.CheckConstraint("op IN ('insert', 'update', 'delete')", name=op.f("ck_change_log_op")),
        sa.ForeignKeyConstraint(
            ["revision_id"], ["revision.id"], name=op.f("fk_change_log_revision_id_revision")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_log")),
    )
    with op.batch_alter_table("change_log", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_change_log_revision_id"), ["revision_id"], unique=False
        )
        batch_op.create_index("ix_change_log_table_row", ["table_name", "row_id"], unique=False)

    op.create_table(
        "moderator",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("review_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("level", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("unit", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("levels", sa.Text(), nullable=True),
        sa.Column("derived_from", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.CheckConstraint("level IN ('study', 'arm', 'effect')", name=op.f("ck_moderator_level")),
        sa.CheckConstraint(
            "type IN ('categorical', 'numeric', 'integer', 'boolean', 'text')",
            name=op.f("ck_moderator_type"),
        ),
        sa.ForeignKeyConstraint(
            ["review_id"],
            ["review.id"],
            name=op.f("fk_moderator_review_id_review"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_moderator")),
        sa.UniqueConstraint("review_id", "name", name=op.f("uq_moderator_review_id_name")),
    )
    op.create_table(
        "study",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("review_id", sa.Integer(), nullable=False),
        sa.Column("study_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("citation", sa.Text(), nullable=True),
        sa.Column("doi", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("year", sa.Integer(), nullable=True),
        sa.Column("country", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("design", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("n_total", sa.Integer(), nullable=True),
        sa.Column("simulated", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["review_id"], ["review.id"], name=op.f("fk_study_review_id_review"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study")),
        sa.UniqueConstraint("review_id", "study_key", name=op.f("uq_study_review_id_study_key")),
    )
    op.create_table(
        "arm",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("arm_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("label", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("n_randomized", sa.Integer(), nullable=True),
        sa.CheckConstraint("role IN ('intervention', 'comparator')", name=op.f("ck_arm_role")),
        sa.ForeignKeyConstraint(
            ["study_id"], ["study.id"], name=op.f("fk_arm_study_id_study"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_arm")),
        sa.UniqueConstraint("study_id", "arm_key", name=op.f("uq_arm_study_id_arm_key")),
    )
    op.create_table(
        "outcome",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("outcome_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("domain", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("construct", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("instrument", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("direction", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("unit", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.CheckConstraint("direction IN ('higher', 'lower')", name=op.f("ck_outcome_direction")),
        sa.ForeignKeyConstraint(
            ["study_id"], ["study.id"], name=op.f("fk_outcome_study_id_study"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outcome")),
        sa.UniqueConstraint(
            "study_id", "outcome_key", name=op.f("uq_outcome_study_id_outcome_key")
        ),
    )
    op.create_table(
        "timepoint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("timepoint_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("label", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("weeks", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["study_id"], ["study.id"], name=op.f("fk_timepoint_study_id_study"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_timepoint")),
        sa.UniqueConstraint(
            "study_id", "timepoint_key", name=op.f("uq_timepoint_study_id_timepoint_key")
        ),
    )
    op.create_table(
        "result",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("result_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("outcome_id", sa.Integer(), nullable=False),
        sa.Column("timepoint_id", sa.Integer(), nullable=True),
        sa.Column("arm1_id", sa.Integer(), nullable=True),
        sa.Column("arm2_id", sa.Integer(), nullable=True),
        sa.Column("n1i", sa.Double(), nullable=True),
        sa.Column("m1i", sa.Double(), nullable=True),
        sa.Column("sd1i", sa.Double(), nullable=True),
        sa.Column("n2i", sa.Double(), nullable=True),
        sa.Column("m2i", sa.Double(), nullable=True),
        sa.Column("sd2i", sa.Double(), nullable=True),
        sa.Column("m1i_pre", sa.Double(), nullable=True),
        sa.Column("sd1i_pre", sa.Double(), nullable=True),
        sa.Column("m2i_pre", sa.Double(), nullable=True),
        sa.Column("sd2i_pre", sa.Double(), nullable=True),
        sa.Column("m1i_change", sa.Double(), nullable=True),
        sa.Column("sd1i_change", sa.Double(), nullable=True),
        sa.Column("m2i_change", sa.Double(), nullable=True),
        sa.Column("sd2i_change", sa.Double(), nullable=True),
        sa.Column("ri", sa.Double(), nullable=True),
        sa.Column("event1i", sa.Double(), nullable=True),
        sa.Column("event2i", sa.Double(), nullable=True),
        sa.Column("di", sa.Double(), nullable=True),
        sa.Column("ti", sa.Double(), nullable=True),
        sa.Column("pi", sa.Double(), nullable=True),
        sa.Column("fi", sa.Double(), nullable=True),
        sa.Column("ori", sa.Double(), nullable=True),
        sa.Column("ci_lb", sa.Double(), nullable=True),
        sa.Column("ci_ub", sa.Double(), nullable=True),
        sa.Column("source_report", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("location", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("coder", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("coded_at", sa.Date(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["arm1_id"], ["arm.id"], name=op.f("fk_result_arm1_id_arm"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["arm2_id"], ["arm.id"], name=op.f("fk_result_arm2_id_arm"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["outcome_id"],
            ["outcome.id"],
            name=op.f("fk_result_outcome_id_outcome"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"], ["study.id"], name=op.f("fk_result_study_id_study"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["timepoint_id"],
            ["timepoint.id"],
            name=op.f("fk_result_timepoint_id_timepoint"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_result")),
        sa.UniqueConstraint("study_id", "result_key", name=op.f("uq_result_study_id_result_key")),
    )
    with op.batch_alter_table("result", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_result_arm1_id"), ["arm1_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_result_arm2_id"), ["arm2_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_result_outcome_id"), ["outcome_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_result_timepoint_id"), ["timepoint_id"], unique=False)

    op.create_table(
        "effect_size",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("result_id", sa.Integer(), nullable=False),
        sa.Column("measure", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("yi", sa.Double(), nullable=True),
        sa.Column("vi", sa.Double(), nullable=True),
        sa.Column("formula", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("inputs", sa.Text(), nullable=True),
        sa.Column("flipped", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("imputed_r", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("ri_used", sa.Double(), nullable=True),
        sa.Column("cluster", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("n_split", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column(
            "computed_at", sa.DateTime(), server_default=sa.func.current_timestamp(), nullable=False
        ),
        sa.Column("engine_version", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["result.id"],
            name=op.f("fk_effect_size_result_id_result"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_effect_size")),
        sa.UniqueConstraint("result_id", name=op.f("uq_effect_size_result_id")),
    )
    op.create_table(
        "moderator_value",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("moderator_id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=True),
        sa.Column("arm_id", sa.Integer(), nullable=True),
        sa.Column("result_id", sa.Integer(), nullable=True),
        sa.Column("value_text", sa.Text(), nullable=True),
        sa.Column("value_num", sa.Double(), nullable=True),
        sa.CheckConstraint(
            "(CASE WHEN study_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN arm_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN result_id IS NULL THEN 0 ELSE 1 END) = 1",
            name=op.f("ck_moderator_value_one_target"),
        ),
        sa.ForeignKeyConstraint(
            ["arm_id"], ["arm.id"], name=op.f("fk_moderator_value_arm_id_arm"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["moderator_id"],
            ["moderator.id"],
            name=op.f("fk_moderator_value_moderator_id_moderator"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["result.id"],
            name=op.f("fk_moderator_value_result_id_result"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["study.id"],
            name=op.f("fk_moderator_value_study_id_study"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_moderator_value")),
    )
    with op.batch_alter_table("moderator_value", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_moderator_value_moderator_id"), ["moderator_id"], unique=False
        )
        batch_op.create_index(
            "uq_moderator_value_arm",
            ["arm_id", "moderator_id"],
            unique=True,
            sqlite_where=sa.text("arm_id IS NOT NULL"),
            postgresql_where=sa.text("arm_id IS NOT NULL"),
        )
        batch_op.create_index(
            "uq_moderator_value_result",
            ["result_id", "moderator_id"],
            unique=True,
            sqlite_where=sa.text("result_id IS NOT NULL"),
            postgresql_where=sa.text("result_id IS NOT NULL"),
        )
        batch_op.create_index(
            "uq_moderator_value_study",
            ["study_id", "moderator_id"],
            unique=True,
            sqlite_where=sa.text("study_id IS NOT NULL"),
            postgresql_where=sa.text("study_id IS NOT NULL"),
        )

    op.create_table(
        "risk_of_bias",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("result_id", sa.Integer(), nullable=True),
        sa.Column("tool", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("domain", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("judgement", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("support", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "judgement IN ('low', 'some concerns', 'high')", name=op.f("ck_risk_of_bias_judgement")
        ),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["result.id"],
            name=op.f("fk_risk_of_bias_result_id_result"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["study_id"],
            ["study.id"],
            name=op.f("fk_risk_of_bias_study_id_study"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_of_bias")),
    )
    with op.batch_alter_table("risk_of_bias", schema=None) as batch_op:
        batch_op.create_index(
            "uq_risk_of_bias_result",
            ["result_id", "tool", "domain"],
            unique=True,
            sqlite_where=sa.text("result_id IS NOT NULL"),
            postgresql_where=sa.text("result_id IS NOT NULL"),
        )
        batch_op.create_index(
            "uq_risk_of_bias_study",
            ["study_id", "tool", "domain"],
            unique=True,
            sqlite_where=sa.text("result_id IS NULL"),
            postgresql_where=sa.text("result_id IS NULL"),
        )


TABLES = (
    "review",
    "revision",
    "change_log",
    "moderator",
    "study",
    "arm",
    "outcome",
    "timepoint",
    "result",
    "effect_size",
    "moderator_value",
    "risk_of_bias",
)


def downgrade() -> None:
    guard_downgrade(revision, tables=TABLES)
    with op.batch_alter_table("risk_of_bias", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_risk_of_bias_study",
            sqlite_where=sa.text("result_id IS NULL"),
            postgresql_where=sa.text("result_id IS NULL"),
        )
        batch_op.drop_index(
            "uq_risk_of_bias_result",
            sqlite_where=sa.text("result_id IS NOT NULL"),
            postgresql_where=sa.text("result_id IS NOT NULL"),
        )

    op.drop_table("risk_of_bias")
    with op.batch_alter_table("moderator_value", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_moderator_value_study",
            sqlite_where=sa.text("study_id IS NOT NULL"),
            postgresql_where=sa.text("study_id IS NOT NULL"),
        )
        batch_op.drop_index(
            "uq_moderator_value_result",
            sqlite_where=sa.text("result_id IS NOT NULL"),
            postgresql_where=sa.text("result_id IS NOT NULL"),
        )
        batch_op.drop_index(
            "uq_moderator_value_arm",
            sqlite_where=sa.text("arm_id IS NOT NULL"),
            postgresql_where=sa.text("arm_id IS NOT NULL"),
        )
        batch_op.drop_index(batch_op.f("ix_moderator_value_moderator_id"))

    op.drop_table("moderator_value")
    op.drop_table("effect_size")
    with op.batch_alter_table("result", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_result_timepoint_id"))
        batch_op.drop_index(batch_op.f("ix_result_outcome_id"))
        batch_op.drop_index(batch_op.f("ix_result_arm2_id"))
        batch_op.drop_index(batch_op.f("ix_result_arm1_id"))

    op.drop_table("result")
    op.drop_table("timepoint")
    op.drop_table("outcome")
    op.drop_table("arm")
    op.drop_table("study")
    op.drop_table("moderator")
    with op.batch_alter_table("change_log", schema=None) as batch_op:
        batch_op.drop_index("ix_change_log_table_row")
        batch_op.drop_index(batch_op.f("ix_change_log_revision_id"))

    op.drop_table("change_log")
    op.drop_table("revision")
    op.drop_table("review")
