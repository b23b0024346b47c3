"""Text formatting shared by the printers of univariate and multilevel models.

These helpers reproduce the pieces of metafor's ``print.rma.*`` output: numbers with a
fixed number of decimals (``.fcf``), p values (``.pval``: ``<.0001``), significance stars
(``symnum``), the coefficient range of a moderator test (``.format.btt``), and the
"Model Results:" table, printed as R prints a data frame (``print.data.frame``) or, for a
single row, as metafor's ``.print.vector``. Every table line ends with one blank, as
metafor's ``cat(x, "\\n")`` leaves it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "DIGITS",
    "SIGNIF_LEGEND",
    "fcf",
    "fmt_pval",
    "fmt_num",
    "signif_stars",
    "format_btt",
    "format_frame",
    "format_vector",
    "model_results_lines",
]

#: metafor's default digits per kind of quantity (``.set.digits``).
DIGITS: dict[str, int] = {
    "est": 4,
    "se": 4,
    "test": 4,
    "pval": 4,
    "ci": 4,
    "var": 4,
    "sevar": 4,
    "fit": 4,
    "het": 4,
}

#: The legend line R prints under a table with significance stars (UTF-8 locale).
SIGNIF_LEGEND = (
    "Signif. codes:  0 \u2018***\u2019 0.001 \u2018**\u2019 0.01 \u2018*\u2019 0.05 "
    "\u2018.\u2019 0.1 \u2018 \u2019 1"
)


def fcf(x: float | None, digits: int) -> str:
    """Fixed notation with *digits* decimals, as metafor's ``.fcf`` (NA for missing)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "NA"
    x = float(x)
    if math.isnan(x):
        return "NA"
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    return f"{x:.{int(digits)}f}"


def fmt_pval(p: float | None, digits: int = 4, *, showeq: bool = False, sep: str = "") -> str:
    """A p value as metafor prints it: ``0.0019``, ``<.0001``; with ``showeq``: ``= 0.0019``.

    Notes
    -----
    metafor's ``.pval``: values below ``10^-digits`` print as ``<.0001`` (digits = 4).
    """
    digits = max(int(digits), 1)
    cutoff_txt = "." + "0" * (digits - 1) + "1"
    cutoff = float(cutoff_txt)
    eq = "=" if showeq else ""
    if p is None or math.isnan(float(p)):
        return f"{eq}{sep}NA"
    p = float(p)
    if p >= cutoff:
        return f"{eq}{sep}{p:.{digits}f}"
    return f"<{sep}{cutoff_txt}"


def fmt_num(x: float) -> str:
    """A number as R's ``format()``/``formatC()`` shows it by default (up to 7 significant)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "NA"
    x = float(x)
    if math.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.7g}"


def signif_stars(p: float | None) -> str:
    """Significance code of R's ``symnum``: ``***`` < .001 <= ``**`` < .01 <= ``*`` < .05 ..."""
    if p is None or math.isnan(float(p)):
        return ""
    p = float(p)
    if p <= 0.001:
        return "***"
    if p <= 0.01:
        return "**"
    if p <= 0.05:
        return "*"
    if p <= 0.1:
        return "."
    return " "


def format_btt(btt: Sequence[int]) -> str:
    """1-based coefficient indices as metafor's ``.format.btt``: ``[2, 3, 4, 6]`` -> ``2:4,6``."""
    vals = sorted(int(b) for b in btt)
    if len(vals) <= 1:
        return "".join(str(v) for v in vals)
    parts: list[str] = []
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        parts.append(f"{vals[i]}:{vals[j]}" if j > i else str(vals[i]))
        i = j + 1
    return ",".join(parts)


def format_frame(
    header: Sequence[str], rows: Sequence[Sequence[str]], rownames: Sequence[str], gap: int = 2
) -> list[str]:
    """Lines of a table printed as R's ``print.data.frame(right = TRUE, print.gap = gap)``.

    Row names are left-aligned, cells and column headers right-aligned; each line carries
    the trailing blank metafor's ``.print.table`` adds.
    """
    ncol = len(header)
    widths = [
        max([len(header[j])] + [len(r[j]) for r in rows]) if rows else len(header[j])
        for j in range(ncol)
    ]
    rn_width = max([len(r) for r in rownames] + [0])
    sp = " " * gap
    out = [" " * rn_width + "".join(sp + header[j].rjust(widths[j]) for j in range(ncol)) + " "]
    for name, row in zip(rownames, rows, strict=True):
        out.append(
            name.ljust(rn_width) + "".join(sp + row[j].rjust(widths[j]) for j in range(ncol)) + " "
        )
    return out


def format_vector(header: Sequence[str], row: Sequence[str], gap: int = 2) -> list[str]:
    """Two lines (names, values) as metafor's ``.print.vector`` prints a one-row table."""
    widths = [max(len(h), len(v)) for h, v in zip(header, row, strict=True)]
    sp = " " * gap
    line_n = sp.join(h.rjust(w) for h, w in zip(header, widths, strict=True))
    line_x = sp.join(v.rjust(w) for v, w in zip(row, widths, strict=True))
    return [line_n + " ", line_x + " "]


def model_results_lines(
    names: Sequence[str],
    estimate: np.ndarray,
    se: np.ndarray,
    stat: np.ndarray,
    pval: np.ndarray,
    ci_lb: np.ndarray,
    ci_ub: np.ndarray,
    *,
    df: np.ndarray | Sequence[float] | None = None,
    int_only: bool = False,
    digits: dict[str, int] | None = None,
    signif: bool = True,
    footsym: str = "",
) -> list[str]:
    """The table under metafor's "Model Results:" heading (without the heading).

    Parameters
    ----------
    names
        Coefficient names (row names).
    estimate, se, stat, pval, ci_lb, ci_ub
        Per-coefficient values; ``stat`` is the z or t statistic.
    df
        Degrees of freedom per coefficient for t tests (adds the ``tval``/``df`` columns);
        ``None`` for z tests.
    int_only
        Print the single-row layout (``.print.vector``) metafor uses for intercept-only models.
    digits
        Digits per kind (defaults :data:`DIGITS`).
    signif
        Add the significance-star column.
    footsym
        Footnote symbol appended to the value columns (robust inference), as metafor does.
    """
    d = {**DIGITS, **(digits or {})}
    dp = 2 if d["pval"] <= 1 else d["pval"]
    rows: list[list[str]] = []
    has_df = df is not None
    header = ["estimate", "se", "tval" if has_df else "zval"]
    if has_df:
        header.append("df")
    header += ["pval", "ci.lb", "ci.ub"]
    for i in range(len(names)):
        row = [fcf(estimate[i], d["est"]), fcf(se[i], d["se"]), fcf(stat[i], d["test"])]
        if has_df:
            row.append(fmt_num(round(float(df[i]), 2)))
        row += [fmt_pval(pval[i], dp), fcf(ci_lb[i], d["ci"]), fcf(ci_ub[i], d["ci"])]
        if footsym:
            row = [row[0]] + [c + footsym for c in row[1:]]
        if signif:
            row.append(signif_stars(pval[i]))
        rows.append(row)
    if signif:
        header.append("")
    if int_only:
        return format_vector(header, rows[0])
    return format_frame(header, rows, list(names))
