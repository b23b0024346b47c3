"""Small-sample Wald tests for CR2 cluster-robust inference (clubSandwich's HTZ).

Under the working model :math:`y \\sim N(X\\beta, \\Phi)` with weights
:math:`W = \\Phi^{-1}`, the CR2 estimate of :math:`C V C'` is
:math:`\\sum_j z_j z_j'` with :math:`z_j = C\\,T_j (I-H)_j y`. The covariance of the
:math:`z_j` is :math:`\\delta_{ij} \\tilde S_j - \\tilde H_i \\tilde H_j'` with
:math:`\\tilde S_j = C G_j G_j' C'` and :math:`\\tilde H_j = C\\,V_{\\beta} E_j X_j L`
(:math:`LL' = V_\\beta`), clubSandwich's ``get_GH`` / ``get_P_array``. Every double sum over
clusters that clubSandwich forms as a J x J array collapses to per-cluster sums and one
:math:`q \\times p \\times q \\times p` tensor, so the cost is linear in the number of
clusters.

References
----------
Tipton, E., & Pustejovsky, J. E. (2015). Small-sample adjustments for tests of moderators
and model fit using robust variance estimation in meta-regression. Journal of Educational
and Behavioral Statistics, 40(6), 604-634.
Pustejovsky, J. E., & Tipton, E. (2018). Small-sample methods for cluster-robust variance
estimation and hypothesis testing in fixed effects models. JBES, 36(4), 672-683.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _st

from evidence.errors import ModelError

__all__ = ["wald_test", "WaldTest", "satterthwaite_df", "htz_df"]


@dataclass(frozen=True)
class WaldTest:
    """Result of a Hotelling-T² approximation (HTZ) test of q linear constraints."""

    test: str
    Fstat: float
    delta: float
    df_num: int
    df_denom: float
    p_val: float
    Q: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "test": self.test,
            "Fstat": self.Fstat,
            "delta": self.delta,
            "df_num": self.df_num,
            "df_denom": self.df_denom,
            "p_val": self.p_val,
        }

    def __str__(self) -> str:
        p = "< 0.001" if self.p_val < 0.001 else f"{self.p_val:.5f}"
        return (
            f" test  F  d.f.  p.val\n {self.test}  {self.Fstat:.4g}  "
            f"{self.df_num} {self.df_denom:.3g}  {p}\n"
        )


def _matrix_power_sym(A: np.ndarray, power: float) -> np.ndarray:
    w, U = np.linalg.eigh(A)
    wp = np.where(w > 1e-12, np.abs(w) ** power, 0.0)
    return (U * wp) @ U.T


def htz_df(C: np.ndarray, S: np.ndarray, H: np.ndarray) -> float:
    """The HTZ degrees of freedom nu of the constraints C (q x p).

    Parameters
    ----------
    C
        Constraint matrix (q x p).
    S
        Per-cluster :math:`G_j G_j'` (J x p x p).
    H
        Per-cluster :math:`H_j` (J x p x p).

    Notes
    -----
    :math:`\\Omega = \\sum_j (\\tilde S_j - \\tilde H_j \\tilde H_j')`; with
    :math:`B = \\Omega^{-1/2} P\\, \\Omega^{-1/2}`,
    :math:`\\nu = q(q+1) / \\sum_{s,t} [\\sum_{ij} B_{st,ij}B_{ts,ij} +
    \\sum_{ij} B_{ss,ij} B_{tt,ij}]` (clubSandwich's ``total_variance_mat``).
    """
    q = C.shape[0]
    St = np.einsum("sp,jpr,tr->jst", C, S, C)
    Ht = np.einsum("sp,jpr->jsr", C, H)
    hh = np.einsum("jsx,jtx->jst", Ht, Ht)
    Omega = St.sum(axis=0) - hh.sum(axis=0)
    On = _matrix_power_sym(0.5 * (Omega + Omega.T), -0.5)
    Sb = np.einsum("as,jst,bt->jab", On, St, On)
    Hb = np.einsum("as,jsx->jax", On, Ht)
    hb = np.einsum("jax,jbx->jab", Hb, Hb)
    K = np.einsum("jax,jcy->axcy", Hb, Hb)
    T = (
        np.einsum("jab,jcd->abcd", Sb, Sb)
        - np.einsum("jab,jcd->abcd", Sb, hb)
        - np.einsum("jab,jcd->abcd", hb, Sb)
        + np.einsum("axcy,bxdy->abcd", K, K)
    )
    var = np.empty((q, q))
    for s in range(q):
        for t in range(q):
            var[s, t] = T[s, t, t, s] + T[s, s, t, t]
    return float(q * (q + 1) / var.sum())


def satterthwaite_df(S: np.ndarray, H: np.ndarray) -> np.ndarray:
    """Satterthwaite degrees of freedom of each coefficient (clubSandwich's coef_test)."""
    p = S.shape[1]
    eye = np.eye(p)
    return np.array([htz_df(eye[[c]], S, H) for c in range(p)])


def _constraints(constraints: Any, p: int, names: tuple[str, ...]) -> np.ndarray:
    arr = np.asarray(constraints)
    if arr.ndim == 2:
        C = arr.astype(float)
        if C.shape[1] != p:
            raise ModelError(f"The constraint matrix needs {p} columns, one per coefficient.")
        return C
    idx = []
    for c in np.atleast_1d(arr).tolist():
        if isinstance(c, str):
            if c not in names:
                raise ModelError(f"Unknown coefficient '{c}' in 'constraints'.")
            idx.append(names.index(c))
        else:
            if not 0 <= int(c) < p:
                raise ModelError(f"Coefficient index {c} in 'constraints' is out of range.")
            idx.append(int(c))
    if not idx:
        raise ModelError("Argument 'constraints' names no coefficient.")
    return np.eye(p)[idx]


def wald_test(robust_fit: Any, constraints: Any) -> WaldTest:
    """HTZ Wald test that C beta = 0 under CR2 inference (clubSandwich's ``Wald_test``).

    Parameters
    ----------
    robust_fit
        The result of ``robust(fit, cluster, clubSandwich=True)``.
    constraints
        0-based coefficient indices or names (each constrained to zero, as
        ``constrain_zero``), or a q x p constraint matrix.

    Returns
    -------
    WaldTest

    Notes
    -----
    :math:`Q = (C\\hat\\beta)'(C V^{CR2} C')^{-1} C\\hat\\beta`,
    :math:`F = \\frac{\\nu - q + 1}{\\nu q} Q \\sim F(q, \\nu - q + 1)`.
    """
    rb = getattr(robust_fit, "_robust", None)
    if rb is None or rb.get("S") is None:
        raise ModelError(
            "wald_test needs a fit from robust(..., clubSandwich=True) (CR2 inference)."
        )
    C = _constraints(constraints, robust_fit.p, robust_fit.names)
    q = C.shape[0]
    b = C @ robust_fit.beta
    Q = float(b @ np.linalg.solve(C @ robust_fit.vb @ C.T, b))
    nu = htz_df(C, rb["S"], rb["H"])
    delta = max((nu - q + 1) / nu, 0.0)
    df = nu - q + 1
    F = delta * Q / q
    p = float(_st.f.sf(F, q, df)) if df > 0 else float("nan")
    return WaldTest("HTZ", float(F), float(delta), int(q), float(df), p, Q)
