"""Vectorised effect-size formulas behind :func:`evidence.stats.escalc.escalc`.

Every function takes float arrays of equal length (already validated) and returns
``(yi, vi)``. The formulas follow metafor's ``escalc()`` (version 3.8) line by line, so
that the numbers agree to rounding error; the references are given in
:mod:`evidence.stats.escalc`.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

__all__ = [
    "cmi",
    "wmean",
    "smd",
    "smdh",
    "md",
    "smcc",
    "smcr",
    "smcr_difference",
    "adjust_cells",
    "two_by_two",
    "cor",
    "zcor",
    "t_from_signed_p",
]

Array = np.ndarray

SQRT3_OVER_PI = np.sqrt(3.0) / np.pi
COX_FACTOR = 1.65


def cmi(mi: Array) -> Array:
    """Exact small-sample correction c(m) = Gamma(m/2) / (sqrt(m/2) Gamma((m-1)/2)).

    NaN where ``mi <= 1`` (the correction is undefined there), as in metafor.
    """
    mi = np.asarray(mi, dtype=float)
    out = np.full(mi.shape, np.nan)
    ok = mi > 1
    m = mi[ok]
    out[ok] = np.exp(special.gammaln(m / 2) - np.log(np.sqrt(m / 2)) - special.gammaln((m - 1) / 2))
    return out


def wmean(x: Array, w: Array) -> float:
    """Weighted mean over the rows where neither value is missing (metafor's ``.wmean``)."""
    ok = ~(np.isnan(x) | np.isnan(w))
    return float(np.sum(x[ok] * w[ok]) / np.sum(w[ok]))


def smd(m1i: Array, m2i: Array, sd1i: Array, sd2i: Array, n1i: Array, n2i: Array, vtype: str):
    """Hedges' g with the exact correction and its sampling variance (measure SMD)."""
    mi = n1i + n2i - 2
    ni = n1i + n2i
    sdpi = np.sqrt(((n1i - 1) * sd1i**2 + (n2i - 1) * sd2i**2) / mi)
    di = (m1i - m2i) / sdpi
    c = cmi(mi)
    yi = c * di
    base = 1 / n1i + 1 / n2i
    if vtype == "LS":
        vi = base + yi**2 / (2 * ni)
    elif vtype == "UB":
        vi = base + (1 - (mi - 2) / (mi * c**2)) * yi**2
    elif vtype == "LS2":
        vi = c**2 * (base + di**2 / (2 * ni))
    else:  # "AV"
        vi = base + wmean(yi, ni) ** 2 / (2 * ni)
    return yi, vi


def smdh(m1i: Array, m2i: Array, sd1i: Array, sd2i: Array, n1i: Array, n2i: Array, vtype: str):
    """Standardized mean difference with heteroscedastic variances (Bonett 2008)."""
    c = cmi(n1i + n2i - 2)
    s2 = sd1i**2 + sd2i**2
    yi = c * (m1i - m2i) / np.sqrt(s2 / 2)
    if vtype == "LS":
        vi = yi**2 * (sd1i**4 / (n1i - 1) + sd2i**4 / (n2i - 1)) / (2 * s2**2) + (
            sd1i**2 / (n1i - 1) + sd2i**2 / (n2i - 1)
        ) / (s2 / 2)
        vi = c**2 * vi
    else:  # "LS2"
        vi = (
            yi**2 * sd1i**2 / (2 * n1i * s2**2)
            + yi**2 * sd2i**2 / (2 * n2i * s2**2)
            + 2 * sd1i**2 / (n1i * s2)
            + 2 * sd2i**2 / (n2i * s2)
        )
    return yi, vi


def md(m1i: Array, m2i: Array, sd1i: Array, sd2i: Array, n1i: Array, n2i: Array, vtype: str):
    """Raw mean difference; vtype HO assumes equal variances."""
    yi = m1i - m2i
    if vtype == "HO":
        sdpi2 = ((n1i - 1) * sd1i**2 + (n2i - 1) * sd2i**2) / (n1i + n2i - 2)
        vi = sdpi2 * (1 / n1i + 1 / n2i)
    else:
        vi = sd1i**2 / n1i + sd2i**2 / n2i
    return yi, vi


def smcc(m1i: Array, m2i: Array, sd1i: Array, sd2i: Array, ni: Array, ri: Array, vtype: str):
    """Standardized mean change using change-score standardization (Gibbons et al. 1993)."""
    c = cmi(ni - 1)
    sddi = np.sqrt(sd1i**2 + sd2i**2 - 2 * ri * sd1i * sd2i)
    di = (m1i - m2i) / sddi
    yi = c * di
    if vtype == "LS2":
        vi = c**2 * (1 / ni + di**2 / (2 * ni))
    else:
        vi = 1 / ni + yi**2 / (2 * ni)
    return yi, vi


def smcr(m1i: Array, m2i: Array, sd1i: Array, ni: Array, ri: Array, vtype: str):
    """Standardized mean change using raw-score standardization (Becker 1988)."""
    c = cmi(ni - 1)
    di = (m1i - m2i) / sd1i
    yi = c * di
    if vtype == "LS2":
        vi = c**2 * (2 * (1 - ri) / ni + di**2 / (2 * ni))
    else:
        vi = 2 * (1 - ri) / ni + yi**2 / (2 * ni)
    return yi, vi


def smcr_difference(
    m1i: Array,
    m1i_pre: Array,
    sd1i_pre: Array,
    n1i: Array,
    m2i: Array,
    m2i_pre: Array,
    sd2i_pre: Array,
    n2i: Array,
    ri: Array,
    vtype: str,
):
    """Difference of the two groups' raw-score standardized mean changes (Morris 2008)."""
    y1, v1 = smcr(m1i, m1i_pre, sd1i_pre, n1i, ri, vtype)
    y2, v2 = smcr(m2i, m2i_pre, sd2i_pre, n2i, ri, vtype)
    return y1 - y2, v1 + v2


def adjust_cells(ai: Array, bi: Array, ci: Array, di: Array, add: float, to: str, drop00: bool):
    """metafor's zero-cell rules: returns the four cells after ``drop00`` and ``add``/``to``."""
    ai, bi, ci, di = (np.array(x, dtype=float) for x in (ai, bi, ci, di))
    if drop00:
        id00 = ((ai == 0) & (ci == 0)) | ((bi == 0) & (di == 0))
        for x in (ai, bi, ci, di):
            x[id00] = np.nan
    if to == "all":
        rows = np.ones(ai.shape, dtype=bool)
    elif to in ("only0", "if0all"):
        id0 = (ai == 0) | (ci == 0) | (bi == 0) | (di == 0)  # NaN compares False
        rows = id0 if to == "only0" else np.full(ai.shape, bool(id0.any()))
    else:  # "none"
        rows = np.zeros(ai.shape, dtype=bool)
    for x in (ai, bi, ci, di):
        x[rows] += add
    return ai, bi, ci, di


def two_by_two(
    measure: str,
    ai: Array,
    bi: Array,
    ci: Array,
    di: Array,
    add: float,
    to: str,
    drop00: bool,
    vtype: str,
):
    """OR, RR, RD, OR2DL and OR2DN from a 2x2 table (cells a, b | c, d)."""
    ai, bi, ci, di = adjust_cells(ai, bi, ci, di, add, to, drop00)
    n1i = ai + bi
    n2i = ci + di
    p1i = ai / n1i
    p2i = ci / n2i
    with np.errstate(divide="ignore", invalid="ignore"):
        if measure == "RR":
            yi = np.log(p1i) - np.log(p2i)
            vi = 1 / ai - 1 / n1i + 1 / ci - 1 / n2i
        elif measure == "RD":
            yi = p1i - p2i
            if vtype == "UB":
                vi = p1i * (1 - p1i) / (n1i - 1) + p2i * (1 - p2i) / (n2i - 1)
            elif vtype == "AV":
                q1, q2 = wmean(p1i, n1i), wmean(p2i, n2i)
                vi = q1 * (1 - q1) / n1i + q2 * (1 - q2) / n2i
            else:
                vi = p1i * (1 - p1i) / n1i + p2i * (1 - p2i) / n2i
        else:  # OR, OR2DL, OR2DN
            yi = np.log(p1i / (1 - p1i)) - np.log(p2i / (1 - p2i))
            vi = 1 / ai + 1 / bi + 1 / ci + 1 / di
            if measure == "OR2DL":
                yi = SQRT3_OVER_PI * yi
                vi = 3 / np.pi**2 * vi
            elif measure == "OR2DN":
                yi = yi / COX_FACTOR
                vi = vi / COX_FACTOR**2
    return yi, vi


def cor(ri: Array, ni: Array, vtype: str):
    """Raw correlation coefficient; vtype AV uses the sample-size weighted mean r."""
    yi = np.array(ri, dtype=float)
    r = wmean(yi, ni) if vtype == "AV" else yi
    vi = (1 - r**2) ** 2 / (ni - 1)
    return yi, vi


def zcor(ri: Array, ni: Array):
    """Fisher's r-to-z transformed correlation coefficient."""
    yi = 0.5 * np.log((1 + ri) / (1 - ri))
    vi = 1 / (ni - 3)
    return yi, vi


def t_from_signed_p(pi: Array, df: Array) -> Array:
    """t statistic from a signed two-sided p value: sign(p) * t_{df}^{-1}(1 - |p|/2)."""
    return np.sign(pi) * stats.t.isf(np.abs(pi) / 2, df)
