"""Cluster-robust inference for multilevel models (metafor's ``robust``; clubSandwich's CR2).

Both estimators run cluster by cluster: the residuals and the model's blocks are grouped by
cluster and all sums are per-cluster sums, so the cost is linear in the number of effect
sizes.
"""

from __future__ import annotations

import warnings as _warnings
from typing import Any

import numpy as np
from scipy import stats as _st

from evidence.errors import ModelError
from evidence.stats._mv_blocks import Blocks
from evidence.stats._mv_fit import build_m, minv_logdet
from evidence.stats.covariance import factorize
from evidence.stats.rma_mv import RmaMvResult, with_inference
from evidence.stats.wald import htz_df

__all__ = ["robust"]


def _cluster_codes(fit: RmaMvResult, cluster: Any) -> np.ndarray:
    model = fit._model
    arr = np.asarray(cluster)
    n_in = model.data_index.size
    if arr.ndim != 1:
        raise ModelError("Argument 'cluster' must be one-dimensional.")
    if arr.size != fit.k:
        if arr.size > fit.k and arr.size >= int(model.data_index.max()) + 1:
            arr = arr[model.data_index]
        else:
            raise ModelError(
                f"Argument 'cluster' has {arr.size} values but the model has {fit.k} "
                f"effect sizes ({n_in} used)."
            )
    codes, _ = factorize(arr, "cluster")
    return codes


def robust(
    fit: RmaMvResult,
    cluster: Any,
    *,
    adjust: bool = True,
    clubSandwich: bool = False,  # noqa: N803
) -> RmaMvResult:
    """Cluster-robust tests and confidence intervals for a multilevel model.

    Parameters
    ----------
    fit
        A result of :func:`rma_mv`.
    cluster
        Cluster (e.g. study) of each effect size.
    adjust
        metafor's small-sample factor n / (n - p) (CR1); ``False`` gives CR0.
    clubSandwich
        Use CR2 with the fitted model as working model, Satterthwaite degrees of freedom per
        coefficient and the HTZ test of the moderators, as ``robust(..., clubSandwich=TRUE)``.

    Returns
    -------
    RmaMvResult
        The fit with robust ``se``, t tests, ``ddf``, QM (F test) and ``robust_type``.

    Notes
    -----
    Default (metafor): :math:`V^{R} = \\frac{n}{n-p} V_\\beta \\left(\\sum_c u_c u_c'\\right)
    V_\\beta` with :math:`u_c = \\sum_{i \\in c} (M^{-1}X)_i' e_i`, t tests on n - p df.

    CR2: :math:`V^{CR2} = V_\\beta \\sum_c X_c' W_c A_c e_c e_c' A_c W_c X_c V_\\beta` with
    :math:`A_c = R_c' [R_c (\\Phi_c - X_c V_\\beta X_c') R_c']^{-1/2} R_c`,
    :math:`\\Phi_c = R_c'R_c` the model's marginal covariance of cluster c.

    References
    ----------
    Hedges, L. V., Tipton, E., & Johnson, M. C. (2010). Robust variance estimation in
    meta-regression with dependent effect size estimates. RSM, 1, 39-65.
    Pustejovsky, J. E., & Tipton, E. (2018). JBES, 36(4), 672-683.
    """
    model = getattr(fit, "_model", None)
    if model is None:
        raise ModelError("Argument 'fit' must be a result of rma_mv().")
    if fit.robust_type is not None:
        raise ModelError("The fit already uses robust inference; pass the model fit itself.")
    codes = _cluster_codes(fit, cluster)
    n = int(codes.max()) + 1
    p = fit.p
    if n < 2:
        raise ModelError(
            "Cluster-robust inference needs at least two clusters; 'cluster' has only one."
        )
    if n - p <= 0:
        raise ModelError(
            f"The number of clusters ({n}) must be larger than the number of coefficients ({p})."
        )
    sizes = np.bincount(codes, minlength=n).astype(float)
    if clubSandwich:
        vb, ddf, extra = _cr2(fit, codes, n)
        rtype = "CR2"
    else:
        vb, ddf, extra = _cr1(fit, codes, n, adjust)
        rtype = "CR1" if adjust else "CR0"
    beta = np.asarray(fit.beta)
    se = np.sqrt(np.diag(vb))
    tval = beta / se
    pval = 2.0 * _st.t.sf(np.abs(tval), ddf)
    crit = _st.t.ppf(0.5 + fit.level / 200.0, ddf)
    warns = list(fit.warnings)
    if np.any(ddf < 4):
        msg = (
            f"Few clusters ({n}): the robust degrees of freedom of some coefficients are "
            f"below 4 (smallest {float(np.min(ddf)):.2f}); tests may be unreliable."
        )
        warns.append(msg)
        _warnings.warn(msg, stacklevel=2)
    btt = list(fit.btt)
    if clubSandwich:
        if fit.int_only:
            QM, QM_df, QMp = float(tval[0] ** 2), (1.0, float(ddf[0])), float(pval[0])
        else:
            C = np.eye(p)[btt]
            nu = htz_df(C, extra["S"], extra["H"])
            q = len(btt)
            b = beta[btt]
            Q = float(b @ np.linalg.solve(vb[np.ix_(btt, btt)], b))
            delta = max((nu - q + 1) / nu, 0.0)
            df2 = nu - q + 1
            QM = max(0.0, delta * Q / q)
            QM_df = (float(q), float(df2))
            QMp = float(_st.f.sf(QM, q, df2)) if df2 > 0 else float("nan")
    else:
        b = beta[btt]
        QM = float(b @ np.linalg.solve(vb[np.ix_(btt, btt)], b)) / len(btt)
        QM_df = (float(len(btt)), float(n - p))
        QMp = float(_st.f.sf(QM, len(btt), n - p))
    return with_inference(
        fit,
        vb=vb,
        se=se,
        zval=tval,
        pval=pval,
        ci_lb=beta - crit * se,
        ci_ub=beta + crit * se,
        ddf=np.asarray(ddf, dtype=float),
        test="t",
        QM=QM,
        QM_df=QM_df,
        QMp=QMp,
        warnings=tuple(warns),
        robust_type=rtype,
        n_clusters=n,
        cluster_sizes=sizes,
        _robust=extra,
    )


def _cr1(fit: RmaMvResult, codes: np.ndarray, n: int, adjust: bool):
    """metafor's default: bread V_b X'W, meat summed per cluster, factor n/(n-p)."""
    model = fit._model
    p = fit.p
    sigma2 = np.asarray(fit.sigma2)
    beta = np.asarray(fit.beta)
    u = np.zeros((n, p))
    for g in model.blocks.groups:
        Minv = minv_logdet(g, sigma2)[0]
        MX = Minv @ g.X  # rows of W X
        e = g.y - g.X @ beta
        contrib = MX * e[:, :, None]  # (B, n, p): (W X)_i e_i
        rows = g.rows.reshape(-1)
        np.add.at(u, codes[rows], contrib.reshape(-1, p))
    vb0 = np.asarray(fit.vb)
    meat = u.T @ u
    vb = vb0 @ meat @ vb0
    if adjust:
        vb = vb * (n / (n - p))
    return 0.5 * (vb + vb.T), np.full(p, float(n - p)), {"S": None, "H": None}


def _cr2(fit: RmaMvResult, codes: np.ndarray, n: int):
    """clubSandwich's CR2 with the fitted model as working model (inverse-variance case)."""
    model = fit._model
    outer = model.outer
    first = np.full(int(outer.max()) + 1, -1)
    first[outer] = codes
    if np.any(first[outer] != codes):
        raise ModelError(
            "CR2 needs the random effects nested within the clusters: some group of the "
            f"outermost level ('{fit.sigma2_names[0]}') spans several clusters."
        )
    p = fit.p
    sigma2 = np.asarray(fit.sigma2)
    beta = np.asarray(fit.beta)
    vbm = np.asarray(fit.vb)
    Lvb = np.linalg.cholesky(vbm)
    blocks = Blocks(
        codes, list(model.level_codes), model.vi, model.V, model.X, model.yi, closed_form=False
    )
    meat = np.zeros((p, p))
    S_all = np.zeros((n, p, p))
    H_all = np.zeros((n, p, p))
    for g in blocks.groups:
        Th = build_m(g, sigma2)
        Lc = np.linalg.cholesky(Th)
        R = np.swapaxes(Lc, 1, 2)  # Th = R'R
        XvX = np.einsum("bip,pq,bjq->bij", g.X, vbm, g.X)
        G = R @ (Th - XvX) @ Lc
        G = 0.5 * (G + np.swapaxes(G, 1, 2))
        w, U = np.linalg.eigh(G)
        wp = np.where(w > 1e-12, np.abs(w) ** -0.5, 0.0)
        Gm = (U * wp[:, None, :]) @ np.swapaxes(U, 1, 2)
        A = Lc @ Gm @ R
        W = minv_logdet(g, sigma2)[0]
        E = np.einsum("bip,bij->bpj", g.X, W) @ A  # X'W A (B, p, n)
        e = g.y - g.X @ beta
        Ee = np.einsum("bpj,bj->bp", E, e)
        meat += Ee.T @ Ee
        ME = np.einsum("pq,bqj->bpj", vbm, E)
        Gc = ME @ Lc  # ME R'
        S_all[g.block] = Gc @ np.swapaxes(Gc, 1, 2)
        H_all[g.block] = ME @ g.X @ Lvb
    vb = vbm @ meat @ vbm
    vb = 0.5 * (vb + vb.T)
    eye = np.eye(p)
    ddf = np.array([htz_df(eye[[c]], S_all, H_all) for c in range(p)])
    return vb, ddf, {"S": S_all, "H": H_all}
