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
    smooth_vi: bool = False,
    robust: str | None = None,
    mods: str | None = None,
    method: str = "REML",
    test: str = "z",
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
        ``"three-level"`` (independent sampling errors) or ``"che"`` (sampling errors
        correlated ``rho`` within clusters, clubSandwich's ``impute_covariance_matrix``).
    robust
        None, ``"CR1"`` (metafor's ``robust``) or ``"CR2"`` (clubSandwich).

    Returns
    -------
    str
        ``str(result)`` or, with ``as_json``, one JSON object (issue 4's keys plus
        ``sigma2``, ``sigma2_names``, ``I2_levels`` and ``robust``).
    """
    from evidence.stats import impute_covariance, rma_mv
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
    data = {
        "yi": frame[yi].to_numpy(dtype=float),
        "vi": frame[vi].to_numpy(dtype=float),
        cluster: frame[cluster].to_numpy(),
        inner_name: inner,
    }
    for col in frame.columns:
        data.setdefault(str(col), frame[col])
    data["yi"] = frame[yi].to_numpy(dtype=float)
    data["vi"] = frame[vi].to_numpy(dtype=float)
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        V = None
        if model == "che":
            ok = np.isfinite(data["yi"]) & np.isfinite(data["vi"])
            if not ok.all():
                raise ModelError(
                    f"Row {int(np.flatnonzero(~ok)[0]) + 2} has a missing {yi} or {vi}; the CHE "
                    "model needs complete rows."
                )
            V = impute_covariance(data["vi"], data[cluster], r=rho, smooth_vi=smooth_vi)
        res = rma_mv(
            "yi",
            None if V is not None else "vi",
            V=V,
            random=(cluster, inner_name),
            data=data,
            mods=mods,
            method=method,
            test=test,
            level=level,
        )
        if robust is not None:
            res = robust_fit(res, data[cluster], clubSandwich=str(robust).upper() == "CR2")
        caught = [str(w.message) for w in rec]
    if not as_json:
        return str(res)
    out = res.to_dict()
    out["model"] = "che" if model == "che" else "three-level"
    out["warnings"] = list(dict.fromkeys(list(out["warnings"]) + caught))
    return json.dumps(out, indent=2)
