"""Univariate meta-analytic models: metafor's ``rma.uni`` (random/mixed/equal effects).

``rma(yi, vi, mods=..., method="REML", test="z")`` fits the model

    yi = x_i' beta + u_i + e_i,   u_i ~ N(0, tau2),   e_i ~ N(0, vi),

estimates tau2 with one of metafor's estimators, beta by weighted least squares with weights
``1 / (vi + tau2)``, and returns a frozen :class:`RMAResult`. ``predict``, ``confint`` and
``anova`` work on that result. Every computation is O(k p^2): no k x k matrix is formed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats as sps

from evidence.errors import ModelError
from evidence.stats._design import check_design, model_matrix
from evidence.stats._rma_anova import AnovaResult, anova
from evidence.stats._rma_confint import ConfintResult, confint
from evidence.stats._rma_linalg import WLS
from evidence.stats._rma_predict import PredictResult, predict
from evidence.stats._rma_result import RMAResult, readonly
from evidence.stats._rma_tau2 import METHODS, default_control, estimate_tau2

__all__ = [
    "rma",
    "RMAResult",
    "predict",
    "PredictResult",
    "confint",
    "ConfintResult",
    "anova",
    "AnovaResult",
    "METHODS",
    "TESTS",
]

TESTS = ("z", "t", "knha", "adhoc")
_EE = ("EE", "FE", "CE")
_CONTROL_ALIASES = {
    "tau2.init": "tau2_init",
    "tau2.min": "tau2_min",
    "tau2.max": "tau2_max",
    "ll0check": "ll0check",
}


def alpha_from_level(level: float) -> float:
    """metafor's ``.level``: 95 -> 0.05, 0.95 -> 0.05, 0.05 -> 0.05 (0 -> 1)."""
    level = float(level)
    if level == 0:
        return 1.0
    if level >= 1:
        return (100 - level) / 100
    if level > 0.5:
        return 1 - level
    return level


def _column(x: Any, data: Any, what: str, k: int | None = None) -> np.ndarray | None:
    if x is None:
        return None
    if isinstance(x, str):
        if data is None:
            raise ModelError(f"Argument '{what}' names a column ('{x}') but no 'data' was given.")
        cols = data if isinstance(data, Mapping) else {c: data[c] for c in data.columns}
        if x not in cols:
            raise ModelError(f"Argument '{what}' names an unknown column '{x}'.")
        x = cols[x]
    if hasattr(x, "to_numpy"):
        x = x.to_numpy(dtype=float, na_value=np.nan)
    try:
        arr = np.array(x, dtype=float).reshape(-1)
    except (TypeError, ValueError) as err:
        raise ModelError(f"Argument '{what}' must hold numbers.") from err
    if k is not None and arr.shape[0] != k:
        raise ModelError(f"Argument '{what}' has {arr.shape[0]} values but 'yi' has {k}.")
    return arr


def _resolve_btt(btt: Any, p: int, int_incl: bool, names: Sequence[str]) -> tuple[int, ...]:
    """1-based coefficient indices tested by QM (metafor's ``.set.btt``)."""
    if btt is None:
        if p > 1:
            return tuple(range(2, p + 1)) if int_incl else tuple(range(1, p + 1))
        return (1,)
    if isinstance(btt, str):
        hits = tuple(i + 1 for i, n in enumerate(names) if re.search(btt, n))
        if not hits:
            raise ModelError(f"Argument 'btt' ('{btt}') matches no coefficient name.")
        return hits
    vals = [btt] if np.ndim(btt) == 0 else list(btt)
    if vals and all(isinstance(v, str) for v in vals):
        missing = [v for v in vals if v not in names]
        if missing:
            raise ModelError(f"Argument 'btt' names unknown coefficients: {', '.join(missing)}.")
        return tuple(sorted(names.index(v) + 1 for v in vals))
    ints = sorted({int(round(float(v))) for v in vals})
    if any(v < 0 for v in ints) and any(v > 0 for v in ints):
        raise ModelError("Argument 'btt' cannot mix positive and negative indices.")
    if any(v < 0 for v in ints):
        out = tuple(i for i in range(1, p + 1) if -i not in ints)
    else:
        out = tuple(v for v in ints if 1 <= v <= p)
    if not out:
        raise ModelError(f"Argument 'btt' names no existing coefficient (1-based, p = {p}).")
    return out


def rma(
    yi: Any,
    vi: Any = None,
    *,
    sei: Any = None,
    mods: Any = None,
    method: str = "REML",
    test: str = "z",
    level: float = 95,
    weights: Any = None,
    data: Any = None,
    btt: Any = None,
    intercept: bool = True,
    tau2: float | None = None,
    control: Mapping[str, Any] | None = None,
) -> RMAResult:
    """Fit a univariate equal-, random- or mixed-effects meta-analytic model.

    Parameters
    ----------
    yi, vi
        Effect sizes and their sampling variances (arrays, or column names of ``data``).
    sei
        Standard errors instead of ``vi`` (``vi = sei**2``).
    mods
        Moderators: None, an array, a sequence of arrays, or a formula string over
        ``data`` (``"ablat + year"``, ``"C(alloc)"``, ``"a*b"``, ``"-1"``); see
        :func:`evidence.stats._design.model_matrix`.
    method
        ``EE`` (``FE``, ``CE`` aliases), ``DL``, ``HE``, ``HS``, ``HSk``, ``SJ``, ``ML``,
        ``REML``, ``EB``, ``PM``, ``PMM``.
    test
        ``z``; ``t`` (t and F tests with k - p df); ``knha`` (Knapp-Hartung); ``adhoc``
        (Knapp-Hartung with the scale factor truncated below at 1).
    level
        Confidence level in percent.
    weights
        Optional user weights (the model is then fitted by weighted least squares with these
        weights and a sandwich variance, as metafor).
    btt
        Coefficients for the omnibus test QM: 1-based indices as in metafor, coefficient
        names, or a regular expression; default all but the intercept.
    intercept
        Include an intercept (a formula's ``-1`` overrides it).
    tau2
        Fix tau2 at this value instead of estimating it.
    control
        metafor's control options: ``tau2_init``, ``tau2_min``, ``tau2_max``, ``threshold``
        (Fisher scoring stops when tau2 changes by less, default 1e-5), ``maxiter`` (100),
        ``stepadj`` (1), ``tol`` (root finder), ``ll0check`` (True).

    Returns
    -------
    RMAResult

    Raises
    ------
    ModelError
        Bad input (lengths, infinite values, unknown columns), too many parameters, design
        not of full rank, a method that needs positive vi meets a 0.
    ConvergenceError
        An iterative estimator did not converge.

    Notes
    -----
    Estimators and tests follow metafor 3.8.1 (Viechtbauer, 2010, J Stat Softw 36(3)),
    including its stopping rules, so numbers agree with metafor to rounding error. Rows with
    a missing yi, vi, weight or moderator are dropped with the warning "Studies with NAs
    omitted from model fitting."; ``not_na`` marks the rows kept. Knapp & Hartung (2003):
    ``vb = s2w (X'WX)^-1`` with ``s2w = sum w_i r_i^2 / (k - p)``. I2 and H2 use the
    "typical" sampling variance ``vt = (k - p) / tr(P)`` of Higgins & Thompson (2002).
    """
    ctrl_in = dict(control or {})
    method = str(method)
    if method not in METHODS:
        raise ModelError(f"Unknown method '{method}'; use one of {', '.join(METHODS)}.")
    if test not in TESTS:
        raise ModelError(f"Unknown test '{test}'; use one of {', '.join(TESTS)}.")
    warnings: list[str] = []

    y_all = _column(yi, data, "yi")
    if y_all is None:
        raise ModelError("Argument 'yi' is required.")
    k_all = y_all.shape[0]
    if vi is None and sei is None:
        raise ModelError("Give the sampling variances 'vi' or the standard errors 'sei'.")
    v_all = (
        _column(vi, data, "vi", k_all) if vi is not None else _column(sei, data, "sei", k_all) ** 2
    )
    w_all = _column(weights, data, "weights", k_all)
    if w_all is not None:
        if np.any(w_all < 0):
            raise ModelError("Argument 'weights' must not be negative.")
        if np.any(np.isinf(w_all)):
            raise ModelError("Argument 'weights' must be finite.")

    if mods is None and not intercept:
        warnings.append(
            "Must either include an intercept and/or moderators in model. "
            "Coerced intercept into the model."
        )
        intercept = True
    X_all, names = model_matrix(mods, data, k=k_all, intercept=intercept)

    for arr, what in ((y_all, "yi"), (v_all, "vi")):
        bad = np.flatnonzero(np.isinf(arr))
        if bad.size:
            raise ModelError(f"Argument '{what}' has an infinite value at row {bad[0] + 1}.")
    bad = np.argwhere(np.isinf(X_all))
    if bad.size:
        raise ModelError(
            f"Moderator '{names[bad[0][1]]}' has an infinite value at row {bad[0][0] + 1}."
        )
    has_na = np.isnan(y_all) | np.isnan(v_all) | np.any(np.isnan(X_all), axis=1)
    if w_all is not None:
        has_na |= np.isnan(w_all)
    not_na = ~has_na
    if has_na.any():
        warnings.append("Studies with NAs omitted from model fitting.")
    y, v, X = y_all[not_na], v_all[not_na].copy(), X_all[not_na]
    uw = None if w_all is None else w_all[not_na]
    k = y.shape[0]
    if k < 1:
        raise ModelError("No effect is left to fit (k = 0) after dropping rows with NAs.")

    allvipos = bool(np.all(v > 0))
    if not allvipos:
        warnings.append("There are outcomes with non-positive sampling variances.")
        if np.any(v < 0):
            v[v < 0] = 0.0
            warnings.append("Negative sampling variances constrained to zero.")
    if k == 1 and test != "z":
        warnings.append('Setting argument test="z" since k=1.')
        test = "z"

    design = check_design(X, names)
    warnings.extend(design.warnings)
    X, names = design.X, list(design.names)
    is_int = [bool(np.all(np.abs(X[:, j] - 1) < 1e-8)) for j in range(X.shape[1])]
    int_incl = any(is_int)
    if int_incl:
        j = is_int.index(True)
        X = np.column_stack([np.ones(k), np.delete(X, j, axis=1)])
        names = ["intrcpt"] + [n for i, n in enumerate(names) if i != j]
    p = X.shape[1]
    int_only = p == 1 and int_incl
    tau2_fix = tau2 is not None and method not in _EE
    if not (int_only and k == 1):
        need = p if (method in _EE or tau2_fix) else p + 1
        if need > k:
            raise ModelError(
                f"The model has more parameters to estimate ({need}) than effects (k = {k})."
            )
    btt_t = _resolve_btt(btt, p, int_incl, names)

    con = default_control(y)
    for key, val in ctrl_in.items():
        key2 = _CONTROL_ALIASES.get(key, key.replace(".", "_"))
        if key2 not in con:
            raise ModelError(f"Unknown control option '{key}'.")
        con[key2] = val
    if float(con["tau2_min"]) < 0 and -float(con["tau2_min"]) > float(np.min(v)):
        con["tau2_min"] = -float(np.min(v))
        warnings.append(f"Value of 'tau2_min' constrained to -min(vi) = {-np.min(v):.4f}.")

    if np.any(np.linalg.eigvalsh(X.T @ X) <= 1e-7):
        raise ModelError("The model matrix is not of full rank; the model cannot be fitted.")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.max(v) / np.min(v))
    if math.isfinite(ratio) and ratio >= 1e7:
        warnings.append(
            "Ratio of largest to smallest sampling variance extremely large. "
            "May not be able to obtain stable results."
        )

    # ---- tau2 -----------------------------------------------------------------------------
    se_tau2, iterations, converged = math.nan, 0, True
    if method in _EE:
        t2 = 0.0
    elif tau2_fix:
        t2 = float(tau2)
    elif k == 1:
        t2 = 0.0
    else:
        est = estimate_tau2(y, v, X, method, con, allvipos=allvipos)
        t2, se_tau2, iterations, converged = est.tau2, est.se_tau2, est.iterations, est.converged
        warnings.extend(est.warnings)

    # ---- fixed effects ---------------------------------------------------------------------
    alpha = alpha_from_level(level)
    with np.errstate(divide="ignore"):
        wi = 1.0 / (v + t2)
    if (uw is None or test in ("knha", "adhoc")) and np.any(np.isinf(wi)):
        raise ModelError(
            "Division by zero when computing the inverse-variance weights: a sampling "
            "variance is 0 and tau2 is 0."
        )
    s2w = 1.0
    if uw is None or test in ("knha", "adhoc"):
        fit_w = WLS(X, wi)
        beta = fit_w.beta(y)
        vb = fit_w.cov()
        rss_f = float(np.sum(wi * (y - X @ beta) ** 2))
        rss_knha = rss_f
    if uw is not None:
        fit_a = WLS(X, uw)
        beta = fit_a.beta(y)
        A = fit_a.cov()
        XAM = X * (uw**2 * (v + t2))[:, None]
        vb = A @ (X.T @ XAM) @ A
        rss_f = float(np.sum(wi * (y - X @ beta) ** 2))
    if test in ("knha", "adhoc"):
        if rss_knha <= np.finfo(float).eps:
            s2w = 0.0
        else:
            s2w = rss_knha / (k - p) if k > p else math.inf
    if method in _EE and test in ("knha", "adhoc"):
        warnings.append(
            f"Knapp & Hartung method is not meant to be used in the context of {method} models."
        )
    if test == "adhoc" and s2w < 1:
        s2w = 1.0
    vb = s2w * vb
    uses_t = test in ("t", "knha", "adhoc")
    ddf = float(k - p) if uses_t else math.nan
    bidx = np.array(btt_t) - 1
    try:
        sub = vb[np.ix_(bidx, bidx)]
        cho = np.linalg.cholesky(sub)
        z = np.linalg.solve(cho, beta[bidx])
        QM = float(z @ z)
    except np.linalg.LinAlgError:
        QM = math.nan
    se = np.sqrt(np.diag(vb))
    with np.errstate(divide="ignore", invalid="ignore"):
        zval = beta / se
    m = len(btt_t)
    if uses_t:
        QM = QM / m
        QMdf = (float(m), float(k - p))
        QMp = float(sps.f.sf(QM, m, k - p)) if k - p > 0 else math.nan
        if ddf > 0:
            pval = 2 * sps.t.sf(np.abs(zval), ddf)
            crit = float(sps.t.isf(alpha / 2, ddf))
        else:
            pval = np.full(p, math.nan)
            crit = math.nan
    else:
        QMdf = (float(m), math.nan)
        QMp = float(sps.chi2.sf(QM, m))
        pval = 2 * sps.norm.sf(np.abs(zval))
        crit = float(sps.norm.isf(alpha / 2))
    ci_lb = beta - crit * se
    ci_ub = beta + crit * se

    # ---- heterogeneity ----------------------------------------------------------------------
    QE = QEp = I2 = H2 = vt = math.nan
    if allvipos:
        if k > p:
            fe = WLS(X, 1.0 / v)
            QE = max(0.0, fe.yPy(y - float(np.mean(y))))
            QEp = float(sps.chi2.sf(QE, k - p))
            vt = (k - p) / fe.tr_PD()
            if method in _EE:
                I2 = max(0.0, 100 * (QE - (k - p)) / QE) if QE > 0 else 0.0
                H2 = QE / (k - p)
            else:
                I2 = 100 * t2 / (vt + t2)
                H2 = t2 / vt + 1
        else:
            QE, QEp, I2, H2, vt = 0.0, 1.0, 0.0, 1.0, 0.0
    else:
        warnings.append(
            f"Cannot compute {'Q' if int_only else 'QE'}-test, I^2, or H^2 when there are "
            "non-positive sampling variances in the data."
        )

    # ---- fit statistics --------------------------------------------------------------------
    parms = p + (0 if (method in _EE or tau2_fix) else 1)
    log2pi = math.log(2 * math.pi)
    slog = float(np.sum(np.log(v + t2)))
    ll_ml = -0.5 * k * log2pi - 0.5 * slog - 0.5 * rss_f
    logdet_xx = WLS(X, np.ones(k)).logdet()
    logdet_xwx = WLS(X, wi).logdet() if np.all(np.isfinite(wi)) else math.nan
    ll_reml = (
        -0.5 * (k - p) * log2pi + 0.5 * logdet_xx - 0.5 * slog - 0.5 * logdet_xwx - 0.5 * rss_f
    )
    if k > p:
        dev_ml = (
            -2 * (ll_ml - float(np.sum(-0.5 * np.log(2 * math.pi * v))))
            if allvipos
            else (-2 * ll_ml)
        )
    else:
        dev_ml = 0.0

    def _aicc(ll: float, n: int) -> float:
        nn = max(n, parms + 2)
        return -2 * ll + 2 * parms * nn / (nn - parms - 1)

    def _log(x: float) -> float:
        return math.log(x) if x > 0 else (-math.inf if x == 0 else math.nan)

    fit_stats = {
        "ML": {
            "logLik": ll_ml,
            "deviance": dev_ml,
            "AIC": -2 * ll_ml + 2 * parms,
            "BIC": -2 * ll_ml + parms * _log(k),
            "AICc": _aicc(ll_ml, k),
        },
        "REML": {
            "logLik": ll_reml,
            "deviance": -2 * ll_reml,
            "AIC": -2 * ll_reml + 2 * parms,
            "BIC": -2 * ll_reml + parms * _log(k - p),
            "AICc": _aicc(ll_reml, k - p),
        },
    }
    fs = fit_stats["REML" if method == "REML" else "ML"]

    # ---- pseudo R^2 -------------------------------------------------------------------------
    R2: float | None = None
    if not int_only and int_incl:
        R2 = _pseudo_r2(y, v, X, uw, wi, method, test, ctrl_in, t2, beta)

    model_w = uw if uw is not None else wi
    return RMAResult(
        beta=readonly(beta),
        se=readonly(se),
        zval=readonly(zval),
        pval=readonly(pval),
        ci_lb=readonly(ci_lb),
        ci_ub=readonly(ci_ub),
        vb=readonly(vb),
        dfs=ddf,
        names=tuple(names),
        tau2=float(t2),
        se_tau2=float(se_tau2),
        I2=float(I2),
        H2=float(H2),
        R2=R2,
        vt=float(vt),
        QE=float(QE),
        QEp=float(QEp),
        QM=float(QM),
        QMdf=QMdf,
        QMp=float(QMp),
        k=int(k),
        p=int(p),
        k_all=int(k_all),
        logLik=fs["logLik"],
        deviance=fs["deviance"],
        AIC=fs["AIC"],
        BIC=fs["BIC"],
        AICc=fs["AICc"],
        fit_stats=fit_stats,
        parms=int(parms),
        converged=bool(converged),
        iterations=int(iterations),
        warnings=tuple(warnings),
        yi=readonly(y),
        vi=readonly(v),
        X=readonly(X),
        weights=readonly(model_w),
        user_weights=None if uw is None else readonly(uw),
        level=float(100 * (1 - alpha)),
        method=method,
        test=test,
        btt=btt_t,
        s2w=float(s2w),
        int_only=bool(int_only),
        int_incl=bool(int_incl),
        allvipos=allvipos,
        not_na=readonly(not_na, bool),
        dropped=tuple(design.dropped),
        control={**con, "tau2_fix": tau2_fix},
    )


def _pseudo_r2(y, v, X, uw, wi, method, test, ctrl_in, t2, beta) -> float:
    """metafor's R^2: proportional reduction of tau2 against the intercept-only model (%)."""
    k, p = X.shape
    if method in _EE:
        if float(np.var(y)) == 0.0:
            return 0.0
        w = uw if uw is not None else wi
        ybar = float(np.sum(w * y) / np.sum(w))
        rss = float(np.sum(w * (y - X @ WLS(X, w).beta(y)) ** 2))
        tss = float(np.sum(w * (y - ybar) ** 2))
        if k == p:  # no residual df: R's adjusted R^2 is NaN
            return math.nan
        r2 = 1 - rss / tss
        adj = 1 - (1 - r2) * (k - 1) / (k - p)
        return max(0.0, 100 * adj)
    try:
        res0 = rma(y, v, weights=uw, method=method, test=test, control=ctrl_in)
    except Exception:  # noqa: BLE001 - metafor's try(): R^2 is NA when the fit fails
        return math.nan
    if res0.tau2 == 0:
        return 0.0
    return max(0.0, 100 * (res0.tau2 - t2) / res0.tau2)
