"""Likelihood-ratio tests between nested models (metafor's ``anova(full, reduced)``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats as sps

from evidence.errors import ModelError
from evidence.stats._format import fcf, fmt_pval, format_frame
from evidence.stats._rma_result import json_safe

if TYPE_CHECKING:
    from evidence.stats._rma_result import RMAResult

__all__ = ["AnovaResult", "anova"]

_EE = ("EE", "FE", "CE")


@dataclass(frozen=True, repr=False)
class AnovaResult:
    """The likelihood-ratio test of a reduced against a full model.

    ``LRT = dev(reduced) - dev(full)`` (truncated at 0) on ``df = parms_f - parms_r``;
    ``fit_stats_f``/``fit_stats_r`` hold ``logLik, deviance, AIC, BIC, AICc``; ``R2`` is the
    proportional reduction of tau2 (percent), as metafor prints it.
    """

    LRT: float
    df: int
    pval: float
    parms_f: int
    parms_r: int
    fit_stats_f: dict[str, float]
    fit_stats_r: dict[str, float]
    QE_f: float
    QE_r: float
    tau2_f: float
    tau2_r: float
    R2: float
    method: str
    warnings: tuple[str, ...]

    def __str__(self) -> str:
        header = ["df", "AIC", "BIC", "AICc", "logLik", "LRT", "pval", "QE"]
        ee = self.method in _EE
        if not ee:
            header += ["tau^2", "R^2"]
        rows = []
        for which in ("f", "r"):
            fs = self.fit_stats_f if which == "f" else self.fit_stats_r
            row = [
                str(self.parms_f if which == "f" else self.parms_r),
                fcf(fs["AIC"], 4),
                fcf(fs["BIC"], 4),
                fcf(fs["AICc"], 4),
                fcf(fs["logLik"], 4),
                "" if which == "f" else fcf(self.LRT, 4),
                "" if which == "f" else fmt_pval(self.pval, 4),
                fcf(self.QE_f if which == "f" else self.QE_r, 4),
            ]
            if not ee:
                row.append(fcf(self.tau2_f if which == "f" else self.tau2_r, 4))
                row.append("" if which == "f" else fcf(self.R2, 4) + "%")
            rows.append(row)
        lines = format_frame(header, rows, ["Full", "Reduced"], gap=1)
        return "\n" + "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return f"AnovaResult(LRT={self.LRT:.6g}, df={self.df}, pval={self.pval:.4g})"

    def to_dict(self) -> dict[str, Any]:
        return json_safe({k: getattr(self, k) for k in self.__dataclass_fields__})


def anova(full: RMAResult, reduced: RMAResult, *, refit: bool = False) -> AnovaResult:
    """Likelihood-ratio test between two nested models fitted to the same data.

    Parameters
    ----------
    full, reduced
        Two :func:`~evidence.stats.rma` fits of the same yi and vi (order is free: the model
        with more parameters is taken as the full one).
    refit
        REML likelihoods of models with different fixed effects are not comparable; with
        ``refit=True`` both models are refitted with ML, otherwise a warning is recorded (as
        metafor).

    Notes
    -----
    ``LRT = -2 (ll_r - ll_f) ~ chi2(parms_f - parms_r)``; ML (or REML for models with the same
    fixed effects) log-likelihoods, as metafor's ``anova.rma``.
    """
    warnings: list[str] = []
    if full.parms == reduced.parms:
        raise ModelError("The two models have the same number of parameters; an LRT is moot.")
    if full.parms < reduced.parms:
        full, reduced = reduced, full
    if not (np.array_equal(full.yi, reduced.yi) and np.array_equal(full.vi, reduced.vi)):
        raise ModelError("The full and reduced models were not fitted to the same yi and vi.")
    if full.is_ee and not reduced.is_ee:
        raise ModelError(
            "The full model is an equal-effects model but the reduced one has random effects."
        )
    if {full.method, reduced.method} == {"ML", "REML"}:
        raise ModelError("One model uses ML and the other REML estimation; use the same method.")
    ok = ("EE", "FE", "CE", "ML", "REML")
    if full.method not in ok or reduced.method not in ok:
        warnings.append("LRTs should be based on ML/REML estimation.")
    same_x = full.X.shape == reduced.X.shape and np.array_equal(full.X, reduced.X)
    if full.method == "REML" and not same_x:
        if refit:
            from evidence.stats.rma import rma

            full = rma(
                full.yi,
                full.vi,
                mods=np.asarray(full.X),
                intercept=False,
                method="ML",
                test=full.test,
                weights=full.user_weights,
            )
            reduced = rma(
                reduced.yi,
                reduced.vi,
                mods=np.asarray(reduced.X),
                intercept=False,
                method="ML",
                test=reduced.test,
                weights=reduced.user_weights,
            )
        else:
            warnings.append(
                "REML comparisons not meaningful for models with different fixed effects "
                "(use refit=True to refit both models based on ML estimation)."
            )
    key = "REML" if full.method == "REML" else "ML"
    fs_f, fs_r = dict(full.fit_stats[key]), dict(reduced.fit_stats[key])
    lrt = max(0.0, fs_r["deviance"] - fs_f["deviance"])
    df = full.parms - reduced.parms
    if full.is_ee:
        r2 = _ee_r2(full, reduced)
    elif reduced.tau2 == 0:
        r2 = 0.0
    else:
        r2 = 100 * max(0.0, (reduced.tau2 - full.tau2) / reduced.tau2)
    return AnovaResult(
        LRT=lrt,
        df=df,
        pval=float(sps.chi2.sf(lrt, df)),
        parms_f=full.parms,
        parms_r=reduced.parms,
        fit_stats_f=fs_f,
        fit_stats_r=fs_r,
        QE_f=full.QE,
        QE_r=reduced.QE,
        tau2_f=full.tau2,
        tau2_r=reduced.tau2,
        R2=r2,
        method=full.method,
        warnings=tuple(warnings),
    )


def _ee_r2(full: RMAResult, reduced: RMAResult) -> float:
    def s2(res: RMAResult) -> float:
        w = np.asarray(res.user_weights) if res.user_weights is not None else 1 / res.vi
        from evidence.stats._rma_linalg import WLS

        X = np.asarray(res.X)
        beta = WLS(X, w).beta(np.asarray(res.yi))
        rss = float(np.sum(w * (res.yi - X @ beta) ** 2))
        return rss / (res.k - res.p) if res.k > res.p else math.nan

    s2f, s2r = s2(full), s2(reduced)
    return 100 * max(0.0, (s2r - s2f) / s2r)
