"""Multilevel models for ``evidence meta --cluster``: three-level and CHE, with robust variance.

``evidence meta`` delegates here when ``--cluster`` is given; this module parses nothing
itself: it checks the options, calls :func:`evidence.stats.rma_mv` (and
:func:`evidence.stats.robust`), and renders the result as text (metafor's layout) or JSON.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np

from evidence.errors import ModelError

__all__ = ["multilevel_command"]


def _require(frame: Any, column: str, option: str) -> None:
    if column not in frame.columns:
        known = ", ".join(str(c) for c in frame.columns)
        raise ModelError(f"Option {option}: there is no column '{column}' (columns: {known}).")


def multilevel_command(
    frame: Any,
    *,
    yi: str,
    vi: str,
    cluster: str,
    es_id: str | None = None,
    model: str = "three-level",
    rho: float = 0.6,
    smooth_vi: bool | None = None,
    robust: str | None = None,
    mods: str | None = None,
    method: str = "REML",
    test: str | None = None,
    level: float = 95,
    as_json: bool = False,
) -> str:
    """Fit a three-level or CHE model to the rows of *frame* and render it.

    Parameters
    ----------
    frame
        A DataFrame with one effect size per row.
    yi, vi, cluster, es_id
        Column names: effect sizes, sampling variances, cluster (study) and the effect
        within its cluster (default: every row its own effect).
    model
        ``"three-level"`` (independent sampling errors) or ``"che"``: the CHE recipe
        :func:`evidence.stats.che` (metapsyTools' ``threelevel.che``).
    rho, smooth_vi
        CHE only: the within-cluster correlation and whether the sampling variances are
        smoothed within clusters (None: the recipe's default, smoothed).
    robust
        None, ``"CR1"`` (metafor's ``robust``) or ``"CR2"`` (clubSandwich). For ``che``,
        None means the recipe's default, CR2.
    test
        ``"z"`` or ``"t"``; None: ``z`` for the three-level model, ``t`` for CHE.

    Returns
    -------
    str
        ``str(result)`` or, with ``as_json``, one JSON object (issue 4's keys plus
        ``sigma2``, ``sigma2_names``, ``I2_levels`` and ``robust``; for CHE also ``che``,
        the settings). The CHE text starts with a line stating its settings.
    """
    from evidence.stats import che, rma_mv
    from evidence.stats import robust as robust_fit

    if model not in ("three-level", "che"):
        raise ModelError(f"Unknown --model {model!r}; use three-level or che.")
    if robust is not None and str(robust).upper() not in ("CR1", "CR2"):
        raise ModelError(f"Unknown --robust {robust!r}; use CR2 or CR1.")
    for col, opt in ((yi, "--yi"), (vi, "--vi"), (cluster, "--cluster")):
        _require(frame, col, opt)
    if es_id is not None:
        _require(frame, es_id, "--es-id")
        inner = frame[es_id].to_numpy()
        inner_name = es_id
    else:
        inner = np.arange(len(frame))
        inner_name = "es_id"
    data = {str(col): frame[col] for col in frame.columns}
    data.update({cluster: frame[cluster].to_numpy(), inner_name: inner})
    data["yi"] = frame[yi].to_numpy(dtype=float)
    data["vi"] = frame[vi].to_numpy(dtype=float)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        if model == "che":
            ok = np.isfinite(data["yi"]) & np.isfinite(data["vi"])
            if not ok.all():
                raise ModelError(
                    f"Row {int(np.flatnonzero(~ok)[0]) + 2} has a missing {yi} or {vi}; the CHE "
                    "model needs complete rows."
                )
            res: Any = che(
                "yi",
                "vi",
                cluster,
                inner_name,
                data=data,
                mods=mods,
                rho=rho,
                smooth_vi=True if smooth_vi is None else smooth_vi,
                small_sample=str(robust).upper() if robust is not None else "CR2",
                method=method,
                test=test or "t",
                level=level,
            )
        else:
            res = rma_mv("yi", "vi", random=(cluster, inner_name), data=data, mods=mods,
                         method=method, test=test or "z", level=level)  # fmt: skip
            if robust is not None:
                res = robust_fit(res, data[cluster], clubSandwich=str(robust).upper() == "CR2")
        caught = [str(w.message) for w in rec]
    if not as_json:
        return str(res)
    out = res.to_dict()
    out["model"] = model
    out["warnings"] = list(dict.fromkeys(list(out["warnings"]) + caught))
    return json.dumps(out, indent=2)
