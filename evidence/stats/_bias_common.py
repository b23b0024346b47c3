"""Pieces shared by the bias, influence and sensitivity modules.

``refit`` fits :func:`evidence.stats.rma` again on other data with the options of a fitted
model (method, test, level, fixed tau2, user weights, the control options the user set), as
metafor's diagnostics call ``rma.uni`` with ``x$method, x$test, x$level, x$control``.
``list_table`` prints columns as metafor's ``print.list.rma`` does (4 decimals, R's line
wrapping at 80 characters).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

import numpy as np

from evidence.errors import ModelError
from evidence.stats._format import fcf
from evidence.stats._rma_result import RMAResult, json_safe, readonly
from evidence.stats._rma_tau2 import default_control
from evidence.stats.rma import rma

__all__ = ["Renders", "refit", "user_control", "list_table", "json_safe", "readonly", "frame_of"]

_CONTROL_KEYS = ("tau2_init", "tau2_min", "tau2_max", "threshold", "tol", "maxiter", "stepadj")


class Renders:
    """``to_dict`` (JSON-safe) from the dataclass fields; nested results as their dicts."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            val = getattr(self, f.name)
            if hasattr(val, "to_dict") and not isinstance(val, dict):
                val = val.to_dict()
            out[f.name] = val
        return json_safe(out)


def user_control(fit: RMAResult) -> dict[str, Any]:
    """The control options of *fit* that differ from the defaults for its data.

    Notes
    -----
    :class:`RMAResult` keeps the complete control list (defaults filled in, some of them
    depending on the data, such as ``tau2_max``). metafor passes only the options the user
    gave to the refits of its diagnostics; the options equal to the data's defaults are
    therefore left out here, so a refit on a subset computes its own defaults.
    """
    defaults = default_control(np.asarray(fit.yi))
    out: dict[str, Any] = {}
    for key in _CONTROL_KEYS:
        if key not in fit.control:
            continue
        val, dflt = fit.control[key], defaults.get(key)
        if val is None and dflt is None:
            continue
        if val is not None and dflt is not None and float(val) == float(dflt):
            continue
        out[key] = val
    if "ll0check" in fit.control and fit.control["ll0check"] is not True:
        out["ll0check"] = fit.control["ll0check"]
    return out


def refit(
    fit: RMAResult,
    yi: np.ndarray,
    vi: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    X: np.ndarray | None = None,
    test: str | None = None,
    level: float | None = None,
    keep_tau2: bool = True,
    method: str | None = None,
) -> RMAResult:
    """Fit *yi*, *vi* (and the design *X*, without added intercept) with *fit*'s options."""
    tau2 = fit.tau2 if (keep_tau2 and fit.control.get("tau2_fix")) else None
    return rma(
        yi,
        vi,
        mods=X,
        intercept=X is None,
        method=fit.method if method is None else method,
        test=fit.test if test is None else test,
        level=fit.level if level is None else level,
        weights=weights,
        tau2=tau2,
        control=user_control(fit),
    )


def require_int_only(fit: RMAResult, what: str) -> None:
    """Raise unless *fit* is an intercept-only model (metafor's restriction)."""
    if not isinstance(fit, RMAResult):
        raise ModelError(f"{what} needs a fitted univariate model (a result of rma()).")
    if not fit.int_only:
        raise ModelError(f"{what} is only applicable to models without moderators.")
    if fit.k < 2:
        raise ModelError(f"{what} needs at least 2 effects (k = {fit.k}).")


def list_table(
    columns: Mapping[str, Sequence[Any]],
    rownames: Sequence[str],
    *,
    digits: int = 4,
    width: int = 80,
) -> list[str]:
    """Lines of metafor's ``print.list.rma``: a table of 4-decimal columns, wrapped.

    Numbers print with *digits* decimals (``NA`` for missing), strings as they are; row names
    left-aligned, cells right-aligned with one blank between columns; columns that do not fit
    into *width* characters continue in a further block, as R prints a wide data frame.
    Each line ends with the blank metafor adds.
    """
    names = list(columns)
    cells: list[list[str]] = []
    for n in names:
        col = []
        for v in columns[n]:
            if isinstance(v, str):
                col.append(v)
            elif v is None or (isinstance(v, float) and math.isnan(v)):
                col.append("NA")
            else:
                col.append(fcf(float(v), digits))
        cells.append(col)
    widths = [max([len(n)] + [len(c) for c in col]) for n, col in zip(names, cells, strict=True)]
    rn = max([len(r) for r in rownames] + [0])
    out: list[str] = []
    j = 0
    while j < len(names):
        used = rn
        start = j
        while j < len(names) and (j == start or used + 1 + widths[j] < width):
            used += 1 + widths[j]
            j += 1
        block = range(start, j)
        out.append(" " * rn + "".join(" " + names[b].rjust(widths[b]) for b in block) + " ")
        for i, r in enumerate(rownames):
            out.append(
                r.ljust(rn) + "".join(" " + cells[b][i].rjust(widths[b]) for b in block) + " "
            )
    return out


def frame_of(columns: Mapping[str, Any], index: Sequence[Any] | None = None, name: str = "study"):
    """A pandas DataFrame of *columns* (pandas imported here, lazily)."""
    import pandas as pd

    frame = pd.DataFrame({k: np.asarray(v) for k, v in columns.items()})
    if index is not None:
        frame.index = pd.Index(list(index), name=name)
    return frame
