"""Egger-type regression test for multilevel models (the standard error as a moderator)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from evidence.errors import ModelError
from evidence.stats._bias_common import Renders
from evidence.stats._format import fcf, fmt_num, fmt_pval

__all__ = ["regtest_mv", "RegtestMvResult"]


@dataclass(frozen=True, repr=False)
class RegtestMvResult(Renders):
    """Egger's test in a multilevel model: ``zval, pval`` of the sqrt(vi) coefficient
    (``dfs`` its t-test df, NaN under z), the limit estimate ``est, ci_lb, ci_ub`` (the
    intercept, for models without other moderators) and the fitted model ``fit``."""

    zval: float
    pval: float
    dfs: float
    est: float | None
    ci_lb: float | None
    ci_ub: float | None
    slope: float
    slope_se: float
    fit: Any

    def __str__(self) -> str:
        out = [
            "",
            "Regression Test for Funnel Plot Asymmetry",
            "",
            "Model:     multilevel mixed-effects meta-regression model",
            "Predictor: standard error",
            "",
        ]
        ptxt = fmt_pval(self.pval, 4, showeq=True, sep=" ")
        if math.isnan(self.dfs):
            out.append(f"Test for Funnel Plot Asymmetry: z = {fcf(self.zval, 4)}, p {ptxt}")
        else:
            out.append(
                f"Test for Funnel Plot Asymmetry: t = {fcf(self.zval, 4)}, "
                f"df = {fmt_num(round(self.dfs, 2))}, p {ptxt}"
            )
        if self.est is not None:
            out.append(
                f"Limit Estimate (as sei -> 0):   b = {fcf(self.est, 4)} "
                f"(CI: {fcf(self.ci_lb, 4)}, {fcf(self.ci_ub, 4)})"
            )
        return "\n".join(out) + "\n"

    def __repr__(self) -> str:
        return f"RegtestMvResult(zval={self.zval:.6g}, pval={self.pval:.6g})"

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "zval": self.zval,
                    "dfs": self.dfs,
                    "pval": self.pval,
                    "slope": self.slope,
                    "slope_se": self.slope_se,
                    "est": self.est,
                    "ci_lb": self.ci_lb,
                    "ci_ub": self.ci_ub,
                }
            ]
        )


def regtest_mv(fit_mv: Any) -> RegtestMvResult:
    """Egger-type test for a multilevel model (:func:`evidence.stats.rma_mv.rma_mv`).

    The model is refitted with ``sqrt(vi)`` added as a moderator (same random levels,
    sampling covariance, method, test and level); the test of its coefficient is the test
    for funnel plot asymmetry, the intercept of an otherwise intercept-only model the limit
    estimate.

    Notes
    -----
    As ``rma.mv(yi, vi, mods = ~ sqrt(vi), random = ~ 1 | study/es_id)`` (Rodgers &
    Pustejovsky, 2021, Psychological Methods 26(2), call it Egger's regression test with
    the multilevel working model; with ``V`` from an assumed correlation it is the
    CHE-based variant).
    """
    from evidence.stats.rma_mv import RmaMvResult, rma_mv

    if not isinstance(fit_mv, RmaMvResult) or getattr(fit_mv, "_model", None) is None:
        raise ModelError("regtest_mv needs a fitted multilevel model (a result of rma_mv()).")
    if fit_mv.robust_type is not None:
        raise ModelError("regtest_mv needs the model fit itself, not its robust() version.")
    m = fit_mv._model
    vi = np.asarray(m.vi, dtype=float)
    sei = np.sqrt(vi)
    X = np.asarray(m.X, dtype=float)
    has_icpt = "intrcpt" in fit_mv.names
    others = X[:, [i for i, n in enumerate(fit_mv.names) if n != "intrcpt"]]
    mods = np.column_stack([others, sei]) if others.shape[1] else sei
    data = {f"_lvl{i}": np.asarray(c) for i, c in enumerate(m.level_codes)}
    sigma2 = [
        float(s) if fixed else None
        for s, fixed in zip(fit_mv.sigma2, fit_mv.sigma2_fixed, strict=True)
    ]
    res = rma_mv(
        np.asarray(m.yi, dtype=float),
        None if m.V is not None else vi,
        V=m.V,
        random=list(data),
        data=data,
        mods=mods,
        intercept=has_icpt,
        method=fit_mv.method,
        test=fit_mv.test,
        dfs=fit_mv.dfs,
        level=fit_mv.level,
        sigma2=sigma2 if any(s is not None for s in sigma2) else None,
    )
    j = res.p - 1
    dfs = math.nan if res.ddf is None else float(res.ddf[j])
    est = lb = ub = None
    if has_icpt and res.p == 2:
        est, lb, ub = float(res.beta[0]), float(res.ci_lb[0]), float(res.ci_ub[0])
    return RegtestMvResult(
        zval=float(res.zval[j]),
        pval=float(res.pval[j]),
        dfs=dfs,
        est=est,
        ci_lb=lb,
        ci_ub=ub,
        slope=float(res.beta[j]),
        slope_se=float(res.se[j]),
        fit=res,
    )
