"""From a stored result row to one effect size: formula choice, direction, imputation.

:func:`compute_effect` is the reference: it takes one result row (a mapping with the
``result`` columns of DATAMODEL.md) and returns an :class:`EffectComputation` with ``yi``,
``vi``, the measure, the formula key, the numbers used, and the flags the store records.
:func:`compute_effects` does the same for a whole coding sheet at once (vectorised; the
ingest calls it once per sheet) and agrees with :func:`compute_effect` row by row.

Formula priority (the first one whose inputs are all reported is used)
----------------------------------------------------------------------
1. ``SMD:means`` -- post means, SDs and ns of both arms: Hedges' g (escalc ``SMD``).
2. ``SMD:change`` -- change-score means and SDs of both arms with ``n1i``/``n2i``
   (escalc ``SMD`` on the change scores).
3. ``SMD:prepost-controlled`` -- post and baseline means and baseline SDs of both arms and
   a pre-post correlation: the difference of the arms' standardized mean changes (escalc
   ``SMCRD``; Morris 2008 / Becker 1988, as metafor documents it).
4. ``SMCR:prepost`` -- one group (no comparator: ``n2i`` and ``m2i`` missing) with post and
   baseline means, baseline SD, ``n1i`` and a correlation: escalc ``SMCR``; measure SMCR.
5. ``SMD:d`` -- a reported d with ``n1i``/``n2i`` (bias-corrected to g, as escalc).
6. ``SMD:t`` -- a t statistic (signed: positive when arm 1's raw mean is higher).
7. ``SMD:F`` -- an F statistic with one numerator df: ``t = sign * sqrt(F)``. F carries no
   direction; the sign is that of ``m1i - m2i`` when both means are reported, else that of
   a signed ``pi`` when reported, else that of ``fi`` itself (enter ``-F`` when arm 2 is
   higher, the same convention as the signed p value). ``inputs["sign"]`` records it.
8. ``SMD:p`` -- a signed two-sided p value (sign = direction of the effect).
9. ``SMD:logOR`` -- events out of ``n1i``/``n2i``: log odds ratio (1/2 added to every cell
   of a table with a zero cell, metafor's default) converted to an SMD with the logistic
   factor ``sqrt(3)/pi`` (escalc ``OR2DL``, Hasselblad & Hedges 1995); else a reported odds
   ratio ``ori`` with its 95% CI ``ci_lb``, ``ci_ub``:
   ``SE(log OR) = (log ci_ub - log ci_lb) / (2 * 1.959964)``, then the same conversion.
10. ``SMD:reported`` -- a reported effect size and its sampling variance, ``yi_reported``
    and ``vi_reported`` (e.g. a database's precomputed Hedges' g and its SE squared), taken
    as given (signed like ``di``: positive when arm 1's raw score is higher). The lowest
    priority: any statistics from which the effect size can be computed come first.

The pre-post correlation is ``ri`` when reported, else ``default_ri`` (the codebook's
default); then ``imputed_r=True`` and ``ri_used`` holds the value. With
``default_ri=None`` formulas 3 and 4 need a reported ``ri``.

Direction: ``direction="lower"`` (lower raw score is better, e.g. depression scores, or
events that are harmful) reverses the sign so that positive always means improvement of
arm 1 over arm 2 (or from baseline to post); ``flipped=True`` records it.

Multi-arm trials: a comparator arm shared by ``k`` comparisons is split by passing
``n2_divisor=k``: ``n2i`` (and ``event2i``) are divided by ``k`` before any formula, means
and SDs unchanged (Cochrane Handbook 23.3.4). ``inputs`` holds the divided values and
``n2_divisor``. Effects sharing an arm are also one dependence cluster in the store.

All two-group formulas give measure ``SMD``; the variance type is metafor's ``LS``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from evidence.errors import ValidationError
from evidence.stats.escalc import escalc

__all__ = [
    "EffectComputation",
    "compute_effect",
    "compute_effects",
    "FORMULAS",
    "COLUMNS",
    "REPORTED",
]

#: Result-row statistics read (DATAMODEL.md ``result`` columns).
COLUMNS = (
    "n1i", "m1i", "sd1i", "n2i", "m2i", "sd2i",
    "m1i_pre", "sd1i_pre", "m2i_pre", "sd2i_pre",
    "m1i_change", "sd1i_change", "m2i_change", "sd2i_change",
    "ri", "event1i", "event2i", "di", "ti", "pi", "fi", "ori", "ci_lb", "ci_ub",
    "yi_reported", "vi_reported",
)  # fmt: skip

#: formula key -> (escalc measure, {escalc argument: record column}), in priority order.
FORMULAS: dict[str, tuple[str, dict[str, str]]] = {
    "SMD:means": ("SMD", {a: a for a in ("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i")}),
    "SMD:change": ("SMD", {"m1i": "m1i_change", "sd1i": "sd1i_change", "n1i": "n1i",
                           "m2i": "m2i_change", "sd2i": "sd2i_change", "n2i": "n2i"}),
    "SMD:prepost-controlled": ("SMCRD", {a: a for a in (
        "m1i", "m1i_pre", "sd1i_pre", "n1i", "m2i", "m2i_pre", "sd2i_pre", "n2i", "ri")}),
    "SMCR:prepost": ("SMCR", {"m1i": "m1i", "m2i": "m1i_pre", "sd1i": "sd1i_pre",
                              "ni": "n1i", "ri": "ri"}),
    "SMD:d": ("SMD", {"di": "di", "n1i": "n1i", "n2i": "n2i"}),
    "SMD:t": ("SMD", {"ti": "ti", "n1i": "n1i", "n2i": "n2i"}),
    "SMD:F": ("SMD", {"ti": "fi", "n1i": "n1i", "n2i": "n2i"}),
    "SMD:p": ("SMD", {"pi": "pi", "n1i": "n1i", "n2i": "n2i"}),
    "SMD:logOR": ("OR2DL", {"ai": "event1i", "n1i": "n1i", "ci": "event2i", "n2i": "n2i"}),
}  # fmt: skip

#: The reported-effect formula (no escalc measure: yi and vi are taken as reported).
REPORTED = "SMD:reported"
_REPORTED_INPUTS = ("yi_reported", "vi_reported")

_Z975 = stats.norm.ppf(0.975)
_NEEDS_R = ("SMD:prepost-controlled", "SMCR:prepost")


@dataclass(frozen=True)
class EffectComputation:
    """One effect size and how it was obtained (what the store's ``effect_size`` keeps)."""

    yi: float
    vi: float
    measure: str
    formula: str
    inputs: dict[str, float] = field(default_factory=dict)
    flipped: bool = False
    imputed_r: bool = False
    ri_used: float | None = None


def _num(value: Any) -> float:
    """A reported number, or NaN when missing (None, NaN, pandas NA, empty string)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return math.nan
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _check_options(measure: str, direction: Any, default_ri: Any, n2_divisor: Any) -> None:
    problems = []
    if measure != "SMD":
        problems.append(("measure", measure, "measure 'SMD' (the only one computed from rows)"))
    for d in np.atleast_1d(np.asarray(direction, dtype=object)):
        if d not in ("higher", "lower"):
            problems.append(("direction", d, "'higher' or 'lower'"))
            break
    if default_ri is not None and not (-1 < float(default_ri) < 1):
        problems.append(("default_ri", default_ri, "-1 < default_ri < 1"))
    if np.any(~(np.asarray(n2_divisor, dtype=float) >= 1)):
        problems.append(("n2_divisor", n2_divisor, "n2_divisor >= 1"))
    if problems:
        col, val, rule = problems[0]
        raise ValidationError(
            f"compute_effect: {col} = {val!r} breaks the rule '{rule}'.",
            [
                {"file": None, "sheet": None, "row": None, "column": c, "value": v, "rule": r}
                for c, v, r in problems
            ],
        )


def _generic_rules(v: Mapping[str, np.ndarray]) -> list[tuple[np.ndarray, str, str]]:
    """(bad mask, column, rule) for value rules independent of the formula used."""
    out = []

    def add(col: str, ok: np.ndarray, rule: str) -> None:
        x = v[col]
        out.append((~np.isnan(x) & ~ok, col, rule))

    for col in COLUMNS:
        add(col, ~np.isinf(v[col]), "finite")
    for col in ("sd1i", "sd2i", "sd1i_pre", "sd2i_pre", "sd1i_change", "sd2i_change"):
        add(col, v[col] > 0, f"{col} > 0")
    for col in ("n1i", "n2i"):
        add(col, v[col] >= 1, f"{col} >= 1")
    add("event1i", (v["event1i"] >= 0) & ~(v["event1i"] > v["n1i"]), "0 <= event1i <= n1i")
    add("event2i", (v["event2i"] >= 0) & ~(v["event2i"] > v["n2i"]), "0 <= event2i <= n2i")
    add("ri", np.abs(v["ri"]) < 1, "-1 < ri < 1")
    add("pi", (np.abs(v["pi"]) <= 1) & (v["pi"] != 0), "-1 <= pi <= 1 and pi != 0")
    add("ori", v["ori"] > 0, "ori > 0")
    add("ci_lb", v["ci_lb"] > 0, "ci_lb > 0 (the CI of an odds ratio)")
    add("ci_ub", ~(v["ci_ub"] <= v["ci_lb"]), "ci_ub > ci_lb")
    add("vi_reported", v["vi_reported"] > 0, "vi_reported > 0")
    return out


def _have(v: Mapping[str, Any], *cols: str) -> Any:
    ok = True
    for c in cols:
        ok = ok & ~np.isnan(v[c])
    return ok


def _missing_message(v: Mapping[str, float]) -> str:
    """What a row lacks, in words (``v`` holds one row's values)."""

    def has(c: str) -> bool:
        return not math.isnan(v[c])

    parts = []
    if not (has("sd1i") and has("sd2i")) and not (has("sd1i_change") and has("sd2i_change")):
        parts.append("no SD")
    elif not (has("m1i") and has("m2i")) and not (has("m1i_change") and has("m2i_change")):
        parts.append("no means of both arms")
    else:
        parts.append("no n of both arms")
    stats_given = [c for c in ("ti", "pi", "di", "fi") if has(c)]
    if stats_given:
        parts.append(f"{', '.join(stats_given)} without n1i and n2i")
    else:
        parts.append("no t, p or d")
    if has("m1i_pre") and not has("ri"):
        parts.append("baseline scores without ri (and no default r)")
    return "no effect size can be computed: " + " and ".join(parts)


def _choose(v: Mapping[str, Any], ri_ok: Any) -> list[tuple[str, Any]]:
    """(formula, availability) in priority order; works on scalars and arrays alike."""
    single = np.isnan(v["n2i"]) & np.isnan(v["m2i"])
    return [
        ("SMD:means", _have(v, "n1i", "m1i", "sd1i", "n2i", "m2i", "sd2i")),
        ("SMD:change", _have(v, "n1i", "n2i", "m1i_change", "sd1i_change", "m2i_change",
                             "sd2i_change")),
        ("SMD:prepost-controlled", _have(v, "n1i", "n2i", "m1i", "m2i", "m1i_pre", "m2i_pre",
                                         "sd1i_pre", "sd2i_pre") & ri_ok),
        ("SMCR:prepost", single & _have(v, "n1i", "m1i", "m1i_pre", "sd1i_pre") & ri_ok),
        ("SMD:d", _have(v, "di", "n1i", "n2i")),
        ("SMD:t", _have(v, "ti", "n1i", "n2i")),
        ("SMD:F", _have(v, "fi", "n1i", "n2i")),
        ("SMD:p", _have(v, "pi", "n1i", "n2i")),
        ("SMD:logOR", _have(v, "event1i", "event2i", "n1i", "n2i")
         | _have(v, "ori", "ci_lb", "ci_ub")),
        (REPORTED, _have(v, *_REPORTED_INPUTS)),
    ]  # fmt: skip


def _f_sign(v: Mapping[str, Any]) -> Any:
    """Sign of an F-based effect: from the means, else a signed p, else the sign of fi."""
    diff = v["m1i"] - v["m2i"]
    return np.where(
        ~np.isnan(diff) & (diff != 0),
        np.sign(diff),
        np.where(~np.isnan(v["pi"]), np.sign(v["pi"]), np.where(v["fi"] < 0, -1.0, 1.0)),
    )


def _escalc_args(formula: str, v: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    measure, mapping = FORMULAS[formula]
    args = {arg: v[col] for arg, col in mapping.items()}
    if formula == "SMD:F":
        args["ti"] = _f_sign(v) * np.sqrt(np.abs(v["fi"]))
    return measure, args


def _remap(err: ValidationError, formula: str, rows: np.ndarray | None, first_row: int):
    """escalc failures -> failures on record columns (and sheet rows)."""
    mapping = FORMULAS[formula][1]
    out = []
    for f in err.failures:
        col = mapping.get(f["column"], f["column"])
        row = None if rows is None or f["row"] is None else int(rows[f["row"] - 1]) + first_row
        out.append(
            {
                **f,
                "row": row,
                "column": col,
                "rule": f"{f['rule'].replace(f['column'], col)} ({formula})",
            }
        )
    return out


def _raise(failures: list[dict[str, Any]], what: str) -> None:
    f = failures[0]
    where = f"row {f['row']}: " if f["row"] is not None else ""
    value = f["value"]
    shown = f" = {value:g}" if isinstance(value, float) and not math.isnan(value) else ""
    more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    if f["rule"].startswith("no effect size"):
        text = f"{where}{f['rule']}"
    else:
        text = f"{where}{f['column']}{shown} breaks the rule '{f['rule']}'"
    raise ValidationError(f"{what}: {text}{more}.", failures)


@np.errstate(all="ignore")  # overflow etc. end as refusals, not warnings
def compute_effect(
    record: Mapping[str, Any],
    *,
    measure: str = "SMD",
    direction: str = "higher",
    default_ri: float | None = 0.5,
    n2_divisor: float = 1.0,
) -> EffectComputation:
    """Compute one result row's effect size by the first available formula.

    Parameters
    ----------
    record
        The row's statistics under DATAMODEL.md's ``result`` column names; missing keys,
        ``None`` and NaN mean "not reported".
    measure
        ``"SMD"`` (the measure rows are pooled on; single-group rows give ``SMCR``).
    direction
        ``"higher"`` or ``"lower"``: which direction of the raw score is better.
    default_ri
        Pre-post correlation used when ``ri`` is not reported (``imputed_r=True``).
    n2_divisor
        Divide the comparator arm's ``n2i`` and ``event2i`` by this (shared control arm).

    Returns
    -------
    EffectComputation

    Raises
    ------
    ValidationError
        A value breaks a rule (SD <= 0, events > n, ...) or nothing usable is reported
        (the message says what is missing, e.g. "no SD and no t, p or d").

    Notes
    -----
    See the module docstring for the formula priority and the conventions.
    """
    _check_options(measure, direction, default_ri, n2_divisor)
    v = {c: _num(record.get(c)) for c in COLUMNS}
    if n2_divisor != 1:
        v["n2i"] /= n2_divisor
        v["event2i"] /= n2_divisor
    arrays = {c: np.array([x]) for c, x in v.items()}
    failures = []
    for bad, col, rule in _generic_rules(arrays):
        if bad[0]:
            failures.append(
                {
                    "file": None,
                    "sheet": None,
                    "row": None,
                    "column": col,
                    "value": v[col],
                    "rule": rule,
                }
            )
    if failures:
        _raise(failures, "result row")

    ri_ok = not math.isnan(v["ri"]) or default_ri is not None
    chosen = next((f for f, ok in _choose(v, ri_ok) if bool(ok)), None)
    if chosen is None:
        _raise(
            [
                {
                    "file": None,
                    "sheet": None,
                    "row": None,
                    "column": None,
                    "value": None,
                    "rule": _missing_message(v),
                }
            ],
            "result row",
        )
    imputed = chosen in _NEEDS_R and math.isnan(v["ri"])
    if imputed:
        v["ri"] = float(default_ri)  # type: ignore[arg-type]

    if chosen == "SMD:logOR" and math.isnan(v["event1i"] + v["event2i"] + v["n1i"] + v["n2i"]):
        log_or = math.log(v["ori"])
        se = (math.log(v["ci_ub"]) - math.log(v["ci_lb"])) / (2 * _Z975)
        yi, vi = log_or * math.sqrt(3) / math.pi, float(se**2 * 3 / math.pi**2)
        inputs = {c: v[c] for c in ("ori", "ci_lb", "ci_ub")}
    elif chosen == REPORTED:
        yi, vi = v["yi_reported"], v["vi_reported"]
        inputs = {c: v[c] for c in _REPORTED_INPUTS}
    else:
        es_measure, args = _escalc_args(chosen, v)
        try:
            res = escalc(es_measure, **{a: [x] for a, x in args.items()})
        except ValidationError as err:
            _raise(_remap(err, chosen, None, 0), "result row")
        yi, vi = float(res.yi[0]), float(res.vi[0])
        inputs = {col: v[col] for col in FORMULAS[chosen][1].values()}
        if chosen == "SMD:F":
            inputs["sign"] = float(_f_sign(v))
    if n2_divisor != 1 and ("n2i" in inputs):
        inputs["n2_divisor"] = float(n2_divisor)
    flipped = direction == "lower"
    return EffectComputation(
        yi=-yi if flipped else yi,
        vi=vi,
        measure="SMCR" if chosen == "SMCR:prepost" else "SMD",
        formula=chosen,
        inputs=inputs,
        flipped=flipped,
        imputed_r=imputed,
        ri_used=v["ri"] if chosen in _NEEDS_R else None,
    )


@np.errstate(all="ignore")  # overflow etc. end as refusals, not warnings
def compute_effects(
    frame: Any,
    *,
    measure: str = "SMD",
    direction: str | Sequence[str] = "higher",
    default_ri: float | None = 0.5,
    n2_divisor: float | Sequence[float] = 1.0,
    first_row: int = 2,
) -> Any:
    """Vectorised :func:`compute_effect` for every row of a results sheet.

    Parameters
    ----------
    frame
        A DataFrame with (some of) the ``COLUMNS``; absent columns count as not reported.
    direction, n2_divisor
        One value for all rows, or one per row.
    first_row
        Row number reported for the frame's first row in failures (2: a sheet whose
        header is row 1).

    Returns
    -------
    pandas.DataFrame
        Same index as ``frame``; columns ``yi, vi, measure, formula, inputs`` (dicts),
        ``flipped, imputed_r, ri_used``.

    Raises
    ------
    ValidationError
        Listing every failing cell of every row (nothing is computed partially).
    """
    import pandas as pd

    _check_options(measure, direction, default_ri, n2_divisor)
    k = len(frame)
    v: dict[str, np.ndarray] = {}
    for c in COLUMNS:
        if c in frame.columns:
            v[c] = pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
        else:
            v[c] = np.full(k, np.nan)
    divisor = np.broadcast_to(np.asarray(n2_divisor, dtype=float), (k,))
    v["n2i"] = v["n2i"] / divisor
    v["event2i"] = v["event2i"] / divisor
    flipped = np.broadcast_to(np.asarray(direction, dtype=object), (k,)) == "lower"

    failures: list[dict[str, Any]] = []
    broken = np.zeros(k, dtype=bool)  # rows failing a generic rule are not computed further
    for bad, col, rule in _generic_rules(v):
        broken |= bad
        for r in np.flatnonzero(bad):
            failures.append(
                {
                    "file": None,
                    "sheet": None,
                    "row": int(r) + first_row,
                    "column": col,
                    "value": float(v[col][r]),
                    "rule": rule,
                }
            )
    ri_ok = ~np.isnan(v["ri"]) | (default_ri is not None)
    formula = np.full(k, None, dtype=object)
    free = np.ones(k, dtype=bool)
    for name, ok in _choose(v, ri_ok):
        take = free & ok
        formula[take] = name
        free &= ~take
    for r in np.flatnonzero(free):
        row = {c: float(v[c][r]) for c in COLUMNS}
        failures.append(
            {
                "file": None,
                "sheet": None,
                "row": int(r) + first_row,
                "column": None,
                "value": None,
                "rule": _missing_message(row),
            }
        )
    imputed = np.isin(formula, _NEEDS_R) & np.isnan(v["ri"])
    ri = np.where(imputed, np.nan if default_ri is None else default_ri, v["ri"])
    v["ri"] = ri

    yi = np.full(k, np.nan)
    vi = np.full(k, np.nan)
    from_or = (formula == "SMD:logOR") & ~_have(v, "event1i", "event2i", "n1i", "n2i")
    for name in FORMULAS:
        rows = np.flatnonzero((formula == name) & ~from_or & ~broken)
        if rows.size == 0:
            continue
        es_measure, args = _escalc_args(name, {c: x[rows] for c, x in v.items()})
        try:
            res = escalc(es_measure, **args)
        except ValidationError as err:
            failures.extend(_remap(err, name, rows, first_row))
            continue
        yi[rows], vi[rows] = res.yi, res.vi
    with np.errstate(all="ignore"):
        se = (np.log(v["ci_ub"]) - np.log(v["ci_lb"])) / (2 * _Z975)
        yi = np.where(from_or, np.log(v["ori"]) * np.sqrt(3) / np.pi, yi)
        vi = np.where(from_or, se**2 * 3 / np.pi**2, vi)
    reported = (formula == REPORTED) & ~broken
    yi = np.where(reported, v["yi_reported"], yi)
    vi = np.where(reported, v["vi_reported"], vi)
    if failures:
        failures.sort(key=lambda f: (f["row"] is None, f["row"] or 0))
        _raise(failures, "results")

    sign = _f_sign(v)
    inputs = []
    for r in range(k):
        name = formula[r]
        if from_or[r]:
            cols = ("ori", "ci_lb", "ci_ub")
        elif name == REPORTED:
            cols = _REPORTED_INPUTS
        else:
            cols = FORMULAS[name][1].values()
        d = {c: float(v[c][r]) for c in cols}
        if name == "SMD:F":
            d["sign"] = float(sign[r])
        if divisor[r] != 1 and "n2i" in d:
            d["n2_divisor"] = float(divisor[r])
        inputs.append(d)
    needs_r = np.isin(formula, _NEEDS_R)
    return pd.DataFrame(
        {
            "yi": np.where(flipped, -yi, yi),
            "vi": vi,
            "measure": np.where(formula == "SMCR:prepost", "SMCR", "SMD"),
            "formula": formula,
            "inputs": inputs,
            "flipped": flipped,
            "imputed_r": imputed,
            "ri_used": pd.array(np.where(needs_r, ri, np.nan), dtype="Float64"),
        },
        index=frame.index,
    )
