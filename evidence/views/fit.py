"""A view's fitted engine objects: the rows it selects and the models fitted to them.

:func:`fit_view` reads the analysis dataset (now, or as it stood at a data revision),
selects the view's rows and fits its model with the same code as :func:`compute` (so the
numbers are those the view stores), and returns a :class:`ViewFit` that plots, bias tests
and sensitivity analyses take their inputs from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from evidence.db.engine import current_revision, database_error
from evidence.db.models import metadata
from evidence.errors import EvidenceError, NotFoundError
from evidence.views.compute import _design, _Fitter, selected_frame
from evidence.views.dataset import field_types, read_dataset, review_row
from evidence.views.history import resolve_revision
from evidence.views.refresh import VIEW, spec_of
from evidence.views.spec import ViewSpec, check_spec

__all__ = ["EXTRA_COLUMNS", "ViewFit", "fit_view", "fit_views"]

#: Dataset columns carried beside the view's own (for labels, cumulative order, sample sizes).
EXTRA_COLUMNS = ("year", "domain", "timepoint", "n_total", "n1i", "n2i", "citation")
#: Risk-of-bias judgements from best to worst (the worst of a study's domains counts).
_ROB_ORDER = ("low", "some concerns", "high")


@dataclass(frozen=True)
class ViewFit:
    """A view fitted on its selected rows.

    Attributes
    ----------
    spec
        The checked view definition.
    review, revision
        The review and the data revision the rows were read at.
    data
        The selected rows, in the order they were fitted: ``es_id, study, yi, vi, cluster,
        simulated``, the view's moderators or subgroup, ``year, domain, timepoint, n_total,
        n1i, n2i, citation`` and ``rob`` (the study's worst risk-of-bias judgement, None
        when it has none).
    fit
        The intercept-only model (:class:`~evidence.stats.RMAResult` for ``rma``,
        :class:`~evidence.stats.rma_mv.RmaMvResult` otherwise), before any robust variance.
    robust
        For CHE views, the cluster-robust (CR2) version of ``fit``; None otherwise.
    regression, regression_robust
        The meta-regression of a view with moderators (and its robust version), else None.
    error
        Why the view could not be fitted (then ``fit`` is None), from :func:`fit_views`.
    """

    spec: ViewSpec
    review: str
    revision: int
    data: pd.DataFrame
    fit: Any
    robust: Any
    regression: Any = None
    regression_robust: Any = None
    error: str | None = None

    @property
    def result(self) -> Any:
        """The overall model as the view reports it (robust for CHE)."""
        return self.fit if self.robust is None else self.robust

    @property
    def moderator_result(self) -> Any:
        """The meta-regression as the view reports it (robust for CHE), or None."""
        return self.regression if self.regression_robust is None else self.regression_robust

    @property
    def yi(self) -> np.ndarray:
        return self.data["yi"].to_numpy(float)

    @property
    def vi(self) -> np.ndarray:
        return self.data["vi"].to_numpy(float)

    @property
    def study(self) -> np.ndarray:
        """Study label of each effect (the study key)."""
        return self.data["study"].astype(str).to_numpy(dtype=object)

    @property
    def k_effects(self) -> int:
        return len(self.data)

    @property
    def k_studies(self) -> int:
        return int(self.data["study"].nunique())

    @property
    def simulated(self) -> bool:
        return bool(self.data["simulated"].fillna(False).astype(bool).any())

    @property
    def domains(self) -> tuple[str, ...]:
        """The outcome domains of the selected rows (sorted)."""
        return tuple(sorted(str(d) for d in self.data["domain"].dropna().unique()))

    @property
    def rob(self) -> np.ndarray | None:
        """Risk of bias per effect, or None when no selected study has a judgement."""
        values = self.data["rob"]
        return None if values.isna().all() else values.to_numpy(dtype=object)


def _view_spec(conn: Connection, name: str, review: str | None) -> tuple[Any, ViewSpec]:
    rv = review_row(conn, review)
    row = conn.execute(
        sa.select(VIEW).where(VIEW.c.review_id == rv.id, VIEW.c.name == name)
    ).first()
    if row is None:
        raise NotFoundError(f"no view {name!r} in review {rv.name!r}; see `evidence view list`")
    return rv, spec_of(row)


def _rob_by_study(conn: Connection, study_ids: list[int]) -> dict[int, str]:
    """The worst risk-of-bias judgement of each study (its ``overall`` domain if rated)."""
    if not study_ids:
        return {}
    t = metadata.tables["risk_of_bias"].c
    rows = conn.execute(
        sa.select(t.study_id, t.domain, t.judgement).where(t.study_id.in_(study_ids))
    ).all()
    overall: dict[int, str] = {}
    worst: dict[int, str] = {}
    for sid, domain, judgement in rows:
        if str(domain).strip().lower() == "overall":
            overall[sid] = judgement
        rank = _ROB_ORDER.index(judgement) if judgement in _ROB_ORDER else len(_ROB_ORDER)
        old = worst.get(sid)
        if old is None or rank > _ROB_ORDER.index(old):
            worst[sid] = judgement if judgement in _ROB_ORDER else "high"
    return {**worst, **overall}


def fit_view(
    engine: Engine, name: str, *, review: str | None = None, as_of: int | str | None = None
) -> ViewFit:
    """Fit a stored view on the data (now, or as of a revision or date).

    Parameters
    ----------
    name
        The view's name.
    review
        The review (default: the only one in the database).
    as_of
        A data revision number or a date/time; default the current data.

    Returns
    -------
    ViewFit
        The selected rows and the fitted models: the numbers equal those
        :func:`evidence.views.compute.compute` stores for the view at that revision.

    Raises
    ------
    NotFoundError
        No such view, review or revision.
    EvidenceError
        The view's model cannot be fitted (k = 0, too few studies, no convergence).
    """
    found = fit_views(engine, [name], review=review, as_of=as_of)[0]
    if found.error is not None:
        raise EvidenceError(f"view {name!r} cannot be fitted: {found.error}")
    return found


def fit_views(
    engine: Engine,
    names: Sequence[str] | None = None,
    *,
    review: str | None = None,
    as_of: int | str | None = None,
) -> list[ViewFit]:
    """Fit several views (default: every view of the review) on one read of the dataset.

    A view that cannot be fitted is returned with ``error`` set and ``fit`` None.
    """
    try:
        with engine.connect() as conn:
            rv = review_row(conn, review)
            if names is None:
                rows = conn.execute(
                    sa.select(VIEW).where(VIEW.c.review_id == rv.id).order_by(VIEW.c.id)
                ).all()
                specs = [spec_of(r) for r in rows]
            else:
                specs = [_view_spec(conn, n, rv.name)[1] for n in names]
            latest = current_revision(conn)
            revision = latest if as_of is None else resolve_revision(conn, as_of)
            if as_of is not None and not 1 <= revision <= latest:
                raise NotFoundError(f"revision {revision} does not exist (latest: {latest})")
            frame, codebook = read_dataset(
                conn, rv.name, revision=None if as_of is None else revision
            )
            rob = _rob_by_study(conn, sorted({int(i) for i in frame["study_id"].dropna()}))
    except sa.exc.DBAPIError as error:
        raise database_error(error) from error
    types = field_types(codebook)
    kinds = {k: t.kind for k, t in types.items()}
    indexed = frame.set_index("es_id")
    out = []
    for spec in specs:
        checked, selection = check_spec(spec, types, codebook.analysis.measure)
        data = selected_frame(checked, selection, frame)
        more = [c for c in EXTRA_COLUMNS if c not in data.columns]
        extra = indexed.loc[data["es_id"], more].reset_index(drop=True)
        data = pd.concat([data, extra], axis=1)
        ids = indexed.loc[data["es_id"], "study_id"].tolist()
        data["rob"] = [rob.get(int(i)) for i in ids]
        out.append(_fit_one(checked, rv.name, revision, data, kinds))
    return out


def _fit_one(
    spec: ViewSpec, review: str, revision: int, data: pd.DataFrame, kinds: dict[str, str]
) -> ViewFit:
    base = {"spec": spec, "review": review, "revision": revision, "data": data}
    if data.empty:
        return ViewFit(**base, fit=None, robust=None, error="the selection holds no usable "
                       "effect size (k = 0)")  # fmt: skip
    fitter = _Fitter(spec)
    try:
        fit, rob_fit = fitter.fit_model(data)
        reg = reg_rob = None
        if spec.moderators:
            mods, cols = _design(spec, data, kinds)
            reg, reg_rob = fitter.fit_model(data, mods, cols)
    except EvidenceError as error:
        return ViewFit(**base, fit=None, robust=None, error=error.message)
    except (np.linalg.LinAlgError, ValueError, ZeroDivisionError) as error:
        return ViewFit(
            **base, fit=None, robust=None, error=f"the model could not be fitted: {error}"
        )
    return ViewFit(**base, fit=fit, robust=rob_fit, regression=reg, regression_robust=reg_rob)
