"""Kendall's rank correlation with the p value of R's ``cor.test(method = "kendall")``."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

__all__ = ["kendall_test", "pkendall"]

#: Largest n for which R's exact distribution is finite (it divides by n!, which overflows
#: a double from n = 171 on and makes R return NaN there).
EXACT_MAX_N = 170


def _mahonian(n: int) -> np.ndarray:
    """P(T = q), q = 0 .. n(n-1)/2: T the number of inversions of a random permutation."""
    dist = np.ones(1)
    for m in range(2, n + 1):
        size = dist.size + m - 1
        cs = np.concatenate(([0.0], np.cumsum(dist), np.full(m - 1, dist.sum())))
        upper = cs[1 : size + 1]
        lower = np.concatenate((np.zeros(m), cs[1 : size + 1 - m]))
        dist = (upper - lower) / m
    return dist


def pkendall(q: int, n: int) -> float:
    """P(T <= q) for the number T of concordant pairs among n untied pairs (R's pkendall)."""
    if q < 0:
        return 0.0
    top = n * (n - 1) // 2
    if q >= top:
        return 1.0
    return float(min(1.0, np.sum(_mahonian(n)[: q + 1])))


def _tie_counts(x: np.ndarray) -> np.ndarray:
    _, counts = np.unique(x, return_counts=True)
    return counts[counts > 1].astype(float)


def _concordance(x: np.ndarray, y: np.ndarray) -> float:
    """Sum over pairs i < j of sign(x_i - x_j) sign(y_i - y_j), in row blocks (O(n) memory)."""
    n = x.size
    total = 0.0
    step = max(1, 2_000_000 // max(n, 1))
    for start in range(0, n, step):
        stop = min(n, start + step)
        dx = np.sign(x[start:stop, None] - x[None, :])
        dy = np.sign(y[start:stop, None] - y[None, :])
        total += float(np.sum(dx * dy))
    return total / 2.0


def kendall_test(x: np.ndarray, y: np.ndarray, *, exact: bool = True) -> tuple[float, float, bool]:
    """Kendall's tau-b of *x* and *y*, its two-sided p value, and whether the p is exact.

    Notes
    -----
    As R's ``cor.test(x, y, method = "kendall", exact = exact)``: without ties and with
    ``exact``, the p value comes from the exact null distribution of the number of concordant
    pairs ``q = round((tau + 1) n (n - 1) / 4)``, ``p = min(1, 2 P(T <= q))`` or
    ``min(1, 2 P(T >= q))``; otherwise from the normal approximation
    ``z = S / sqrt(var S)`` with the tie-corrected variance (Kendall, 1970, ch. 4). For
    n > 170 R's exact p is NaN (n! overflows); the normal approximation is used there.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = x.size
    if n < 2:
        return math.nan, math.nan, False
    S = _concordance(x, y)
    T0 = n * (n - 1) / 2
    xt, yt = _tie_counts(x), _tie_counts(y)
    T1 = float(np.sum(xt * (xt - 1)) / 2)
    T2 = float(np.sum(yt * (yt - 1)) / 2)
    denom = math.sqrt((T0 - T1) * (T0 - T2))
    tau = S / denom if denom > 0 else math.nan
    ties = xt.size > 0 or yt.size > 0
    if exact and not ties and n <= EXACT_MAX_N:
        q = int(round((tau + 1) * n * (n - 1) / 4))
        if q > n * (n - 1) / 4:
            p = 1 - pkendall(q - 1, n)
        else:
            p = pkendall(q, n)
        return tau, min(2 * p, 1.0), True
    v0 = n * (n - 1) * (2 * n + 5)
    vt = float(np.sum(xt * (xt - 1) * (2 * xt + 5)))
    vu = float(np.sum(yt * (yt - 1) * (2 * yt + 5)))
    v1 = float(np.sum(xt * (xt - 1)) * np.sum(yt * (yt - 1)))
    v2 = float(np.sum(xt * (xt - 1) * (xt - 2)) * np.sum(yt * (yt - 1) * (yt - 2)))
    var_s = (v0 - vt - vu) / 18 + v1 / (2 * n * (n - 1))
    if n > 2:
        var_s += v2 / (9 * n * (n - 1) * (n - 2))
    z = S / math.sqrt(var_s) if var_s > 0 else math.nan
    p = 2 * min(sps.norm.cdf(z), sps.norm.sf(z))
    return tau, float(p), False
