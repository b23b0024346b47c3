"""Effect sizes and their sampling variances from what trials report: ``escalc()``.

The argument names, measures, variance types and zero-cell rules are metafor's
(Viechtbauer 2010, ``escalc()``); the numbers agree with metafor 3.8 to rounding error
(see ``tests/golden/escalc.R``).

Measures
--------
=========  ==============================================================  ===================
measure    what                                                            arguments
=========  ==============================================================  ===================
SMD        Hedges' g, exact bias correction; vtype LS, UB, LS2, AV        m1i sd1i n1i m2i
           Rows may instead give a reported ``di`` (Cohen's d), a t       sd2i n2i | di | ti
           statistic ``ti`` or a signed two-sided p value ``pi``.         | pi (with n1i n2i)
SMDH       SMD with heteroscedastic SDs (Bonett 2008); vtype LS, LS2       as SMD (means only)
MD         raw mean difference; vtype LS (= UB) or HO                      as SMD (means only)
SMCC       standardized mean change, change-score standardization          m1i m2i sd1i sd2i
                                                                           ni ri
SMCR       standardized mean change, raw-score standardization             m1i m2i sd1i ni ri
SMCRD      controlled pre-post design: SMCR(arm 1) - SMCR(arm 2)           m1i m1i_pre
                                                                           sd1i_pre n1i m2i
                                                                           m2i_pre sd2i_pre
                                                                           n2i ri
OR RR RD   log odds ratio, log risk ratio, risk difference (2x2 table)     ai bi ci di (or
                                                                           n1i, n2i)
OR2DL      log OR converted to an SMD, logistic (Hasselblad & Hedges)      as OR
OR2DN      log OR converted to an SMD, normal (Cox)                        as OR
COR ZCOR   raw and r-to-z transformed correlation                          ri ni
=========  ==============================================================  ===================

``di`` has a measure-dependent meaning, exactly as in metafor: for the 2x2 measures (OR,
RR, RD, OR2DL, OR2DN) it is the fourth cell of the table (non-events in group 2); for SMD
it is a reported standardized mean difference (Cohen's d, not yet bias-corrected). It is
refused for every other measure.

Notes
-----
SMD (Hedges 1981): ``s_p = sqrt(((n1-1) sd1^2 + (n2-1) sd2^2) / m)`` with ``m = n1+n2-2``,
``d = (m1 - m2) / s_p`` and ``g = c(m) d`` with the exact correction
``c(m) = Gamma(m/2) / (sqrt(m/2) Gamma((m-1)/2))``. ``vtype="LS"``:
``v = 1/n1 + 1/n2 + g^2 / (2 (n1+n2))``; ``"UB"`` (unbiased, Hedges 1983):
``v = 1/n1 + 1/n2 + (1 - (m-2) / (m c(m)^2)) g^2``; ``"LS2"``:
``c(m)^2 (1/n1 + 1/n2 + d^2 / (2 (n1+n2)))``; ``"AV"`` uses the n-weighted mean g.
A reported ``ti`` gives ``d = t sqrt(1/n1 + 1/n2)``; a signed two-sided ``pi`` gives
``t = sign(p) F^{-1}_{t, n1+n2-2}(1 - |p|/2)`` first (metafor 4's rule; ``p = 1`` gives
``g = 0``). Per row, ``di`` is used if given, else ``ti``, else ``pi``, else the means (as
in metafor, where a reported d overrides the means).

SMCR (Becker 1988): ``g = c(n-1) (m1 - m2) / sd1`` with ``m1`` the post and ``m2`` the pre
mean and ``sd1`` the pre SD; ``v = 2 (1 - r) / n + g^2 / (2n)``. SMCC (Gibbons et al.
1993): ``s_d = sqrt(sd1^2 + sd2^2 - 2 r sd1 sd2)``, ``g = c(n-1) (m1 - m2) / s_d``,
``v = 1/n + g^2 / (2n)``.

SMCRD, the controlled pre-post design, is the variant metafor's documentation uses with
``dat.morris2008`` (Morris 2008, Becker 1988): each arm's SMCR, standardized by that
arm's own pre-test SD with its own correction ``c(n_j - 1)``, and
``yi = SMCR_1 - SMCR_2``, ``vi = v_1 + v_2``. One ``ri`` (pre-post correlation) serves
both arms. It is not Morris's pooled-pre-SD ``d_ppc2``.

2x2 tables: cells ``ai, bi`` (events, non-events, group 1) and ``ci, di`` (group 2);
``bi = n1i - ai`` and ``di = n2i - ci`` where the cells are not given. Zero cells
(metafor's rules): ``drop00=True`` sets rows with no events or no non-events in both
groups to missing; ``to="only0"`` adds ``add`` to every cell of rows with a zero cell,
``"all"`` to every row, ``"if0all"`` to every row when any row has a zero cell,
``"none"`` never. log OR: ``log(a d / (b c))``, ``v = 1/a + 1/b + 1/c + 1/d``; log RR:
``v = 1/a - 1/n1 + 1/c - 1/n2``; RD: ``v = p1 (1-p1)/n1 + p2 (1-p2)/n2`` (LS), with
``n - 1`` (UB) or the weighted mean proportions (AV). OR2DL (Hasselblad & Hedges 1995):
``yi = sqrt(3)/pi log OR``, ``vi = 3/pi^2 v``; OR2DN (Cox 1970): ``yi = log OR / 1.65``,
``vi = v / 1.65^2``.

COR: ``v = (1 - r^2)^2 / (n - 1)`` (LS) or with the weighted mean r (AV). ZCOR:
``z = atanh(r)``, ``v = 1 / (n - 3)``.

Missing values (NaN) in a row give NaN ``yi``/``vi`` for that row, as in metafor; so do
infinite results (zero cells with ``to="none"``), which metafor recodes to missing. Values
that break a rule (SD <= 0, n too small, events > n, negative counts, ``|r| >= 1``,
``p`` outside [-1, 1] or 0, infinite values) raise :class:`~evidence.errors.ValidationError`
listing every failing cell with its 1-based row, argument and rule; metafor accepts some of
these (SD = 0, n = 1, r = 1) and returns infinite or missing values instead.

References
----------
Becker BJ (1988). Synthesizing standardized mean-change measures. BJMSP 41, 257-278.
Bonett DG (2008). Confidence intervals for standardized linear contrasts of means.
Psychological Methods 13, 99-109.
Hasselblad V, Hedges LV (1995). Meta-analysis of screening and diagnostic tests.
Psychological Bulletin 117, 167-178.
Hedges LV (1981). Distribution theory for Glass's estimator of effect size and related
estimators. Journal of Educational Statistics 6, 107-128.
Morris SB (2008). Estimating effect sizes from pretest-posttest-control group designs.
Organizational Research Methods 11, 364-386.
Viechtbauer W (2010). Conducting meta-analyses in R with the metafor package. Journal of
Statistical Software 36(3), 1-48.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from evidence.errors import ValidationError
from evidence.stats import _escalc_formulas as F

__all__ = ["EscalcResult", "escalc", "MEASURES"]

_MEANS = ("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i")
_CELLS = ("ai", "bi", "ci", "di")
_TWO_BY_TWO = ("OR", "RR", "RD", "OR2DL", "OR2DN")

#: measure -> (argument names it reads, variance types it accepts; the first is the default)
MEASURES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "SMD": (_MEANS + ("di", "ti", "pi"), ("LS", "UB", "LS2", "AV")),
    "SMDH": (_MEANS, ("LS", "LS2")),
    "MD": (_MEANS, ("LS", "UB", "HO")),
    "SMCC": (("m1i", "m2i", "sd1i", "sd2i", "ni", "ri"), ("LS", "LS2")),
    "SMCR": (("m1i", "m2i", "sd1i", "ni", "ri"), ("LS", "LS2")),
    "SMCRD": (
        ("m1i", "m1i_pre", "sd1i_pre", "n1i", "m2i", "m2i_pre", "sd2i_pre", "n2i", "ri"),
        ("LS", "LS2"),
    ),
    "OR": (_CELLS + ("n1i", "n2i"), ("LS",)),
    "RR": (_CELLS + ("n1i", "n2i"), ("LS",)),
    "RD": (_CELLS + ("n1i", "n2i"), ("LS", "UB", "AV")),
    "OR2DL": (_CELLS + ("n1i", "n2i"), ("LS",)),
    "OR2DN": (_CELLS + ("n1i", "n2i"), ("LS",)),
    "COR": (("ri", "ni"), ("LS", "AV")),
    "ZCOR": (("ri", "ni"), ("LS",)),
}

_TO = ("only0", "all", "if0all", "none")


@dataclass(frozen=True)
class EscalcResult:
    """Effect sizes ``yi`` and sampling variances ``vi`` (read-only arrays).

    Attributes
    ----------
    yi, vi
        Effect sizes and their sampling variances, one per input row (NaN where a row's
        inputs are missing).
    measure, vtype
        The measure and variance type used.
    data
        The DataFrame passed to :func:`escalc`, if any (``to_frame`` appends to it).
    """

    yi: np.ndarray
    vi: np.ndarray
    measure: str
    vtype: str = "LS"
    data: Any = field(default=None, repr=False, compare=False)

    @property
    def sei(self) -> np.ndarray:
        """Standard errors ``sqrt(vi)``."""
        out = np.sqrt(self.vi)
        out.setflags(write=False)
        return out

    @property
    def k(self) -> int:
        """Number of rows."""
        return int(self.yi.shape[0])

    def __len__(self) -> int:
        return self.k

    def to_frame(self):
        """The input DataFrame (if given) with ``yi`` and ``vi`` appended; else both alone."""
        import pandas as pd

        frame = pd.DataFrame({"yi": self.yi, "vi": self.vi})
        if self.data is None:
            return frame
        out = self.data.copy()
        out["yi"] = self.yi
        out["vi"] = self.vi
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes ``None``)."""

        def clean(a: np.ndarray) -> list[float | None]:
            return [None if np.isnan(x) else float(x) for x in a]

        return {
            "measure": self.measure,
            "vtype": self.vtype,
            "yi": clean(self.yi),
            "vi": clean(self.vi),
        }

    def __str__(self) -> str:
        lines = [
            f"measure: {self.measure} (vtype {self.vtype}), k = {self.k}",
            "",
            f"{'':>5} {'yi':>10} {'vi':>10}",
        ]
        for i, (y, v) in enumerate(zip(self.yi, self.vi, strict=True), start=1):
            lines.append(f"{i:>5} {y:>10.4f} {v:>10.4f}")
        return "\n".join(lines)


class _Failures:
    """Collects failing cells, then raises one ValidationError listing them all."""

    def __init__(self, context: str) -> None:
        self.context = context
        self.items: list[dict[str, Any]] = []

    def add(self, rows: np.ndarray | None, column: str, values: Any, rule: str) -> None:
        if rows is None:
            self.items.append(
                {
                    "file": None,
                    "sheet": None,
                    "row": None,
                    "column": column,
                    "value": values,
                    "rule": rule,
                }
            )
            return
        for r in np.flatnonzero(rows):
            v = values[r] if isinstance(values, np.ndarray) else values
            self.items.append(
                {
                    "file": None,
                    "sheet": None,
                    "row": int(r) + 1,
                    "column": column,
                    "value": float(v) if v is not None else None,
                    "rule": rule,
                }
            )

    def raise_if_any(self) -> None:
        if not self.items:
            return
        f = self.items[0]
        where = f"row {f['row']}, " if f["row"] is not None else ""
        value = f" = {f['value']:g}" if isinstance(f["value"], float) else ""
        more = f" (and {len(self.items) - 1} more)" if len(self.items) > 1 else ""
        raise ValidationError(
            f"{self.context}: {where}{f['column']}{value} breaks the rule '{f['rule']}'{more}.",
            self.items,
        )


def _as_array(name: str, value: Any, data: Any, fails: _Failures) -> tuple[np.ndarray | None, str]:
    """Resolve one argument to a float array (or None); returns it and its display name."""
    if value is None:
        return None, name
    label = name
    if isinstance(value, str):
        if data is None:
            fails.add(None, name, value, "a column name needs data=")
            return None, name
        if value not in data.columns:
            fails.add(None, name, value, f"column '{value}' exists in data")
            return None, name
        label = f"{value} ({name})"
        value = data[value]
    try:
        if hasattr(value, "to_numpy"):
            arr = value.to_numpy(dtype=float, na_value=np.nan)
        else:
            arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        fails.add(None, label, None, "numeric values")
        return None, label
    return np.atleast_1d(arr).astype(float, copy=True), label


def escalc(
    measure: str,
    *,
    m1i: Any = None,
    sd1i: Any = None,
    n1i: Any = None,
    m2i: Any = None,
    sd2i: Any = None,
    n2i: Any = None,
    m1i_pre: Any = None,
    sd1i_pre: Any = None,
    m2i_pre: Any = None,
    sd2i_pre: Any = None,
    ti: Any = None,
    pi: Any = None,
    di: Any = None,
    ri: Any = None,
    ni: Any = None,
    ai: Any = None,
    bi: Any = None,
    ci: Any = None,
    vtype: str | None = None,
    add: float = 0.5,
    to: str = "only0",
    drop00: bool = False,
    data: Any = None,
) -> EscalcResult:
    """Compute effect sizes ``yi`` and sampling variances ``vi`` (metafor's ``escalc``).

    Parameters
    ----------
    measure
        One of ``MEASURES`` (see the module docstring for each one's arguments).
    m1i, sd1i, n1i, m2i, sd2i, n2i
        Means, SDs and sizes of groups 1 and 2 (SMD, SMDH, MD); for SMCR/SMCC ``m1i`` and
        ``m2i`` are the post and pre means and ``sd1i``/``sd2i`` their SDs; for the 2x2
        measures ``n1i``/``n2i`` are the group sizes.
    m1i_pre, sd1i_pre, m2i_pre, sd2i_pre
        Pre-test means and SDs of both arms (SMCRD).
    ti, pi, di
        For SMD: a t statistic, a signed two-sided p value, a reported d. For the 2x2
        measures ``di`` is the fourth cell. The sign of ``ti``/``pi`` is that of
        ``m1i - m2i``.
    ri, ni
        Correlation and sample size (COR, ZCOR; pre-post correlation for SMCR/SMCC/SMCRD).
    ai, bi, ci
        Cells of the 2x2 table (events and non-events of group 1, events of group 2).
    vtype
        Variance type; defaults to ``"LS"``.
    add, to, drop00
        Zero-cell rules of the 2x2 measures (metafor's defaults: 1/2, ``"only0"``, False).
    data
        A DataFrame; string arguments name its columns.

    Returns
    -------
    EscalcResult

    Raises
    ------
    ValidationError
        Unknown measure/vtype/to, an argument the measure does not use, missing required
        arguments, or values breaking a rule (every failing cell is listed).
    """
    given = {
        "m1i": m1i, "sd1i": sd1i, "n1i": n1i, "m2i": m2i, "sd2i": sd2i, "n2i": n2i,
        "m1i_pre": m1i_pre, "sd1i_pre": sd1i_pre, "m2i_pre": m2i_pre, "sd2i_pre": sd2i_pre,
        "ti": ti, "pi": pi, "di": di, "ri": ri, "ni": ni, "ai": ai, "bi": bi, "ci": ci,
    }  # fmt: skip
    if measure not in MEASURES:
        raise ValidationError(
            f"escalc: measure '{measure}' is not one of {', '.join(MEASURES)}.",
            [
                {
                    "file": None,
                    "sheet": None,
                    "row": None,
                    "column": "measure",
                    "value": measure,
                    "rule": f"one of {', '.join(MEASURES)}",
                }
            ],
        )
    uses, vtypes = MEASURES[measure]
    vtype = vtypes[0] if vtype is None else vtype
    fails = _Failures(f"escalc(measure='{measure}')")
    if vtype not in vtypes:
        fails.add(None, "vtype", vtype, f"one of {', '.join(vtypes)} for {measure}")
    if to not in _TO:
        fails.add(None, "to", to, f"one of {', '.join(_TO)}")
    if not (np.isfinite(add) and add >= 0):
        fails.add(None, "add", add, "a finite number >= 0")
    for name, value in given.items():
        if value is not None and name not in uses:
            fails.add(None, name, None, f"not an argument of measure {measure}")
    fails.raise_if_any()

    arrays: dict[str, np.ndarray] = {}
    labels: dict[str, str] = {}
    for name in uses:
        arr, labels[name] = _as_array(name, given[name], data, fails)
        if arr is not None:
            arrays[name] = arr
    fails.raise_if_any()
    k = max((a.shape[0] for a in arrays.values()), default=0)
    for name, arr in arrays.items():
        if arr.shape[0] not in (1, k):
            fails.add(None, labels[name], None, f"length 1 or {k} (it has {arr.shape[0]})")
        elif arr.shape[0] == 1 and k > 1:
            arrays[name] = np.repeat(arr, k)
    fails.raise_if_any()
    _require(measure, arrays, fails)
    fails.raise_if_any()
    _validate(measure, arrays, labels, fails)
    fails.raise_if_any()

    yi, vi = _compute(measure, arrays, k, vtype, add, to, drop00)
    yi = np.array(yi, dtype=float)
    vi = np.array(vi, dtype=float)
    yi[np.isinf(yi)] = np.nan  # as metafor: infinite values (to="none") become missing
    vi[np.isinf(vi)] = np.nan
    yi.setflags(write=False)
    vi.setflags(write=False)
    return EscalcResult(yi=yi, vi=vi, measure=measure, vtype=vtype, data=data)


def _require(measure: str, a: Mapping[str, np.ndarray], fails: _Failures) -> None:
    """Whole arguments a measure cannot do without."""

    def need(*names: str) -> None:
        missing = [n for n in names if n not in a]
        if missing:
            fails.add(None, ", ".join(missing), None, f"required for measure {measure}")

    if measure == "SMD":
        need("n1i", "n2i")
        if not any(n in a for n in ("di", "ti", "pi")):
            need("m1i", "sd1i", "m2i", "sd2i")
    elif measure in ("SMDH", "MD"):
        need(*_MEANS)
    elif measure == "SMCC":
        need("m1i", "m2i", "sd1i", "sd2i", "ni", "ri")
    elif measure == "SMCR":
        need("m1i", "m2i", "sd1i", "ni", "ri")
    elif measure == "SMCRD":
        need(*MEASURES["SMCRD"][0])
    elif measure in _TWO_BY_TWO:
        need("ai", "ci")
        if "bi" not in a and "n1i" not in a:
            fails.add(None, "bi or n1i", None, f"required for measure {measure}")
        if "di" not in a and "n2i" not in a:
            fails.add(None, "di or n2i", None, f"required for measure {measure}")
    else:
        need("ri", "ni")


def _validate(
    measure: str, a: dict[str, np.ndarray], labels: Mapping[str, str], fails: _Failures
) -> None:
    """Row rules; values that are NaN (not reported) are not checked."""
    # ``arr > x`` is False for NaN, so each rule is written as "bad = known & not ok".
    for name, arr in a.items():
        fails.add(np.isinf(arr), labels[name], arr, "finite")

    def rule(name: str, ok: np.ndarray, text: str) -> None:
        if name in a:
            arr = a[name]
            fails.add(~np.isnan(arr) & ~np.isinf(arr) & ~ok, labels[name], arr, text)

    def v(name: str) -> np.ndarray:
        return a[name]

    for sd in ("sd1i", "sd2i", "sd1i_pre", "sd2i_pre"):
        if sd in a:
            rule(sd, v(sd) > 0, f"{sd} > 0")
    if measure in _TWO_BY_TWO:
        for cell in _CELLS:
            if cell in a:
                rule(cell, v(cell) >= 0, f"{cell} >= 0")
        for n in ("n1i", "n2i"):
            if n in a:
                rule(n, v(n) >= 1, f"{n} >= 1")
        for ev, other, n in (("ai", "bi", "n1i"), ("ci", "di", "n2i")):
            if ev in a and n in a:
                rule(ev, ~(v(ev) > v(n)), f"{ev} <= {n} (events cannot exceed the group size)")
                if other in a:
                    rule(n, ~(v(n) != v(ev) + v(other)), f"{n} = {ev} + {other}")
    else:
        least = {"SMCC": 3, "SMCR": 3, "SMCRD": 3, "ZCOR": 4}.get(measure, 2)
        for n in ("n1i", "n2i", "ni"):
            if n in a:
                rule(n, v(n) >= least, f"{n} >= {least}")
    if "ri" in a:
        rule("ri", np.abs(v("ri")) < 1, "-1 < ri < 1")
    if "pi" in a:
        rule("pi", (np.abs(v("pi")) <= 1) & (v("pi") != 0), "-1 <= pi <= 1 and pi != 0")


def _compute(
    measure: str,
    a: dict[str, np.ndarray],
    k: int,
    vtype: str,
    add: float,
    to: str,
    drop00: bool,
) -> tuple[np.ndarray, np.ndarray]:
    nan = np.full(k, np.nan)

    def g(name: str) -> np.ndarray:
        return a.get(name, nan)

    with np.errstate(all="ignore"):
        if measure == "SMD":
            n1, n2 = g("n1i"), g("n2i")
            d = g("di").copy()
            t = g("ti").copy()
            miss_t = np.isnan(t)
            t[miss_t] = F.t_from_signed_p(g("pi"), n1 + n2 - 2)[miss_t]
            miss_d = np.isnan(d)
            d[miss_d] = (t * np.sqrt(1 / n1 + 1 / n2))[miss_d]
            has_d = ~np.isnan(d)
            m1, m2, s1, s2 = (g(x).copy() for x in ("m1i", "m2i", "sd1i", "sd2i"))
            m1[has_d], m2[has_d], s1[has_d], s2[has_d] = d[has_d], 0.0, 1.0, 1.0
            return F.smd(m1, m2, s1, s2, n1, n2, vtype)
        if measure == "SMDH":
            return F.smdh(g("m1i"), g("m2i"), g("sd1i"), g("sd2i"), g("n1i"), g("n2i"), vtype)
        if measure == "MD":
            return F.md(g("m1i"), g("m2i"), g("sd1i"), g("sd2i"), g("n1i"), g("n2i"), vtype)
        if measure == "SMCC":
            return F.smcc(g("m1i"), g("m2i"), g("sd1i"), g("sd2i"), g("ni"), g("ri"), vtype)
        if measure == "SMCR":
            return F.smcr(g("m1i"), g("m2i"), g("sd1i"), g("ni"), g("ri"), vtype)
        if measure == "SMCRD":
            return F.smcr_difference(
                g("m1i"), g("m1i_pre"), g("sd1i_pre"), g("n1i"),
                g("m2i"), g("m2i_pre"), g("sd2i_pre"), g("n2i"), g("ri"), vtype,
            )  # fmt: skip
        if measure in _TWO_BY_TWO:
            ai, ci = g("ai"), g("ci")
            bi = g("bi").copy()
            dd = g("di").copy()
            fill_b, fill_d = np.isnan(bi), np.isnan(dd)
            bi[fill_b] = (g("n1i") - ai)[fill_b]
            dd[fill_d] = (g("n2i") - ci)[fill_d]
            return F.two_by_two(measure, ai, bi, ci, dd, add, to, drop00, vtype)
        if measure == "COR":
            return F.cor(g("ri"), g("ni"), vtype)
        return F.zcor(g("ri"), g("ni"))
