"""The sensitivity analyses a living review reports beside its main estimate.

``sensitivity_suite`` runs, on one set of (possibly dependent) effect sizes, the analyses of
metapsyTools' ``runMetaAnalysis`` (Harrer et al., the Metapsy project): the overall model,
effects aggregated to one per study, the lowest and the highest effect per study, outliers
removed, influential cases removed, low risk of bias only, a three-level model and the
correlated-and-hierarchical-effects (CHE) model, both with cluster-robust (CR2) inference as
``runMetaAnalysis`` (``use.rve = TRUE``) makes it (:func:`evidence.stats.che.che` and
:func:`evidence.stats.che.three_level`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import stats as sps

from evidence.errors import EvidenceError, ModelError
from evidence.stats._bias_common import Renders
from evidence.stats._format import fcf, fmt_pval
from evidence.stats.che import CheResult, che, che_setting, prediction_interval, three_level
from evidence.stats.covariance import factorize
from evidence.stats.influence import influence
from evidence.stats.rma import alpha_from_level, predict, rma

__all__ = [
    "sensitivity_suite",
    "SensitivityResult",
    "SensitivityRow",
    "aggregate_cs",
    "model_row",
]

ANALYSES = (
    "model",
    "overall",
    "combined",
    "lowest",
    "highest",
    "outliers_removed",
    "influence_removed",
    "rob_low",
    "three_level",
    "che_robust",
)
_LABELS = {
    "model": "The analysis's own model",
    "overall": "Overall",
    "combined": "One effect per study (aggregated)",
    "lowest": "Lowest effect per study",
    "highest": "Highest effect per study",
    "outliers_removed": "Outliers removed",
    "influence_removed": "Influential cases removed",
    "rob_low": "Low risk of bias only",
    "three_level": "Three-level model (robust, CR2)",
    "che_robust": "CHE model (robust, CR2)",
}
_LOW_ROB = {"low", "low risk", "low risk of bias", "+", "1", "true", "yes"}


@dataclass(frozen=True)
class SensitivityRow:
    """One analysis: effects ``k`` from ``studies`` studies, pooled ``g`` with its CI, p,
    I2 (percent) and prediction interval; ``note`` says why a row is empty."""

    analysis: str
    label: str
    k: int
    studies: int
    g: float
    ci_lb: float
    ci_ub: float
    pval: float
    I2: float
    pi_lb: float
    pi_ub: float
    note: str = ""


@dataclass(frozen=True, repr=False)
class SensitivityResult(Renders):
    """All rows of the sensitivity suite (:func:`sensitivity_suite`) and its settings."""

    rows: tuple[SensitivityRow, ...]
    rho: float
    method: str
    level: float
    removed_outliers: tuple[int, ...]
    removed_influential: tuple[int, ...]
    smooth_vi: bool = True

    def row(self, analysis: str) -> SensitivityRow:
        for r in self.rows:
            if r.analysis == analysis:
                return r
        raise KeyError(analysis)

    def __str__(self) -> str:
        from evidence.stats._format import format_frame

        header = ["k", "studies", "g", "ci.lb", "ci.ub", "pval", "I2", "pi.lb", "pi.ub"]
        body = []
        for r in self.rows:
            body.append(
                [
                    str(r.k),
                    str(r.studies),
                    fcf(r.g, 4),
                    fcf(r.ci_lb, 4),
                    fcf(r.ci_ub, 4),
                    fmt_pval(r.pval, 4),
                    fcf(r.I2, 2),
                    fcf(r.pi_lb, 4),
                    fcf(r.pi_ub, 4),
                ]
            )
        lines = [
            "",
            f"Sensitivity Analyses (tau^2 estimator: {self.method}; assumed within-study "
            f"correlation rho = {self.rho:g}; {self.level:g}% CI)",
            che_setting(self.rho, self.smooth_vi),
            "",
        ]
        lines += format_frame(header, body, [r.label for r in self.rows])
        notes = [f"{r.label}: {r.note}" for r in self.rows if r.note]
        if notes:
            lines += [""] + notes
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return f"SensitivityResult(rows={len(self.rows)}, rho={self.rho})"

    def with_model(self, result: Any, label: str | None = None) -> SensitivityResult:
        """The suite with a first row for the analysis's own model *result*.

        Parameters
        ----------
        result
            A fitted intercept-only model: :class:`~evidence.stats.RMAResult`, or a
            multilevel :class:`~evidence.stats.rma_mv.RmaMvResult` (its robust version
            included). Its estimate, CI, p value, I2 and prediction interval are shown as
            the model reports them; ``k`` is its number of effects, ``studies`` that of the
            overall row. A row ``model`` already present is replaced.
        label
            Row label (default "The analysis's own model").
        """
        studies = (
            self.row("overall").studies if any(r.analysis == "overall" for r in self.rows) else 0
        )
        row = model_row(result, studies, label)
        rest = tuple(r for r in self.rows if r.analysis != "model")
        return replace(self, rows=(row, *rest))

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([r.__dict__ for r in self.rows]).set_index("analysis")

    def to_dict(self) -> dict[str, Any]:
        from evidence.stats._rma_result import json_safe

        return json_safe(
            {
                "rows": [dict(r.__dict__) for r in self.rows],
                "rho": self.rho,
                "method": self.method,
                "level": self.level,
                "removed_outliers": list(self.removed_outliers),
                "removed_influential": list(self.removed_influential),
                "smooth_vi": self.smooth_vi,
            }
        )


def aggregate_cs(
    yi: np.ndarray, vi: np.ndarray, cluster: Any, rho: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One effect per cluster under a compound-symmetric sampling covariance.

    Returns the aggregated ``yi``, ``vi`` and the cluster labels (sorted).

    Notes
    -----
    metafor's ``aggregate.escalc(struct = "CS", rho, weighted = TRUE)``: with ``V_j`` the
    cluster's covariance (``rho sqrt(v_i v_l)`` off the diagonal) and ``W_j = V_j^{-1}``,
    ``y_j = 1'W_j y / 1'W_j 1`` and ``v_j = 1 / 1'W_j 1``.
    """
    codes, labels = factorize(cluster, "study")
    out_y = np.empty(labels.size)
    out_v = np.empty(labels.size)
    for j in range(labels.size):
        rows = np.flatnonzero(codes == j)
        s = np.sqrt(vi[rows])
        block = rho * np.outer(s, s)
        np.fill_diagonal(block, vi[rows])
        W = np.linalg.inv(block)
        one = W.sum(axis=0)
        out_v[j] = 1.0 / float(one.sum())
        out_y[j] = float(one @ yi[rows]) * out_v[j]
    return out_y, out_v, labels


def model_row(result: Any, studies: int, label: str | None = None) -> SensitivityRow:
    """The row ``model`` of the suite: a fitted intercept-only model as it reports itself.

    Univariate fits (:class:`~evidence.stats.RMAResult`) give their prediction interval from
    :func:`evidence.stats.predict`, model-based multilevel ones from their ``predict()``
    (the sum of the variance components), as metafor's ``predict``; cluster-robust ones as
    ``runMetaAnalysis`` (:func:`evidence.stats.che.prediction_interval`: t on k - p df).
    A :class:`~evidence.stats.che.CheResult` gives the row as the suite's own multilevel
    rows (``runMetaAnalysis``'s I2 and prediction interval).
    """
    inner = result.model if isinstance(result, CheResult) else result
    if getattr(inner, "p", 1) != 1:
        raise ModelError("The model row needs a model without moderators.")
    if isinstance(result, CheResult):
        row = _rve_row("model", result, studies)
    elif hasattr(result, "tau2"):
        row = _uni_row("model", result, studies)
    else:
        row = _mv_row("model", result, result, studies)
    return replace(row, label=label or _LABELS["model"])


def _uni_row(name: str, fit, studies: int) -> SensitivityRow:
    pr = predict(fit)
    return SensitivityRow(
        analysis=name,
        label=_LABELS[name],
        k=fit.k,
        studies=studies,
        g=float(fit.beta[0]),
        ci_lb=float(fit.ci_lb[0]),
        ci_ub=float(fit.ci_ub[0]),
        pval=float(fit.pval[0]),
        I2=float(fit.I2),
        pi_lb=float(pr.pi_lb[0]),
        pi_ub=float(pr.pi_ub[0]),
    )


def _empty(name: str, note: str, k: int = 0, studies: int = 0) -> SensitivityRow:
    nan = math.nan
    return SensitivityRow(name, _LABELS[name], k, studies, nan, nan, nan, nan, nan, nan, nan, note)


def _pick(yi: np.ndarray, codes: np.ndarray, m: int, highest: bool) -> np.ndarray:
    """Row index of the lowest (highest) effect of each study; the first one on ties."""
    out = np.empty(m, dtype=int)
    for j in range(m):
        rows = np.flatnonzero(codes == j)
        vals = yi[rows]
        out[j] = rows[int(np.argmax(vals) if highest else np.argmin(vals))]
    return out


def sensitivity_suite(
    yi: Any,
    vi: Any,
    study: Sequence[Any],
    es_id: Sequence[Any] | None = None,
    *,
    rob: Sequence[Any] | None = None,
    rho: float = 0.6,
    smooth_vi: bool = True,
    method: str = "REML",
    test: str = "z",
    level: float = 95,
    model: Any = None,
    model_label: str | None = None,
) -> SensitivityResult:
    """Run the sensitivity analyses of a living review in one table.

    Parameters
    ----------
    yi, vi
        Effect sizes and sampling variances (one row per effect size).
    study, es_id
        Study of each effect and its identifier within the study (default: row number).
    rob
        Risk of bias per effect (or of its study): rows rated "low" (or True) are kept by
        the low-risk-of-bias analysis; None skips it.
    rho
        Assumed correlation of effects within a study (aggregation and CHE).
    smooth_vi
        Smooth the sampling variances within studies when building the CHE covariance
        (metapsyTools' default, True).
    method, test, level
        Estimator of the univariate models (REML or ML for the multilevel ones), their
        test, and the confidence level in percent.
    model, model_label
        The analysis's own fitted model (e.g. a living view's CHE model with robust
        variance), shown as the first row ``model`` (see :meth:`SensitivityResult.with_model`).

    Returns
    -------
    SensitivityResult
        One :class:`SensitivityRow` per analysis: ``model`` (the analysis's own model, when
        given), ``overall`` (all effects, univariate random effects), ``combined``
        (aggregated to one per study, metafor's ``aggregate`` with ``struct="CS"``),
        ``lowest`` / ``highest`` (one effect per study), ``outliers_removed``
        (effects whose CI lies wholly outside the pooled CI of the overall model),
        ``influence_removed`` (effects flagged by :func:`evidence.stats.influence`),
        ``rob_low``, ``three_level`` (``rma_mv`` with study / es_id, :func:`three_level`)
        and ``che_robust`` (the sampling covariance imputed from rho, :func:`che`), both
        with CR2 inference and Satterthwaite df as metapsyTools' ``runMetaAnalysis``. An
        analysis that cannot run (too few effects, no low-risk studies) gives a row of NaN
        with a note.

    Notes
    -----
    Prediction intervals: ``g +- c sqrt(SE^2 + tau^2)``, c the normal or t quantile as
    metafor's ``predict``; for the two multilevel rows as ``runMetaAnalysis``: tau^2 the sum
    of the variance components, SE the CR2 one, c the t quantile on k - p df. I2 of the
    multilevel rows is the total share of the variance components with the typical sampling
    variance of the reported vi (metapsyTools; Nakagawa & Santos 2012). The outlier rule is
    metapsyTools' ``find.outliers``.
    """
    y = np.asarray(yi, dtype=float).reshape(-1)
    v = np.asarray(vi, dtype=float).reshape(-1)
    k = y.size
    if v.size != k:
        raise ModelError(f"Argument 'vi' has {v.size} values but 'yi' has {k}.")
    st = np.asarray(study, dtype=object).reshape(-1)
    if st.size != k:
        raise ModelError(f"Argument 'study' has {st.size} values but 'yi' has {k}.")
    es = np.arange(k) if es_id is None else np.asarray(es_id, dtype=object).reshape(-1)
    if es.size != k:
        raise ModelError(f"Argument 'es_id' has {es.size} values but 'yi' has {k}.")
    if not np.all(np.isfinite(y)) or not np.all(np.isfinite(v)):
        bad = int(np.flatnonzero(~(np.isfinite(y) & np.isfinite(v)))[0])
        raise ModelError(f"Row {bad + 1} has a missing or infinite yi or vi.")
    if not -1 < rho < 1:
        raise ModelError(f"Argument 'rho' must lie between -1 and 1, not {rho}.")
    codes, labels = factorize(st, "study")
    m = labels.size
    rows: list[SensitivityRow] = []

    def uni(name: str, keep_y: np.ndarray, keep_v: np.ndarray, studies: int) -> None:
        try:
            rows.append(
                _uni_row(name, rma(keep_y, keep_v, method=method, test=test, level=level), studies)
            )
        except EvidenceError as err:
            rows.append(_empty(name, str(err), keep_y.size, studies))

    overall = rma(y, v, method=method, test=test, level=level)
    rows.append(_uni_row("overall", overall, m))

    ay, av, _ = aggregate_cs(y, v, codes, rho)
    uni("combined", ay, av, m)
    lo, hi = _pick(y, codes, m, False), _pick(y, codes, m, True)
    uni("lowest", y[lo], v[lo], m)
    uni("highest", y[hi], v[hi], m)

    crit = float(sps.norm.isf(alpha_from_level(level) / 2))
    se = np.sqrt(v)
    outl = (y + crit * se < overall.ci_lb[0]) | (y - crit * se > overall.ci_ub[0])
    keep = ~outl
    uni("outliers_removed", y[keep], v[keep], np.unique(codes[keep]).size)

    try:
        infl = np.asarray(influence(overall).is_infl)
    except EvidenceError as err:
        infl = np.zeros(k, bool)
        rows.append(_empty("influence_removed", str(err)))
    else:
        keep = ~infl
        uni("influence_removed", y[keep], v[keep], np.unique(codes[keep]).size)

    if rob is None:
        rows.append(_empty("rob_low", "no risk-of-bias ratings given"))
    else:
        rb = np.asarray(rob, dtype=object).reshape(-1)
        if rb.size != k:
            raise ModelError(f"Argument 'rob' has {rb.size} values but 'yi' has {k}.")
        low = np.array([x is True or str(x).strip().lower() in _LOW_ROB for x in rb])
        if not low.any():
            rows.append(_empty("rob_low", "no effect with low risk of bias"))
        else:
            uni("rob_low", y[low], v[low], np.unique(codes[low]).size)

    mv = {"method": method if method in ("REML", "ML") else "REML", "test": "t", "level": level}
    es_codes = factorize(es, "es_id")[0]
    try:
        rows.append(_rve_row("three_level", three_level(y, v, codes, es_codes, **mv), m))
    except EvidenceError as err:
        rows.append(_empty("three_level", str(err), k, m))
    try:
        fit = che(y, v, codes, es_codes, rho=rho, smooth_vi=smooth_vi, **mv)
        rows.append(_rve_row("che_robust", fit, m))
    except EvidenceError as err:
        rows.append(_empty("che_robust", str(err), k, m))
    out = SensitivityResult(
        rows=tuple(rows),
        rho=float(rho),
        method=method,
        level=float(level),
        removed_outliers=tuple(int(i) for i in np.flatnonzero(outl)),
        removed_influential=tuple(int(i) for i in np.flatnonzero(infl)),
        smooth_vi=bool(smooth_vi),
    )
    return out if model is None else out.with_model(model, model_label)


def _mv_row(name: str, res, model, studies: int) -> SensitivityRow:
    if res.robust_type is not None:  # as runMetaAnalysis (see che.prediction_interval)
        pi = prediction_interval(res)
    else:
        pr = res.predict()
        pi = (float(pr.pi_lb[0]), float(pr.pi_ub[0]))
    return SensitivityRow(
        analysis=name,
        label=_LABELS[name],
        k=res.k,
        studies=studies,
        g=float(res.beta[0]),
        ci_lb=float(res.ci_lb[0]),
        ci_ub=float(res.ci_ub[0]),
        pval=float(res.pval[0]),
        I2=float(model.I2),
        pi_lb=pi[0],
        pi_ub=pi[1],
    )


def _rve_row(name: str, fit: CheResult, studies: int) -> SensitivityRow:
    """A multilevel row as ``runMetaAnalysis`` reports it (CR2; its I2 and PI rules)."""
    res = fit.result
    return SensitivityRow(
        analysis=name,
        label=_LABELS[name],
        k=res.k,
        studies=studies,
        g=float(res.beta[0]),
        ci_lb=float(res.ci_lb[0]),
        ci_ub=float(res.ci_ub[0]),
        pval=float(res.pval[0]),
        I2=float(fit.model.I2),
        pi_lb=fit.pi_lb,
        pi_ub=fit.pi_ub,
    )
