"""Effect sizes of a validated results sheet: clusters, shared-arm splits, computation.

Multi-arm trials
----------------
Results of one study that share an arm (as ``arm1_key`` or ``arm2_key``) are dependent.
They get one ``cluster`` key: the connected components of the graph whose nodes are a study's
arms and whose edges are its results; the key is ``<study_key>/<arm keys of the component,
sorted, joined by +>`` (e.g. ``SIM-014/control+peer1+peer2``). Dependent-effects models
(three-level, CHE) use it as the cluster.

With the codebook setting ``analysis.split_shared_arm_n: true``, a comparator arm used by
``k > 1`` comparisons with different intervention arms at the same outcome and timepoint has
its ``n2i`` (and ``event2i``) divided by ``k`` for each of them (Cochrane Handbook 23.3.4);
``n_split`` records it. The setting is off by default: the cluster already accounts for the
dependence in the models of the analysis plan.

Binary outcomes (measure RR, OR or RD)
-------------------------------------
A row with a complete 2x2 table (``event1i``, ``n1i``, ``event2i``, ``n2i``) gets escalc's
log risk ratio, log odds ratio or risk difference (formula ``RR:events``, ...). A row without
one but with a reported effect size on the measure's scale, ``yi_reported`` with its sampling
variance ``vi_reported`` (e.g. Metapsy's ``precalc_log_rr`` and its SE squared), takes them
as given (formula ``RR:reported``, inputs ``yi_reported``/``vi_reported``); a complete table
comes first. Both are oriented like arm 1 versus arm 2 and negated for an outcome whose lower
values are better (``flipped``). A row with only one of the two reported numbers is refused
naming the empty cell.

Plausibility
------------
A computed or reported effect size is refused, with its row, formula and inputs named, when
``yi`` is not finite, ``vi`` is not finite and positive, or ``|yi|`` exceeds the measure's
bound :data:`MAX_ABS_YI` (or the codebook's ``analysis.max_abs_yi``): 10 for a standardized mean
difference (arms ten pooled SDs apart: the distributions do not overlap at all) and for a log
risk or odds ratio (a ratio beyond e^10 = 22026), 1 for a risk difference. Effect sizes are
computed with numpy's floating-point warnings off; overflow and division by zero end up as
such refusals, never as a warning on the terminal or a silently missing effect size.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from evidence.errors import ValidationError
from evidence.ingest.codebook import Codebook
from evidence.ingest.readers import ROW, Sheet
from evidence.ingest.schemas import failure
from evidence.stats.effects import compute_effects
from evidence.stats.escalc import escalc

__all__ = ["EFFECT_COLUMNS", "MAX_ABS_YI", "clusters", "shared_arm_divisor", "sheet_effects"]

EFFECT_COLUMNS = ("measure", "yi", "vi", "formula", "inputs", "flipped", "imputed_r",
                  "ri_used", "cluster", "n_split")  # fmt: skip
_TWO_BY_TWO = ("RR", "OR", "RD")
_REPORTED = ("yi_reported", "vi_reported")
#: Largest plausible |yi| per measure (see the module notes); ``analysis.max_abs_yi`` overrides.
MAX_ABS_YI = {"SMD": 10.0, "SMCR": 10.0, "RR": 10.0, "OR": 10.0, "RD": 1.0}
_NAMES = {"SMD": "g", "SMCR": "g (SMCR)", "RR": "log RR", "OR": "log OR", "RD": "RD"}


def clusters(results: pd.DataFrame) -> pd.Series:
    """The dependence cluster key of every result row (see the module notes)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[x] != root:
            parent[x], x = root, parent[x]
        return root

    study = results["study_key"].astype(str).to_numpy()
    a1 = results["arm1_key"].astype(str).to_numpy()
    a2 = results["arm2_key"].to_numpy() if "arm2_key" in results else [None] * len(results)
    nodes = []
    for s, x, y in zip(study, a1, a2, strict=True):
        n1 = f"{s}\x1f{x}"
        root1 = find(n1)
        if y is not None and not (isinstance(y, float) and math.isnan(y)):
            root2 = find(f"{s}\x1f{y}")
            if root1 != root2:
                parent[root2] = root1
        nodes.append(n1)
    members: dict[str, list[str]] = {}
    for node in parent:
        members.setdefault(find(node), []).append(node.split("\x1f", 1)[1])
    names = {
        root: "+".join(sorted(arms)) for root, arms in members.items()
    }  # arm keys of each component
    return pd.Series(
        [f"{s}/{names[find(n)]}" for s, n in zip(study, nodes, strict=True)],
        index=results.index,
        dtype=object,
    )


def shared_arm_divisor(results: pd.DataFrame) -> pd.Series:
    """Number of intervention arms compared with the same comparator arm (outcome, timepoint)."""
    if "arm2_key" not in results:
        return pd.Series(1.0, index=results.index)
    has2 = results["arm2_key"].notna()
    groups = ["study_key", "outcome_key", "timepoint_key", "arm2_key"]
    k = results[has2].groupby(groups)["arm1_key"].transform("nunique")
    return k.reindex(results.index).fillna(1.0).astype("float64")


_ENCODE = json.JSONEncoder(sort_keys=True, allow_nan=False).encode


def _json(d: dict[str, Any]) -> str:
    """Canonical JSON of a formula's inputs (sorted keys; a missing number as null)."""
    try:
        return _ENCODE(d)
    except ValueError:
        return _ENCODE({k: None if isinstance(v, float) and math.isnan(v) else v
                        for k, v in d.items()})  # fmt: skip


def _two_by_two(res: pd.DataFrame, measure: str, flip: np.ndarray, divisor: np.ndarray,
                sheet: Sheet) -> tuple[pd.DataFrame, list[dict]]:  # fmt: skip
    """Log risk (odds) ratios or risk differences: from the 2x2 table (``<measure>:events``),
    else the reported ``yi_reported``/``vi_reported`` (``<measure>:reported``), both oriented
    by *flip* (see the module notes)."""
    cols = ("event1i", "n1i", "event2i", "n2i")
    v = {c: res[c].to_numpy(dtype=float) if c in res else np.full(len(res), np.nan)
         for c in (*cols, *_REPORTED)}  # fmt: skip
    v["n2i"] = v["n2i"] / divisor
    v["event2i"] = v["event2i"] / divisor
    ok = np.all([~np.isnan(v[c]) for c in cols], axis=0)
    given = {c: ~np.isnan(v[c]) for c in _REPORTED}
    reported = ~ok & given["yi_reported"] & given["vi_reported"]
    failures = [_no_effect(res, sheet, measure, v, pos, cols)
                for pos in np.flatnonzero(~ok & ~reported)]  # fmt: skip
    yi = np.where(reported, v["yi_reported"], np.nan)
    vi = np.where(reported, v["vi_reported"], np.nan)
    if ok.any():
        out = escalc(measure, ai=v["event1i"][ok], n1i=v["n1i"][ok], ci=v["event2i"][ok],
                     n2i=v["n2i"][ok])  # fmt: skip
        yi[ok], vi[ok] = out.yi, out.vi
    inputs = [
        _json({c: float(v[c][i]) for c in _REPORTED}) if reported[i] else
        _json({c: float(v[c][i]) for c in cols} | ({"n2_divisor": float(divisor[i])}
                                                    if divisor[i] != 1 else {}))
        for i in range(len(res))
    ]  # fmt: skip
    frame = pd.DataFrame(
        {
            "measure": measure,
            "yi": np.where(flip, -yi, yi),
            "vi": vi,
            "formula": np.where(reported, f"{measure}:reported", f"{measure}:events"),
            "inputs": inputs,
            "flipped": flip,
            "imputed_r": False,
            "ri_used": np.nan,
        },
        index=res.index,
    )
    return frame, failures


def _no_effect(res: pd.DataFrame, sheet: Sheet, measure: str, v: dict[str, np.ndarray],
               pos: int, cols: tuple[str, ...]) -> dict[str, Any]:  # fmt: skip
    """The failure of a 2x2 row with neither a complete table nor a reported effect size."""
    name = _NAMES.get(measure, measure)
    given = [c for c in _REPORTED if not np.isnan(v[c][pos])]
    if len(given) == 1:  # half a reported effect size: name the empty cell
        (have,) = given
        (empty,) = (c for c in _REPORTED if c != have)
        return failure(sheet, res[ROW].iat[pos], empty, None, f"no effect size can be "
                       f"computed: {have} is given without {empty} (a reported {name} needs "
                       f"yi_reported with its sampling variance vi_reported), and the event "
                       f"counts {', '.join(cols)} are incomplete")  # fmt: skip
    missing = ", ".join(c for c in cols if np.isnan(v[c][pos]))
    return failure(sheet, res[ROW].iat[pos], None, None, f"no effect size can be computed: "
                   f"{measure} needs {missing} (or a reported {name} as yi_reported with its "
                   "sampling variance vi_reported)")  # fmt: skip


def _implausible(frame: pd.DataFrame, res: pd.DataFrame, bound: float | None, sheet: Sheet,
                 done: np.ndarray) -> list[dict[str, Any]]:  # fmt: skip
    """Failures of computed effect sizes that are not finite or beyond the measure's bound
    (rows *done* already have a failure)."""
    out = []
    yi, vi = frame["yi"].to_numpy(dtype=float), frame["vi"].to_numpy(dtype=float)
    limits = frame["measure"].map(MAX_ABS_YI).fillna(10.0).to_numpy(dtype=float)
    limits = limits if bound is None else np.full(len(frame), bound)
    fine = np.isfinite(yi) & np.isfinite(vi) & (vi > 0) & (np.abs(yi) <= limits)
    for pos in np.flatnonzero(~done & ~fine):
        measure, formula, limit = frame["measure"].iat[pos], frame["formula"].iat[pos], limits[pos]
        name = _NAMES.get(measure, measure)
        inputs = json.loads(frame["inputs"].iat[pos])
        shown = ", ".join(f"{k} = {'missing' if x is None else f'{x:g}'}"
                          for k, x in inputs.items())  # fmt: skip
        source = f"{formula} from {shown}; check these cells"
        if not np.isfinite(yi[pos]):
            column, value = "yi", yi[pos]
            rule = f"no effect size can be computed: {source} (they give no finite {name})"
        elif not (np.isfinite(vi[pos]) and vi[pos] > 0):
            column, value = "vi", vi[pos]
            rule = (f"no effect size can be computed: its sampling variance must be finite and "
                    f"> 0; {source}")  # fmt: skip
        else:
            column, value = "yi", yi[pos]
            rule = (f"implausible effect size: |{name}| = {abs(yi[pos]):.6g} exceeds {limit:g}; "
                    f"{source}, or allow larger effects with analysis.max_abs_yi in the "
                    "codebook")  # fmt: skip
        value = None if np.isnan(value) else f"{value:.6g}"  # text: JSON has no inf
        out.append(failure(sheet, res[ROW].iat[pos], column, value, rule))
    return out


def sheet_effects(
    typed: dict[str, pd.DataFrame], codebook: Codebook, sheet: Sheet, skip: set[int]
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Effect size of every results row (rows in *skip*, by spreadsheet row, are left out).

    Returns the frame (index of the results frame; :data:`EFFECT_COLUMNS`) and the failures
    of rows from which nothing (plausible) can be computed. numpy's floating-point warnings
    are off: overflow and division by zero become failures (see the module notes).
    """
    with np.errstate(all="ignore"):
        frame, failures = _sheet_effects(typed, codebook, sheet, skip)
    if frame.empty:
        return frame, failures
    res = typed["results"].loc[frame.index]
    done = res[ROW].isin({f["row"] for f in failures}).to_numpy()
    failures += _implausible(frame, res, codebook.analysis.max_abs_yi, sheet, done)
    return frame, failures


def _sheet_effects(
    typed: dict[str, pd.DataFrame], codebook: Codebook, sheet: Sheet, skip: set[int]
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    res = typed["results"]
    res = res[~res[ROW].isin(skip)]
    outcomes = typed["outcomes"][["study_key", "outcome_key", "direction"]]
    direction = (
        res[["study_key", "outcome_key"]]
        .merge(outcomes.drop_duplicates(["study_key", "outcome_key"]), how="left")["direction"]
        .fillna("higher")
        .to_numpy()
    )
    analysis = codebook.analysis
    divisor = shared_arm_divisor(res).to_numpy() if analysis.split_shared_arm_n else None
    div = divisor if divisor is not None else np.ones(len(res))
    failures: list[dict[str, Any]] = []
    if res.empty:
        return pd.DataFrame(columns=list(EFFECT_COLUMNS)), failures
    if analysis.measure in _TWO_BY_TWO:
        frame, failures = _two_by_two(res, analysis.measure, direction == "lower", div, sheet)
    else:
        try:
            frame = compute_effects(res, measure=analysis.measure, direction=list(direction),
                                    default_ri=analysis.default_ri, n2_divisor=div,
                                    first_row=0)  # fmt: skip
        except ValidationError as err:
            rows = res[ROW].to_numpy()
            for f in err.failures:
                row = rows[f["row"]] if f.get("row") is not None else None
                failures.append(failure(sheet, row, f.get("column"), f.get("value"), f["rule"]))
            return pd.DataFrame(columns=list(EFFECT_COLUMNS)), failures
        frame = frame.copy()
        frame["inputs"] = [_json(d) for d in frame["inputs"]]
        frame["ri_used"] = frame["ri_used"].astype("float64")
    frame["cluster"] = clusters(res)
    # a reported effect size was not computed from n2i: no split applies to it
    frame["n_split"] = (div > 1) & ~frame["formula"].astype(str).str.endswith(":reported")
    return frame[list(EFFECT_COLUMNS)], failures
