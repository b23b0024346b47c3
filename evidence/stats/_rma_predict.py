"""Predicted (pooled or fitted) values with confidence and prediction intervals."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats as sps

from evidence.errors import ModelError
from evidence.stats._format import fcf, format_frame
from evidence.stats._rma_result import json_safe, readonly

if TYPE_CHECKING:
    from evidence.stats._rma_result import RMAResult

__all__ = ["PredictResult", "predict"]


@dataclass(frozen=True, repr=False)
class PredictResult:
    """Predicted values: ``pred, se, ci_lb, ci_ub, pi_lb, pi_ub`` (metafor's ``predict.rma``).

    ``pi_lb``/``pi_ub`` are NaN for equal-effects models (metafor gives none); ``ddf`` the
    degrees of freedom of t-based intervals (NaN under z); ``X`` the rows predicted at.
    """

    pred: np.ndarray
    se: np.ndarray
    ci_lb: np.ndarray
    ci_ub: np.ndarray
    pi_lb: np.ndarray
    pi_ub: np.ndarray
    ddf: float
    level: float
    X: np.ndarray
    names: tuple[str, ...]
    method: str

    def __str__(self) -> str:
        header = ["pred", "se", "ci.lb", "ci.ub"]
        has_pi = self.method not in ("EE", "FE", "CE")
        if has_pi:
            header += ["pi.lb", "pi.ub"]
        rows = []
        for i in range(self.pred.shape[0]):
            row = [fcf(self.pred[i], 4), fcf(self.se[i], 4), fcf(self.ci_lb[i], 4)]
            row.append(fcf(self.ci_ub[i], 4))
            if has_pi:
                row += [fcf(self.pi_lb[i], 4), fcf(self.pi_ub[i], 4)]
            rows.append(row)
        pooled = self.X.shape == (1, 1)  # the pooled estimate: metafor prints no row name
        names = [""] if pooled else [str(i + 1) for i in range(len(rows))]
        lines = format_frame(header, rows, names, gap=1)
        return "\n" + "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return f"PredictResult(pred={np.array2string(self.pred, precision=6)})"

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "pred": self.pred,
                "se": self.se,
                "ci_lb": self.ci_lb,
                "ci_ub": self.ci_ub,
                "pi_lb": self.pi_lb,
                "pi_ub": self.pi_ub,
                "ddf": self.ddf,
                "level": self.level,
            }
        )

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(
            {
                "pred": self.pred,
                "se": self.se,
                "ci_lb": self.ci_lb,
                "ci_ub": self.ci_ub,
                "pi_lb": self.pi_lb,
                "pi_ub": self.pi_ub,
            }
        )


def _new_rows(res: RMAResult, newmods: Any, intercept: bool | None) -> np.ndarray:
    mod_names = list(res.names[1:] if res.int_incl else res.names)
    q = len(mod_names)
    if isinstance(newmods, Mapping):
        unknown = [n for n in newmods if n not in mod_names]
        if unknown:
            raise ModelError(
                f"Argument 'newmods' names unknown moderators: {', '.join(map(str, unknown))}; "
                f"the model has: {', '.join(mod_names)}."
            )
        missing = [n for n in mod_names if n not in newmods]
        if missing:
            raise ModelError(f"Argument 'newmods' gives no values for: {', '.join(missing)}.")
        cols = [np.atleast_1d(np.asarray(newmods[n], dtype=float)) for n in mod_names]
        n = max(c.shape[0] for c in cols)
        Xn = np.column_stack([np.broadcast_to(c, (n,)) for c in cols])
    elif hasattr(newmods, "columns") and hasattr(newmods, "to_numpy"):
        return _new_rows(res, {str(c): newmods[c].to_numpy() for c in newmods.columns}, intercept)
    else:
        arr = np.asarray(newmods, dtype=float)
        if arr.ndim == 0:
            arr = arr.reshape(1)
        if arr.ndim == 1:
            Xn = arr.reshape(-1, 1) if q == 1 else arr.reshape(1, -1)
        elif arr.ndim == 2:
            Xn = arr
        else:
            raise ModelError("Argument 'newmods' must be a vector, a matrix or a mapping.")
    if res.int_incl:
        icol = np.ones(Xn.shape[0]) if (intercept is None or intercept) else np.zeros(Xn.shape[0])
        Xn = np.column_stack([icol, Xn])
    if Xn.shape[1] != res.p:
        raise ModelError(
            f"Argument 'newmods' has {Xn.shape[1] - int(res.int_incl)} columns but the model "
            f"has {q} moderator(s): {', '.join(mod_names)}."
        )
    return Xn


def predict(
    res: RMAResult,
    newmods: Any = None,
    *,
    intercept: bool | None = None,
    level: float | None = None,
    newvi: float | np.ndarray = 0.0,
) -> PredictResult:
    """Pooled estimate, fitted values, or predictions at new moderator values.

    Parameters
    ----------
    res
        A fitted :func:`~evidence.stats.rma` model.
    newmods
        None: the pooled estimate (intercept-only models) or the fitted values of the k
        effects; otherwise moderator values without the intercept column: a vector (one
        value per row when the model has a single moderator, else one row), a matrix, or a
        mapping ``{moderator name: values}``.
    intercept
        With ``newmods``: include the intercept (default) or set it to 0.
    level
        Confidence level in percent (default the model's).
    newvi
        Sampling variance(s) of a new study added to the prediction interval (default 0).

    Notes
    -----
    ``pred = x'beta``, ``se = sqrt(x' vb x)``; ``ci = pred -/+ crit se`` and
    ``pi = pred -/+ crit sqrt(se^2 + tau2 + newvi)``, with ``crit`` the normal quantile, or
    the t quantile with ``k - p`` df under the t/knha/adhoc tests (metafor's default).
    """
    from evidence.stats.rma import alpha_from_level

    if newmods is not None and res.int_only:
        raise ModelError("Cannot give new moderator values for a model without moderators.")
    if newmods is None:
        Xn = np.ones((1, 1)) if res.int_only else np.asarray(res.X)
    else:
        Xn = _new_rows(res, newmods, intercept)
    alpha = alpha_from_level(res.level if level is None else level)
    pred = Xn @ res.beta
    vpred = np.einsum("ij,jk,ik->i", Xn, res.vb, Xn)
    vpred = np.where(vpred < 0, np.nan, vpred)
    se = np.sqrt(vpred)
    if res.uses_t:
        ddf = float(res.k - res.p)
        crit = float(sps.t.isf(alpha / 2, ddf)) if ddf > 0 else math.nan
    else:
        ddf = math.nan
        crit = float(sps.norm.isf(alpha / 2))
    ci_lb, ci_ub = pred - crit * se, pred + crit * se
    if res.is_ee:
        pi_lb = np.full_like(pred, np.nan)
        pi_ub = np.full_like(pred, np.nan)
    else:
        width = crit * np.sqrt(vpred + res.tau2 + newvi)
        pi_lb, pi_ub = pred - width, pred + width
    return PredictResult(
        pred=readonly(pred),
        se=readonly(se),
        ci_lb=readonly(ci_lb),
        ci_ub=readonly(ci_ub),
        pi_lb=readonly(pi_lb),
        pi_ub=readonly(pi_ub),
        ddf=ddf,
        level=float(100 * (1 - alpha)),
        X=readonly(Xn),
        names=res.names,
        method=res.method,
    )
