"""The correlated and hierarchical effects (CHE) recipe, as metapsyTools runs it.

One function, :func:`che`, holds the recipe that views, ``evidence meta --model che`` and
the sensitivity suite share: impute the sampling covariance within studies
(:func:`~evidence.stats.covariance.impute_covariance`), fit the three-level model
(:func:`~evidence.stats.rma_mv.rma_mv`, random intercepts per study and per effect) and
make cluster-robust inference by study (:func:`~evidence.stats.robust.robust`).
:func:`three_level` is the same model without the imputed covariance (metapsyTools'
``"threelevel"``).

The defaults are those of metapsyTools' ``runMetaAnalysis(which.run = "threelevel.che")``,
read in metapsyTools 1.0.14 (github.com/metapsy-project/metapsyTools, commit 03b74cc,
``R/utils.R``: ``fitThreeLevelCHEModel`` and ``fitThreeLevelModel``; ``R/runMetaAnalysis.R``
for ``rho.within.study = 0.6``, ``hakn = TRUE``, ``use.rve = TRUE``, ``vcov = "simple"``):

- ``clubSandwich::impute_covariance_matrix(vi, cluster = study, r = 0.6, smooth_vi = TRUE)``:
  the sampling variances of a study are replaced by their mean when V is built;
- ``rma.mv(yi ~ 1, V, random = ~ 1 | study/es.id, test = "t", method = "REML",
  sparse = TRUE)``;
- estimate, SE, CI and p from ``clubSandwich::conf_int`` / ``coef_test`` with
  ``vcov = "CR2"`` (Satterthwaite df; clusters: the studies), the plain three-level model
  likewise;
- I2 with the reported sampling variances, ``W = diag(1 / vi)`` (not ``V^-1``);
- prediction interval ``b +- t(k - p) sqrt(sum(sigma2) + SE_CR2^2)``: the t quantile on the
  model's k - p df, not on the Satterthwaite df metafor's ``predict(robust(...))`` uses.

``tests/golden/che.R`` rebuilds these with metafor and clubSandwich; ``tests/test_che.py``
compares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _st

from evidence.errors import ModelError
from evidence.stats.covariance import impute_covariance
from evidence.stats.rma_mv import RmaMvResult, rma_mv, with_inference
from evidence.stats.robust import robust

__all__ = ["CheResult", "che", "three_level", "che_setting", "prediction_interval", "METAPSY_RHO"]

#: metapsyTools' ``rho.within.study`` default.
METAPSY_RHO = 0.6
_SMALL = ("CR2", "CR1", None)


def che_setting(
    rho: float = METAPSY_RHO, smooth_vi: bool = True, small_sample: str | None = "CR2"
) -> str:
    """One line stating the CHE settings and where they differ from metapsyTools' defaults.

    Examples
    --------
    >>> che_setting()
    "CHE: rho = 0.6, sampling variances smoothed, CR2 (metapsyTools' defaults)"
    >>> che_setting(0.8, False)
    'CHE: rho = 0.8, sampling variances not smoothed, CR2 (metapsyTools: rho 0.6, smoothed)'
    """
    diffs = []
    if not math.isclose(float(rho), METAPSY_RHO):
        diffs.append(f"rho {METAPSY_RHO:g}")
    if not smooth_vi:
        diffs.append("smoothed")
    if small_sample != "CR2":
        diffs.append("CR2")
    vi = "smoothed" if smooth_vi else "not smoothed"
    inf = small_sample or "no robust variance"
    tail = "metapsyTools' defaults" if not diffs else "metapsyTools: " + ", ".join(diffs)
    return f"CHE: rho = {float(rho):g}, sampling variances {vi}, {inf} ({tail})"


@dataclass(frozen=True, repr=False)
class CheResult:
    """A CHE (or plain three-level) model with its cluster-robust version.

    Attributes
    ----------
    model
        The fit with model-based inference (:class:`~evidence.stats.rma_mv.RmaMvResult`).
    robust
        Its cluster-robust version (CR2 or CR1), or None when ``small_sample`` is None.
    structure
        ``"che"`` or ``"three-level"``.
    rho, smooth_vi
        The assumed within-study correlation and whether the sampling variances were
        smoothed (None for the three-level model).
    small_sample
        ``"CR2"``, ``"CR1"`` or None.
    pi_lb, pi_ub
        Prediction interval as metapsyTools' ``runMetaAnalysis`` reports it (NaN with
        moderators).
    """

    model: RmaMvResult
    robust: RmaMvResult | None
    structure: str
    rho: float | None
    smooth_vi: bool | None
    small_sample: str | None
    pi_lb: float
    pi_ub: float

    @property
    def result(self) -> RmaMvResult:
        """The fit as the recipe reports it: the robust one when there is one."""
        return self.model if self.robust is None else self.robust

    @property
    def setting(self) -> str:
        """One line with the settings (see :func:`che_setting`)."""
        if self.structure != "che":
            inf = self.small_sample or "model-based"
            return f"Three-level model (study / effect), {inf} inference by study"
        return che_setting(float(self.rho or 0.0), bool(self.smooth_vi), self.small_sample)

    def settings(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (``structure, rho, smooth_vi, small_sample``)."""
        return {
            "structure": self.structure,
            "rho": self.rho,
            "smooth_vi": self.smooth_vi,
            "small_sample": self.small_sample,
            "setting": self.setting,
        }

    def __str__(self) -> str:
        return f"\n{self.setting}\n" + str(self.result)

    def __repr__(self) -> str:
        return f"CheResult(structure={self.structure!r}, rho={self.rho}, k={self.model.k})"

    def to_dict(self) -> dict[str, Any]:
        """The result's dict (``evidence meta --json`` keys) with ``che`` (the settings) and
        the prediction interval as metapsyTools reports it."""
        out = self.result.to_dict()
        out["che"] = self.settings()
        if self.model.int_only:
            out["pi_lb"], out["pi_ub"] = _finite(self.pi_lb), _finite(self.pi_ub)
        return out


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _metapsy_i2(fit: RmaMvResult, vi: np.ndarray) -> RmaMvResult:
    """*fit* with I2 as metapsyTools computes it: ``P`` from ``W = diag(1 / vi)``."""
    X = fit._model.X
    v = vi[fit._model.data_index]
    if np.any(v <= 0):
        typical = math.nan
    else:
        w = 1.0 / v
        WX = X * w[:, None]
        vb = np.linalg.inv(X.T @ WX)
        trP = float(np.sum(w) - np.sum(vb * (WX.T @ WX)))
        typical = (fit.k - fit.p) / trP if trP > 0 else math.nan
    s2 = np.asarray(fit.sigma2)
    levels = 100.0 * s2 / (float(np.sum(s2)) + typical)
    return with_inference(fit, I2_levels=levels, I2=float(np.sum(levels)), typical_vi=typical)


def prediction_interval(res: RmaMvResult) -> tuple[float, float]:
    """The prediction interval of an intercept-only multilevel fit as metapsyTools reports it.

    ``b +- c sqrt(sum(sigma2) + se^2)`` with ``c`` the t quantile on ``k - p`` df (normal
    under a z test): for a robust fit (always t), ``se`` is the robust one and the df are
    k - p, where metafor's ``predict(robust(...))`` takes the Satterthwaite df. For a
    model-based fit with ``test="t"`` (residual df) it equals metafor's ``predict``.
    NaN for a model with moderators.
    """
    if not res.int_only:
        return math.nan, math.nan
    a = 0.5 + res.level / 200.0
    crit = float(_st.t.ppf(a, res.k - res.p) if res.test == "t" else _st.norm.ppf(a))
    half = crit * math.sqrt(float(np.sum(res.sigma2)) + float(res.se[0]) ** 2)
    b = float(res.beta[0])
    return b - half, b + half


def _fit(
    yi: Any,
    vi: Any,
    study: Any,
    es_id: Any,
    *,
    rho: float | None,
    smooth_vi: bool,
    mods: Any,
    data: Any,
    method: str,
    test: str,
    level: float,
    small_sample: str | None,
) -> CheResult:
    if small_sample not in _SMALL:
        raise ModelError(
            f"Argument 'small_sample' must be 'CR2', 'CR1' or None, not {small_sample!r}."
        )
    y = np.asarray(_column(yi, data, "yi"), dtype=float).reshape(-1)
    v = np.asarray(_column(vi, data, "vi"), dtype=float).reshape(-1)
    st = np.asarray(_column(study, data, "study"), dtype=object).reshape(-1)
    k = y.size
    es = np.arange(k) if es_id is None else np.asarray(_column(es_id, data, "es_id"), dtype=object)
    for name, arr in (("vi", v), ("study", st), ("es_id", es)):
        if arr.size != k:
            raise ModelError(f"Argument '{name}' has {arr.size} values but 'yi' has {k}.")
    ok = np.isfinite(y) & np.isfinite(v)
    if not ok.all():
        raise ModelError(
            f"Row {int(np.flatnonzero(~ok)[0]) + 1} has a missing or infinite yi or vi; the "
            "CHE recipe needs complete rows."
        )
    if data is None:
        cols: dict[str, Any] = {}
    elif hasattr(data, "columns"):
        cols = {str(c): data[c].to_numpy() for c in data.columns}
    else:
        cols = dict(data)
    sname = study if isinstance(study, str) else "study"
    ename = es_id if isinstance(es_id, str) else "es_id"
    cols[sname], cols[ename] = st, es
    V = None if rho is None else impute_covariance(v, st, rho, smooth_vi=smooth_vi)
    model = rma_mv(y, None if V is not None else v, V=V, random=(sname, ename), data=cols,
                   mods=mods, method=method, test=test, level=level)  # fmt: skip
    model = _metapsy_i2(model, v)
    rob = None
    if small_sample is not None:
        rob = robust(model, st, clubSandwich=small_sample == "CR2")
    pi = prediction_interval(rob if rob is not None else model)
    return CheResult(
        model=model,
        robust=rob,
        structure="three-level" if rho is None else "che",
        rho=None if rho is None else float(rho),
        smooth_vi=None if rho is None else bool(smooth_vi),
        small_sample=small_sample,
        pi_lb=pi[0],
        pi_ub=pi[1],
    )


def _column(x: Any, data: Any, what: str) -> Any:
    if isinstance(x, str):
        if data is None:
            raise ModelError(f"Argument '{what}' names column '{x}' but no 'data' was given.")
        try:
            return data[x]
        except KeyError:
            raise ModelError(f"Argument '{what}': there is no column '{x}' in 'data'.") from None
    return x


def che(
    yi: Any,
    vi: Any,
    study: Any,
    es_id: Any = None,
    *,
    rho: float = METAPSY_RHO,
    smooth_vi: bool = True,
    mods: Any = None,
    data: Any = None,
    method: str = "REML",
    test: str = "t",
    level: float = 95,
    small_sample: str | None = "CR2",
) -> CheResult:
    """Fit the correlated and hierarchical effects model with cluster-robust inference.

    Parameters
    ----------
    yi, vi
        Effect sizes and their sampling variances (arrays, or column names of ``data``).
    study, es_id
        Study of each effect (the cluster) and the effect's identifier within its study
        (default: every row its own effect).
    rho
        Assumed correlation of the sampling errors within a study (metapsyTools'
        ``rho.within.study``, default 0.6).
    smooth_vi
        Replace each study's sampling variances by their mean when building V
        (clubSandwich's ``smooth_vi``; metapsyTools passes ``TRUE``).
    mods
        Moderators (formula string over ``data``, or arrays), as :func:`rma_mv`.
    method, test, level
        ``"REML"`` or ``"ML"``; the model's test (``"t"``, metapsyTools' ``hakn = TRUE``:
        only the prediction interval's df depend on it once robust inference replaces the
        model's); confidence level in percent.
    small_sample
        ``"CR2"`` (clubSandwich's CR2 with Satterthwaite df, as metapsyTools), ``"CR1"``
        (metafor's ``robust`` default) or None (model-based inference only).

    Returns
    -------
    CheResult
        ``model``, ``robust`` and ``result`` (the robust fit), the settings, and the
        prediction interval as metapsyTools reports it. I2 (of both fits) is computed
        with the reported sampling variances, as metapsyTools does.

    Raises
    ------
    ModelError
        A missing yi or vi (naming the row), mismatched lengths, rho outside (-1, 1), fewer
        than two studies for robust inference.

    Notes
    -----
    :math:`V_j = [\\rho\\,\\mathbf{1}\\mathbf{1}' + (1-\\rho) I] \\circ
    (\\sqrt{\\bar v_j}\\sqrt{\\bar v_j}')` with :math:`\\bar v_j` the mean of study j's
    variances when ``smooth_vi``; marginal covariance :math:`V_j + \\sigma^2_1 J +
    \\sigma^2_2 I`; CR2 as Pustejovsky & Tipton (2018). metapsyTools' defaults, the file
    and version read, and the I2 and prediction-interval rules: see the module docstring.

    References
    ----------
    Pustejovsky, J. E., & Tipton, E. (2022). Meta-analysis with robust variance estimation:
    Expanding the range of working models. Prevention Science, 23, 425-438.
    Harrer, M., et al. metapsyTools (R package), ``runMetaAnalysis``.
    """
    if not -1 < float(rho) < 1:
        raise ModelError(f"Argument 'rho' must lie between -1 and 1, not {rho}.")
    return _fit(yi, vi, study, es_id, rho=float(rho), smooth_vi=smooth_vi, mods=mods,
                data=data, method=method, test=test, level=level,
                small_sample=small_sample)  # fmt: skip


def three_level(
    yi: Any,
    vi: Any,
    study: Any,
    es_id: Any = None,
    *,
    mods: Any = None,
    data: Any = None,
    method: str = "REML",
    test: str = "t",
    level: float = 95,
    small_sample: str | None = "CR2",
) -> CheResult:
    """The three-level model (independent sampling errors) with CR2 inference by study.

    metapsyTools' ``runMetaAnalysis(which.run = "threelevel")`` with ``use.rve = TRUE``:
    ``rma.mv(yi, vi, random = ~ 1 | study/es.id, test = "t")`` and clubSandwich's CR2
    (``conf_int``, ``coef_test``); I2 and the prediction interval as :func:`che`. Parameters
    as :func:`che`.
    """
    return _fit(yi, vi, study, es_id, rho=None, smooth_vi=False, mods=mods, data=data,
                method=method, test=test, level=level, small_sample=small_sample)  # fmt: skip
