"""Estimators of the between-study variance tau^2 (metafor's ``rma.uni`` methods).

Each estimator follows metafor 3.8's ``rma.uni`` step for step (starting values, stopping
rule, truncation at ``tau2.min = 0``), so that estimates agree with metafor to rounding error
rather than to the estimators' stopping tolerance. All matrix algebra goes through
:class:`~evidence.stats._rma_linalg.WLS` in O(k p^2).

Notes
-----
As metafor does, the estimators work on the centred outcomes ``yi - mean(yi)``; with an
intercept in the model this changes nothing.

References: DerSimonian & Laird (1986) DL; Hedges (1983) HE; Hunter & Schmidt (2004) HS;
Sidik & Jonkman (2005) SJ; Paule & Mandel (1982) PM; Morris (1983) EB; Viechtbauer (2005)
ML/REML and the Fisher scoring algorithm; Viechtbauer (2010) metafor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

from evidence.errors import ConvergenceError, ModelError
from evidence.stats._rma_linalg import WLS, zeroin

__all__ = ["METHODS", "Tau2Estimate", "estimate_tau2", "default_control"]

METHODS = ("EE", "FE", "CE", "DL", "HE", "HS", "HSk", "SJ", "ML", "REML", "EB", "PM", "PMM")
_EE = ("EE", "FE", "CE")


def default_control(yi: np.ndarray) -> dict[str, float | int | bool | None]:
    """metafor's ``rma.uni`` control defaults (``tau2.max`` depends on the data)."""
    med = float(np.median(yi))
    mad = 1.4826 * float(np.median(np.abs(yi - med)))
    return {
        "tau2_init": None,
        "tau2_min": 0.0,
        "tau2_max": max(100.0, 10.0 * mad**2),
        "threshold": 1e-5,
        "tol": np.finfo(float).eps ** 0.25,
        "ll0check": True,
        "maxiter": 100,
        "stepadj": 1.0,
    }


@dataclass
class Tau2Estimate:
    tau2: float
    se_tau2: float = math.nan
    iterations: int = 0
    converged: bool = True
    warnings: list[str] = field(default_factory=list)


def _weights(vi: np.ndarray, tau2: float) -> np.ndarray:
    if np.any(tau2 + vi < 0):
        raise ModelError("Some marginal variances (vi + tau2) are negative.")
    with np.errstate(divide="ignore"):
        wi = 1.0 / (vi + tau2)
    if np.any(np.isinf(wi)):
        raise ModelError(
            "Division by zero when computing the inverse-variance weights: a sampling "
            "variance is 0 and tau2 is 0."
        )
    return wi


def _ll_tau2(ymc: np.ndarray, vi: np.ndarray, X: np.ndarray, tau2: float, reml: bool) -> float:
    """(Restricted) log-likelihood at ``tau2`` as metafor's local-maximum check computes it."""
    k, p = X.shape
    wls = WLS(X, _weights(vi, tau2))
    rss = wls.yPy(ymc)
    if reml:
        return (
            -0.5 * (k - p) * math.log(2 * math.pi)
            - 0.5 * float(np.sum(np.log(vi + tau2)))
            - 0.5 * wls.logdet()
            - 0.5 * rss
        )
    return -0.5 * k * math.log(2 * math.pi) - 0.5 * float(np.sum(np.log(vi + tau2))) - 0.5 * rss


def estimate_tau2(
    yi: np.ndarray,
    vi: np.ndarray,
    X: np.ndarray,
    method: str,
    control: dict,
    *,
    allvipos: bool,
) -> Tau2Estimate:
    """Estimate tau^2 with *method* (k >= 2 effects, design of full rank, p < k).

    Raises
    ------
    ConvergenceError
        Fisher scoring did not converge within ``maxiter`` iterations, or ``tau2_max`` is too
        low for PM/PMM.
    ModelError
        A method that needs positive sampling variances meets a vi of 0.
    """
    k, p = X.shape
    ymc = yi - float(np.mean(yi))
    tmin = float(control["tau2_min"])
    if method in _EE:
        return Tau2Estimate(0.0)

    if method in ("HS", "HSk", "DL", "PM", "PMM") and not allvipos:
        raise ModelError(
            f"The {method} estimator cannot be used when there are non-positive sampling "
            "variances in the data."
        )

    if method in ("HS", "HSk"):
        wi = 1.0 / vi
        wls = WLS(X, wi)
        rss = wls.yPy(ymc)
        sw = float(np.sum(wi))
        tau2 = (rss - k) / sw if method == "HS" else (k / (k - p) * rss - k) / sw
        t = max(tau2, 0.0)
        se = math.sqrt(1 / sw**2 * (2 * (k - p) + 4 * t * wls.tr_PD() + 2 * t**2 * wls.tr_PDPD()))
        if method == "HSk":
            se *= k / (k - p)
        return Tau2Estimate(max(tmin, tau2), se)

    if method == "DL":
        wls = WLS(X, 1.0 / vi)
        rss = wls.yPy(ymc)
        trP = wls.tr_PD()
        tau2 = (rss - (k - p)) / trP
        t = max(tau2, 0.0)
        se = math.sqrt(1 / trP**2 * (2 * (k - p) + 4 * t * trP + 2 * t**2 * wls.tr_PDPD()))
        return Tau2Estimate(max(tmin, tau2), se)

    if method == "SJ":
        tau2_0 = float(np.mean(ymc**2)) if control["tau2_init"] is None else control["tau2_init"]
        wls = WLS(X, _weights(vi, tau2_0))
        rss = wls.yPy(ymc)
        tau2 = tau2_0 * rss / (k - p)
        t = max(tau2, 0.0)
        se = math.sqrt(
            tau2_0**2
            / (k - p) ** 2
            * (2 * wls.tr_PDPD(vi, vi) + 4 * t * wls.tr_PDPD(vi, 1.0) + 2 * t**2 * wls.tr_PDPD())
        )
        return Tau2Estimate(max(tmin, tau2), se)

    # HE: also the starting value of ML/REML/EB
    wls0 = WLS(X, np.ones(k))
    rss0 = wls0.yPy(ymc)
    trPV = wls0.tr_PD(vi)
    tau2_he = (rss0 - trPV) / (k - p)
    if method == "HE":
        t = max(tau2_he, 0.0)
        se = math.sqrt(
            1 / (k - p) ** 2 * (2 * wls0.tr_PDPD(vi, vi) + 4 * t * trPV + 2 * t**2 * (k - p))
        )
        return Tau2Estimate(max(tmin, tau2_he), se)

    if method in ("PM", "PMM"):
        return _paule_mandel(ymc, vi, X, method, control)

    if method in ("ML", "REML", "EB"):
        return _fisher_scoring(ymc, vi, X, method, control, tau2_he, allvipos=allvipos)

    raise ModelError(f"Unknown method '{method}'; use one of {', '.join(METHODS)}.")


def _q_func(ymc: np.ndarray, vi: np.ndarray, X: np.ndarray, tau2: float) -> float:
    """Generalised Q statistic ``y'P(tau2)y`` (metafor's ``.QE.func`` with objective 0)."""
    return WLS(X, _weights(vi, tau2)).yPy(ymc)


def _paule_mandel(ymc, vi, X, method, control) -> Tau2Estimate:
    k, p = X.shape
    target = float(sps.chi2.ppf(0.5, k - p)) if method == "PMM" else float(k - p)
    tmin, tmax = float(control["tau2_min"]), float(control["tau2_max"])
    f_min = _q_func(ymc, vi, X, tmin) - target
    if f_min < 0:
        tau2, iters = tmin, 0
    else:
        f_max = _q_func(ymc, vi, X, tmax) - target
        if f_max > 0:
            raise ConvergenceError(
                f"The {method} estimator found no root below tau2_max = {tmax:g}; increase "
                "control['tau2_max'] or use another method."
            )
        res = zeroin(
            lambda t: _q_func(ymc, vi, X, t) - target,
            tmin,
            tmax,
            f_lower=f_min,
            f_upper=f_max,
            tol=float(control["tol"]),
            maxiter=int(control["maxiter"]),
        )
        tau2, iters = res.root, res.iterations
    tau2 = max(tmin, tau2)
    wi = _weights(vi, tau2)
    se = math.sqrt(2 * k**2 / (k - p) / float(np.sum(wi)) ** 2)
    return Tau2Estimate(tau2, se, iters, True)


def _fisher_scoring(ymc, vi, X, method, control, tau2_he, *, allvipos) -> Tau2Estimate:
    """Fisher scoring with step halving at the boundary, as metafor's ``rma.uni``."""
    k, p = X.shape
    tmin = float(control["tau2_min"])
    threshold = float(control["threshold"])
    maxiter = int(control["maxiter"])
    stepadj = float(control["stepadj"])
    tau2 = max(0.0, tau2_he, tmin) if control["tau2_init"] is None else control["tau2_init"]
    tau2 = float(tau2)
    change = threshold + 1
    it = 0
    warnings: list[str] = []
    while change > threshold:
        it += 1
        old = tau2
        wi = _weights(vi, tau2)
        wls = WLS(X, wi)
        if method == "ML":
            adj = (wls.yPPy(ymc) - float(np.sum(wi))) / float(np.sum(wi**2))
        elif method == "REML":
            adj = (wls.yPPy(ymc) - wls.tr_PD()) / wls.tr_PDPD()
        else:  # EB
            adj = (wls.yPy(ymc) * k / (k - p) - k) / float(np.sum(wi))
        adj *= stepadj
        if math.isnan(adj):
            adj = 0.0
        while tau2 + adj < tmin:
            adj /= 2
        tau2 = tau2 + adj
        change = abs(old - tau2)
        if it > maxiter:
            raise ConvergenceError(
                f"Fisher scoring for the {method} estimate of tau2 did not converge in "
                f"{maxiter} iterations; try control={{'stepadj': 0.5}} or a larger 'maxiter'."
            )
    if method in ("ML", "REML") and control["ll0check"] and allvipos:
        reml = method == "REML"
        ll0 = _ll_tau2(ymc, vi, X, 0.0, reml)
        ll = _ll_tau2(ymc, vi, X, tau2, reml)
        if ll0 - ll > float(control["tol"]) and tau2 > threshold:
            warnings.append(
                "Fisher scoring algorithm may have gotten stuck at a local maximum. "
                "Setting tau^2 = 0."
            )
            tau2 = 0.0
    tau2 = max(tmin, tau2)
    wi = _weights(vi, tau2)
    if method == "ML":
        se = math.sqrt(2 / float(np.sum(wi**2)))
    elif method == "REML":
        se = math.sqrt(2 / WLS(X, wi).tr_PDPD())
    else:
        se = math.sqrt(2 * k**2 / (k - p) / float(np.sum(wi)) ** 2)
    return Tau2Estimate(tau2, se, it, True, warnings)
