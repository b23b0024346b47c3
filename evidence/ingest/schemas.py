"""Codebook -> pandera schemas, type conversion and the cross-field rules of coding sheets.

Validation is vectorised and lazy: one pass reports every failing cell. Each failure is a dict
``{file, sheet, row, column, value, rule}`` with ``row`` as the spreadsheet shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.errors import SchemaErrors

from evidence.ingest._countries import ISO_3166_ALPHA2
from evidence.ingest.codebook import KEYS, REQUIRED_SHEETS, Codebook, Column
from evidence.ingest.readers import ROW, Sheet

__all__ = ["sheet_schema", "check_sheets", "failure"]

#: Largest magnitude of a number in any numeric or integer column: 2^53, the largest whole
#: number a float64 (the type cells are read as) holds exactly. It is within int64 (so no
#: integer overflows the database) and far beyond any statistic a trial reports; larger values
#: (1e23, 1e308) would be stored inexactly or overflow the effect-size arithmetic.
MAX_MAGNITUDE = 2.0**53
#: Largest plausible group size: ten million, more than any trial has randomised (the largest,
#: e.g. the 1954 polio vaccine field trial, enrolled about 1.8 million in all).
MAX_N = 10_000_000
#: Group-size columns the bound applies to, by sheet.
N_COLUMNS = {"studies": ("n_total",), "arms": ("n_randomized",), "results": ("n1i", "n2i")}
#: A result's n may exceed its arm's randomised n by this fraction (rounding, a coder using
#: the analysed n of an imputed ITT set); more is refused.
N_TOLERANCE = 0.10
#: An SD below this fraction of its mean's magnitude is effectively zero (a typo, or a standard
#: error or variance in the wrong column); it would turn any mean difference into an absurd g.
MIN_SD_RATIO = 1e-6
#: (SD column, the mean it describes) in a results sheet.
SD_OF_MEAN = (("sd1i", "m1i"), ("sd2i", "m2i"), ("sd1i_pre", "m1i_pre"), ("sd2i_pre", "m2i_pre"),
              ("sd1i_change", "m1i_change"), ("sd2i_change", "m2i_change"))  # fmt: skip
_HUGE = ("must be between -2^53 and 2^53 (9007199254740992): a larger number is not stored "
         "exactly and is no plausible coded value")  # fmt: skip
_TOO_MANY = (f"a group size must be <= {MAX_N} (ten million: more than any trial has "
             "randomised); check for a typo or a shifted column")  # fmt: skip

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
_NOT_NULLABLE = "required value is missing"


def failure(
    sheet: Sheet | None,
    row: Any,
    column: str | None,
    value: Any,
    rule: str,
    *,
    file: str | None = None,
    sheet_name: str | None = None,
) -> dict[str, Any]:
    """One failure record, with plain Python values (JSON-ready)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        value = None
    return {
        "file": sheet.file if sheet is not None else file,
        "sheet": sheet.name if sheet is not None else sheet_name,
        "row": int(row) if row is not None and not pd.isna(row) else None,
        "column": column,
        "value": value,
        "rule": rule,
    }


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _checks(col: Column) -> list[pa.Check]:
    checks: list[pa.Check] = []
    if col.levels is not None:
        checks.append(pa.Check.isin(list(col.levels), error="must be one of "
                                    + ", ".join(map(str, col.levels))))  # fmt: skip
    if col.type == "country":
        allowed = sorted(ISO_3166_ALPHA2 if col.levels is None else set(col.levels))
        checks.append(pa.Check.isin(allowed, error="must be an ISO 3166-1 alpha-2 country code "
                                    "(e.g. US, GB, CN)"))  # fmt: skip
    for attr, make, word in (
        ("min", pa.Check.ge, ">="), ("max", pa.Check.le, "<="),
        ("gt", pa.Check.gt, ">"), ("lt", pa.Check.lt, "<"),
    ):  # fmt: skip
        bound = getattr(col, attr)
        if bound is not None:
            checks.append(make(bound, error=f"must be {word} {_fmt(bound)}"))
    if col.pattern is not None:
        checks.append(pa.Check.str_matches(col.pattern, error=f"must match {col.pattern}"))
    if col.name in N_COLUMNS.get(col.sheet, ()):
        checks.append(pa.Check.le(MAX_N, error=_TOO_MANY))
    return checks


def sheet_schema(codebook: Codebook, sheet: str) -> pa.DataFrameSchema:
    """The pandera schema of one sheet (applied to frames already converted to their types)."""
    columns = {
        name: pa.Column(checks=_checks(col), nullable=not col.required, required=False)
        for name, col in codebook.columns(sheet).items()
    }
    return pa.DataFrameSchema(columns, name=sheet, strict=False)


def _convert(text: pd.Series, col: Column) -> tuple[pd.Series, pd.Series, str]:
    """Convert text cells to the column's type; returns (values, bad mask, rule)."""
    blank = text == ""
    if col.type in ("numeric", "integer"):
        values = pd.to_numeric(text.where(~blank, None), errors="coerce").astype("float64")
        bad = ~blank & ~np.isfinite(values)
        if col.type == "integer":
            frac = ~bad & ~blank & (values != np.round(values))
            return values.where(~frac, np.nan), bad | frac, "must be a whole number"
        return values, bad, "must be a number"
    if col.type == "boolean":
        low = text.str.lower()
        values = pd.Series(np.where(low.isin(_TRUE), True, np.where(low.isin(_FALSE), False,
                                                                  None)), index=text.index,
                           dtype=object)  # fmt: skip
        return values, ~blank & values.isna(), "must be true or false"
    values = text.where(~blank, None).astype(object)
    return values, pd.Series(False, index=text.index), ""


def _typed(sheet: Sheet, codebook: Codebook, failures: list[dict]) -> pd.DataFrame:
    """Convert a text sheet to typed columns, reporting header and type failures."""
    declared = codebook.columns(sheet.name)
    frame = sheet.frame
    for name in sheet.header:
        if name not in declared:
            failures.append(failure(sheet, 1, name, None, f"column is not declared for sheet "
                                    f"{sheet.name} in codebook {codebook.name}"))  # fmt: skip
    out = pd.DataFrame(index=frame.index)
    out[ROW] = frame[ROW]
    for name, col in declared.items():
        if name not in frame.columns:
            if col.required:
                failures.append(failure(sheet, None, name, None, "required column is missing"))
            text = pd.Series("", index=frame.index, dtype=object)
        else:
            text = frame[name].astype(object)
        if col.default is not None:
            text = text.where(text != "", _fmt(col.default) if isinstance(col.default, float)
                              else str(col.default).lower() if isinstance(col.default, bool)
                              else str(col.default))  # fmt: skip
        values, bad, rule = _convert(text, col)
        for idx in np.flatnonzero(bad.to_numpy()):
            failures.append(failure(sheet, frame[ROW].iat[idx], name, text.iat[idx], rule))
        if col.type in ("numeric", "integer"):
            huge = ~bad & (values.abs() > MAX_MAGNITUDE)
            for idx in np.flatnonzero(huge.to_numpy()):
                failures.append(failure(sheet, frame[ROW].iat[idx], name, text.iat[idx], _HUGE))
            values, bad = values.where(~huge, np.nan), bad | huge
        out[name] = values.where(~bad, None) if values.dtype == object else values
        out.attrs.setdefault("bad", set()).update((name, i) for i in frame.index[bad])
    return out


def _schema_failures(sheet: Sheet, typed: pd.DataFrame, codebook: Codebook) -> list[dict]:
    schema = sheet_schema(codebook, sheet.name)
    try:
        schema.validate(typed, lazy=True)
    except SchemaErrors as exc:
        bad = typed.attrs.get("bad", set())
        cases = exc.failure_cases
        out = []
        for rec in cases.itertuples(index=False):
            idx = rec.index
            if idx is None or (isinstance(idx, float) and np.isnan(idx)):
                continue
            if (rec.column, idx) in bad:
                continue  # already reported as a wrong type
            rule = _NOT_NULLABLE if rec.check == "not_nullable" else str(rec.check)
            value = None if rec.check == "not_nullable" else rec.failure_case
            if value is not None and rec.column in sheet.frame.columns:
                value = sheet.frame.at[idx, rec.column]  # the cell as the sheet shows it
            out.append(failure(sheet, typed[ROW].loc[idx], rec.column, value, rule))
        return out
    return []


def _keyed(frame: pd.DataFrame, cols: tuple[str, ...]) -> pd.Series:
    parts = [frame[c].astype(object).where(frame[c].notna(), "\x00").astype(str) for c in cols]
    key = parts[0]
    for p in parts[1:]:
        key = key + "\x1f" + p
    return key


def _cross_failures(
    sheets: Mapping[str, Sheet], typed: Mapping[str, pd.DataFrame], codebook: Codebook
) -> list[dict]:
    out: list[dict] = []
    for name, frame in typed.items():
        keys = KEYS[name]
        if not all(k in frame.columns for k in keys) or frame.empty:
            continue
        required = [k for k in keys if not (name == "risk_of_bias" and k == "result_key")]
        complete = frame[required].notna().all(axis=1)
        dup = complete & frame.duplicated(subset=list(keys), keep="first")
        if not dup.any():
            continue
        key = _keyed(frame, keys)
        first_row = frame[ROW].groupby(key).transform("first")
        for idx in frame.index[dup]:
            value = ", ".join(str(frame.at[idx, k]) for k in keys)
            out.append(failure(sheets[name], frame.at[idx, ROW], keys[-1], value,
                               f"duplicate natural key ({', '.join(keys)}); first at row "
                               f"{first_row.at[idx]}"))  # fmt: skip

    studies = set(typed["studies"]["study_key"].dropna()) if "studies" in typed else set()
    for name in ("arms", "outcomes", "timepoints", "results", "risk_of_bias"):
        if name not in typed:
            continue
        frame = typed[name]
        missing = frame["study_key"].notna() & ~frame["study_key"].isin(studies)
        for idx in frame.index[missing]:
            out.append(failure(sheets[name], frame.at[idx, ROW], "study_key",
                               frame.at[idx, "study_key"], "unknown study: not in the studies "
                               "sheet"))  # fmt: skip

    if "results" in typed:
        res = typed["results"]
        refs = (("arm1_key", "arms", "arm_key", "arm"), ("arm2_key", "arms", "arm_key", "arm"),
                ("outcome_key", "outcomes", "outcome_key", "outcome"),
                ("timepoint_key", "timepoints", "timepoint_key", "timepoint"))  # fmt: skip
        for col, target, tcol, word in refs:
            if target not in typed or col not in res.columns:
                continue
            known = pd.MultiIndex.from_frame(typed[target][["study_key", tcol]].astype(object))
            given = res[col].notna() & res["study_key"].isin(studies)
            pairs = pd.MultiIndex.from_frame(res[["study_key", col]].astype(object))
            missing = given & ~pairs.isin(known)
            for idx in res.index[missing]:
                out.append(failure(sheets["results"], res.at[idx, ROW], col, res.at[idx, col],
                                   f"unknown {word}: study {res.at[idx, 'study_key']} has no "
                                   f"{word} with this key in the {target} sheet"))  # fmt: skip
        out += _result_rules(sheets["results"], res, codebook)
        out += _n_within_randomised(sheets, typed)
        rob = typed.get("risk_of_bias")
        if rob is not None and "result_key" in rob.columns:
            known = pd.MultiIndex.from_frame(res[["study_key", "result_key"]].astype(object))
            pairs = pd.MultiIndex.from_frame(rob[["study_key", "result_key"]].astype(object))
            missing = rob["result_key"].notna() & ~pairs.isin(known)
            for idx in rob.index[missing]:
                out.append(failure(sheets["risk_of_bias"], rob.at[idx, ROW], "result_key",
                                   rob.at[idx, "result_key"], "unknown result: not in the "
                                   "results sheet of this study"))  # fmt: skip

    for mod in codebook.derived():
        frame = typed.get(mod.sheet)
        if frame is None or mod.derived_from not in frame.columns or mod.has_default:
            continue
        assert mod.mapping is not None
        src = frame[mod.derived_from]
        unmapped = src.notna() & ~src.isin(list(mod.mapping))
        for idx in frame.index[unmapped]:
            out.append(failure(sheets[mod.sheet], frame.at[idx, ROW], mod.derived_from,
                               src.at[idx], f"no {mod.name} is mapped to this value in the "
                               "codebook"))  # fmt: skip
    return out


def _result_rules(sheet: Sheet, res: pd.DataFrame, codebook: Codebook) -> list[dict]:
    out: list[dict] = []

    def cell(idx: Any, name: str) -> Any:
        """The cell as the sheet shows it (``4``, not the typed ``4.0``)."""
        return sheet.frame.at[idx, name] if name in sheet.frame.columns else res.at[idx, name]

    def col(name: str) -> pd.Series:
        if name in res.columns:
            return res[name].astype("float64")
        return pd.Series(np.nan, index=res.index)

    if "events_within_n" in codebook.rules:
        for ev, n in (("event1i", "n1i"), ("event2i", "n2i")):
            bad = col(ev) > col(n)
            for idx in res.index[bad]:
                out.append(failure(sheet, res.at[idx, ROW], ev, cell(idx, ev),
                                   f"events must not exceed the group size ({ev} <= {n} = "
                                   f"{_fmt(res.at[idx, n])})"))  # fmt: skip
    if "ci_contains_estimate" in codebook.rules:
        lb, ub = col("ci_lb"), col("ci_ub")
        reversed_ = lb > ub
        for idx in res.index[reversed_]:
            out.append(failure(sheet, res.at[idx, ROW], "ci_lb", cell(idx, "ci_lb"),
                               "ci_lb must not exceed ci_ub"))  # fmt: skip
        for est in ("di", "ori"):
            e = col(est)
            bad = ~reversed_ & e.notna() & ((lb.notna() & (e < lb)) | (ub.notna() & (e > ub)))
            for idx in res.index[bad]:
                out.append(
                    failure(
                        sheet,
                        res.at[idx, ROW],
                        est,
                        cell(idx, est),
                        f"the confidence interval [{_fmt(lb.at[idx])}, "
                        f"{_fmt(ub.at[idx])}] must contain the estimate {est}",
                    )
                )
    for sd, mean in SD_OF_MEAN:
        s, m = col(sd), col(mean)
        tiny = (s > 0) & (s < MIN_SD_RATIO * m.abs())
        for idx in res.index[tiny]:
            out.append(failure(sheet, res.at[idx, ROW], sd, cell(idx, sd),
                               f"{sd} is effectively zero next to its mean {mean} = "
                               f"{cell(idx, mean)}: an SD must be at least {MIN_SD_RATIO:g} x "
                               "|mean| (a typo, or a standard error or variance in the SD "
                               "column?)"))  # fmt: skip
    if "distinct_arms" in codebook.rules and "arm2_key" in res.columns:
        same = res["arm2_key"].notna() & (res["arm1_key"] == res["arm2_key"])
        for idx in res.index[same]:
            out.append(
                failure(
                    sheet,
                    res.at[idx, ROW],
                    "arm2_key",
                    res.at[idx, "arm2_key"],
                    "arm2_key must name a different arm than arm1_key",
                )
            )
    return out


def _n_within_randomised(sheets: Mapping[str, Sheet], typed: Mapping[str, pd.DataFrame]
                         ) -> list[dict]:  # fmt: skip
    """A result's n1i/n2i may not exceed its arm's n_randomized by more than N_TOLERANCE."""
    res, arms = typed["results"], typed["arms"]
    if "n_randomized" not in arms.columns:
        return []
    arm_n = arms.dropna(subset=["n_randomized"]).drop_duplicates(["study_key", "arm_key"])
    arm_n = arm_n.set_index(["study_key", "arm_key"])
    out = []
    for n, arm in (("n1i", "arm1_key"), ("n2i", "arm2_key")):
        if n not in res.columns or arm not in res.columns:
            continue
        keys = pd.MultiIndex.from_frame(res[["study_key", arm]].astype(object))
        randomised = arm_n["n_randomized"].reindex(keys).to_numpy(dtype=float)
        arm_row = arm_n[ROW].reindex(keys).to_numpy()
        given = res[n].to_numpy(dtype=float)
        over = (given > randomised * (1 + N_TOLERANCE)) & (given <= MAX_N)  # else said once
        for pos in np.flatnonzero(over):
            idx = res.index[pos]
            frame = sheets["results"].frame
            value = frame.at[idx, n] if n in frame.columns else _fmt(res.at[idx, n])
            out.append(failure(sheets["results"], res.at[idx, ROW], n, value,
                               f"{n} = {value} exceeds the randomised n of arm "
                               f"{res.at[idx, arm]} (n_randomized = {_fmt(randomised[pos])} in "
                               f"{sheets['arms'].file}, sheet arms, row {int(arm_row[pos])}) by "
                               f"more than {N_TOLERANCE:.0%}: an arm cannot report more "
                               "participants than it randomised"))  # fmt: skip
    return out


def check_sheets(
    sheets: Mapping[str, Sheet], codebook: Codebook, *, source: str = ""
) -> tuple[dict[str, pd.DataFrame], list[dict[str, Any]]]:
    """Convert and validate coding sheets against a codebook.

    Parameters
    ----------
    sheets
        Sheets by name, as :func:`evidence.ingest.readers.read_sheets` returns them.
    codebook
        The review's codebook.
    source
        What was read (for failures that concern a missing sheet).

    Returns
    -------
    (typed, failures)
        The typed frames (text as ``None``/str, numbers as float64, booleans as objects; the
        ``_row`` column kept), and every failure found, in sheet order.
    """
    failures: list[dict[str, Any]] = []
    for name in REQUIRED_SHEETS:
        if name not in sheets:
            failures.append(failure(None, None, None, None, f"required sheet {name} is missing",
                                    file=source, sheet_name=name))  # fmt: skip
    for name, sheet in sheets.items():
        if name not in codebook.sheets:
            failures.append(failure(sheet, None, None, None, f"sheet {name} is not declared in "
                                    f"codebook {codebook.name}"))  # fmt: skip
    typed: dict[str, pd.DataFrame] = {}
    for name in codebook.sheets:
        if name not in sheets:
            continue
        sheet = sheets[name]
        frame = _typed(sheet, codebook, failures)
        failures.extend(_schema_failures(sheet, frame, codebook))
        typed[name] = frame
    if all(name in typed for name in REQUIRED_SHEETS):
        failures.extend(_cross_failures(sheets, typed, codebook))
    order = {name: i for i, name in enumerate(codebook.sheets)}
    failures.sort(key=lambda f: (order.get(f["sheet"], -1), f["row"] or 0))
    return typed, failures
