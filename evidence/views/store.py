"""Stored analysis views: create, list, show, drop; the review's plan as views; the table.

Every function takes an engine; the command line (``evidence view ...``) calls them with
the same parameters. Reading a view never presents a stale estimate as current:
:func:`show_view` refreshes a stale view first (or, with ``refresh=False``, marks it
stale).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from evidence.config import default_author
from evidence.db.engine import database_error
from evidence.db.models import utcnow
from evidence.errors import NotFoundError, SelectionError
from evidence.ingest.codebook import Codebook
from evidence.views.dataset import field_types, review_codebook, review_row
from evidence.views.refresh import RESULT, VIEW, data_state, refresh_views, spec_of
from evidence.views.spec import ViewSpec, check_spec, model_from_codebook
from evidence.views.sqlviews import rebuild_dataset_view

__all__ = [
    "ViewStatus",
    "create_plan_views",
    "create_view",
    "drop_view",
    "list_views",
    "results_table",
    "show_view",
]

_HEADLINE = (
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


@dataclass(frozen=True)
class ViewStatus:
    """A view with its current result and whether that result is fresh."""

    spec: ViewSpec
    review: str
    fresh: bool
    revision: int | None
    computed_at: dt.datetime | None
    status: str | None
    error: str | None
    k_studies: int | None
    k_effects: int | None
    headline: dict[str, float | None]
    result: dict[str, Any] | None
    summary: str | None
    simulated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``--json`` output of ``evidence view show``)."""
        return {
            **self.spec.to_dict(),
            "review": self.review,
            "fresh": self.fresh,
            "revision": self.revision,
            "computed_at": self.computed_at.isoformat() if self.computed_at else None,
            "status": self.status,
            "error": self.error,
            "k_studies": self.k_studies,
            "k_effects": self.k_effects,
            **self.headline,
            "simulated": self.simulated,
            "excluded": self.excluded,
            "result": self.result,
        }

    @property
    def excluded(self) -> list[dict[str, Any]]:
        """Selected results not in the model, each with its reason (``view show`` lists them)."""
        return list((self.result or {}).get("excluded", []))


def _connect(engine: Engine) -> Any:
    try:
        return engine.connect()
    except sa.exc.DBAPIError as error:
        raise database_error(error) from error


def create_view(
    engine: Engine,
    name: str,
    selection: str = "",
    *,
    model: str = "rma",
    options: Mapping[str, Any] | None = None,
    moderators: Sequence[str] = (),
    subgroup: str | None = None,
    measure: str | None = None,
    title: str | None = None,
    review: str | None = None,
    source: str = "analyst",
    author: str | None = None,
    replace: bool = False,
    compute: bool = True,
) -> ViewStatus | None:
    """Check a view against the review's codebook, store it and compute it.

    Raises
    ------
    SelectionError
        The selection, model, options, moderators or subgroup do not check (the message
        names the position or the argument), or the name is taken (without ``replace``).
    NotFoundError
        The review is not in the database.
    """
    with _connect(engine) as conn:
        row = review_row(conn, review)
    codebook = review_codebook(row.codebook, row.name)
    spec = ViewSpec(
        name=name,
        selection=selection or "",
        model=model,
        options=dict(options or {}),
        moderators=tuple(moderators),
        subgroup=subgroup,
        measure=measure,
        title=title,
        source=source,
    )
    checked, _ = check_spec(spec, field_types(codebook), codebook.analysis.measure)
    values = {
        "review_id": row.id,
        "name": checked.name,
        "title": checked.title,
        "source": checked.source,
        "selection": checked.selection,
        "measure": checked.measure,
        "model": checked.model,
        "options": json.dumps(dict(sorted(checked.options.items()))),
        "moderators": json.dumps(list(checked.moderators)),
        "subgroup": checked.subgroup,
        "created_at": utcnow(),
        "author": default_author(author),
    }
    v = VIEW.c
    try:
        with engine.begin() as conn:
            existing = conn.execute(
                sa.select(v.id).where(v.review_id == row.id, v.name == checked.name)
            ).scalar()
            if existing is not None and not replace:
                raise SelectionError(
                    f"view {checked.name!r} exists in review {row.name!r}; drop it first or "
                    "use --replace"
                )
            if existing is not None:
                conn.execute(VIEW.update().where(v.id == existing).values(**values))
                # the stored result no longer counts as confirmed: the next refresh checks it
                conn.execute(
                    RESULT.update()
                    .where(RESULT.c.view_id == existing, RESULT.c.current)
                    .values(checked_revision=-1)
                )
            else:
                conn.execute(VIEW.insert().values(**values))
    except sa.exc.DBAPIError as error:
        raise database_error(error) from error
    if not compute:
        return None
    refresh_views(engine, [checked.name], review_id=row.id, force=existing is not None)
    return show_view(engine, checked.name, review=row.name)


def drop_view(engine: Engine, name: str, *, review: str | None = None) -> int:
    """Delete a view and its results; return how many results went with it."""
    with _connect(engine) as conn:
        row = review_row(conn, review)
    v, r = VIEW.c, RESULT.c
    try:
        with engine.begin() as conn:
            vid = conn.execute(
                sa.select(v.id).where(v.review_id == row.id, v.name == name)
            ).scalar()
            if vid is None:
                raise NotFoundError(f"no view {name!r} in review {row.name!r}")
            n = conn.execute(sa.select(sa.func.count()).where(r.view_id == vid)).scalar_one()
            conn.execute(RESULT.delete().where(r.view_id == vid))
            conn.execute(VIEW.delete().where(v.id == vid))
    except sa.exc.DBAPIError as error:
        raise database_error(error) from error
    return int(n)


def _statuses(
    engine: Engine, review: str | None, names: Sequence[str] | None, full: bool
) -> list[ViewStatus]:
    v, r = VIEW.c, RESULT.c
    with _connect(engine) as conn:
        rv = review_row(conn, review)
        state = data_state(conn)
        cols = [
            v.id,
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
            r.revision,
            r.computed_at,
            r.status,
            r.error,
            r.k_studies,
            r.k_effects,
            r.checked_revision,
            r.checked_count,
            *(r[c] for c in _HEADLINE),
        ]
        if full:
            cols += [r.result, r.summary]
        query = (
            sa.select(*cols)
            .select_from(VIEW.outerjoin(RESULT, sa.and_(r.view_id == v.id, r.current)))
            .where(v.review_id == rv.id)
            .order_by(v.id)
        )
        if names is not None:
            query = query.where(v.name.in_(list(names)))
        rows = conn.execute(query).all()
    out = []
    for row in rows:
        result = json.loads(row.result) if full and row.result else None
        fresh = row.result_id is not None and (row.checked_revision, row.checked_count) == state
        out.append(
            ViewStatus(
                spec=spec_of(row),
                review=rv.name,
                fresh=fresh,
                revision=row.revision,
                computed_at=row.computed_at,
                status=row.status,
                error=row.error,
                k_studies=row.k_studies,
                k_effects=row.k_effects,
                headline={c: row._mapping[c] for c in _HEADLINE},
                result=result,
                summary=row.summary if full else None,
                simulated="SIMULATED" in (row.summary or "") if full else False,
            )
        )
    return out


def list_views(engine: Engine, *, review: str | None = None) -> list[ViewStatus]:
    """Every view of a review with its current estimate and freshness (no recompute)."""
    return _statuses(engine, review, None, full=False)


def show_view(
    engine: Engine, name: str, *, review: str | None = None, refresh: bool = True
) -> ViewStatus:
    """A view's current result; a stale view is refreshed first (unless ``refresh=False``).

    Raises
    ------
    NotFoundError
        No such view.
    """
    found = _statuses(engine, review, [name], full=True)
    if not found:
        with _connect(engine) as conn:
            rv = review_row(conn, review)
        raise NotFoundError(f"no view {name!r} in review {rv.name!r}; see `evidence view list`")
    if refresh and not found[0].fresh:
        with _connect(engine) as conn:
            rid = review_row(conn, review).id
        refresh_views(engine, [name], review_id=rid)
        found = _statuses(engine, review, [name], full=True)
    return found[0]


def create_plan_views(
    engine: Engine, codebook: Codebook, *, author: str | None = None, compute: bool = True
) -> list[str]:
    """Create (or update) the views of the codebook's ``analysis_plan`` (source ``codebook``).

    Views of the plan that the codebook no longer declares are dropped; analysts' views are
    left alone. Returns the names of the plan's views.
    """
    names = []
    for view in codebook.views:
        model, options = model_from_codebook(view.model)
        if "level" not in options:
            options["level"] = codebook.analysis.level
        create_view(
            engine,
            view.name,
            view.select,
            model=model,
            options=options,
            moderators=view.mods,
            subgroup=view.subgroup,
            title=view.title,
            review=codebook.name,
            source="codebook",
            author=author,
            replace=True,
            compute=False,
        )
        names.append(view.name)
    v = VIEW.c
    try:
        with engine.begin() as conn:
            rid = review_row(conn, codebook.name).id
            gone = (
                conn.execute(
                    sa.select(v.id).where(
                        v.review_id == rid, v.source == "codebook", v.name.not_in(names)
                    )
                )
                .scalars()
                .all()
            )
            for vid in gone:
                conn.execute(RESULT.delete().where(RESULT.c.view_id == vid))
                conn.execute(VIEW.delete().where(v.id == vid))
            rebuild_dataset_view(conn)
    except sa.exc.DBAPIError as error:
        raise database_error(error) from error
    if compute:
        refresh_views(engine, names, review_id=rid)
    return names


def results_table(
    engine: Engine, *, review: str | None = None, refresh: bool = True
) -> pd.DataFrame:
    """The review's results: one row per view (and per subgroup level of subgroup views).

    Columns: view, level, k_studies, k_effects, estimate, ci_lb, ci_ub, pi_lb, pi_ub,
    heterogeneity (tau2 or the sigma2s, and I2), test (of moderators), fresh, error, excluded
    (how many selected results are not in the model: ``show_view`` lists them). The frame's
    ``attrs["title"]`` says ``SIMULATED data`` when a selected study is simulated.
    """
    if refresh:
        with _connect(engine) as conn:
            rid = review_row(conn, review).id
        refresh_views(engine, review_id=rid)
    rows = []
    simulated = False
    for st in _statuses(engine, review, None, full=True):
        simulated |= st.simulated
        h = st.headline
        overall = (st.result or {}).get("overall", {})
        rows.append(_row(st.spec.name, "", st.k_studies, st.k_effects, h, overall, st))
        sub = (st.result or {}).get("subgroup")
        if sub:
            for level, entry in sub["levels"].items():
                rows.append(
                    _row(
                        st.spec.name,
                        level,
                        entry.get("k_studies"),
                        entry.get("k_effects"),
                        entry,
                        entry,
                        None,
                    )
                )
    frame = pd.DataFrame(rows)
    name = review or (rows and "") or ""
    del name
    frame.attrs["title"] = "Results of the analysis views" + (
        " (SIMULATED data: not real studies)" if simulated else ""
    )
    frame.attrs["simulated"] = simulated
    return frame


def _row(
    view: str,
    level: str,
    ks: Any,
    ke: Any,
    h: Mapping[str, Any],
    fit: Mapping[str, Any],
    st: ViewStatus | None,
) -> dict[str, Any]:
    sigma2 = fit.get("sigma2") if isinstance(fit, Mapping) else None
    if h.get("tau2") is not None:
        het = f"tau2={h['tau2']:.4f}"
    elif sigma2:
        het = "sigma2=" + "/".join(f"{s:.4f}" for s in sigma2 if s is not None)
    else:
        het = ""
    if h.get("I2") is not None:
        het += f", I2={h['I2']:.1f}%"
    test = ""
    if st is not None and h.get("QM") is not None:
        test = f"QM={h['QM']:.3f}, p={h['QMp']:.3g}"
    return {
        "view": view,
        "level": level,
        "k_studies": ks,
        "k_effects": ke,
        "estimate": h.get("estimate"),
        "ci_lb": h.get("ci_lb"),
        "ci_ub": h.get("ci_ub"),
        "pi_lb": h.get("pi_lb"),
        "pi_ub": h.get("pi_ub"),
        "heterogeneity": het,
        "test": test,
        "fresh": st.fresh if st is not None else None,
        "error": (st.error if st is not None else fit.get("error")),
        "excluded": len(st.excluded) if st is not None else None,
    }
