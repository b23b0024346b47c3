"""Confidence intervals for tau^2, tau, I^2 and H^2: Q-profile and profile likelihood."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats as sps

from evidence.errors import ConvergenceError, ModelError
from evidence.stats._format import fcf
from evidence.stats._rma_linalg import WLS, zeroin
from evidence.stats._rma_result import json_safe

if TYPE_CHECKING:
    from evidence.stats._rma_result import RMAResult

__all__ = ["ConfintResult", "confint", "loglik_at"]


@dataclass(frozen=True, repr=False)
class ConfintResult:
    """Intervals for the heterogeneity parameters and the coefficients.

    ``random`` maps ``tau2``, ``tau``, ``I2`` (percent) and ``H2`` to ``(estimate, ci_lb,
    ci_ub)``; ``fixed`` maps each coefficient name to ``(estimate, ci_lb, ci_ub)``.
    ``lb_sign``/``ub_sign`` are ``"<"`` or ``">"`` where a bound lies at the end of the search
    interval (metafor prints them); ``ci_null`` is True when both bounds fall below 0.
    """

    random: dict[str, tuple[float, float, float]]
    fixed: dict[str, tuple[float, float, float]]
    type: str
    level: float
    lb_sign: str
    ub_sign: str
    ci_null: bool
    tau2_min: float
    tau2_max: float

    @property
    def tau2(self) -> tuple[float, float, float]:
        return self.random["tau2"]

    def __str__(self) -> str:
        labels = {"tau2": "tau^2", "tau": "tau", "I2": "I^2(%)", "H2": "H^2"}
        rows = []
        for key, (est, lb, ub) in self.random.items():
            rows.append(
                [labels[key], fcf(est, 4), self.lb_sign + fcf(lb, 4), self.ub_sign + fcf(ub, 4)]
            )
        width = [max(len(r[j]) for r in rows) for j in range(4)]
        head = ["estimate", "ci.lb", "ci.ub"]
        width[1:] = [max(w, len(h)) for w, h in zip(width[1:], head, strict=True)]
        out = [
            " " * width[0] + "".join(" " + h.rjust(w) for h, w in zip(head, width[1:], strict=True))
        ]
        for r in rows:
            out.append(
                r[0].ljust(width[0])
                + "".join(" " + c.rjust(w) for c, w in zip(r[1:], width[1:], strict=True))
            )
        text = "\n" + "\n".join(line + " " for line in out) + "\n"
        if self.ci_null:
            text += (
                "\nThe upper and lower CI bounds for tau^2 both fall below "
                f"{self.tau2_min:g}.\nThe CIs are therefore equal to the null/empty set.\n"
            )
        return text

    def __repr__(self) -> str:
        return f"ConfintResult(type={self.type!r}, tau2={self.random['tau2']})"

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "type": self.type,
                "level": self.level,
                "random": {k: list(v) for k, v in self.random.items()},
                "fixed": {k: list(v) for k, v in self.fixed.items()},
                "lb_sign": self.lb_sign,
                "ub_sign": self.ub_sign,
                "ci_null": self.ci_null,
            }
        )


def _q_profile(res: RMAResult, tau2: float) -> float:
    """Generalised Q statistic at ``tau2`` (on the raw outcomes, as metafor's confint)."""
    return WLS(np.asarray(res.X), 1.0 / (np.asarray(res.vi) + tau2)).yPy(np.asarray(res.yi))


def loglik_at(res: RMAResult, tau2: float) -> float:
    """The model's (restricted) log-likelihood with tau2 fixed at ``tau2`` (beta re-estimated).

    REML fits give the restricted log-likelihood (with metafor's ``log det(X'X)`` term),
    all others the ML log-likelihood, as metafor's ``logLik``.
    """
    y, v, X = np.asarray(res.yi), np.asarray(res.vi), np.asarray(res.X)
    k, p = X.shape
    if np.any(v + tau2 <= 0):
        raise ModelError("Some marginal variances (vi + tau2) are not positive.")
    w = 1.0 / (v + tau2)
    fit = WLS(X, w)
    if res.user_weights is not None:
        beta = WLS(X, np.asarray(res.user_weights)).beta(y)
    else:
        beta = fit.beta(y)
    rss = float(np.sum(w * (y - X @ beta) ** 2))
    slog = float(np.sum(np.log(v + tau2)))
    if res.method == "REML":
        return (
            -0.5 * (k - p) * math.log(2 * math.pi)
            + 0.5 * WLS(X, np.ones(k)).logdet()
            - 0.5 * slog
            - 0.5 * fit.logdet()
            - 0.5 * rss
        )
    return -0.5 * k * math.log(2 * math.pi) - 0.5 * slog - 0.5 * rss


def confint(
    res: RMAResult,
    *,
    level: float | None = None,
    type: str = "QP",
    tau2_min: float | None = None,
    tau2_max: float | None = None,
    tol: float = np.finfo(float).eps ** 0.25,
    maxiter: int = 1000,
) -> ConfintResult:
    """Confidence intervals for tau^2, tau, I^2, H^2 (and the coefficients).

    Parameters
    ----------
    res
        A fitted random- or mixed-effects :func:`~evidence.stats.rma` model (k >= 2).
    level
        Confidence level in percent (default the model's).
    type
        ``"QP"``: Q-profile (Viechtbauer, 2007), any estimator; ``"PL"``: profile likelihood
        (ML/REML fits).
    tau2_min, tau2_max
        The search interval (metafor's defaults: ``min(0, tau2)`` and
        ``max(100, 10 tau2)``).
    tol, maxiter
        Root finder settings (R's ``uniroot`` defaults, as metafor).

    Notes
    -----
    Q-profile: the bounds solve ``Q(tau2) = chi2_{k-p; 1-alpha/2}`` (lower bound) and
    ``Q(tau2) = chi2_{k-p; alpha/2}`` (upper bound), ``Q(tau2) = sum w_i(tau2) r_i^2`` with
    ``w_i = 1/(vi + tau2)``; bounds that fall below ``tau2_min`` are truncated there.
    Profile likelihood: ``-2 (ll(tau2) - ll(hat tau2)) = chi2_{1; 1-alpha}``. The bounds of
    I^2 and H^2 are transformations of those of tau^2 with the typical sampling variance vt.
    """
    from evidence.stats.rma import alpha_from_level

    if res.k == 1:
        raise ModelError("Cannot compute confidence intervals for tau2 with k = 1.")
    if res.is_ee:
        raise ModelError("An equal-effects model has no random-effects component to profile.")
    if res.control.get("tau2_fix"):
        raise ModelError("tau2 was fixed, not estimated; it has no confidence interval.")
    if type not in ("QP", "PL"):
        raise ModelError(f"Unknown confint type '{type}'; use 'QP' or 'PL'.")
    alpha = alpha_from_level(res.level if level is None else level)
    k, p = res.k, res.p
    tmin = min(0.0, res.tau2) if tau2_min is None else float(tau2_min)
    tmax = max(100.0, res.tau2 * 10, tmin * 10) if tau2_max is None else float(tau2_max)
    lb = ub = math.nan
    lb_sign = ub_sign = ""
    ci_null = False

    def root(f, lo, hi, flo=None, fhi=None) -> float:
        out = zeroin(f, lo, hi, f_lower=flo, f_upper=fhi, tol=tol, maxiter=maxiter)
        if not out.converged:
            raise ConvergenceError(
                f"The search for a confidence bound of tau2 did not converge in {maxiter} steps."
            )
        return out.root

    if type == "QP":
        if not res.allvipos:
            raise ModelError(
                "Cannot compute a Q-profile interval for tau2 when a sampling variance is 0."
            )
        crit_u = float(sps.chi2.isf(alpha / 2, k - p))
        crit_l = float(sps.chi2.ppf(alpha / 2, k - p))
        q_max = _q_profile(res, tmax)
        q_min = _q_profile(res, tmin)
        if q_min < crit_l:
            lb = ub = tmin
            lb_sign = ub_sign = "<"
            ci_null = tmin <= 0
        elif q_max > crit_l:
            ub, ub_sign = tmax, ">"
        else:
            ub = root(
                lambda t: _q_profile(res, t) - crit_l, tmin, tmax, q_min - crit_l, q_max - crit_l
            )
        if q_max > crit_u:
            lb = ub = tmax
            lb_sign = ub_sign = ">"
        elif q_min < crit_u:
            lb = tmin
            if tmin > 0:
                lb_sign = "<"
        else:
            lb = root(
                lambda t: _q_profile(res, t) - crit_u, tmin, tmax, q_min - crit_u, q_max - crit_u
            )
    else:
        if res.method not in ("ML", "REML"):
            raise ModelError("Profile-likelihood intervals need an ML or REML fit.")
        ll_hat = loglik_at(res, res.tau2)
        objective = float(sps.chi2.ppf(1 - alpha, 1))

        def f(t: float) -> float:
            return -2 * (loglik_at(res, t) - ll_hat) - objective

        f_lo = f(tmin)
        if f_lo < 0:
            lb = tmin
            if tmin > 0:
                lb_sign = "<"
        else:
            lb = root(f, tmin, res.tau2, f_lo, None)
        f_hi = f(tmax)
        if f_hi < 0:
            ub, ub_sign = tmax, ">"
        else:
            ub = root(f, res.tau2, tmax, None, f_hi)

    vt = res.vt

    def i2(t: float) -> float:
        return 100 * t / (vt + t)

    def h2(t: float) -> float:
        return t / vt + 1

    def sqrt_or_nan(t: float) -> float:
        return math.sqrt(t) if t >= 0 else math.nan

    random = {
        "tau2": (res.tau2, lb, ub),
        "tau": (sqrt_or_nan(res.tau2), sqrt_or_nan(lb), sqrt_or_nan(ub)),
        "I2": (res.I2, i2(lb), i2(ub)),
        "H2": (res.H2, h2(lb), h2(ub)),
    }
    if res.uses_t:
        crit = float(sps.t.isf(alpha / 2, res.dfs))
    else:
        crit = float(sps.norm.isf(alpha / 2))
    fixed = {
        n: (float(b), float(b - crit * s), float(b + crit * s))
        for n, b, s in zip(res.names, res.beta, res.se, strict=True)
    }
    return ConfintResult(
        random=random,
        fixed=fixed,
        type=type,
        level=float(100 * (1 - alpha)),
        lb_sign=lb_sign,
        ub_sign=ub_sign,
        ci_null=ci_null,
        tau2_min=tmin,
        tau2_max=tmax,
    )
