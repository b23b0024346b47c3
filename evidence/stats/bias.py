"""Small-study effects and publication bias: metafor's ``regtest``, ``ranktest``, ``fsn``,
``trimfill``, PET-PEESE, and the Egger-type test for multilevel models.

Every function works from a fitted model (:class:`RMAResult`, or :class:`RmaMvResult` for
:func:`regtest_mv`) and returns a frozen result that prints as metafor prints it and has
``to_dict()`` and ``to_frame()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy import stats as sps

from evidence.errors import ModelError
from evidence.stats._bias_common import Renders, readonly, refit
from evidence.stats._bias_kendall import kendall_test
from evidence.stats._bias_mv import RegtestMvResult, regtest_mv
from evidence.stats._bias_trimfill import TrimfillResult, trimfill
from evidence.stats._format import fcf, fmt_num, fmt_pval
from evidence.stats._rma_result import RMAResult
from evidence.stats.rma import alpha_from_level

__all__ = [
    "regtest",
    "RegtestResult",
    "ranktest",
    "RanktestResult",
    "trimfill",
    "TrimfillResult",
    "fsn",
    "FsnResult",
    "pet_peese",
    "PetPeeseResult",
    "regtest_mv",
    "RegtestMvResult",
]

PREDICTORS = ("sei", "vi", "ni", "ninv")
_PRED_TEXT = {
    "sei": "standard error",
    "vi": "sampling variance",
    "ni": "sample size",
    "ninv": "inverse of the sample size",
}
_LIMIT_TEXT = {
    "sei": "Limit Estimate (as sei -> 0):   ",
    "vi": "Limit Estimate (as vi -> 0):    ",
    "ninv": "Limit Estimate (as ni -> inf):  ",
}


# ----------------------------------------------------------------------------- regtest
@dataclass(frozen=True)
class _WLS:
    """A weighted least-squares fit with multiplicative dispersion (R's ``lm(weights=)``)."""

    beta: np.ndarray
    se: np.ndarray
    tval: np.ndarray
    pval: np.ndarray
    df: int


def _lm(y: np.ndarray, X: np.ndarray, w: np.ndarray) -> _WLS:
    k, p = X.shape
    sw = np.sqrt(w)
    Xw, yw = X * sw[:, None], y * sw
    q, r = np.linalg.qr(Xw)
    beta = np.linalg.solve(r, q.T @ yw)
    resid = yw - Xw @ beta
    df = k - p
    s2 = float(resid @ resid) / df if df > 0 else math.nan
    rinv = np.linalg.inv(r)
    se = np.sqrt(s2 * np.sum(rinv**2, axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        tval = beta / se
    pval = 2 * sps.t.sf(np.abs(tval), df) if df > 0 else np.full(p, math.nan)
    return _WLS(beta, se, tval, pval, df)


@dataclass(frozen=True, repr=False)
class RegtestResult(Renders):
    """Egger's regression test (metafor's ``regtest``).

    ``zval`` is the test statistic of the added predictor (a t statistic when ``dfs`` is
    finite), ``pval`` its two-sided p value; ``est, ci_lb, ci_ub`` the limit estimate (the
    intercept, the effect expected for a study with sei, vi or 1/ni at 0) where defined.
    ``beta, se`` hold the whole regression (``names``); ``fit`` the mixed-effects
    meta-regression for ``model="rma"``.
    """

    model: str
    predictor: str
    zval: float
    pval: float
    dfs: float
    method: str
    est: float | None
    ci_lb: float | None
    ci_ub: float | None
    names: tuple[str, ...]
    beta: np.ndarray
    se: np.ndarray
    fit: RMAResult | None

    def __str__(self) -> str:
        out = ["", "Regression Test for Funnel Plot Asymmetry", ""]
        if self.model == "lm":
            out.append("Model:     weighted regression with multiplicative dispersion")
        else:
            kind = "fixed-effects" if self.method in ("FE", "EE", "CE") else "mixed-effects"
            out.append(f"Model:     {kind} meta-regression model")
        out.append(f"Predictor: {_PRED_TEXT[self.predictor]}")
        out.append("")
        ptxt = fmt_pval(self.pval, 4, showeq=True, sep=" ")
        if math.isnan(self.dfs):
            test = f"z = {fcf(self.zval, 4)}, p {ptxt}"
        else:
            test = f"t = {fcf(self.zval, 4)}, df = {fmt_num(round(self.dfs, 2))}, p {ptxt}"
        out.append("Test for Funnel Plot Asymmetry: " + test)
        if self.est is not None:
            out.append(
                f"{_LIMIT_TEXT[self.predictor]}b = {fcf(self.est, 4)} "
                f"(CI: {fcf(self.ci_lb, 4)}, {fcf(self.ci_ub, 4)})"
            )
        return "\n".join(out) + "\n"

    def __repr__(self) -> str:
        return (
            f"RegtestResult(model={self.model!r}, predictor={self.predictor!r}, "
            f"zval={self.zval:.6g}, pval={self.pval:.6g})"
        )

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "model": self.model,
                    "predictor": self.predictor,
                    "zval": self.zval,
                    "dfs": self.dfs,
                    "pval": self.pval,
                    "est": self.est,
                    "ci_lb": self.ci_lb,
                    "ci_ub": self.ci_ub,
                }
            ]
        )


def _predictor_column(fit: RMAResult, predictor: str, ni: Any) -> np.ndarray:
    if predictor == "sei":
        return np.sqrt(fit.vi)
    if predictor == "vi":
        return np.asarray(fit.vi, dtype=float)
    if ni is None:
        raise ModelError(f"Argument 'ni' (sample sizes) is needed for predictor '{predictor}'.")
    n = np.asarray(ni, dtype=float).reshape(-1)
    if n.size == fit.k_all and n.size != fit.k:
        n = n[fit.not_na]
    if n.size != fit.k:
        raise ModelError(
            f"Argument 'ni' has {n.size} values but the model has {fit.k} effects "
            f"({fit.k_all} before dropping missing rows)."
        )
    if np.any(~np.isfinite(n)) or np.any(n <= 0):
        bad = int(np.flatnonzero(~np.isfinite(n) | (n <= 0))[0])
        raise ModelError(
            f"Argument 'ni' must hold positive sample sizes; row {bad + 1} is {n[bad]}."
        )
    return n if predictor == "ni" else 1.0 / n


def regtest(
    fit: RMAResult, predictor: str = "sei", model: str = "rma", *, ni: Any = None
) -> RegtestResult:
    """Regression test for funnel plot asymmetry (Egger's test and its variants).

    Parameters
    ----------
    fit
        A fitted :func:`evidence.stats.rma` model (moderators are kept in the regression).
    predictor
        ``"sei"`` (standard error, Egger), ``"vi"`` (sampling variance), ``"ni"`` (sample
        size) or ``"ninv"`` (its inverse).
    model
        ``"rma"``: the meta-regression with the fit's method, test and level; ``"lm"``:
        weighted least squares with weights 1/vi and a multiplicative dispersion (Egger's
        original test).
    ni
        Sample sizes, for the predictors ``ni`` and ``ninv`` (length k, or the length of the
        data before missing rows were dropped).

    Notes
    -----
    The model ``y_i = x_i'b + b_s s_i + u_i + e_i`` with ``s_i`` the predictor; the test of
    ``b_s = 0`` is the test for asymmetry. For an intercept-only fit and predictors sei, vi
    and ninv, the intercept is the limit estimate (PET for sei, PEESE for vi). As metafor's
    ``regtest`` (Egger et al., 1997; Sterne & Egger, 2005).
    """
    if not isinstance(fit, RMAResult):
        hint = " (for a multilevel model use regtest_mv())" if hasattr(fit, "sigma2") else ""
        raise ModelError(f"regtest needs a fitted univariate model (a result of rma()){hint}.")
    if predictor not in PREDICTORS:
        raise ModelError(f"Unknown predictor '{predictor}'; use one of {', '.join(PREDICTORS)}.")
    if model not in ("rma", "lm"):
        raise ModelError(f"Unknown model '{model}'; use 'rma' or 'lm'.")
    col = _predictor_column(fit, predictor, ni)
    X = np.column_stack([np.asarray(fit.X), col])
    names = (*fit.names, predictor)
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise ModelError(
            f"The predictor '{predictor}' is collinear with the model's moderators; "
            "the test cannot be computed."
        )
    p = fit.p
    limit = predictor in ("sei", "vi", "ninv") and p == 1 and fit.int_incl
    alpha = alpha_from_level(fit.level)
    est = lb = ub = None
    if model == "rma":
        res = refit(fit, fit.yi, fit.vi, weights=fit.user_weights, X=X)
        zval, pval, dfs = float(res.zval[p]), float(res.pval[p]), float(res.dfs)
        beta, se = res.beta, res.se
        if limit:
            est, lb, ub = float(res.beta[0]), float(res.ci_lb[0]), float(res.ci_ub[0])
        method = res.method
    else:
        res = None
        w = _lm(np.asarray(fit.yi), X, 1.0 / np.asarray(fit.vi))
        zval, pval, dfs = float(w.tval[p]), float(w.pval[p]), float(w.df)
        beta, se = w.beta, w.se
        if limit:
            crit = float(sps.t.isf(alpha / 2, w.df))
            est = float(w.beta[0])
            lb, ub = est - crit * float(w.se[0]), est + crit * float(w.se[0])
        method = fit.method
    return RegtestResult(
        model=model,
        predictor=predictor,
        zval=zval,
        pval=pval,
        dfs=dfs,
        method=method,
        est=est,
        ci_lb=lb,
        ci_ub=ub,
        names=tuple(names),
        beta=readonly(beta),
        se=readonly(se),
        fit=res,
    )


# ----------------------------------------------------------------------------- ranktest
@dataclass(frozen=True, repr=False)
class RanktestResult(Renders):
    """Begg and Mazumdar's rank correlation test: Kendall's ``tau`` and its p value."""

    tau: float
    pval: float
    exact: bool
    k: int

    def __str__(self) -> str:
        return (
            "\nRank Correlation Test for Funnel Plot Asymmetry\n\n"
            f"Kendall's tau = {fcf(self.tau, 4)}, "
            f"p {fmt_pval(self.pval, 4, showeq=True, sep=' ')}\n"
        )

    def __repr__(self) -> str:
        return f"RanktestResult(tau={self.tau:.6g}, pval={self.pval:.6g})"

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(
            [{"tau": self.tau, "pval": self.pval, "exact": self.exact, "k": self.k}]
        )


def ranktest(fit: RMAResult, *, exact: bool = True) -> RanktestResult:
    """Rank correlation test for funnel plot asymmetry (Begg & Mazumdar, 1994).

    Notes
    -----
    With ``w_i = 1/v_i``, ``theta = sum w_i y_i / sum w_i`` and ``v_b = 1 / sum w_i``, the
    standardized deviates ``y*_i = (y_i - theta) / sqrt(v_i - v_b)`` are correlated with
    ``v_i`` by Kendall's tau (metafor's ``ranktest``). The p value is exact (the null
    distribution of the number of concordant pairs) when there are no ties and k <= 170,
    as R's ``cor.test(exact = TRUE)``; otherwise normal with the tie-corrected variance.
    R returns NaN for k > 170 without ties; the normal approximation is used there.
    """
    if not isinstance(fit, RMAResult):
        raise ModelError("ranktest needs a fitted univariate model (a result of rma()).")
    yi, vi = np.asarray(fit.yi, dtype=float), np.asarray(fit.vi, dtype=float)
    if np.any(vi <= 0):
        raise ModelError("ranktest needs positive sampling variances.")
    wi = 1.0 / vi
    theta = float(np.sum(wi * yi) / np.sum(wi))
    vb = 1.0 / float(np.sum(wi))
    ystar = (yi - theta) / np.sqrt(vi - vb)
    tau, pval, was_exact = kendall_test(ystar, vi, exact=exact)
    return RanktestResult(tau=float(tau), pval=float(pval), exact=was_exact, k=int(fit.k))


# ----------------------------------------------------------------------------- fsn
@dataclass(frozen=True, repr=False)
class FsnResult(Renders):
    """Fail-safe N (metafor's ``fsn``): ``fsnum`` studies averaging ``target`` (Orwin) or
    null results (Rosenthal, Rosenberg) would bring the result to ``target`` or ``alpha``."""

    type: str
    fsnum: float
    alpha: float
    pval: float
    meanes: float
    target: float
    k: int

    def __str__(self) -> str:
        out = ["", f"Fail-safe N Calculation Using the {self.type} Approach", ""]
        if self.type == "Rosenthal":
            out.append(f"Observed Significance Level: {fmt_pval(self.pval, 4)}")
            out.append(f"Target Significance Level:   {fmt_num(self.alpha)}")
        elif self.type == "Orwin":
            out.append(f"Average Effect Size: {fcf(self.meanes, 4)}")
            out.append(f"Target Effect Size:  {fcf(self.target, 4)}")
        else:
            out.append(f"Average Effect Size:         {fcf(self.meanes, 4)}")
            out.append(f"Observed Significance Level: {fmt_pval(self.pval, 4)}")
            out.append(f"Target Significance Level:   {fmt_num(self.alpha)}")
        out += ["", f"Fail-safe N: {fmt_num(self.fsnum)}"]
        return "\n".join(out) + "\n"

    def __repr__(self) -> str:
        return f"FsnResult(type={self.type!r}, fsnum={self.fsnum})"

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([{f.name: getattr(self, f.name) for f in fields(self)}])


def fsn(
    yi: Any,
    vi: Any = None,
    *,
    type: str = "Rosenthal",  # noqa: A002 - metafor's argument name
    alpha: float = 0.05,
    target: float | None = None,
    weighted: bool = False,
) -> FsnResult:
    """Fail-safe N by the methods of Rosenthal, Orwin or Rosenberg (metafor's ``fsn``).

    Parameters
    ----------
    yi, vi
        Effect sizes and sampling variances (a fitted :class:`RMAResult` may be given as
        ``yi``; its data are used). ``vi`` is not needed for unweighted Orwin.
    type
        ``"Rosenthal"``, ``"Orwin"`` or ``"Rosenberg"``.
    alpha
        Target significance level (Rosenthal: one-sided, Rosenberg: two-sided).
    target
        Orwin's target average effect (default half the observed average).
    weighted
        Orwin with inverse-variance weights.

    Notes
    -----
    Rosenthal (1979), Stouffer's method: ``z = |sum z_i| / sqrt(k)``, ``N = max(0, k (z /
    z_alpha)^2 - k)``. Orwin (1983): ``N = k (mean - target) / target``. Rosenberg (2005):
    ``N = k [(sum w_i y_i / z_{alpha/2})^2 - sum w_i] / sum w_i``. N is rounded up unless it
    is an integer to within sqrt(machine epsilon).
    """
    if isinstance(yi, RMAResult):
        y, v = np.asarray(yi.yi, dtype=float), np.asarray(yi.vi, dtype=float)
    else:
        y = np.asarray(yi, dtype=float).reshape(-1)
        v = None if vi is None else np.asarray(vi, dtype=float).reshape(-1)
    if type not in ("Rosenthal", "Orwin", "Rosenberg"):
        raise ModelError(f"Unknown type '{type}'; use 'Rosenthal', 'Orwin' or 'Rosenberg'.")
    need_v = type != "Orwin" or weighted
    if need_v:
        if v is None:
            raise ModelError(f"Argument 'vi' is needed for type '{type}'.")
        if v.size != y.size:
            raise ModelError(f"Argument 'vi' has {v.size} values but 'yi' has {y.size}.")
        ok = ~(np.isnan(y) | np.isnan(v))
        y, v = y[ok], v[ok]
    else:
        y = y[~np.isnan(y)]
    k = y.size
    if k == 0:
        raise ModelError("fsn needs at least one effect size.")
    pval = meanes = tgt = math.nan
    if type == "Rosenthal":
        z_avg = abs(float(np.sum(y / np.sqrt(v))) / math.sqrt(k))
        pval = float(sps.norm.sf(z_avg))
        num = max(0.0, k * (z_avg / float(sps.norm.isf(alpha))) ** 2 - k)
    elif type == "Orwin":
        meanes = float(np.sum(y / v) / np.sum(1 / v)) if weighted else float(np.mean(y))
        tgt = meanes / 2 if target is None else float(target)
        if tgt == 0:
            num = math.inf
        else:
            if np.sign(tgt) != np.sign(meanes):
                tgt = -tgt
            num = max(0.0, k * (meanes - tgt) / tgt)
    else:
        w = 1.0 / v
        meanes = float(np.sum(w * y) / np.sum(w))
        zval = meanes / math.sqrt(1 / float(np.sum(w)))
        wp = (float(np.sum(w * y)) / float(sps.norm.isf(alpha / 2))) ** 2 - float(np.sum(w))
        pval = float(2 * sps.norm.sf(abs(zval)))
        num = max(0.0, k * wp / float(np.sum(w)))
    if math.isfinite(num) and abs(num - round(num)) >= np.finfo(float).eps ** 0.5:
        num = float(math.ceil(num))
    else:
        num = float(round(num)) if math.isfinite(num) else num
    return FsnResult(
        type=type, fsnum=num, alpha=float(alpha), pval=pval, meanes=meanes, target=tgt, k=k
    )


# ----------------------------------------------------------------------------- PET-PEESE
@dataclass(frozen=True, repr=False)
class PetPeeseResult(Renders):
    """PET and PEESE limit estimates and the conditional choice between them.

    ``pet`` and ``peese`` are the regressions on the standard error and on the sampling
    variance (:class:`RegtestResult`); ``pet_pval`` the two-sided p value of PET's intercept;
    ``selected`` is "PEESE" when that p is below ``alpha``, else "PET"; ``estimate, ci_lb,
    ci_ub`` are the selected limit estimate and its confidence interval.
    """

    pet: RegtestResult
    peese: RegtestResult
    pet_pval: float
    alpha: float
    selected: str
    estimate: float
    ci_lb: float
    ci_ub: float

    def __str__(self) -> str:
        def line(name: str, r: RegtestResult) -> str:
            return f"{name:<6}b = {fcf(r.est, 4)} (CI: {fcf(r.ci_lb, 4)}, {fcf(r.ci_ub, 4)})"

        model = (
            "weighted regression with multiplicative dispersion"
            if self.pet.model == "lm"
            else "meta-regression model"
        )
        return (
            "\n".join(
                [
                    "",
                    "PET-PEESE Limit Estimates",
                    "",
                    f"Model: {model}",
                    "",
                    line("PET", self.pet)
                    + f", p {fmt_pval(self.pet_pval, 4, showeq=True, sep=' ')}",
                    line("PEESE", self.peese),
                    "",
                    f"Selected: {self.selected} (PET intercept p "
                    f"{'<' if self.pet_pval < self.alpha else '>='} {fmt_num(self.alpha)}): "
                    f"b = {fcf(self.estimate, 4)} (CI: {fcf(self.ci_lb, 4)}, {fcf(self.ci_ub, 4)})",
                ]
            )
            + "\n"
        )

    def __repr__(self) -> str:
        return f"PetPeeseResult(selected={self.selected!r}, estimate={self.estimate:.6g})"

    def to_frame(self):
        import pandas as pd

        rows = []
        for name, r in (("PET", self.pet), ("PEESE", self.peese)):
            rows.append(
                {
                    "method": name,
                    "estimate": r.est,
                    "se": float(r.se[0]),
                    "ci_lb": r.ci_lb,
                    "ci_ub": r.ci_ub,
                    "selected": name == self.selected,
                }
            )
        return pd.DataFrame(rows)


def pet_peese(fit: RMAResult, *, model: str = "lm", alpha: float = 0.05) -> PetPeeseResult:
    """PET-PEESE (Stanley & Doucouliagos, 2014) from an intercept-only fit.

    Notes
    -----
    PET regresses ``y_i`` on ``sei`` and PEESE on ``v_i`` (by default by weighted least
    squares with weights ``1/v_i`` and multiplicative dispersion, as in Stanley &
    Doucouliagos; ``model="rma"`` uses the meta-regression). Each intercept estimates the
    effect of a study with infinite precision. The conditional estimator reports PEESE when
    PET's intercept differs from zero (two-sided test at ``alpha``), PET otherwise.
    """
    if not isinstance(fit, RMAResult) or not fit.int_only:
        raise ModelError("pet_peese needs a fitted model without moderators.")
    if fit.k < 3:
        raise ModelError(f"pet_peese needs at least 3 effects (k = {fit.k}).")
    pet = regtest(fit, "sei", model)
    peese = regtest(fit, "vi", model)
    if model == "lm":
        df = pet.dfs
        tval = float(pet.beta[0] / pet.se[0])
        p0 = float(2 * sps.t.sf(abs(tval), df))
    else:
        p0 = float(pet.fit.pval[0])
    chosen = peese if p0 < alpha else pet
    return PetPeeseResult(
        pet=pet,
        peese=peese,
        pet_pval=p0,
        alpha=float(alpha),
        selected="PEESE" if p0 < alpha else "PET",
        estimate=float(chosen.est),
        ci_lb=float(chosen.ci_lb),
        ci_ub=float(chosen.ci_ub),
    )
