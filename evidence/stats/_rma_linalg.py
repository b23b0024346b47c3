"""Weighted least squares in O(k p^2) and R's bracketing root finder.

metafor forms the k x k matrix ``P = W - W X (X'WX)^-1 X'W`` to compute the quadratic forms
and traces its estimators need. Every such quantity is available from the thin QR
decomposition ``W^(1/2) X = Q R`` (Q is k x p): with ``h_i = ||Q_i||^2`` (leverages) and
``u = (I - QQ') W^(1/2) y``,

* ``y'Py = u'u`` and ``P y = W^(1/2) u``;
* ``tr(P D) = sum(w d (1 - h))`` for a diagonal ``D = diag(d)``;
* ``tr(P D1 P D2) = sum(g1 g2) - 2 sum(g1 g2 h) + tr(Q'G1Q Q'G2Q)`` with ``G = diag(w d)``;
* ``(X'WX)^-1 = R^-1 R^-T`` and ``log det(X'WX) = 2 sum log |R_jj|``.

No k x k matrix is ever formed, so the cost is O(k p^2) per evaluation.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import linalg

__all__ = ["WLS", "zeroin", "ZeroinResult"]

_EPS = sys.float_info.epsilon


class WLS:
    """The weighted least-squares fit of ``y`` on ``X`` with diagonal weights ``w``.

    Parameters
    ----------
    X
        The k x p design matrix (full column rank).
    w
        The k positive weights (the diagonal of W).
    """

    def __init__(self, X: np.ndarray, w: np.ndarray) -> None:
        self.X = X
        self.w = w
        self.sw = np.sqrt(w)
        Xs = X * self.sw[:, None]
        if X.shape[1] == 1 and np.all(X[:, 0] == 1.0):
            # intercept only: closed forms, no factorisation needed
            norm = math.sqrt(float(np.sum(w)))
            self.Q = (self.sw / norm)[:, None]
            self.R = np.array([[norm]])
        else:
            self.Q, self.R = np.linalg.qr(Xs, mode="reduced")
        self.h = np.einsum("ij,ij->i", self.Q, self.Q)

    # -- coefficients --------------------------------------------------------------------
    def beta(self, y: np.ndarray) -> np.ndarray:
        """``(X'WX)^-1 X'W y``."""
        return linalg.solve_triangular(self.R, self.Q.T @ (self.sw * y))

    def cov(self) -> np.ndarray:
        """``(X'WX)^-1``."""
        p = self.R.shape[0]
        Rinv = linalg.solve_triangular(self.R, np.eye(p))
        return Rinv @ Rinv.T

    def logdet(self) -> float:
        """``log det(X'WX)``."""
        return float(2.0 * np.sum(np.log(np.abs(np.diag(self.R)))))

    # -- quadratic forms -----------------------------------------------------------------
    def u(self, y: np.ndarray) -> np.ndarray:
        """``(I - QQ') W^(1/2) y``, so that ``y'Py = u'u`` and ``Py = W^(1/2) u``."""
        sy = self.sw * y
        return sy - self.Q @ (self.Q.T @ sy)

    def yPy(self, y: np.ndarray) -> float:
        u = self.u(y)
        return float(u @ u)

    def yPPy(self, y: np.ndarray) -> float:
        u = self.u(y)
        return float(np.sum(self.w * u * u))

    # -- traces ----------------------------------------------------------------------------
    def tr_PD(self, d: np.ndarray | float = 1.0) -> float:
        """``tr(P diag(d))``."""
        return float(np.sum(self.w * d * (1.0 - self.h)))

    def _QGQ(self, g: np.ndarray) -> np.ndarray:
        return self.Q.T @ (self.Q * g[:, None])

    def tr_PDPD(self, d1: np.ndarray | float = 1.0, d2: np.ndarray | float = 1.0) -> float:
        """``tr(P diag(d1) P diag(d2))``; with ``d1 = d2 = 1`` this is ``sum(P * P)``."""
        k = self.w.shape[0]
        g1 = np.broadcast_to(self.w * d1, (k,))
        g2 = np.broadcast_to(self.w * d2, (k,))
        gg = g1 * g2
        A1 = self._QGQ(np.asarray(g1))
        A2 = A1 if d1 is d2 else self._QGQ(np.asarray(g2))
        return float(np.sum(gg) - 2.0 * np.sum(gg * self.h) + np.sum(A1 * A2.T))


@dataclass(frozen=True)
class ZeroinResult:
    root: float
    iterations: int
    converged: bool
    estim_prec: float


def zeroin(
    f: Callable[[float], float],
    lower: float,
    upper: float,
    *,
    f_lower: float | None = None,
    f_upper: float | None = None,
    tol: float = _EPS**0.25,
    maxiter: int = 1000,
) -> ZeroinResult:
    """Brent's bracketing root finder, step for step as R's ``uniroot()``.

    Parameters
    ----------
    f
        A continuous function with ``f(lower)`` and ``f(upper)`` of opposite signs.
    lower, upper
        The bracketing interval.
    f_lower, f_upper
        Known function values at the ends (evaluated when not given).
    tol
        R's ``tol`` (default ``.Machine$double.eps^0.25``, as ``uniroot``).
    maxiter
        Maximum number of iterations.

    Notes
    -----
    Brent (1973), *Algorithms for Minimization without Derivatives*, ch. 4; the variant is the
    one R's ``stats::uniroot`` uses (``R_zeroin2``), so the roots (and hence metafor's PM,
    PMM and Q-profile bounds, which stop at R's default tolerance) agree to the last digits.
    """
    a, b = float(lower), float(upper)
    fa = f(a) if f_lower is None else float(f_lower)
    fb = f(b) if f_upper is None else float(f_upper)
    if fa * fb > 0:
        raise ValueError("f() values at end points not of opposite sign")
    c, fc = a, fa
    if fa == 0.0:
        return ZeroinResult(a, 0, True, 0.0)
    if fb == 0.0:
        return ZeroinResult(b, 0, True, 0.0)
    remaining = maxiter + 1
    while remaining > 0:
        remaining -= 1
        prev_step = b - a
        if abs(fc) < abs(fb):
            a, b, c = b, c, b
            fa, fb, fc = fb, fc, fb
        tol_act = 2.0 * _EPS * abs(b) + tol / 2.0
        new_step = (c - b) / 2.0
        if abs(new_step) <= tol_act or fb == 0.0:
            return ZeroinResult(b, maxiter - remaining, True, abs(c - b))
        if abs(prev_step) >= tol_act and abs(fa) > abs(fb):
            cb = c - b
            if a == c:
                t1 = fb / fa
                p = cb * t1
                q = 1.0 - t1
            else:
                q = fa / fc
                t1 = fb / fc
                t2 = fb / fa
                p = t2 * (cb * q * (q - t1) - (b - a) * (t1 - 1.0))
                q = (q - 1.0) * (t1 - 1.0) * (t2 - 1.0)
            if p > 0.0:
                q = -q
            else:
                p = -p
            if p < (0.75 * cb * q - abs(tol_act * q) / 2.0) and p < abs(prev_step * q / 2.0):
                new_step = p / q
        if abs(new_step) < tol_act:
            new_step = tol_act if new_step > 0.0 else -tol_act
        a, fa = b, fb
        b += new_step
        fb = f(b)
        if (fb > 0 and fc > 0) or (fb < 0 and fc < 0):
            c, fc = a, fa
    return ZeroinResult(b, -1, False, abs(c - b))
