"""Duval and Tweedie's trim-and-fill method (metafor's ``trimfill.rma.uni``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from evidence.errors import ModelError
from evidence.stats._bias_common import Renders, readonly, require_int_only
from evidence.stats._format import fcf, fmt_pval
from evidence.stats._rma_result import RMAResult
from evidence.stats.rma import rma

__all__ = ["trimfill", "TrimfillResult"]


@dataclass(frozen=True, repr=False)
class TrimfillResult(Renders):
    """The trim-and-fill estimate of missing studies and the model with them filled in.

    Attributes
    ----------
    k0, se_k0
        Estimated number of missing studies and its standard error (NaN when the variance
        formula of L0 turns negative, as metafor).
    side
        Side of the funnel on which studies are missing (``"left"`` or ``"right"``).
    estimator
        ``"L0"`` or ``"R0"``.
    p_k0
        R0's test of "no missing studies" (NaN for L0).
    fit
        The model fitted to the observed and filled effects (the original fit when k0 = 0).
    yi, vi, fill
        Effects and variances of ``fit`` and which of them are filled in (drawn hollow in
        the funnel plot).
    original
        The model the method started from.
    """

    k0: int
    se_k0: float
    side: str
    estimator: str
    p_k0: float
    fit: RMAResult
    yi: np.ndarray
    vi: np.ndarray
    fill: np.ndarray
    original: RMAResult
    iterations: int

    @property
    def yi_fill(self) -> np.ndarray:
        return self.yi[self.fill]

    @property
    def vi_fill(self) -> np.ndarray:
        return self.vi[self.fill]

    def __str__(self) -> str:
        se = fcf(self.se_k0, 4)
        out = [
            "",
            f"Estimated number of missing studies on the {self.side} side: {self.k0} (SE = {se})",
        ]
        if self.estimator == "R0":
            out.append(
                f"Test of H0: no missing studies on the {self.side} side:      "
                f"p-val {fmt_pval(self.p_k0, 4, showeq=True, sep=' ')}"
            )
        return "\n".join(out) + "\n" + str(self.fit)

    def __repr__(self) -> str:
        return (
            f"TrimfillResult(k0={self.k0}, side={self.side!r}, estimator={self.estimator!r}, "
            f"beta={float(self.fit.beta[0]):.6g})"
        )

    def to_frame(self):
        """One row per effect of the filled model: ``yi, vi, sei, fill``."""
        import pandas as pd

        return pd.DataFrame(
            {"yi": self.yi, "vi": self.vi, "sei": np.sqrt(self.vi), "fill": self.fill}
        )


def _fit(yi: np.ndarray, vi: np.ndarray, wi: np.ndarray | None, method: str, **kw: Any):
    return rma(yi, vi, weights=wi, method=method, **kw)


def trimfill(
    fit: RMAResult,
    side: str | None = None,
    estimator: str = "L0",
    *,
    maxiter: int = 100,
    ilim: tuple[float, float] | None = None,
) -> TrimfillResult:
    """Trim and fill (Duval & Tweedie, 2000) from an intercept-only fit.

    Parameters
    ----------
    fit
        A fitted :func:`evidence.stats.rma` model without moderators.
    side
        ``"left"`` or ``"right"``; by default chosen as metafor does: from the sign of the
        slope of the meta-regression of ``yi`` on ``sqrt(vi)`` (a negative slope puts the
        missing studies on the right).
    estimator
        ``"L0"`` or ``"R0"``.
    maxiter
        Maximum number of trim-and-fill iterations.
    ilim
        Limits for the filled effects (values outside are set to the limits).

    Notes
    -----
    Effects are flipped so the missing ones lie on the left, sorted, and the following is
    repeated until k0 settles: the k - k0 smallest... largest effects are pooled (the fit's
    method), ranks r_i of |y_i - beta| get the sign of the deviation, and
    ``L0 = (4 S_r - k(k+1)) / (2k - 1)`` (S_r the sum of positive signed ranks) or
    ``R0 = k - h - 1`` (h the largest negative signed rank in absolute value), rounded and
    at least 0. The k0 most extreme effects are mirrored about the last pooled estimate and
    the model is refitted to observed and filled effects with the fit's method (z test,
    95% level, as metafor). SE of L0 from its variance (Duval & Tweedie, 2000, eq. 6);
    ``se(R0) = sqrt(2 k0 + 2)``; R0's p value ``0.5^(k0 + 1)``.
    """
    require_int_only(fit, "Trim-and-fill")
    if estimator not in ("L0", "R0"):
        raise ModelError(f"Unknown estimator '{estimator}'; use 'L0' or 'R0'.")
    y0 = np.asarray(fit.yi, dtype=float)
    v0 = np.asarray(fit.vi, dtype=float)
    w0 = None if fit.user_weights is None else np.asarray(fit.user_weights, dtype=float)
    if side is None:
        try:
            slope = _fit(y0, v0, w0, fit.method, mods=np.sqrt(v0))
        except Exception as err:  # noqa: BLE001 - reported with the reason
            raise ModelError(
                "Trim-and-fill could not choose the side: the regression of yi on sqrt(vi) "
                f"failed ({err}); give side='left' or side='right'."
            ) from err
        side = "right" if float(slope.beta[1]) < 0 else "left"
    elif side not in ("left", "right"):
        raise ModelError(f"Argument 'side' must be 'left' or 'right', not '{side}'.")
    sign = -1.0 if side == "right" else 1.0
    yi = sign * y0
    ix = np.argsort(yi, kind="stable")
    yi, vi = yi[ix], v0[ix]
    wi = None if w0 is None else w0[ix]
    k = yi.size
    k0, k0_sav, it = 0, -1, 0
    se_k0 = math.nan
    beta = math.nan
    yi_c = yi
    while k0 != k0_sav:
        k0_sav = k0
        it += 1
        if it > maxiter:
            raise ModelError(f"Trim-and-fill did not converge in {maxiter} iterations.")
        keep = slice(0, k - k0)
        res = _fit(yi[keep], vi[keep], None if wi is None else wi[keep], fit.method)
        beta = float(res.beta[0])
        yi_c = yi - beta
        ranks = np.empty(k)
        ranks[np.argsort(np.abs(yi_c), kind="stable")] = np.arange(1, k + 1)
        signed = np.sign(yi_c) * ranks
        if estimator == "R0":
            neg = signed[signed < 0]
            if neg.size == 0:
                raise ModelError(
                    "Trim-and-fill (R0) found no effect below the pooled estimate; "
                    "try estimator='L0' or the other side."
                )
            k0f = (k - float(np.max(-neg))) - 1
            se_k0 = math.sqrt(2 * max(0.0, k0f) + 2)
        else:
            Sr = float(np.sum(signed[signed > 0]))
            k0f = (4 * Sr - k * (k + 1)) / (2 * k - 1)
            var_sr = (
                k * (k + 1) * (2 * k + 1)
                + 10 * k0f**3
                + 27 * k0f**2
                + 17 * k0f
                - 18 * k * k0f**2
                - 18 * k * k0f
                + 6 * k**2 * k0f
            ) / 24
            se_k0 = 4 * math.sqrt(var_sr) / (2 * k - 1) if var_sr >= 0 else math.nan
        k0 = max(0, int(_r_round(k0f)))
        se_k0 = max(0.0, se_k0) if not math.isnan(se_k0) else math.nan
        if k0 >= k:
            raise ModelError("Trim-and-fill estimated as many missing studies as there are.")

    if k0 > 0:
        yi_c = -(yi_c - beta) if side == "right" else yi_c - beta
        yfill = -yi_c[k - k0 :]
        if ilim is not None:
            lo, hi = sorted(float(x) for x in ilim)
            yfill = np.clip(yfill, lo, hi)
        y_all = np.concatenate([y0, yfill])
        v_all = np.concatenate([v0, vi[k - k0 :]])
        w_all = None if wi is None else np.concatenate([w0, wi[k - k0 :]])
        new = _fit(y_all, v_all, w_all, fit.method)
        fill = np.concatenate([np.zeros(k, bool), np.ones(k0, bool)])
    else:
        new, y_all, v_all, fill = fit, y0, v0, np.zeros(k, bool)
    p_k0 = 0.5 ** (k0 + 1) if estimator == "R0" else math.nan
    return TrimfillResult(
        k0=int(k0),
        se_k0=float(se_k0),
        side=side,
        estimator=estimator,
        p_k0=float(p_k0),
        fit=new,
        yi=readonly(y_all),
        vi=readonly(v_all),
        fill=readonly(fill, bool),
        original=fit,
        iterations=it,
    )


def _r_round(x: float) -> float:
    """R's round(): halves to even (IEC 60559)."""
    return float(np.round(x))
