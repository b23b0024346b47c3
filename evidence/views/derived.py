"""Derived values follow their inputs by every path, and no result leaves a view silently.

Which studies changed
---------------------
:func:`changed_studies` maps the rows logged in ``change_log`` after a revision to the
studies they belong to (optionally only the changes of plain-SQL revisions).

Following plain-SQL changes
---------------------------
A write through ``evidence`` (ingest, codebook apply) recomputes the effect sizes of the
results it changes in the same revision. A plain-SQL statement does not: before a refresh
plans its views, :func:`suspect_studies` finds the studies whose rows were changed by
plain SQL since the views were last checked (results, arms, outcomes, timepoints, the study,
its moderator values, or an ``effect_size`` row itself), and the studies holding a result
without an effect size (a plain-SQL insert); :func:`follow_inputs` recomputes their effect
sizes with the ingest functions (:func:`evidence.ingest.recompute.recompute_effects`), in
one revision. A plain-SQL change of the review row (its codebook) or of the moderator
declarations recomputes the whole review. The views then refresh as usual.

Exclusions
----------
A selected row without a computable effect size (``yi``/``vi`` missing) or without a value
of one of the view's moderators does not enter the model; :func:`exclusions` lists each with
its reason, stored with the view's result and printed by ``view show``. A row whose study's
records fail the codebook (:data:`~evidence.ingest.recompute.INVALID_FORMULA`) makes the view
an error naming the study, result, column and rule: its estimate would not be current.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from evidence.db.models import metadata
from evidence.ingest.recompute import (
    INVALID_FORMULA,
    INVALID_REASON,
    RecomputeReport,
    recompute_effects,
)
from evidence.views.compute import Computation, fingerprint
from evidence.views.selection import Selection, evaluate
from evidence.views.spec import ViewSpec

__all__ = [
    "changed_studies",
    "exclusions",
    "follow_inputs",
    "following",
    "suspect_studies",
    "suspects_of",
    "view_fingerprint",
    "with_exclusions",
]

_STUDY_SCOPED = ("arm", "outcome", "timepoint", "result", "risk_of_bias")
#: How many excluded rows a printed summary names (the stored result lists them all).
_SHOWN = 10

_FOLLOWING: contextvars.ContextVar[bool] = contextvars.ContextVar("following", default=False)


def _values(text: str | None) -> dict[str, Any]:
    return json.loads(text) if text else {}


def changed_studies(
    conn: Connection, since: int | None, *, source: str | None = None, upto: int | None = None
) -> set[int] | None:
    """Ids of the studies whose rows changed after revision *since* (None: ever).

    Parameters
    ----------
    source
        Only the changes of revisions from this source (``"sql"``: plain SQL).
    upto
        Only the changes of revisions up to this one.

    Returns None when a change is not tied to studies (a review or moderator declaration),
    or a row cannot be traced to its study: then the whole review must be considered.
    """
    c = metadata.tables["change_log"].c
    query = sa.select(c.table_name, c.row_id, c.old_values, c.new_values)
    if since is not None:
        query = query.where(c.revision_id > since)
    if upto is not None:
        query = query.where(c.revision_id <= upto)
    if source is not None:
        rv = metadata.tables["revision"].c
        query = query.where(c.revision_id.in_(sa.select(rv.id).where(rv.source == source)))
    rows = conn.execute(query).all()
    studies: set[int] = set()
    result_ids: set[int] = set()
    arm_ids: set[int] = set()
    known: dict[str, dict[int, int]] = {"result": {}, "arm": {}}
    for table, row_id, old, new in rows:
        if table in ("review", "moderator"):
            return None
        values = [_values(old), _values(new)]
        if table == "study":
            studies.add(int(row_id))
            continue
        for v in values:
            if not v:
                continue
            if table in _STUDY_SCOPED:
                studies.add(int(v["study_id"]))
                if table in known:
                    known[table][int(row_id)] = int(v["study_id"])
            elif table == "effect_size":
                result_ids.add(int(v["result_id"]))
            elif table == "moderator_value":
                if v.get("study_id") is not None:
                    studies.add(int(v["study_id"]))
                elif v.get("arm_id") is not None:
                    arm_ids.add(int(v["arm_id"]))
                elif v.get("result_id") is not None:
                    result_ids.add(int(v["result_id"]))
    for table, ids in (("result", result_ids), ("arm", arm_ids)):
        missing = {i for i in ids if i not in known[table]}
        if missing:
            t = metadata.tables[table]
            found = dict(
                conn.execute(
                    sa.select(t.c.id, t.c.study_id).where(
                        t.c.id.in_(sa.bindparam("ids", sorted(missing), expanding=True))
                    )
                ).all()
            )
            if set(found) != missing:
                return None
            known[table].update(found)
        studies.update(known[table][i] for i in ids)
    return studies


# ------------------------------------------------------------------ following plain SQL


def suspect_studies(
    conn: Connection, review_id: int, since: int | None, upto: int
) -> set[int] | None:
    """Studies of a review whose effect sizes may not follow their records (None: all).

    Those changed by plain SQL in revisions ``(since, upto]`` (``since`` None: ever), and
    those holding a result without an effect size.
    """
    changed = changed_studies(conn, since, source="sql", upto=upto)
    if changed is None:
        return None
    st, rt, et = (metadata.tables[n] for n in ("study", "result", "effect_size"))
    in_review = sa.select(st.c.id).where(st.c.review_id == review_id)
    lacking = set(
        conn.execute(
            sa.select(rt.c.study_id)
            .distinct()
            .select_from(rt.outerjoin(et, et.c.result_id == rt.c.id))
            .where(rt.c.study_id.in_(in_review.scalar_subquery()), et.c.id.is_(None))
        ).scalars()
    )
    if changed:
        changed = set(
            conn.execute(
                in_review.where(st.c.id.in_(sa.bindparam("ids", sorted(changed), expanding=True)))
            ).scalars()
        )
    return changed | lacking


def suspects_of(
    conn: Connection,
    stale: list[Any],
    reviews: Sequence[int],
    followed: dict[int, int],
    upto: int,
    force: bool,
) -> dict[int, set[int] | None]:
    """Per review, the studies whose effect sizes must be recomputed before the *stale*
    views (rows of ``analysis_view`` with their current result's checked revision) are
    planned; *followed* holds the revision each review was already followed to."""
    out: dict[int, set[int] | None] = {}
    for rid in reviews:
        views = [row for row in stale if row.review_id == rid]
        since = None
        if not force and all(row.result_id is not None for row in views):
            since = min(row.checked_revision for row in views)
            since = None if since < 0 else since
        if rid in followed:
            since = followed[rid] if since is None else max(since, followed[rid])
        studies = suspect_studies(conn, rid, since, upto)
        if studies is None or studies:
            out[rid] = studies
    return out


def following() -> bool:
    """Whether this thread is writing recomputed effect sizes (the commit hook stays out)."""
    return _FOLLOWING.get()


@contextmanager
def _following() -> Iterator[None]:
    token = _FOLLOWING.set(True)
    try:
        yield
    finally:
        _FOLLOWING.reset(token)


def follow_inputs(engine: Engine, review_id: int, study_ids: set[int] | None) -> RecomputeReport:
    """Recompute the effect sizes of the studies (None: the whole review) in one revision."""
    with engine.connect() as conn:
        st = metadata.tables["study"]
        keys = (
            sorted(
                conn.execute(
                    sa.select(st.c.study_key).where(
                        st.c.id.in_(sa.bindparam("ids", sorted(study_ids), expanding=True))
                    )
                ).scalars()
            )
            if study_ids is not None
            else []
        )
    what = "the review" if study_ids is None else "study " + ", ".join(keys[:_SHOWN])
    if len(keys) > _SHOWN:
        what += f" and {len(keys) - _SHOWN} more"
    message = f"effect sizes recomputed after a change of {what} not made through evidence"
    with _following():
        return recompute_effects(engine, review_id, study_ids, message=message)


# ------------------------------------------------------------------------ exclusions


def exclusions(
    conn: Connection, spec: ViewSpec, selection: Selection, frame: pd.DataFrame
) -> list[dict[str, Any]]:
    """The rows a view selects but cannot use, each with ``study, result, es_id, reason``
    and ``invalid`` (its study's records fail the codebook)."""
    if not len(frame):
        return []
    keep = evaluate(selection, frame)
    finite = np.isfinite(frame["yi"].to_numpy(float)) & np.isfinite(frame["vi"].to_numpy(float))
    out: list[dict[str, Any]] = []
    bad = frame.loc[keep & ~finite]
    if len(bad):
        et = metadata.tables["effect_size"]
        info = {
            r.id: r
            for r in conn.execute(
                sa.select(et.c.id, et.c.formula, et.c.inputs).where(
                    et.c.id.in_(sa.bindparam("ids", [int(i) for i in bad["es_id"]], expanding=True))
                )
            ).all()
        }
        for row in bad.itertuples(index=False):
            es = info.get(int(row.es_id))
            invalid = es is not None and es.formula == INVALID_FORMULA
            reason = _values(es.inputs).get("error") if invalid and es is not None else None
            if not reason:
                formula = es.formula if es is not None and es.formula else "unknown formula"
                reason = f"no effect size could be computed from the record ({formula})"
            out.append(_excluded(row, reason, invalid))
    usable = keep & finite
    for name in (*spec.moderators, *([spec.subgroup] if spec.subgroup else [])):
        missing = usable & frame[name].isna().to_numpy()
        for row in frame.loc[missing].itertuples(index=False):
            out.append(_excluded(row, f"moderator {name} is not coded", False))
        usable &= ~missing
    return out


def _excluded(row: Any, reason: str, invalid: bool) -> dict[str, Any]:
    return {
        "study": row.study,
        "result": row.result,
        "es_id": int(row.es_id),
        "reason": reason,
        "invalid": invalid,
    }


def view_fingerprint(spec: ViewSpec, data: pd.DataFrame, excluded: Sequence[dict]) -> str:
    """The fingerprint of a view's inputs: its rows and, when there are any, its exclusions."""
    fp = fingerprint(spec, data)
    if not excluded:
        return fp
    text = json.dumps([[e["es_id"], e["reason"]] for e in excluded])
    return hashlib.sha256((fp + text).encode()).hexdigest()


def _lines(excluded: Sequence[dict]) -> list[str]:
    lines = [f"  {e['study']} / {e['result']}: {e['reason']}" for e in excluded[:_SHOWN]]
    if len(excluded) > _SHOWN:
        lines.append(f"  ... and {len(excluded) - _SHOWN} more (see --json)")
    return lines


def with_exclusions(
    comp: Computation, spec: ViewSpec, fp: str, excluded: Sequence[dict]
) -> Computation:
    """*comp* with its exclusions listed; an error when a selected study's records fail."""
    if not excluded:
        return comp
    invalid = [e for e in excluded if e["invalid"]]
    if invalid:
        studies = sorted({e["study"] for e in invalid})
        detail = invalid[0]["reason"].removeprefix(INVALID_REASON)
        more = f" (and {len(invalid) - 1} more)" if len(invalid) > 1 else ""
        message = (
            f"the stored records of {len(studies)} selected "
            f"stud{'y' if len(studies) == 1 else 'ies'} ({', '.join(studies[:_SHOWN])}) fail "
            f"the codebook, so no current effect size can be computed from them: {detail}"
            f"{more}. Fix the records (ingest, or plain SQL) and the view follows"
        )
        summary = "\n".join(
            [f"View {spec.name!r}: not computed: {message}", "Not usable:", *_lines(invalid)]
        )
        return Computation(
            fp,
            "error",
            message,
            {"view": spec.to_dict(), "error": message, "excluded": list(excluded)},
            summary + "\n",
            comp.k_studies,
            comp.k_effects,
            comp.simulated,
            {},
        )
    n = len(excluded)
    note = [
        f"Excluded: {n} selected result{'s' if n != 1 else ''} not in the model:",
        *_lines(excluded),
    ]
    summary = comp.summary.rstrip("\n") + "\n\n" + "\n".join(note) + "\n"
    return replace(
        comp,
        fingerprint=fp,
        result={**comp.result, "excluded": list(excluded)},
        summary=summary,
    )
