"""Freshness: which views are stale, which of them a change affects, and recomputing them.

The data state of a database is ``(max revision id, number of revisions)``: every write
through ``evidence`` and every plain-SQL statement that changes a data table adds a
revision (the history triggers). A view's current result records the state it was
computed from (``revision``, ``revision_count``) and the latest state at which it was
confirmed to be current (``checked_revision``, ``checked_count``). The freshness check
compares the latter with the database's state: two small queries, whatever the size of
the data.

Refreshing stale views
----------------------
0. Derived values first: the studies changed by plain SQL since the views were last checked
   (or holding a result without an effect size) get their effect sizes recomputed from
   their records, in one revision (:mod:`evidence.views.derived`); the views then see them.
1. In one read snapshot (PostgreSQL: ``REPEATABLE READ``; SQLite: one read transaction,
   which WAL keeps consistent) the state, the logged changes since the views were last
   checked and the data are read, so a view is never computed from a mix of states.
2. The changed rows are mapped to the studies they belong to. A view is affected when a
   changed study was among its studies or is now selected by it; a change of the review's
   codebook or moderators affects every view of the review (and rebuilds the
   ``analysis_dataset`` SQL view).
3. An affected view's input rows are fingerprinted; only when the fingerprint differs is
   the model refitted and a new result stored (the previous one stays, as history).
   Unaffected views, and affected ones whose inputs did not change, are confirmed at the
   new state without a new result.

Writers are serialised (SQLite's write lock; on PostgreSQL an advisory lock held from
taking a revision number to commit, migration 0006), so every revision below a committed
one is committed and a snapshot's state names one state of the data. The number of
revisions stays as a guard: a count that does not match the revisions above a view's
checked number (a database written before migration 0006) triggers a full check.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from evidence.db.engine import WRITE_OPTIONS, database_error, on_commit
from evidence.db.models import metadata, utcnow
from evidence.errors import EvidenceError
from evidence.views.compute import ENGINE_VERSION, Computation, compute, fingerprint, selected_frame
from evidence.views.dataset import build_dataset, field_types, load_tables, review_codebook
from evidence.views.derived import (
    changed_studies,
    exclusions,
    follow_inputs,
    following,
    suspects_of,
    view_fingerprint,
    with_exclusions,
)
from evidence.views.models import AnalysisView, ViewResult
from evidence.views.selection import Selection, evaluate
from evidence.views.spec import ViewSpec, check_spec

__all__ = [
    "RefreshReport",
    "data_state",
    "refresh_affected",
    "refresh_all",
    "refresh_views",
    "snapshot",
    "spec_of",
    "stale_views",
]

VIEW = AnalysisView.__table__
RESULT = ViewResult.__table__
_WRITE = WRITE_OPTIONS
#: Passes of following plain-SQL changes before the views are planned (a plain-SQL write
#: between a recomputation and the snapshot starts one more).
_FOLLOW_PASSES = 3


@dataclass(frozen=True)
class RefreshReport:
    """What a refresh did, at which data state."""

    revision: int
    revision_count: int
    recomputed: tuple[str, ...] = ()
    confirmed: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    #: ``review/study`` keys whose effect sizes were recomputed after a plain-SQL change.
    effects: tuple[str, ...] = ()
    #: ``review/study`` -> why its effect sizes cannot be computed (its records fail).
    invalid: dict[str, str] = field(default_factory=dict)

    @property
    def checked(self) -> int:
        return len(self.recomputed) + len(self.confirmed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "revision_count": self.revision_count,
            "recomputed": list(self.recomputed),
            "confirmed": list(self.confirmed),
            "errors": list(self.errors),
            "effects_recomputed": list(self.effects),
            "invalid": dict(self.invalid),
        }


def data_state(conn: Connection) -> tuple[int, int]:
    """``(max revision id, number of revisions)`` as *conn* sees them."""
    row = conn.execute(sa.text("SELECT max(id), count(*) FROM revision")).one()
    return int(row[0] or 0), int(row[1] or 0)


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A read transaction that sees one consistent state of the database."""
    try:
        conn = engine.connect()
    except sa.exc.DBAPIError as error:
        raise database_error(error) from error
    with conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def stale_views(engine: Engine | Connection) -> list[str]:
    """Names of views without a result confirmed at the current data state (cheap)."""

    def run(conn: Connection) -> list[str]:
        m, c = data_state(conn)
        v, r = VIEW.c, RESULT.c
        query = (
            sa.select(v.name)
            .select_from(VIEW.outerjoin(RESULT, sa.and_(r.view_id == v.id, r.current)))
            .where(sa.or_(r.id.is_(None), r.checked_revision != m, r.checked_count != c))
            .order_by(v.id)
        )
        return list(conn.execute(query).scalars())

    try:
        if isinstance(engine, Connection):
            return run(engine)
        with engine.connect() as conn:
            return run(conn)
    except sa.exc.DBAPIError as error:
        raise database_error(error) from error


def spec_of(row: Any) -> ViewSpec:
    """The :class:`ViewSpec` of an ``analysis_view`` row."""
    return ViewSpec(
        name=row.name,
        selection=row.selection or "",
        model=row.model,
        options=json.loads(row.options or "{}"),
        moderators=tuple(json.loads(row.moderators or "[]")),
        subgroup=row.subgroup,
        measure=row.measure,
        title=row.title,
        source=row.source,
    )


# ---------------------------------------------------------------------------- refresh


@dataclass
class _Plan:
    view_id: int
    name: str
    result_id: int | None
    action: str  # "confirm" | "store"
    fingerprint: str | None = None
    computation: Computation | None = None
    study_ids: list[int] | None = None


def _current_rows(
    conn: Connection, names: Sequence[str] | None, review_id: int | None
) -> list[Any]:
    v, r = VIEW.c, RESULT.c
    query = sa.select(
        v.id,
        v.review_id,
        v.name,
        v.title,
        v.source,
        v.selection,
        v.measure,
        v.model,
        v.options,
        v.moderators,
        v.subgroup,
        r.id.label("result_id"),
        r.checked_revision,
        r.checked_count,
        r.fingerprint,
        r.study_ids,
    ).select_from(VIEW.outerjoin(RESULT, sa.and_(r.view_id == v.id, r.current)))
    if names is not None:
        query = query.where(v.name.in_(sa.bindparam("names", list(names), expanding=True)))
    if review_id is not None:
        query = query.where(v.review_id == review_id)
    return list(conn.execute(query.order_by(v.id)).all())


def _plan_review(
    conn: Connection, review_id: int, views: list[Any], state: tuple[int, int], force: bool
) -> tuple[list[_Plan], bool]:
    """Decide, for the stale views of one review, which to confirm and which to store."""
    rt = metadata.tables["review"]
    review = conn.execute(sa.select(rt.c.name, rt.c.codebook).where(rt.c.id == review_id)).one()
    codebook = review_codebook(review.codebook, review.name)
    types = field_types(codebook)
    kinds = {k: t.kind for k, t in types.items()}
    since = min((row.checked_revision for row in views if row.result_id is not None), default=None)
    changed: set[int] | None = None
    full = force or since is None or since < 0 or any(row.result_id is None for row in views)
    rebuild_sql_view = False
    if not full:
        later = conn.execute(
            sa.text("SELECT count(*) FROM revision WHERE id > :s"), {"s": since}
        ).scalar_one()
        oldest = min(row.checked_count for row in views)
        changed = changed_studies(conn, since)
        if changed is None:
            rebuild_sql_view = True
        if changed is None or state[1] - oldest != later:
            full = True
    plans: list[_Plan] = []
    specs: dict[int, tuple[ViewSpec, Selection | None, str | None]] = {}
    for row in views:
        spec = spec_of(row)
        try:
            checked, selection = check_spec(spec, types, codebook.analysis.measure)
            specs[row.id] = (checked, selection, None)
        except EvidenceError as error:
            specs[row.id] = (spec, None, error.message)
    full_frame: pd.DataFrame | None = None
    small: pd.DataFrame | None = None
    if full:
        full_frame = build_dataset(load_tables(conn, review_id), review.name, codebook.moderators)
    elif changed:
        small = build_dataset(
            load_tables(conn, review_id, study_ids=changed), review.name, codebook.moderators
        )
    for row in views:
        spec, selection, problem = specs[row.id]
        plan = _Plan(row.id, row.name, row.result_id, "confirm")
        if problem is not None:
            comp = Computation(
                fingerprint(spec, pd.DataFrame()),
                "error",
                problem,
                {"view": spec.to_dict(), "error": problem},
                f"View {spec.name!r}: not computed: {problem}\n",
                0,
                0,
                False,
            )
            if comp.fingerprint != row.fingerprint:
                plan.action, plan.computation = "store", comp
            plans.append(plan)
            continue
        assert selection is not None
        if full_frame is not None:
            frame = full_frame
        else:
            old = set(json.loads(row.study_ids or "[]"))
            touched = old & (changed or set())
            now = small is not None and len(small) and bool(evaluate(selection, small).any())
            if not touched and not now:
                plans.append(plan)
                continue
            frame = build_dataset(
                load_tables(conn, review_id, study_ids=old | (changed or set())),
                review.name,
                codebook.moderators,
            )
        data = selected_frame(spec, selection, frame)
        excluded = exclusions(conn, spec, selection, frame)
        fp = view_fingerprint(spec, data, excluded)
        if fp != row.fingerprint:
            plan.action = "store"
            comp = compute(spec, selection, frame, kinds)
            plan.computation = with_exclusions(comp, spec, fp, excluded)
            # the studies it uses or excludes (a change of either must reach it)
            studies = set(data["study"]) | {e["study"] for e in excluded}
            plan.study_ids = sorted(
                set(frame.loc[frame["study"].isin(studies), "study_id"].astype(int))
            )
        plans.append(plan)
    return plans, rebuild_sql_view or full


def _store(conn: Connection, plans: list[_Plan], state: tuple[int, int]) -> tuple[list, list]:
    r = RESULT.c
    confirm = [p for p in plans if p.action == "confirm" and p.result_id is not None]
    confirmed: list[str] = []
    for start in range(0, len(confirm), 500):
        part = confirm[start : start + 500]
        ids = [p.result_id for p in part]
        # only results still current and not confirmed at a newer state by another refresh
        conn.execute(
            RESULT.update()
            .where(r.id.in_(ids), r.current, r.checked_count <= state[1])
            .values(checked_revision=state[0], checked_count=state[1])
        )
        confirmed += [p.name for p in part]
    stored = []
    for plan in plans:
        comp = plan.computation
        if plan.action != "store" or comp is None:
            continue
        # one refresher at a time per view (SQLite: the write transaction already is)
        conn.execute(sa.select(VIEW.c.id).where(VIEW.c.id == plan.view_id).with_for_update())
        cur = conn.execute(
            sa.select(r.id, r.checked_count, r.fingerprint).where(
                r.view_id == plan.view_id, r.current
            )
        ).first()
        if cur is not None and (
            cur.checked_count > state[1]
            or (cur.checked_count == state[1] and cur.fingerprint == comp.fingerprint)
        ):
            continue  # a concurrent refresh already stored this (or a newer) result
        conn.execute(
            RESULT.update().where(r.view_id == plan.view_id, r.current).values(current=False)
        )
        h = comp.headline
        conn.execute(
            RESULT.insert().values(
                view_id=plan.view_id,
                revision=state[0],
                revision_count=state[1],
                checked_revision=state[0],
                checked_count=state[1],
                fingerprint=comp.fingerprint,
                engine_version=ENGINE_VERSION,
                computed_at=utcnow(),
                status=comp.status,
                error=comp.error,
                result=json.dumps(comp.result, default=_json_default),
                summary=comp.summary,
                study_ids=json.dumps(plan.study_ids or []),
                k_studies=comp.k_studies,
                k_effects=comp.k_effects,
                **{
                    k: h.get(k)
                    for k in (
                        "estimate",
                        "se",
                        "ci_lb",
                        "ci_ub",
                        "pi_lb",
                        "pi_ub",
                        "pval",
                        "tau2",
                        "I2",
                        "QM",
                        "QMp",
                    )
                },
                current=True,
            )
        )
        stored.append(plan.name)
    return stored, confirmed


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def refresh_views(
    engine: Engine,
    names: Sequence[str] | None = None,
    *,
    review_id: int | None = None,
    force: bool = False,
) -> RefreshReport:
    """Bring views up to date with the data; return what was recomputed and confirmed.

    Parameters
    ----------
    names
        Only these views (default: every view).
    review_id
        Only the views of this review.
    force
        Check every selected view against the full dataset, even when it looks fresh.
    """
    from evidence.views.sqlviews import rebuild_dataset_view

    followed: dict[int, int] = {}  # review id -> revision its plain-SQL changes were followed to
    effects: list[str] = []
    invalid: dict[str, str] = {}
    try:
        for attempt in range(_FOLLOW_PASSES):
            with snapshot(engine) as conn:
                state = data_state(conn)
                rows = _current_rows(conn, names, review_id)
                stale = [
                    row
                    for row in rows
                    if force
                    or row.result_id is None
                    or (row.checked_revision, row.checked_count) != state
                ]
                if not stale:
                    return RefreshReport(*state, effects=tuple(effects), invalid=invalid)
                reviews = dict.fromkeys(row.review_id for row in stale)
                pending = {}
                if attempt < _FOLLOW_PASSES - 1:
                    pending = suspects_of(conn, stale, reviews, followed, state[0], force)
                if not pending:
                    plans: list[_Plan] = []
                    rebuild = False
                    for rid in reviews:
                        part, changed_schema = _plan_review(
                            conn, rid, [row for row in stale if row.review_id == rid], state, force
                        )
                        plans += part
                        rebuild |= changed_schema
            if not pending:
                break
            for rid, studies in pending.items():
                done = follow_inputs(engine, rid, studies)
                followed[rid] = state[0]
                if done.changed:
                    effects += [f"{done.review}/{k}" for k in done.studies]
                invalid.update({f"{done.review}/{k}": v for k, v in done.invalid.items()})
        with engine.connect() as wconn:
            wconn = wconn.execution_options(**_WRITE)
            with wconn.begin():
                stored, confirmed = _store(wconn, plans, state)
                if rebuild:
                    rebuild_dataset_view(wconn)
    except sa.exc.DBAPIError as error:
        raise database_error(error) from error
    errors = tuple(p.name for p in plans if p.computation and p.computation.status != "ok")
    return RefreshReport(
        state[0], state[1], tuple(stored), tuple(confirmed), errors, tuple(effects), invalid
    )


def refresh_affected(engine: Engine, revision: int | None = None) -> RefreshReport:
    """Refresh exactly the views a write affected; call it after every write.

    Parameters
    ----------
    revision
        The revision just written (informational: every change since each view was
        last checked is considered, so earlier plain-SQL changes are included too).

    Returns a report with nothing to do when the database holds no view tables yet.
    """
    from evidence.views.sqlviews import ensure_dataset_view

    del revision
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("analysis_view"):
                return RefreshReport(*data_state(conn))
        with engine.connect() as conn:
            conn = conn.execution_options(**_WRITE)
            with conn.begin():
                ensure_dataset_view(conn)
    except sa.exc.DBAPIError as error:
        raise database_error(error) from error
    return refresh_views(engine)


def refresh_all(
    engine: Engine, *, review_id: int | None = None, force: bool = False
) -> RefreshReport:
    """Refresh every view (every view of one review); ``force`` re-checks fresh ones too."""
    return refresh_views(engine, review_id=review_id, force=force)


@on_commit
def _refresh_after_write(engine: Engine, revision: int) -> None:
    """Every write through :func:`evidence.db.write_transaction` (ingest, codebook apply,
    restore) refreshes the views it affected before it returns. The recomputation of effect
    sizes inside a refresh (:func:`~evidence.views.derived.follow_inputs`) is left to that
    refresh."""
    if following():
        return
    refresh_affected(engine, revision)
