"""The SQL views for analysts: ``analysis_dataset`` and ``pooled_estimate``.

Migration 0004 creates both, ``analysis_dataset`` with its fixed columns only (a migration
cannot know a review's moderators). :func:`rebuild_dataset_view` re-creates it with one
column per declared moderator (arm-level moderators: those of the intervention arm), on
SQLite and PostgreSQL; it runs whenever the declared moderators change (ingest or
codebook apply, through :func:`evidence.views.refresh_affected`; creating the plan
views). Each moderator column is a correlated subquery on the unique index of its target,
so selecting a few rows stays cheap.

Moderator names come from codebooks; only plain identifiers (``[A-Za-z_][A-Za-z0-9_]*``)
that do not collide with a fixed column become columns, and they are written as quoted
identifiers and literals, never spliced from other input.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = [
    "DATASET_SELECT",
    "POOLED_ESTIMATE",
    "dataset_view_sql",
    "ensure_dataset_view",
    "rebuild_dataset_view",
]

#: The fixed part of ``analysis_dataset`` (same text as migration 0004).
DATASET_SELECT = (
    "SELECT e.id AS es_id, r.id AS result_id, s.id AS study_id, v.name AS review,"
    " s.study_key AS study, r.result_key AS result, o.outcome_key AS outcome,"
    " t.timepoint_key AS timepoint_key, t.label AS timepoint, t.weeks AS weeks,"
    " a1.arm_key AS arm1, a2.arm_key AS arm2, e.measure AS measure, e.yi AS yi, e.vi AS vi,"
    " e.cluster AS cluster, s.citation AS citation, s.doi AS doi, s.year AS year,"
    " s.country AS country, s.design AS design, s.n_total AS n_total,"
    " s.simulated AS simulated, o.domain AS domain, o.construct AS construct,"
    " o.instrument AS instrument, o.direction AS direction, o.unit AS unit, r.n1i AS n1i,"
    " r.n2i AS n2i{extra}"
    " FROM effect_size e JOIN result r ON r.id = e.result_id"
    " JOIN study s ON s.id = r.study_id JOIN review v ON v.id = s.review_id"
    " LEFT JOIN outcome o ON o.id = r.outcome_id"
    " LEFT JOIN timepoint t ON t.id = r.timepoint_id"
    " LEFT JOIN arm a1 ON a1.id = r.arm1_id LEFT JOIN arm a2 ON a2.id = r.arm2_id"
)

#: ``pooled_estimate``: the current result of every view, and whether it is stale.
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

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FIXED = {
    "es_id",
    "result_id",
    "study_id",
    "review",
    "study",
    "result",
    "outcome",
    "timepoint_key",
    "timepoint",
    "weeks",
    "arm1",
    "arm2",
    "measure",
    "yi",
    "vi",
    "cluster",
    "citation",
    "doi",
    "year",
    "country",
    "design",
    "n_total",
    "simulated",
    "domain",
    "construct",
    "instrument",
    "direction",
    "unit",
    "n1i",
    "n2i",
}
_TARGET = {
    "study": "mv.study_id = s.id",
    "arm": "mv.arm_id = r.arm1_id",
    "effect": "mv.result_id = r.id",
}


def dataset_view_sql(moderators: list[tuple[str, str, str]]) -> str:
    """``CREATE VIEW analysis_dataset`` with a column per ``(name, level, type)``."""
    extra = []
    seen: dict[str, tuple[set[str], set[str]]] = {}
    for name, level, type_ in moderators:
        if not _IDENT.match(name) or name.lower() in _FIXED:
            continue
        levels, types = seen.setdefault(name, (set(), set()))
        levels.add(level)
        types.add(type_)
    for name, (levels, types) in seen.items():
        numeric = types <= {"numeric", "integer", "boolean"}
        value = "mv.value_num" if numeric else "mv.value_text"
        where = " OR ".join(f"(m.level = '{lv}' AND {_TARGET[lv]})" for lv in sorted(levels))
        if len(levels) == 1:
            where = _TARGET[next(iter(levels))]
        extra.append(
            f", (SELECT {value} FROM moderator_value mv JOIN moderator m ON m.id = mv.moderator_id"
            f" WHERE m.review_id = s.review_id AND m.name = '{name}' AND ({where})) AS \"{name}\""
        )
    return "CREATE VIEW analysis_dataset AS " + DATASET_SELECT.format(extra="".join(extra))


def rebuild_dataset_view(conn: Connection) -> None:
    """Re-create ``analysis_dataset`` with a column per moderator declared in the database."""
    rows = conn.execute(
        sa.text("SELECT name, level, type FROM moderator ORDER BY review_id, id")
    ).all()
    conn.execute(sa.text("DROP VIEW IF EXISTS analysis_dataset"))
    conn.execute(sa.text(dataset_view_sql([tuple(r) for r in rows])))


def ensure_dataset_view(conn: Connection) -> bool:
    """Re-create ``analysis_dataset`` when its columns miss a declared moderator.

    Returns whether it was re-created.
    """
    names = {
        name
        for (name,) in conn.execute(sa.text("SELECT DISTINCT name FROM moderator")).all()
        if _IDENT.match(name) and name.lower() not in _FIXED
    }
    columns = set(conn.execute(sa.text("SELECT * FROM analysis_dataset WHERE 1 = 0")).keys())
    if names <= columns and columns - _FIXED <= names:
        return False
    rebuild_dataset_view(conn)
    return True
