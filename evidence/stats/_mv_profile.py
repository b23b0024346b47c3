"""Profile-likelihood intervals of variance components and likelihood ratio tests."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize as _opt
from scipy import stats as _st

from evidence.errors import ModelError
from evidence.stats._format import fcf, fmt_pval, format_frame
from evidence.stats._mv_fit import optimise


@dataclass(frozen=True)
class ProfileCI:
    """Profile-likelihood confidence intervals of the estimated sigma2 components.

    ``ci_lb`` is 0 when the likelihood-ratio statistic at zero is below the critical value;
    ``ub_capped`` marks an upper bound at the end of the searched interval (metafor's ">").
    """

    names: tuple[str, ...]
    components: tuple[int, ...]
    estimate: np.ndarray
    ci_lb: np.ndarray
    ci_ub: np.ndarray
    ub_capped: tuple[bool, ...]
    level: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "names": list(self.names),
            "estimate": [float(x) for x in self.estimate],
            "ci_lb": [float(x) for x in self.ci_lb],
            "ci_ub": [float(x) for x in self.ci_ub],
            "level": self.level,
        }

    def __str__(self) -> str:
        out = []
        for i, c in enumerate(self.components):
            rows = [
                [fcf(self.estimate[i], 4), fcf(self.ci_lb[i], 4), fcf(self.ci_ub[i], 4)],
                [
                    fcf(math.sqrt(self.estimate[i]), 4),
                    fcf(math.sqrt(self.ci_lb[i]), 4),
                    fcf(math.sqrt(self.ci_ub[i]), 4),
                ],
            ]
            out.append("")
            out += format_frame(
                ["estimate", "ci.lb", "ci.ub"], rows, [f"sigma^2.{c + 1}", f"sigma.{c + 1}"], gap=1
            )
        return "\n".join(out) + "\n"


def profile_confint(res, *, level: float, tol: float = 1e-10) -> ProfileCI:
    """Profile-likelihood CIs (metafor's ``confint.rma.mv``) for each estimated sigma2.

    Notes
    -----
    The bound of component l solves :math:`2[\\ell(\\hat\\theta) - \\max_{\\theta:
    \\sigma^2_l = s} \\ell(\\theta)] = \\chi^2_{1, level}`, searched on
    :math:`[0, \\max(10, 100\\hat\\sigma^2_l)]` as metafor does; a bound outside is reported
    at the end of the interval.
    """
    model = res._model
    if model is None:
        raise ModelError("confint needs a result of rma_mv().")
    free = np.flatnonzero(np.isnan(model.fixed))
    if free.size == 0:
        raise ModelError("The model has no estimated variance component.")
    crit = float(_st.chi2.ppf(level / 100.0, 1))
    ll_hat = res.fit_stats[res.method]["logLik"]
    s_hat = np.asarray(res.sigma2, dtype=float)
    lbs, ubs, capped = [], [], []
    for c in free:
        cache: dict[float, tuple[float, np.ndarray]] = {}

        def prof(v: float, c=c, cache=cache) -> float:
            fixed = model.fixed.copy()
            fixed[c] = v
            init = s_hat.copy()
            init[c] = v
            try:
                fit = optimise(model.blocks, model.reml, init, fixed)
            except np.linalg.LinAlgError:
                return float("nan")
            cache[v] = (fit.ev.ll, fit.sigma2)
            return 2.0 * (ll_hat - fit.ev.ll) - crit

        est = float(s_hat[c])
        vmax = 10.0 if est <= np.sqrt(np.finfo(float).eps) else max(10.0, 100.0 * est)
        f0 = prof(0.0)
        if not np.isfinite(f0) or f0 < 0:
            lb = 0.0
        else:
            lb = _opt.brentq(prof, 0.0, est, xtol=tol * max(est, 1e-12), rtol=1e-14, maxiter=500)
        fmax = prof(vmax)
        if np.isfinite(fmax) and fmax < 0:
            ub, cap = vmax, True
        else:
            ub = _opt.brentq(prof, est, vmax, xtol=tol * max(est, 1e-12), rtol=1e-14, maxiter=500)
            cap = False
        lbs.append(lb)
        ubs.append(ub)
        capped.append(cap)
    arr = [np.array(x, dtype=float) for x in (s_hat[free], lbs, ubs)]
    for a in arr:
        a.setflags(write=False)
    return ProfileCI(
        tuple(res.sigma2_names[c] for c in free),
        tuple(int(c) for c in free),
        arr[0],
        arr[1],
        arr[2],
        tuple(capped),
        float(level),
    )


@dataclass(frozen=True)
class AnovaMv:
    """Likelihood ratio test of two nested multilevel models (metafor's ``anova``)."""

    df_full: int
    df_reduced: int
    logLik_full: float
    logLik_reduced: float
    AIC: tuple[float, float]
    BIC: tuple[float, float]
    AICc: tuple[float, float]
    QE: tuple[float, float]
    LRT: float
    pval: float
    method: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def __str__(self) -> str:
        rows = [
            [
                str(self.df_full),
                fcf(self.AIC[0], 4),
                fcf(self.BIC[0], 4),
                fcf(self.AICc[0], 4),
                fcf(self.logLik_full, 4),
                "",
                "",
                fcf(self.QE[0], 4),
            ],
            [
                str(self.df_reduced),
                fcf(self.AIC[1], 4),
                fcf(self.BIC[1], 4),
                fcf(self.AICc[1], 4),
                fcf(self.logLik_reduced, 4),
                fcf(self.LRT, 4),
                fmt_pval(self.pval, 4),
                fcf(self.QE[1], 4),
            ],
        ]
        head = ["df", "AIC", "BIC", "AICc", "logLik", "LRT", "pval", "QE"]
        return "\n" + "\n".join(format_frame(head, rows, ["Full", "Reduced"])) + "\n"


def anova_mv(full, reduced) -> AnovaMv:
    """Likelihood ratio test of *reduced* against *full* (e.g. two- vs three-level).

    Notes
    -----
    :math:`LRT = 2(\\ell_{full} - \\ell_{reduced})` on the difference in the number of
    parameters, :math:`p = P(\\chi^2_{df} > LRT)` (no boundary correction, as metafor). REML
    fits must have the same fixed effects.
    """
    if full.method != reduced.method:
        raise ModelError("Both models must be fitted with the same method (REML or ML).")
    if full.k != reduced.k or not np.array_equal(full._model.yi, reduced._model.yi):
        raise ModelError("Both models must be fitted to the same effect sizes.")
    if full.parms < reduced.parms:
        full, reduced = reduced, full
    if full.parms == reduced.parms:
        raise ModelError("The models have the same number of parameters; they are not nested.")
    if full.method == "REML" and not np.array_equal(full._model.X, reduced._model.X):
        raise ModelError("REML fits can only be compared when the fixed effects are the same.")
    fm, rm = full.fit_stats[full.method], reduced.fit_stats[reduced.method]
    lrt = max(0.0, 2.0 * (fm["logLik"] - rm["logLik"]))
    df = full.parms - reduced.parms
    return AnovaMv(
        full.parms,
        reduced.parms,
        fm["logLik"],
        rm["logLik"],
        (fm["AIC"], rm["AIC"]),
        (fm["BIC"], rm["BIC"]),
        (fm["AICc"], rm["AICc"]),
        (full.QE, reduced.QE),
        lrt,
        float(_st.chi2.sf(lrt, df)),
        full.method,
    )
