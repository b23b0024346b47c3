"""Subgroup analysis: per-level fits, the test for subgroup differences, the common-tau2 model."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from evidence.errors import ModelError
from evidence.stats._design import factor_levels
from evidence.stats._format import fcf, fmt_pval, format_frame
from evidence.stats._rma_result import RMAResult, json_safe
from evidence.stats.rma import _column, rma

__all__ = ["subgroup", "SubgroupResult"]


@dataclass(frozen=True, repr=False)
class SubgroupResult:
    """Subgroup analysis of a categorical moderator.

    Attributes
    ----------
    levels
        The subgroup levels (as R's ``factor()`` orders them).
    fits
        One :class:`RMAResult` per level, each with its own tau2.
    Q_between, df_between, p_between
        The test for subgroup differences from the separate fits: ``Q = sum w_g (b_g -
        b_w)^2`` with ``w_g = 1/se_g^2`` and ``b_w`` their weighted mean, on ``G - 1`` df
        (an equal-effects meta-regression of the subgroup estimates on the subgroup factor).
    mixed
        The mixed-effects model with a common tau2 (``mods = C(by)``): its ``QM``/``QMp``
        is the test for subgroup differences under a common tau2.
    common
        The same model without intercept: the per-level estimates under the common tau2.
    warnings
        Notes such as dropped rows with a missing subgroup.
    """

    by: str
    levels: tuple[str, ...]
    fits: dict[str, RMAResult]
    Q_between: float
    df_between: int
    p_between: float
    mixed: RMAResult | None
    common: RMAResult | None
    warnings: tuple[str, ...]

    def __str__(self) -> str:
        header = ["k", "estimate", "se", "ci.lb", "ci.ub", "pval", "tau2", "I2", "QE", "QEp"]
        rows = []
        for lev in self.levels:
            r = self.fits[lev]
            rows.append(
                [
                    str(r.k),
                    fcf(r.beta[0], 4),
                    fcf(r.se[0], 4),
                    fcf(r.ci_lb[0], 4),
                    fcf(r.ci_ub[0], 4),
                    fmt_pval(r.pval[0], 4),
                    fcf(r.tau2, 4),
                    fcf(r.I2, 2),
                    fcf(r.QE, 4),
                    fmt_pval(r.QEp, 4),
                ]
            )
        lines = ["", f"Subgroup analysis by '{self.by}' (separate tau^2 per subgroup):", ""]
        lines += format_frame(header, rows, list(self.levels))
        lines += [
            "",
            "Test for Subgroup Differences (separate tau^2):",
            f"Q(df = {self.df_between}) = {fcf(self.Q_between, 4)}, "
            f"p-val {fmt_pval(self.p_between, 4, showeq=True, sep=' ')}",
        ]
        if self.mixed is not None:
            m = self.mixed
            lines += ["", "Test for Subgroup Differences (common tau^2, mixed-effects model):"]
            if m.uses_t:
                lines.append(
                    f"F(df1 = {int(m.QMdf[0])}, df2 = {int(m.QMdf[1])}) = {fcf(m.QM, 4)}, "
                    f"p-val {fmt_pval(m.QMp, 4, showeq=True, sep=' ')}"
                )
            else:
                lines.append(
                    f"QM(df = {int(m.QMdf[0])}) = {fcf(m.QM, 4)}, "
                    f"p-val {fmt_pval(m.QMp, 4, showeq=True, sep=' ')}"
                )
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return (
            f"SubgroupResult(by={self.by!r}, levels={self.levels}, Q_between={self.Q_between:.6g})"
        )

    def to_dict(self) -> dict[str, Any]:
        return json_safe(
            {
                "by": self.by,
                "levels": list(self.levels),
                "subgroups": {lev: self.fits[lev].to_dict() for lev in self.levels},
                "test_between": {
                    "Q": self.Q_between,
                    "df": self.df_between,
                    "pval": self.p_between,
                },
                "mixed": None if self.mixed is None else self.mixed.to_dict(),
                "warnings": list(self.warnings),
            }
        )


def subgroup(
    yi: Any,
    vi: Any = None,
    by: Any = None,
    *,
    sei: Any = None,
    data: Any = None,
    method: str = "REML",
    test: str = "z",
    level: float = 95,
    control: Mapping[str, Any] | None = None,
) -> SubgroupResult:
    """Fit a model per subgroup and test for subgroup differences.

    Parameters
    ----------
    yi, vi, sei
        Effect sizes and sampling variances (or standard errors): arrays or column names.
    by
        The subgroup of each effect: an array or a column name of ``data``. Rows with a
        missing subgroup are dropped (recorded in ``warnings``).
    method, test, level, control
        As :func:`~evidence.stats.rma`, used for every fit.

    Returns
    -------
    SubgroupResult

    Notes
    -----
    Borenstein et al. (2009), *Introduction to Meta-Analysis*, ch. 19: with separate tau2,
    the subgroup estimates are compared with ``Q = sum w_g (b_g - b_w)^2 ~ chi2(G - 1)``;
    with a common tau2, the mixed-effects model's omnibus test ``QM`` of the subgroup
    contrasts is the test (metafor: ``rma(yi, vi, mods = ~ factor(by))``).
    """
    if by is None:
        raise ModelError("Argument 'by' (the subgroup of each effect) is required.")
    y = _column(yi, data, "yi")
    k = y.shape[0]
    v = _column(vi, data, "vi", k) if vi is not None else _column(sei, data, "sei", k) ** 2
    name = by if isinstance(by, str) else str(getattr(by, "name", None) or "subgroup")
    if isinstance(by, str):
        if data is None:
            raise ModelError(f"Argument 'by' names a column ('{by}') but no 'data' was given.")
        cols = data if isinstance(data, Mapping) else {c: data[c] for c in data.columns}
        if by not in cols:
            raise ModelError(f"Argument 'by' names an unknown column '{by}'.")
        groups_raw = cols[by]
    else:
        groups_raw = by
    if hasattr(groups_raw, "to_numpy"):
        g = groups_raw.to_numpy(dtype=object)
    else:
        g = np.asarray(groups_raw, dtype=object)
    if g.shape[0] != k:
        raise ModelError(f"Argument 'by' has {g.shape[0]} values but 'yi' has {k}.")
    missing = np.array([x is None or (isinstance(x, float) and math.isnan(x)) for x in g])
    warnings: list[str] = []
    if missing.any():
        warnings.append(f"{int(missing.sum())} effect(s) with a missing '{name}' were omitted.")
    levels = [lev for lev in factor_levels(groups_raw) if np.any(g[~missing] == lev)]
    if len(levels) < 2:
        raise ModelError(f"Subgroup analysis needs at least two levels of '{name}'.")
    labels = tuple(_label(lev) for lev in levels)
    fits: dict[str, RMAResult] = {}
    for lev, lab in zip(levels, labels, strict=True):
        sel = (~missing) & (g == lev)
        fits[lab] = rma(y[sel], v[sel], method=method, test=test, level=level, control=control)
    b = np.array([fits[lab].beta[0] for lab in labels])
    s = np.array([fits[lab].se[0] for lab in labels])
    w = 1.0 / s**2
    bw = float(np.sum(w * b) / np.sum(w))
    q_between = float(np.sum(w * (b - bw) ** 2))
    df_between = len(labels) - 1
    p_between = float(sps.chi2.sf(q_between, df_between))

    keep = ~missing
    col = name if name.isidentifier() and name not in ("yi", "vi") else "subgroup"
    frame = {"yi": y[keep], "vi": v[keep], col: g[keep]}
    mixed = common = None
    try:
        mixed = rma(
            "yi",
            "vi",
            mods=f"C({col})",
            data=frame,
            method=method,
            test=test,
            level=level,
            control=control,
        )
        common = rma(
            "yi",
            "vi",
            mods=f"0 + C({col})",
            data=frame,
            method=method,
            test=test,
            level=level,
            control=control,
        )
    except ModelError as err:
        warnings.append(f"The common-tau2 mixed-effects model could not be fitted: {err}")
    return SubgroupResult(
        by=name,
        levels=labels,
        fits=fits,
        Q_between=q_between,
        df_between=df_between,
        p_between=p_between,
        mixed=mixed,
        common=common,
        warnings=tuple(warnings),
    )


def _label(x: Any) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)
