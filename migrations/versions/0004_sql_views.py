"""Database views for analysts: analysis_dataset and pooled_estimate.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

Why: the effect sizes with their study, outcome and timepoint fields, and the current
pooled estimate of every analysis view, must be readable from any SQL client, pandas or R
on SQLite and PostgreSQL alike.

``analysis_dataset`` is created here with its fixed columns; applying a codebook
re-creates it with one column per declared moderator
(``evidence.views.sqlviews.rebuild_dataset_view``). ``pooled_estimate`` has a ``stale``
column (1 when data changed after the result was last confirmed). The SQL is written out
here so this revision never changes.

Nothing is stored in the two views (they are queries over the tables), so downgrade drops
them without counting anything. An upgrade that ends at head re-creates
``analysis_dataset`` with its moderator columns (``migrations/env.py``), so going down
to 0003 and back keeps them.

A later revision that rebuilds one of the referenced tables with SQLite batch operations
must drop both views first and re-create them after (SQLite refuses to rename a table
while a view refers to a missing one).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ANALYSIS_DATASET = (
    "CREATE VIEW analysis_dataset AS"
    " SELECT e.id AS es_id, r.id AS result_id, s.id AS study_id, v.name AS review,"
    " s.study_key AS study, r.result_key AS result, o.outcome_key AS outcome,"
    " t.timepoint_key AS timepoint_key, t.label AS timepoint, t.weeks AS weeks,"
    " a1.arm_key AS arm1, a2.arm_key AS arm2, e.measure AS measure, e.yi AS yi, e.vi AS vi,"
    " e.cluster AS cluster, s.citation AS citation, s.doi AS doi, s.year AS year,"
    " s.country AS country, s.design AS design, s.n_total AS n_total,"
    " s.simulated AS simulated, o.domain AS domain, o.construct AS construct,"
    " o.instrument AS instrument, o.direction AS direction, o.unit AS unit, r.n1i AS n1i,"
    " r.n2i AS n2i"
    " FROM effect_size e JOIN result r ON r.id = e.result_id"
    " JOIN study s ON s.id = r.study_id JOIN review v ON v.id = s.review_id"
    " LEFT JOIN outcome o ON o.id = r.outcome_id"
    " LEFT JOIN timepoint t ON t.id = r.timepoint_id"
    " LEFT JOIN arm a1 ON a1.id = r.arm1_id LEFT JOIN arm a2 ON a2.id = r.arm2_id"
)

POOLED_ESTIMATE = (
    'CREATE VIEW pooled_estimate AS SELECT v.id AS view_id, rv.name AS review, v.name AS "view",'
    " v.title AS title, v.source AS source, v.model AS model, v.selection AS selection,"
    " r.revision AS revision, r.computed_at AS computed_at, r.engine_version AS engine_version,"
    " r.status AS status, r.k_studies AS k_studies, r.k_effects AS k_effects,"
    " r.estimate AS estimate, r.se AS se, r.ci_lb AS ci_lb, r.ci_ub AS ci_ub,"
    ' r.pi_lb AS pi_lb, r.pi_ub AS pi_ub, r.pval AS pval, r.tau2 AS tau2, r."I2" AS "I2",'
    ' r."QM" AS "QM", r."QMp" AS "QMp",'
    " CASE WHEN r.id IS NOT NULL AND r.checked_revision = (SELECT max(id) FROM revision)"
    " AND r.checked_count = (SELECT count(*) FROM revision) THEN 0 ELSE 1 END AS stale"
    " FROM analysis_view v JOIN review rv ON rv.id = v.review_id"
    ' LEFT JOIN view_result r ON r.view_id = v.id AND r."current"'
)


def upgrade() -> None:
    op.execute(ANALYSIS_DATASET)
    op.execute(POOLED_ESTIMATE)


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS pooled_estimate")
    op.execute("DROP VIEW IF EXISTS analysis_dataset")
