"""The frozen result of :func:`evidence.stats.rma` and its renderings."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

__all__ = ["RMAResult", "readonly", "json_safe"]


def readonly(x: Any, dtype: Any = float) -> np.ndarray:
    """A read-only copy of *x* as a numpy array."""
    arr = np.array(x, dtype=dtype, copy=True)
    arr.setflags(write=False)
    return arr


def json_safe(x: Any) -> Any:
    """Convert numpy values, arrays and non-finite floats to plain JSON values (NaN -> None)."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return [json_safe(v) for v in x.tolist()]
    if isinstance(x, np.bool_ | bool):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        f = float(x)
        return f if math.isfinite(f) else None
    return x


@dataclass(frozen=True, repr=False)
class RMAResult:
    """A fitted univariate (mixed-/random-/equal-effects) meta-analytic model.

    Attributes follow metafor's ``rma.uni`` object: ``beta, se, zval, pval, ci_lb, ci_ub,
    vb`` per coefficient (``zval`` holds the t statistic under ``test`` t/knha/adhoc; ``dfs``
    its degrees of freedom, NaN under z); ``tau2, se_tau2, I2, H2, R2`` (I2 and R2 in
    percent); ``QE, QEp`` (residual heterogeneity), ``QM, QMp, QMdf`` (omnibus test of the
    ``btt`` coefficients; an F statistic under t/knha/adhoc); fit statistics ``logLik,
    deviance, AIC, BIC, AICc`` (REML ones for REML fits, ML ones otherwise, as metafor's
    ``fitstats``); the data the model saw (``yi, vi, X, weights``) and the options.
    """

    beta: np.ndarray
    se: np.ndarray
    zval: np.ndarray
    pval: np.ndarray
    ci_lb: np.ndarray
    ci_ub: np.ndarray
    vb: np.ndarray
    dfs: float
    names: tuple[str, ...]
    tau2: float
    se_tau2: float
    I2: float
    H2: float
    R2: float | None
    vt: float
    QE: float
    QEp: float
    QM: float
    QMdf: tuple[float, float]
    QMp: float
    k: int
    p: int
    k_all: int
    logLik: float
    deviance: float
    AIC: float
    BIC: float
    AICc: float
    fit_stats: dict[str, dict[str, float]]
    parms: int
    converged: bool
    iterations: int
    warnings: tuple[str, ...]
    yi: np.ndarray
    vi: np.ndarray
    X: np.ndarray
    weights: np.ndarray
    user_weights: np.ndarray | None
    level: float
    method: str
    test: str
    btt: tuple[int, ...]
    s2w: float
    int_only: bool
    int_incl: bool
    allvipos: bool
    not_na: np.ndarray
    dropped: tuple[str, ...]
    control: dict[str, Any] = field(default_factory=dict)

    # -- aliases ---------------------------------------------------------------------------
    @property
    def tval(self) -> np.ndarray:
        """The t statistics (same array as ``zval``, metafor's naming under t tests)."""
        return self.zval

    @property
    def ddf(self) -> float:
        return self.dfs

    @property
    def tau(self) -> float:
        return math.sqrt(self.tau2) if self.tau2 >= 0 else math.nan

    @property
    def is_ee(self) -> bool:
        return self.method in ("EE", "FE", "CE")

    @property
    def uses_t(self) -> bool:
        return self.test in ("t", "knha", "adhoc")

    @property
    def m(self) -> int:
        return len(self.btt)

    @property
    def fitted(self) -> np.ndarray:
        """Fitted values ``X beta`` of the k effects in the model."""
        return self.X @ self.beta

    @property
    def resid(self) -> np.ndarray:
        return self.yi - self.fitted

    # -- renderings -----------------------------------------------------------------------
    def __str__(self) -> str:
        from evidence.stats._rma_print import format_rma

        return format_rma(self)

    def __repr__(self) -> str:
        return (
            f"RMAResult(method={self.method!r}, test={self.test!r}, k={self.k}, p={self.p}, "
            f"tau2={self.tau2:.6g}, beta={np.array2string(self.beta, precision=6)})"
        )

    def _repr_html_(self) -> str:
        from evidence.stats._rma_print import html_rma

        return html_rma(self)

    def summary(self) -> str:
        """The printed layout with fit statistics (metafor's ``summary()``)."""
        from evidence.stats._rma_print import format_rma

        return format_rma(self, showfit=True)

    def coef_table(self) -> list[dict[str, Any]]:
        """One dict per coefficient: ``name, estimate, se, stat, df, pval, ci_lb, ci_ub``."""
        df = None if not self.uses_t else self.dfs
        return [
            {
                "name": n,
                "estimate": float(self.beta[i]),
                "se": float(self.se[i]),
                "stat": float(self.zval[i]),
                "df": df,
                "pval": float(self.pval[i]),
                "ci_lb": float(self.ci_lb[i]),
                "ci_ub": float(self.ci_ub[i]),
            }
            for i, n in enumerate(self.names)
        ]

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-safe values (arrays as lists, NaN and infinities as None)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            out[f.name] = getattr(self, f.name)
        out["coefficients"] = self.coef_table()
        return json_safe(out)

    def to_frame(self):
        """The coefficient table as a pandas DataFrame indexed by coefficient name."""
        import pandas as pd

        stat = "tval" if self.uses_t else "zval"
        frame = pd.DataFrame(
            {
                "estimate": self.beta,
                "se": self.se,
                stat: self.zval,
                "df": np.full(self.p, self.dfs),
                "pval": self.pval,
                "ci_lb": self.ci_lb,
                "ci_ub": self.ci_ub,
            },
            index=pd.Index(list(self.names), name="coefficient"),
        )
        if not self.uses_t:
            frame = frame.drop(columns="df")
        return frame
