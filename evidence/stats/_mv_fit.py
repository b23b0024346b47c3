"""(Restricted) maximum likelihood for nested random intercepts, block by block.

For variance components :math:`\\sigma^2` the marginal covariance is
:math:`M = V + \\sum_l \\sigma^2_l S_l` (block diagonal). With :math:`Q = (X'M^{-1}X)^{-1}`
and :math:`P = M^{-1} - M^{-1} X Q X' M^{-1}` the profiled log-likelihoods are

.. math::
    \\ell_{ML} = -\\tfrac12 [k \\log 2\\pi + \\log|M| + y'Py]

    \\ell_{REML} = -\\tfrac12 [(k-p) \\log 2\\pi - \\log|X'X| + \\log|M| + \\log|X'M^{-1}X|
    + y'Py]

(metafor's ``.ll.rma.mv`` with ``REMLf = TRUE``). Gradient and observed information:

.. math::
    g_a = -\\tfrac12 \\operatorname{tr}(P_* S_a) + \\tfrac12 y'PS_aPy, \\quad
    I_{ab} = y'PS_aPS_bPy - \\tfrac12 \\operatorname{tr}(P_* S_a P_* S_b)

with :math:`P_* = P` (REML) or :math:`M^{-1}` (ML). Each trace is a sum of per-block terms
and a few p x p products (Harville 1977; Searle, Casella & McCulloch 1992, ch. 6), so one
evaluation costs O(sum of n_j^3). Newton-Raphson with the observed information (Fisher
scoring where it is not positive definite), step halving, and components held at zero
when the likelihood decreases towards the boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from evidence.errors import ConvergenceError, ModelError
from evidence.stats._mv_blocks import Blocks
from evidence.stats._mv_fast import evaluate_fast, gls_solve, set_derivatives

LOG2PI = math.log(2.0 * math.pi)


@dataclass
class Evaluation:
    """Everything one pass over the blocks gives at fixed variance components."""

    ll: float
    ll_ml: float
    ll_reml: float
    beta: np.ndarray
    vb: np.ndarray
    rss: float
    logdet: float
    grad: np.ndarray | None = None
    info: np.ndarray | None = None  # observed information
    fisher: np.ndarray | None = None  # expected information
    minv: list[np.ndarray] | None = None
    resid: list[np.ndarray] | None = None


def build_m(g, sigma2: np.ndarray) -> np.ndarray:
    """The marginal covariance stack of one size group."""
    M = g.V.copy()
    for lev, s2 in zip(g.levels, sigma2, strict=True):
        lev.add_to(M, float(s2))
    return M


def minv_logdet(g, sigma2: np.ndarray) -> tuple[np.ndarray, float]:
    """Inverse and log-determinant of every block of M in one size group.

    With diagonal sampling variances and levels that are either the whole block or single
    effect sizes, :math:`M_j = D_j + c\\,\\mathbf{1}\\mathbf{1}'` and Sherman-Morrison gives
    :math:`M_j^{-1} = D_j^{-1} - \frac{c}{1 + c\\,\\mathbf{1}'D_j^{-1}\\mathbf{1}}
    D_j^{-1}\\mathbf{1}\\mathbf{1}'D_j^{-1}` and
    :math:`\\log|M_j| = \\sum \\log d_{ji} + \\log(1 + c\\,\\mathbf{1}'D_j^{-1}\\mathbf{1})`;
    otherwise a batched Cholesky factorisation.

    Raises
    ------
    np.linalg.LinAlgError
        A block is not positive definite.
    """
    if g.V_diag is not None and all(lev.kind in ("ones", "eye") for lev in g.levels):
        d = g.V_diag.copy()
        c = 0.0
        for lev, s2 in zip(g.levels, sigma2, strict=True):
            if lev.kind == "eye":
                d += float(s2)
            else:
                c += float(s2)
        if np.all(d > 0):
            dinv = 1.0 / d
            sdi = dinv.sum(axis=1)
            f = c / (1.0 + c * sdi)
            Minv = -f[:, None, None] * dinv[:, :, None] * dinv[:, None, :]
            n = d.shape[1]
            Minv[:, np.arange(n), np.arange(n)] += dinv
            return Minv, float(np.log(d).sum() + np.log1p(c * sdi).sum())
    M = build_m(g, sigma2)
    L = np.linalg.cholesky(M)
    logdet = 2.0 * float(np.log(np.diagonal(L, axis1=1, axis2=2)).sum())
    return np.linalg.inv(M), logdet


def evaluate(
    blocks: Blocks,
    sigma2: np.ndarray,
    reml: bool,
    *,
    derivs: bool = False,
    free: np.ndarray | None = None,
    keep: bool = False,
) -> Evaluation:
    """Log-likelihood (and derivatives for the *free* components) at *sigma2*.

    Raises
    ------
    np.linalg.LinAlgError
        A block of M is not positive definite.
    """
    if blocks.fast is not None and not keep:
        return evaluate_fast(
            blocks.fast, np.asarray(sigma2, dtype=float), reml, derivs, free,
            blocks.logdet_xtx, Evaluation, LOG2PI,
        )  # fmt: skip
    p, k = blocks.p, blocks.k
    logdet = 0.0
    XtMX = np.zeros((p, p))
    XtMy = np.zeros(p)
    minvs, MXs = [], []
    for g in blocks.groups:
        Minv, ld = minv_logdet(g, sigma2)
        logdet += ld
        MX = Minv @ g.X
        XtMX += np.einsum("bip,biq->pq", g.X, MX)
        XtMy += np.einsum("bip,bi->p", MX, g.y)
        minvs.append(Minv)
        MXs.append(MX)
    XtMX = 0.5 * (XtMX + XtMX.T)
    cXtMX, Q, beta = gls_solve(XtMX, XtMy)
    rss = 0.0
    resid, Prs = [], []
    for g, Minv in zip(blocks.groups, minvs, strict=True):
        e = g.y - g.X @ beta
        Pr = np.einsum("bij,bj->bi", Minv, e)
        rss += float(np.sum(e * Pr))
        resid.append(e)
        Prs.append(Pr)
    ldxx = blocks.logdet_xtx
    ll_reml = -0.5 * (
        (k - p) * LOG2PI - ldxx + logdet + 2.0 * float(np.log(np.diag(cXtMX)).sum()) + rss
    )
    ll_ml = -0.5 * (k * LOG2PI + logdet + rss)
    ev = Evaluation(ll_reml if reml else ll_ml, ll_ml, ll_reml, beta, Q, rss, logdet)
    if keep:
        ev.minv = minvs
        ev.resid = resid
    if not derivs:
        return ev
    nl = len(sigma2)
    idx = np.arange(nl) if free is None else np.flatnonzero(free)
    m = idx.size
    tr_minv = np.zeros(m)
    F = np.zeros((m, p, p))  # X'Minv S_a Minv X
    w = np.zeros((m, p))  # X'Minv S_a P y
    quad = np.zeros(m)  # y'P S_a P y
    T1 = np.zeros((m, m))  # tr(Minv S_a Minv S_b)
    T2 = np.zeros((m, m))  # tr(Q X'Minv S_a Minv S_b Minv X)
    U = np.zeros((m, m))  # u_a' Minv u_b, u_a = S_a P y
    for g, Minv, MX, Pr in zip(blocks.groups, minvs, MXs, Prs, strict=True):
        levs = [g.levels[i] for i in idx]
        A = [lev.right(Minv) for lev in levs]  # Minv S_a
        SMX = [lev.left(MX) for lev in levs]  # S_a Minv X
        u = [lev.left(Pr) for lev in levs]  # S_a P y
        for a in range(m):
            tr_minv[a] += levs[a].trace_with(Minv)
            F[a] += np.einsum("bip,biq->pq", MX, SMX[a])
            w[a] += np.einsum("bip,bi->p", MX, u[a])
            quad[a] += float(np.sum(Pr * u[a]))
            Mu_a = np.einsum("bij,bj->bi", Minv, u[a])
            MSMX_a = Minv @ SMX[a]
            for b in range(a, m):
                T1[a, b] += float(np.einsum("bij,bji->", A[a], A[b]))
                T2[a, b] += float(np.einsum("bip,biq,pq->", MSMX_a, SMX[b], Q))
                U[a, b] += float(np.sum(Mu_a * u[b]))
    for a in range(m):
        for b in range(a):
            T1[a, b], T2[a, b], U[a, b] = T1[b, a], T2[b, a], U[b, a]
    return set_derivatives(ev, reml, tr_minv, quad, Q, F, T1, T2, U, w)


@dataclass
class FitResult:
    sigma2: np.ndarray
    ev: Evaluation
    converged: bool
    iterations: int


def optimise(
    blocks: Blocks,
    reml: bool,
    init: np.ndarray,
    fixed: np.ndarray,
    *,
    tol: float = 1e-10,
    maxiter: int = 200,
) -> FitResult:
    """Maximise the (restricted) log-likelihood over the free components (>= 0).

    ``fixed`` holds NaN for free components and the value for fixed ones.
    """
    free_all = np.isnan(fixed)
    s = np.where(free_all, np.maximum(init, 0.0), fixed).astype(float)
    try:
        ev = evaluate(blocks, s, reml, derivs=True, free=free_all)
    except np.linalg.LinAlgError as err:
        raise ModelError(
            "The marginal covariance matrix is not positive definite at the starting values."
        ) from err
    if not free_all.any():
        return FitResult(s, ev, True, 0)
    iterations = 0
    converged = False
    for it in range(1, maxiter + 1):
        iterations = it
        fidx = np.flatnonzero(free_all)
        g = ev.grad
        # hold components at zero when the likelihood decreases into the interior
        active = ~((s[fidx] <= 0.0) & (g <= 0.0))
        if not active.any():
            converged = True
            break
        H = ev.info[np.ix_(active, active)]
        ga = g[active]
        step = None
        try:
            np.linalg.cholesky(H)
            step = np.linalg.solve(H, ga)
        except np.linalg.LinAlgError:
            step = None
        if step is None:
            Fm = ev.fisher[np.ix_(active, active)]
            step = np.linalg.lstsq(Fm, ga, rcond=None)[0]
        full = np.zeros(fidx.size)
        full[active] = step
        lam = 1.0
        improved = False
        for _ in range(60):
            cand = s.copy()
            cand[fidx] = np.maximum(s[fidx] + lam * full, 0.0)
            try:
                ev_new = evaluate(blocks, cand, reml, derivs=True, free=free_all)
            except np.linalg.LinAlgError:
                lam *= 0.5
                continue
            if ev_new.ll >= ev.ll - 1e-12 * abs(ev.ll):
                improved = True
                break
            lam *= 0.5
        if not improved:
            break
        change = np.max(np.abs(cand[fidx] - s[fidx]) / (1.0 + np.abs(s[fidx])))
        dll = abs(ev_new.ll - ev.ll)
        s, ev = cand, ev_new
        if change < tol and dll < 1e-12 * (1.0 + abs(ev.ll)):
            converged = True
            break
    if not converged:
        # a final check: a stationary point (or a boundary optimum) is a converged fit
        g = ev.grad
        sf = s[free_all]
        ok = np.all((np.abs(g) < 1e-8 * (1.0 + abs(ev.ll))) | ((sf <= 0.0) & (g <= 0.0)))
        converged = bool(ok)
    if not converged:
        raise ConvergenceError(
            f"The {'REML' if reml else 'ML'} estimation of the variance components did not "
            f"converge in {iterations} iterations; check the data or fix a component."
        )
    return FitResult(s, ev, converged, iterations)
