"""A view's history, recomputation as of a past revision, and the diff of two revisions.

Every recompute of a view is a ``view_result`` row, so its history is those rows, oldest
first, each with the records (``change_log``) that changed between it and the previous one
in the studies the view used. :func:`recompute_as_of` rebuilds the analysis dataset as it
stood at a revision (from ``change_log``, :func:`evidence.db.history.state_as_of`) and
fits the view on it: for a revision at which a result was stored, the numbers and the
fingerprint are those stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from evidence.db.engine import database_error
from evidence.db.models import NATURAL_KEYS, metadata
from evidence.errors import NotFoundError
from evidence.views.compute import Computation, compute
from evidence.views.dataset import field_types, read_dataset, review_row
from evidence.views.refresh import RESULT, VIEW, data_state, spec_of
from evidence.views.revisions import check_revisions, resolve_revision
from evidence.views.spec import ViewSpec, check_spec

__all__ = [
    "ViewHistory",
    "check_revisions",
    "diff_revisions",
    "recompute_as_of",
    "resolve_revision",
    "view_history",
]


@dataclass(frozen=True)
class ViewHistory:
    """A view's results, oldest first (``entries``: one dict per result)."""

    view: str
    review: str
    entries: tuple[dict[str, Any], ...]

    def to_frame(self) -> pd.DataFrame:
        cols = [
            "revision",
            "computed_at",
            "status",
            "k_studies",
            "k_effects",
            "estimate",
            "ci_lb",
            "ci_ub",
            "changes",
        ]
        return pd.DataFrame(
            [{**e, "changes": len(e["changes"])} for e in self.entries], columns=cols
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "review": self.review,
            "entries": [
                {**e, "computed_at": e["computed_at"].isoformat() if e["computed_at"] else None}
                for e in self.entries
            ],
        }


def _changes(conn: Connection, after: int, upto: int, studies: set[int]) -> list[dict[str, Any]]:
    """Logged changes in (after, upto] of rows that belong to *studies*."""
    c = metadata.tables["change_log"].c
    rows = conn.execute(
        sa.select(c.revision_id, c.table_name, c.row_id, c.op, c.old_values, c.new_values)
        .where(c.revision_id > after, c.revision_id <= upto)
        .order_by(c.id)
    ).all()
    results: dict[int, int] = {}
    arms: dict[int, int] = {}
    decoded = []
    for row in rows:
        values = {**json.loads(row.old_values or "{}"), **json.loads(row.new_values or "{}")}
        decoded.append((row, values))
        if row.table_name == "result":
            results[row.row_id] = values.get("study_id")
        if row.table_name == "arm":
            arms[row.row_id] = values.get("study_id")
    out = []
    for row, values in decoded:
        table = row.table_name
        if table == "study":
            study = row.row_id
        elif "study_id" in values and values["study_id"] is not None:
            study = values["study_id"]
        elif values.get("result_id") is not None:
            study = results.get(values["result_id"], _lookup(conn, "result", values["result_id"]))
        elif values.get("arm_id") is not None:
            study = arms.get(values["arm_id"], _lookup(conn, "arm", values["arm_id"]))
        else:
            study = None
        if study is not None and study not in studies:
            continue
        key = values.get(NATURAL_KEYS.get(table, ""), None)
        out.append(
            {
                "revision": row.revision_id,
                "table": table,
                "row_id": row.row_id,
                "op": row.op,
                "key": key,
                "study_id": study,
            }
        )
    return out


def _lookup(conn: Connection, table: str, row_id: int) -> int | None:
    t = metadata.tables[table]
    return conn.execute(sa.select(t.c.study_id).where(t.c.id == row_id)).scalar()


def _view_row(conn: Connection, name: str, review: str | None) -> tuple[Any, Any]:
    rv = review_row(conn, review)
    row = conn.execute(
        sa.select(VIEW).where(VIEW.c.review_id == rv.id, VIEW.c.name == name)
    ).first()
    if row is None:
        raise NotFoundError(f"no view {name!r} in review {rv.name!r}; see `evidence view list`")
    return rv, row


def view_history(engine: Engine, name: str, *, review: str | None = None) -> ViewHistory:
    """Every stored result of a view with the records that changed before each one."""
    r = RESULT.c
    try:
        with engine.connect() as conn:
            rv, view = _view_row(conn, name, review)
            results = conn.execute(
                sa.select(
                    r.id,
                    r.revision,
                    r.computed_at,
                    r.status,
                    r.error,
                    r.k_studies,
                    r.k_effects,
                    r.estimate,
                    r.ci_lb,
                    r.ci_ub,
                    r.pi_lb,
                    r.pi_ub,
                    r.fingerprint,
                    r.study_ids,
                    r.current,
                )
                .where(r.view_id == view.id)
                .order_by(r.id)
            ).all()
            entries = []
            previous: Any = None
            for res in results:
                studies = set(json.loads(res.study_ids or "[]"))
                changes: list[dict[str, Any]] = []
                if previous is not None:
                    studies |= set(json.loads(previous.study_ids or "[]"))
                    changes = _changes(conn, previous.revision, res.revision, studies)
                entries.append(
                    {
                        "revision": res.revision,
                        "computed_at": res.computed_at,
                        "status": res.status,
                        "error": res.error,
                        "k_studies": res.k_studies,
                        "k_effects": res.k_effects,
                        "estimate": res.estimate,
                        "ci_lb": res.ci_lb,
                        "ci_ub": res.ci_ub,
                        "pi_lb": res.pi_lb,
                        "pi_ub": res.pi_ub,
                        "fingerprint": res.fingerprint,
                        "current": bool(res.current),
                        "changes": changes,
                    }
                )
                previous = res
    except sa.exc.DBAPIError as error:
        raise database_error(error) from error
    return ViewHistory(view=name, review=rv.name, entries=tuple(entries))


def _compute_at(
    conn: Connection, specs: list[ViewSpec], review: str, revision: int | None
) -> dict[str, Computation]:
    """Fit *specs* on the data as of *revision* (None: as it is now)."""
    frame, codebook = read_dataset(conn, review, revision=revision)
    types = field_types(codebook)
    kinds = {k: t.kind for k, t in types.items()}
    out = {}
    for spec in specs:
        checked, selection = check_spec(spec, types, codebook.analysis.measure)
        out[spec.name] = compute(checked, selection, frame, kinds)
    return out


def recompute_as_of(
    engine: Engine, name: str, as_of: int | str, *, review: str | None = None
) -> tuple[int, Computation]:
    """Fit a view on the data as it stood at a revision (or date); ``(revision, result)``."""
    try:
        with engine.connect() as conn:
            rv, view = _view_row(conn, name, review)
            revision = resolve_revision(conn, as_of)
            latest = data_state(conn)[0]
            if revision < 1 or revision > latest:
                raise NotFoundError(f"revision {revision} does not exist (latest: {latest})")
            return revision, _compute_at(conn, [spec_of(view)], rv.name, revision)[name]
    except sa.exc.DBAPIError as error:
        raise database_error(error) from error


def diff_revisions(
    engine: Engine, rev1: int | str, rev2: int | str, *, review: str | None = None
) -> dict[str, Any]:
    """Records changed between two revisions and the change in every view's estimate.

    Returns
    -------
    dict
        ``changes``: one dict per logged change in (rev1, rev2]; ``views``: a DataFrame
        with each view's k and estimate at both revisions and the difference.
    """
    try:
        with engine.connect() as conn:
            a, b, _ = check_revisions(conn, rev1, rev2)
            rv = review_row(conn, review)
            views = conn.execute(
                sa.select(VIEW).where(VIEW.c.review_id == rv.id).order_by(VIEW.c.id)
            ).all()
            specs = [spec_of(v) for v in views]
            st = metadata.tables["study"]
            studies = set(conn.execute(sa.select(st.c.id).where(st.c.review_id == rv.id)).scalars())
            changes = _changes(conn, a, b, studies | _deleted_studies(conn, rv.id))
            before = _compute_at(conn, specs, rv.name, a)
            after = _compute_at(conn, specs, rv.name, b)
    except sa.exc.DBAPIError as error:
        raise database_error(error) from error
    rows = []
    for spec in specs:
        x, y = before[spec.name], after[spec.name]
        ex, ey = x.headline.get("estimate"), y.headline.get("estimate")
        rows.append(
            {
                "view": spec.name,
                "k_before": x.k_effects,
                "k_after": y.k_effects,
                "estimate_before": ex,
                "estimate_after": ey,
                "change": None if ex is None or ey is None else ey - ex,
                "changed": x.fingerprint != y.fingerprint,
            }
        )
    return {"from": a, "to": b, "review": rv.name, "changes": changes, "views": pd.DataFrame(rows)}


def _deleted_studies(conn: Connection, review_id: int) -> set[int]:
    c = metadata.tables["change_log"].c
    rows = conn.execute(
        sa.select(c.row_id, c.old_values).where(c.table_name == "study", c.op == "delete")
    ).all()
    return {rid for rid, old in rows if json.loads(old or "{}").get("review_id") == review_id}
