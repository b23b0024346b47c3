"""The three-level model in closed form: diagonal V, levels that are whole blocks or rows.

When the sampling covariance is diagonal and every random-effects level is either the
outermost cluster (one group per block) or the single effect size (one group per row), each
block of the marginal covariance is compound symmetric,

.. math::
    M_j = D_j + c\\,\\mathbf{1}\\mathbf{1}', \\quad D_j = \\operatorname{diag}(v_i + e),

with :math:`c` the sum of the block-level and :math:`e` the sum of the row-level variance
components. Sherman-Morrison gives, with :math:`d_i = 1 / (v_i + e)`,
:math:`s_j = \\sum_{i \\in j} d_i` and :math:`f_j = c / (1 + c s_j)`,

.. math::
    M_j^{-1} z = d \\circ z - f_j\\, d\\, (d'z), \\qquad
    \\log|M_j| = \\sum_{i \\in j} \\log(v_i + e) + \\log(1 + c s_j).

Every quantity the likelihood and its derivatives need (traces of products of
:math:`M^{-1}` and the level indicators, quadratic forms, :math:`X'M^{-1}X`) is then a
grouped sum over the rows sorted by block, so one evaluation is a few dozen vector
operations of length k: O(k p^2), with no per-block matrix at all. The general block path
(:mod:`evidence.stats._mv_fit`) gives the same numbers for these models; this one is faster
by the cost of forming and inverting the blocks.
"""

from __future__ import annotations

import numpy as np

from evidence.errors import ModelError

__all__ = ["CompoundBlocks"]


class CompoundBlocks:
    """Rows sorted by block, for the compound-symmetric closed forms.

    Parameters
    ----------
    order
        The row order that makes every block contiguous.
    sizes
        Block sizes (all positive), in block-code order.
    is_block
        Per random-effects level: True for a level equal to the blocks, False for one with
        one group per row.
    vi, X, y
        Sampling variances, design and outcomes in the model's row order.
    """

    def __init__(
        self,
        order: np.ndarray,
        sizes: np.ndarray,
        is_block: np.ndarray,
        vi: np.ndarray,
        X: np.ndarray,
        y: np.ndarray,
    ) -> None:
        self.order = order
        self.sizes = sizes
        self.starts = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.intp)
        self.is_block = np.asarray(is_block, dtype=bool)
        self.v = vi[order]
        self.X = np.ascontiguousarray(X[order])
        self.y = y[order]

    def gsum(self, a: np.ndarray) -> np.ndarray:
        """Per-block sums of the rows of *a* (rows in block order)."""
        return np.add.reduceat(a, self.starts, axis=0)

    def spread(self, a: np.ndarray) -> np.ndarray:
        """A per-block array repeated onto the rows of each block."""
        return np.repeat(a, self.sizes, axis=0)

    def parts(self, sigma2: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """``d = 1/(v + e)``, ``s = sum_j d``, ``f = c/(1 + c s)`` and ``c``.

        Raises
        ------
        np.linalg.LinAlgError
            A diagonal element of M is not positive (as the Cholesky factorisation of the
            general path would).
        """
        c = float(np.sum(sigma2[self.is_block]))
        e = float(np.sum(sigma2[~self.is_block]))
        D = self.v + e
        if np.any(D <= 0.0) or c < 0.0:
            raise np.linalg.LinAlgError("The marginal covariance is not positive definite.")
        d = 1.0 / D
        s = self.gsum(d)
        return d, s, c / (1.0 + c * s), c

    def minv(self, d: np.ndarray, f: np.ndarray, Z: np.ndarray) -> np.ndarray:
        """``M^{-1} Z`` for Z of shape (k,) or (k, m), rows in block order."""
        dZ = d[:, None] * Z if Z.ndim == 2 else d * Z
        corr = self.spread(f[:, None] * self.gsum(dZ) if Z.ndim == 2 else f * self.gsum(dZ))
        return dZ - (d[:, None] * corr if Z.ndim == 2 else d * corr)

    def logdet(self, sigma2: np.ndarray) -> float:
        """``log |M|``."""
        d, s, _, c = self.parts(sigma2)
        return float(-np.log(d).sum() + np.log1p(c * s).sum())


def gls_solve(XtMX: np.ndarray, XtMy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cholesky factor of X'M^-1 X, its (symmetrised) inverse Q and the GLS estimate beta.

    Raises ModelError when X'M^-1 X is not positive definite (X not of full rank).
    """
    try:
        chol = np.linalg.cholesky(XtMX)
    except np.linalg.LinAlgError as err:
        raise ModelError("The model matrix is not of full rank; cannot fit the model.") from err
    Q = np.linalg.inv(XtMX)
    return chol, 0.5 * (Q + Q.T), np.linalg.solve(XtMX, XtMy)


def evaluate_fast(cb: CompoundBlocks, sigma2, reml, derivs, free, logdet_xtx, ev_cls, log2pi):
    """One evaluation of the likelihood (and derivatives) in closed form.

    Returns the same :class:`~evidence.stats._mv_fit.Evaluation` as the block path; see
    :func:`evidence.stats._mv_fit.evaluate` for the quantities and their formulas.
    """
    X, y = cb.X, cb.y
    k, p = X.shape
    d, s, f, c = cb.parts(sigma2)
    den = 1.0 + c * s
    logdet = float(-np.log(d).sum() + np.log1p(c * s).sum())
    A = cb.minv(d, f, X)  # M^-1 X
    XtMX = X.T @ A
    XtMX = 0.5 * (XtMX + XtMX.T)
    XtMy = A.T @ y
    cXtMX, Q, beta = gls_solve(XtMX, XtMy)
    res = y - X @ beta
    r = cb.minv(d, f, res)  # P y
    rss = float(res @ r)
    ll_reml = -0.5 * (
        (k - p) * log2pi - logdet_xtx + logdet + 2.0 * float(np.log(np.diag(cXtMX)).sum()) + rss
    )
    ll_ml = -0.5 * (k * log2pi + logdet + rss)
    ev = ev_cls(ll_reml if reml else ll_ml, ll_ml, ll_reml, beta, Q, rss, logdet)
    if not derivs:
        return ev
    nl = len(sigma2)
    idx = np.arange(nl) if free is None else np.flatnonzero(free)
    kinds = ["J" if cb.is_block[i] else "I" for i in idx]
    # per-block building blocks
    t = s / den  # 1' M_j^-1 1
    d2 = d * d
    q2 = cb.gsum(d2)
    G = cb.gsum(A)  # 1' A_j
    Gd = cb.gsum(d[:, None] * A)  # d' A_j
    gr = cb.gsum(r)  # 1' r_j
    gdr = cb.gsum(d * r)  # d' r_j
    tr_minv = {"J": float(t.sum()), "I": float(d.sum() - np.sum(f * q2))}
    Fm = {"J": G.T @ G, "I": A.T @ A}
    wv = {"J": G.T @ gr, "I": A.T @ r}
    quadv = {"J": float(gr @ gr), "I": float(r @ r)}
    T1v = {
        ("J", "J"): float(np.sum(t * t)),
        ("J", "I"): float(np.sum(q2 / (den * den))),
        ("I", "I"): float(np.sum(q2 - 2.0 * f * cb.gsum(d2 * d) + f * f * q2 * q2)),
    }
    Kv = {
        ("J", "J"): (G * t[:, None]).T @ G,
        ("J", "I"): G.T @ (Gd / den[:, None]),
        ("I", "I"): A.T @ (d[:, None] * A) - (Gd * f[:, None]).T @ Gd,
    }
    Uv = {
        ("J", "J"): float(np.sum(gr * gr * t)),
        ("J", "I"): float(np.sum(gr * gdr / den)),
        ("I", "I"): float(r @ (d * r) - np.sum(f * gdr * gdr)),
    }

    def pair(table, a, b):
        if (a, b) in table:
            return table[(a, b)]
        val = table[(b, a)]
        return val.T if isinstance(val, np.ndarray) else val

    m = idx.size
    tr = np.array([tr_minv[a] for a in kinds])
    F = np.array([Fm[a] for a in kinds]).reshape(m, p, p)
    w = np.array([wv[a] for a in kinds]).reshape(m, p)
    quad = np.array([quadv[a] for a in kinds])
    T1 = np.empty((m, m))
    T2 = np.empty((m, m))
    U = np.empty((m, m))
    for i, a in enumerate(kinds):
        for j, b in enumerate(kinds):
            T1[i, j] = pair(T1v, a, b)
            T2[i, j] = float(np.sum(Q * pair(Kv, a, b).T))
            U[i, j] = pair(Uv, a, b)
    return set_derivatives(ev, reml, tr, quad, Q, F, T1, T2, U, w)


def set_derivatives(ev, reml, tr, quad, Q, F, T1, T2, U, w):
    """Gradient, expected (Fisher) and observed information of the (restricted) likelihood.

    From the per-level pieces both evaluators compute: ``tr`` = tr(M^-1 S_a), ``quad`` =
    y'P S_a P y, ``F`` = X'M^-1 S_a M^-1 X, ``T1``/``T2``/``U`` the pairwise traces and
    quadratic forms, ``w`` = X'M^-1 S_a M^-1 y, ``Q`` = (X'M^-1 X)^-1. REML subtracts the
    fixed effects' share (``P`` instead of ``M^-1``).
    """
    yPSPSPy = U - w @ Q @ w.T  # y'P S_a P S_b P y = u_a'M^-1 u_b - w_a' Q w_b
    if reml:
        trP = tr - np.einsum("pq,aqp->a", Q, F)
        QF = np.einsum("pq,aqr->apr", Q, F)
        T = T1 - 2.0 * T2 + np.einsum("apq,bqp->ab", QF, QF)
        grad = -0.5 * trP + 0.5 * quad
    else:
        T = T1
        grad = -0.5 * tr + 0.5 * quad
    ev.grad = grad
    ev.fisher = 0.5 * T
    ev.info = yPSPSPy - 0.5 * T
    return ev
