"""A Metapsy database file in and out of an evidence base.

:func:`import_metapsy` loads a Metapsy file (:mod:`evidence.ingest.metapsy`) into a review of
the database: the file is read and validated, turned into coding sheets with a codebook
generated for them, and written by the ingest loader in one revision, where the store computes
every effect size itself; the report then compares the stored g and SE with the file's own
``.g`` and ``.g_se``. Importing a later release of the same database into the same review is a
living update: exactly the records that changed are written, and studies or rows that left the
file are deleted (kept in history): the file is the whole review (the loader's
``complete=True``). :func:`~evidence.ingest.metapsy_export.export_metapsy` writes a review back
in the Metapsy standard.

Mapping
-------
- study: the ``study`` label is the study key; ``year`` and ``country`` go to the study, and
  ``full_ref`` (when present) is its citation.
- arms: ``condition_arm1``/``multi_arm1`` and ``condition_arm2``/``multi_arm2`` name the arms
  (label: the condition; description: the multi-arm label); arm 1 is the intervention, arm 2
  the comparator.
- outcome: one per outcome type x outcome category x subcategory x instrument of a study:
  domain ``outcome_category`` (``"outcome"`` when the file has none), construct
  ``outcome_subcategory``, instrument ``instrument``.
- timepoint: ``time`` with ``time_weeks``.
- keys: built from what identifies a record in the source only (never weeks, n or means),
  see :mod:`evidence.ingest.metapsy_keys`; a study renamed between releases is matched to its
  stored record (DOI, full reference, arms and outcomes) and its key updated, not re-inserted.
- result: the statistics Metapsy would use, in its order (metapsyTools'
  ``calculateEffectSizes``): means, SDs and ns; else change scores (``n_change_arm*`` as
  ``n1i``/``n2i``); else events out of ``totaln_arm*``; else ``precalc_g`` with
  ``precalc_g_se`` as a reported effect size (``yi_reported``, ``vi_reported = se^2``).
  Baseline means and SDs are kept. Rows without any effect data carry no effect size and are
  left out (counted in the report). With ``measure="RR"``/``"OR"``
  (:mod:`~evidence.ingest.metapsy_binary`) the results are the rows with events and, for RR,
  the rows with ``precalc_log_rr``/``precalc_log_rr_se`` as a reported log risk ratio
  (``yi_reported``, ``vi_reported = se^2``); the other rows are left out and counted. The
  result key is built from the row's outcome, time and arms (never from weeks, n or means:
  :mod:`~evidence.ingest.metapsy_keys`), so a row keeps its key across releases however the
  file is sorted; Metapsy's ``.id`` is kept in the layout record (below), not on the result.
- moderators: every other column of the file (Metapsy's computed ``.``-columns such as
  ``.g`` included; not the row id ``.id``, kept as the result's notes), at study level when
  it is constant within the loaded rows of every study, else at effect level; numeric when
  every value is a number written back as the same text, else text. A column whose name is
  a data-model column (``doi``, ``design``, ...) becomes ``metapsy_<name>``. The moderator's
  description names its column, so an export restores it. The import is lossless
  (:mod:`~evidence.ingest.metapsy_layout`): the statistics a result does not hold, mapped
  columns the records do not give back and ``NR`` cells are moderators too, and the file's
  layout (columns, row order) is recorded with the codebook;
  :func:`~evidence.ingest.metapsy_export.export_metapsy` writes the file back.
- risk of bias: ``rob`` (and RoB domain columns) become the ``risk_of_bias`` sheet
  (:func:`~evidence.ingest.metapsy_layout.rob_sheet`).
- ``effect_source="file"``: the stored effect sizes are the file's ``.g`` and ``.g_se``
  squared, oriented as ``precalc_g`` (below), instead of the store's computed g.

Direction (``direction``, recorded on every outcome and in the review's description)
-----------------------------------------------------------------------------------
The store keeps ``positive = improvement of arm 1 over arm 2``. Metapsy's g is arm 1 minus
arm 2 for means and change scores and, for events, the negated log odds ratio (metapsyTools'
convention), so

- ``"lower"``: lower scores are better (depression, anxiety): a negative Metapsy g is an
  improvement; every outcome is stored ``direction = lower`` (events: ``higher``, since the
  negation already made fewer events a lower g);
- ``"higher"``: higher scores are better: the reverse;
- ``"file"``: the file's ``.g`` is already oriented so that positive is an improvement
  (peer-support, whose outcomes mix symptom and recovery scales): each outcome's direction is
  read off the sign of ``.g`` against the computed g (``higher`` when g is exactly 0 on every
  row of the outcome, where no number depends on it); ``precalc_g`` is taken as oriented like
  ``.g`` and stored as the file gives it; an outcome with no row to read its direction from
  is a validation error.

Sign (``sign``): the convention of the file's ``.g`` for the comparison (``"metapsy"``,
``"reversed"``, or ``"auto"`` to infer it with :func:`~evidence.ingest.metapsy.infer_sign`).
Under ``"lower"`` and ``"higher"``, ``precalc_g`` follows it too: under ``"reversed"`` it is
negated to Metapsy's convention before the direction is applied.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from evidence.db.engine import get_engine
from evidence.db.models import metadata
from evidence.errors import ValidationError
from evidence.ingest.codebook import CORE_COLUMNS, Codebook, parse_codebook
from evidence.ingest.loader import IngestReport, ingest
from evidence.ingest.metapsy import (
    MetapsyComparison,
    _col,
    compare_effects,
    infer_sign,
    metapsy_effect_sizes,
    read_metapsy,
)
from evidence.ingest.metapsy_binary import (
    BINARY_MEASURES,
    MEASURES,
    REPORTED_FORMULA,
    binary_rows,
    for_log_rr,
    reported_log_rr,
    with_measure,
)
from evidence.ingest.metapsy_keys import Rename, find_renames, record_keys, study_years
from evidence.ingest.metapsy_layout import (
    NR,
    NR_TEXT,
    REST,
    REST_TEXT,
    exact_numeric,
    file_effects,
    layout_text,
    rob_sheet,
    verbatim_columns,
    with_not_reported,
    with_residuals,
)

__all__ = [
    "DIRECTIONS",
    "EFFECT_SOURCES",
    "SIGNS",
    "MetapsyImport",
    "import_metapsy",
    "metapsy_codebook",
    "metapsy_sheets",
    "review_name",
]

DIRECTIONS = ("lower", "higher", "file")
EVENTS = (None, "more", "fewer")  # which count of events is better (None: the convention)
EFFECT_SOURCES = ("computed", "file")
SIGNS = ("auto", "metapsy", "reversed")
TOLERANCE = 0.005  # Metapsy rounds .g and .g_se to two decimals in some releases

#: Columns of the Metapsy standard that the mapping uses (everything else is a moderator).
_STRUCTURE = {
    "study", "condition_arm1", "condition_arm2", "multi_arm1", "multi_arm2",
    "outcome_category", "outcome_subcategory", "instrument", "time", "time_weeks", "year",
    "country", "full_ref", ".id", "file_row",
}  # fmt: skip
_STAT_MAP = {  # Metapsy column -> result column (per formula, see metapsy_sheets)
    "means": {"mean_arm1": "m1i", "sd_arm1": "sd1i", "n_arm1": "n1i",
              "mean_arm2": "m2i", "sd_arm2": "sd2i", "n_arm2": "n2i"},
    "change": {"mean_change_arm1": "m1i_change", "sd_change_arm1": "sd1i_change",
               "n_change_arm1": "n1i", "mean_change_arm2": "m2i_change",
               "sd_change_arm2": "sd2i_change", "n_change_arm2": "n2i"},
    "events": {"event_arm1": "event1i", "totaln_arm1": "n1i",
               "event_arm2": "event2i", "totaln_arm2": "n2i"},
}  # fmt: skip
_BASELINE = {"baseline_m_arm1": "m1i_pre", "baseline_sd_arm1": "sd1i_pre",
             "baseline_m_arm2": "m2i_pre", "baseline_sd_arm2": "sd2i_pre"}  # fmt: skip
_FORMULA_TYPE = {"SMD:means": "msd", "SMD:change": "change", "SMD:logOR": "dich",
                 "precalc": "precalc", "SMD:reported": "precalc",
                 REPORTED_FORMULA: "dich"}  # fmt: skip
_RESULT_STATS = ("n1i", "m1i", "sd1i", "n2i", "m2i", "sd2i", "m1i_pre", "sd1i_pre", "m2i_pre",
                 "sd2i_pre", "m1i_change", "sd1i_change", "m2i_change", "sd2i_change",
                 "event1i", "event2i", "yi_reported", "vi_reported")  # fmt: skip
_CORE_STUDY = {"citation", "year", "country", "simulated"}
_RESERVED = {c for columns in CORE_COLUMNS.values() for c in columns}  # moderators may not reuse


def review_name(path: str | Path) -> str:
    """The review name for a file ``NAME__vVERSION.csv``: ``metapsy_`` + NAME as a key."""
    stem = Path(path).name.split("__v")[0].removesuffix(".csv").removesuffix(".xlsx")
    return "metapsy_" + (re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_") or "database")


def _moderator_name(column: str) -> str:
    name = re.sub(r"[^a-z0-9]+", "_", column.lower()).strip("_")
    return name if re.match(r"^[a-z]", name) else f"m_{name}"


def _present(value: Any) -> bool:
    return (
        value is not None
        and not (isinstance(value, float) and np.isnan(value))
        and (not isinstance(value, str) or value.strip() != "")
    )


def _numeric_text(series: pd.Series) -> pd.Series | None:
    """*series* as numbers (decimal commas) when every present value is one, else None."""
    text = series.astype("string").str.strip()
    present = text.notna() & (text != "") & ~text.isin(["NA", "NR"])
    values = pd.to_numeric(text.where(present).str.replace(",", ".", regex=False),
                           errors="coerce")  # fmt: skip
    number = values[present].astype(float)  # "Inf" (ptsd-psyctr seLogRR) keeps a column text
    if present.any() and np.isfinite(number.fillna(np.inf)).all():
        return values.astype(float)
    return None


@dataclass(frozen=True)
class _Moderator:
    name: str
    column: str
    level: str  # study | effect
    type: str  # numeric | text


def _held(frame: pd.DataFrame, effect_source: str,
          measure: str = "SMD") -> tuple[dict[str, np.ndarray], np.ndarray]:  # fmt: skip
    """Where the results hold each statistics column (the rest of a loaded row is kept as a
    moderator), and which rows are loaded (rows without effect data are not; under measure
    RR a ``precalc_log_rr`` row is loaded)."""
    formula = metapsy_effect_sizes(frame, formulas="escalc")["g_formula"].to_numpy()
    loaded = pd.notna(formula) | ((measure == "RR") & reported_log_rr(frame))
    stats = loaded.copy()
    if effect_source == "file":  # rows whose effect size is the file's keep no statistics
        stats &= ~(~np.isnan(_col(frame, ".g")) & (_col(frame, ".g_se") > 0))
    kinds = {"means": "SMD:means", "change": "SMD:change", "events": "SMD:logOR"}
    held = {col: ~loaded | (stats & (formula == kinds[kind])) for kind, cols in _STAT_MAP.items()
            for col in cols}  # fmt: skip
    return held | dict.fromkeys(_BASELINE, ~loaded | stats), loaded


def _moderators(frame: pd.DataFrame, loaded: np.ndarray | None = None) -> list[_Moderator]:
    """Every column the data model does not hold, as a moderator (the import is lossless).

    A statistics column the results hold on some rows is a moderator through its twin
    ``REST + column`` (:func:`~evidence.ingest.metapsy_layout.with_residuals`). Only the
    *loaded* rows count (a column with values only on rows left out is not kept).
    """
    out: list[_Moderator] = []
    taken: set[str] = set()
    modelled = {c for cols in _STAT_MAP.values() for c in cols} | set(_BASELINE)
    for col in frame.columns:
        column = col.removeprefix(REST).removeprefix(NR)
        if col == column and (col in _STRUCTURE or col in modelled):
            continue
        name = _moderator_name(column) + ("_nr" if col.startswith(NR) else "")
        if name in _RESERVED or name in _CORE_STUDY:
            name = f"metapsy_{name}"
        base, k = name, 2
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        values = frame[col] if loaded is None else frame[col][loaded]
        if values.map(_present).sum() == 0:
            continue
        taken.add(name)
        studies = frame["study"] if loaded is None else frame["study"][loaded]
        constant = values.astype("string").fillna("\x00").groupby(studies).nunique()
        level = "study" if bool((constant <= 1).all()) else "effect"
        kind = "numeric" if exact_numeric(values) else "text"
        out.append(_Moderator(name, col, level, kind))
    return out


def _described(column: str) -> str:
    if column.startswith(REST):
        return f"Metapsy column {column.removeprefix(REST)}{REST_TEXT}"
    if column.startswith(NR):
        return f"Metapsy column {column.removeprefix(NR)}{NR_TEXT}"
    return f"Metapsy column {column}"


def metapsy_codebook(
    review: str,
    moderators: list[_Moderator] | None = None,
    *,
    description: str = "",
    layout: str = "",
    rob: bool = False,
) -> Codebook:
    """The codebook generated for a Metapsy file's coding sheets (with the file's layout
    record and, with *rob*, a ``risk_of_bias`` sheet)."""
    text, num = {"type": "text"}, {"type": "numeric"}

    def req(kind: str = "text") -> dict[str, Any]:
        return {"type": kind, "required": True}

    raw: dict[str, Any] = {
        "format": "evidence-codebook/1",
        "review": {"name": review, "title": f"Metapsy database {review.removeprefix('metapsy_')}"
                   " (metapsy.org, ODC-By 1.0)", "description": description},
        "analysis": {"measure": "SMD", "vtype": "LS", "model": {"method": "REML"}, "level": 95},
        "rules": ["events_within_n", "distinct_arms"],
        "sheets": {
            "studies": {"columns": {"study_key": req(), "citation": text,
                                    "year": {"type": "integer", "min": 1900, "max": 2100},
                                    "country": text,
                                    "simulated": {"type": "boolean", "default": False}}},
            "arms": {"columns": {"study_key": req(), "arm_key": req(), "label": text,
                                 "description": text,
                                 "role": {"type": "categorical", "required": True,
                                          "levels": ["intervention", "comparator"]}}},
            "outcomes": {"columns": {"study_key": req(), "outcome_key": req(), "domain": req(),
                                     "construct": text, "instrument": text,
                                     "direction": {"type": "categorical", "required": True,
                                                   "levels": ["higher", "lower"]}}},
            "timepoints": {"columns": {"study_key": req(), "timepoint_key": req(),
                                       "label": req(), "weeks": {"type": "numeric", "min": 0}}},
            "results": {"columns": {
                **{c: req() for c in ("study_key", "result_key", "outcome_key",
                                      "timepoint_key", "arm1_key")},
                "arm2_key": text, "notes": text,
                **dict.fromkeys(_RESULT_STATS, num),
            }},
        },
        "moderators": {
            m.name: {"level": m.level, "type": m.type,
                     "description": _described(m.column)}
            for m in moderators or []
        },
    }  # fmt: skip
    if layout:
        raw["sheets"]["results"]["description"] = layout
    if rob:
        raw["sheets"]["risk_of_bias"] = {"columns": {
            "study_key": req(), "tool": req(), "domain": req(), "support": text,
            "judgement": {"type": "categorical", "required": True,
                          "levels": ["low", "some concerns", "high"]}}}  # fmt: skip
    return parse_codebook(raw, f"generated codebook of {review}")


def _row_failure(file: str, row: int, column: str | None, value: Any, rule: str) -> dict:
    return {"file": file, "sheet": None, "row": row, "column": column, "value": value,
            "rule": rule}  # fmt: skip


def metapsy_sheets(
    frame: pd.DataFrame,
    *,
    direction: str,
    sign: str,
    file: str = "",
    moderators=None,
    events: str | None = None,
    measure: str = "SMD",
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, np.ndarray]:
    """Coding sheets of a validated Metapsy frame (module docstring).

    Returns the sheets, the frame's rows that became results (with their result keys in
    column ``result_key`` and the formula Metapsy's order picks in ``formula``), and the file
    rows left out because they carry no effect data. Under ``measure="RR"`` a row whose only
    effect data is ``precalc_log_rr`` with its SE is a result too (formula ``RR:reported``,
    oriented as a row with events: :mod:`evidence.ingest.metapsy_binary`).
    """
    if direction not in DIRECTIONS:
        raise ValidationError(f"direction must be one of {', '.join(DIRECTIONS)}, "
                              f"not {direction!r}")  # fmt: skip
    if events not in EVENTS:
        raise ValidationError(f"events must be one of more, fewer, not {events!r}")
    if sign not in ("metapsy", "reversed"):
        raise ValidationError(f"sign must be metapsy or reversed, not {sign!r}")
    moderators = _moderators(frame) if moderators is None else moderators
    est = metapsy_effect_sizes(frame, sign="metapsy", formulas="escalc")
    log_rr = (measure == "RR") & est["g_formula"].isna().to_numpy() & reported_log_rr(frame)
    est.loc[log_rr, "g_formula"] = REPORTED_FORMULA
    est.loc[log_rr, "g"] = -_col(frame, "precalc_log_rr")[log_rr]  # as Metapsy's event g
    has = est["g_formula"].notna().to_numpy()
    left_out = frame.loc[~has, "file_row"].to_numpy(dtype=int)
    rows = frame[has].copy()
    rows["formula"] = est["g_formula"].to_numpy()[has]
    g_metapsy = est["g"].to_numpy()[has]
    pre = (rows["formula"] == "precalc").to_numpy()
    if sign == "reversed":  # precalc_g as the file has it -> Metapsy's convention
        g_metapsy[pre] = -g_metapsy[pre]

    def txt(col: str) -> pd.Series:
        if col not in rows.columns:
            return pd.Series([None] * len(rows), index=rows.index, dtype=object)
        return rows[col].map(lambda v: str(v).strip() if _present(v) else None)

    otype = txt("outcome_type") if "outcome_type" in rows else rows["formula"].map(_FORMULA_TYPE)
    keys = record_keys(rows, otype.tolist(), file=file)
    study, time, weeks = keys["study"], keys["time"], _col(rows, "time_weeks")
    a1, a2, ok, tp = (keys[c].tolist() for c in ("arm1", "arm2", "outcome", "timepoint"))
    domain = txt("outcome_category").fillna("outcome")
    construct, instrument = txt("outcome_subcategory"), txt("instrument")
    rkeys = keys["result"].tolist()
    rows["result_key"], rows["outcome_key"] = rkeys, ok
    is_event = rows["formula"].isin(["SMD:logOR", REPORTED_FORMULA]).to_numpy()

    # outcome directions (module docstring): "lower" stores direction=lower for scores
    failures: list[dict] = []
    if direction == "file":
        fg = _col(rows, ".g")
        vote = np.sign(fg) * np.sign(g_metapsy)  # +1: .g oriented as Metapsy's g
        vote[pre] = np.nan  # precalc_g is oriented as .g itself: it tells nothing
        votes = pd.DataFrame({"study": study, "outcome": ok, "vote": vote}).dropna()
        votes = votes[votes["vote"] != 0].groupby(["study", "outcome"])["vote"].sum()
        higher_g = {k: v > 0 for k, v in votes.items() if v != 0}
        zero = pd.DataFrame({"study": study, "outcome": ok, "zero": g_metapsy == 0})
        all_zero = zero.groupby(["study", "outcome"])["zero"].all().to_dict()
    # an outcome with event rows is stored in the events' orientation (its precalc_g rows
    # follow it); one that mixes events with means or change scores has no single direction
    kind = pd.DataFrame(
        {
            "study": study.to_numpy(),
            "outcome": ok,
            "events": is_event,
            "scores": rows["formula"].isin(["SMD:means", "SMD:change"]).to_numpy(),
        }
    )
    by_outcome = kind.groupby(["study", "outcome"])[["events", "scores"]].any()
    event_outcome = by_outcome["events"].to_dict()
    for (s, o), both in (by_outcome["events"] & by_outcome["scores"]).items():
        if both:
            mine = [
                int(r)
                for r, s_, o_ in zip(rows["file_row"], study, ok, strict=True)
                if (s_, o_) == (s, o)
            ]
            failures.append(_row_failure(
                file, mine[0], "outcome_type", o,
                f"outcome {o} of study {s} has rows with events and rows with means or change "
                f"scores (file rows {', '.join(map(str, mine))}), which cannot share one "
                "direction: give them different outcome_type values"))  # fmt: skip
    outcome_dir: dict[tuple[str, str], str] = {}
    for i, (s, o) in enumerate(zip(study, ok, strict=True)):
        if (s, o) in outcome_dir:
            continue
        if events is not None and event_outcome[(s, o)]:  # stated: more or fewer is better
            outcome_dir[(s, o)] = "higher" if events == "more" else "lower"
            continue
        if direction == "file":
            if (s, o) not in higher_g and (all_zero.get((s, o), False) or pre[i]):
                higher_g[(s, o)] = True  # g = 0 or precalc_g only: taken as the file has it
            if (s, o) not in higher_g:
                failures.append(_row_failure(
                    file, int(rows["file_row"].iat[i]), ".g", rows[".g"].iat[i]
                    if ".g" in rows else None,
                    "direction 'file' reads each outcome's direction off the sign of .g; this "
                    "outcome has no row with a non-zero .g and g: give --direction lower or "
                    "higher" + (" (or, for its events, --events more or fewer)"
                                if event_outcome[(s, o)] else "")))  # fmt: skip
                continue
            positive_is_better = higher_g[(s, o)]
        else:
            positive_is_better = direction == "higher"
        # the stored raw yi is Metapsy's g for scores and minus it for events
        d = "higher" if positive_is_better else "lower"
        if event_outcome[(s, o)]:
            d = "lower" if d == "higher" else "higher"
        outcome_dir[(s, o)] = d
    if failures:
        raise ValidationError(
            f"{file}: row {failures[0]['row']}: {failures[0]['rule']} "
            f"({len(failures)} outcomes; nothing was written)", failures)  # fmt: skip

    # sheets
    frame_all = frame.assign(study=frame["study"].map(lambda v: str(v).strip()))
    first = frame_all.groupby("study", sort=False).head(1).set_index("study")
    studies = pd.DataFrame({"study_key": first.index})
    studies["citation"] = (
        (first["full_ref"] if "full_ref" in first else first.index.to_series())
        .map(lambda v: str(v).strip() if _present(v) else None)
        .to_numpy()
    )
    readings: list[dict] = []
    if "year" in first:
        studies["year"], readings = study_years(first["year"], first["file_row"])
    if "country" in first:
        studies["country"] = (
            first["country"].map(lambda v: str(v).strip() if _present(v) else None).to_numpy()
        )
    studies["simulated"] = False
    studies = studies[studies["study_key"].isin(set(study))].reset_index(drop=True)

    arm_rows: dict[tuple[str, str], dict] = {}
    for s, k1, k2, c1, m1, c2, m2 in zip(
        study,
        a1,
        a2,
        txt("condition_arm1"),
        txt("multi_arm1"),
        txt("condition_arm2"),
        txt("multi_arm2"),
        strict=True,
    ):
        arm_rows.setdefault(
            (s, k1),
            {"study_key": s, "arm_key": k1, "label": c1, "description": m1, "role": "intervention"},
        )
        arm_rows.setdefault((s, k2), {"study_key": s, "arm_key": k2, "label": c2,
                                      "description": m2, "role": "comparator"})  # fmt: skip
    outcomes = pd.DataFrame(
        {
            "study_key": study,
            "outcome_key": ok,
            "domain": domain,
            "construct": construct,
            "instrument": instrument,
        }
    )
    outcomes = outcomes.drop_duplicates(["study_key", "outcome_key"]).reset_index(drop=True)
    outcomes["direction"] = [
        outcome_dir[(s, o)]
        for s, o in zip(outcomes["study_key"], outcomes["outcome_key"], strict=True)
    ]
    timepoints = pd.DataFrame(
        {"study_key": study, "timepoint_key": tp, "label": time, "weeks": weeks}
    ).drop_duplicates(["study_key", "timepoint_key"])
    results = pd.DataFrame(
        {
            "study_key": study,
            "result_key": rkeys,
            "outcome_key": ok,
            "timepoint_key": tp,
            "arm1_key": a1,
            "arm2_key": a2,
        }
    )
    # Metapsy's row label .id is rebuilt from the row's content by every release: it is kept
    # in the review's layout record (metapsy_layout.layout_text), not on the result, so that a
    # release which only relabels a row changes no result
    results["notes"] = None
    for c in _RESULT_STATS:
        results[c] = np.nan
    kinds = {"SMD:means": "means", "SMD:change": "change", "SMD:logOR": "events"}
    formula = rows["formula"].to_numpy()
    for fname, kind in kinds.items():
        sel = formula == fname
        for src, dst in _STAT_MAP[kind].items():
            results.loc[sel, dst] = _col(rows, src)[sel]
    pre = formula == "precalc"
    # precalc_g as a raw (unflipped) reported effect: the store flips it by the outcome's
    # direction; under "file" the stored value must be precalc_g as the file gives it
    lower = np.array([outcome_dir[(s_, o_)] == "lower" for s_, o_ in
                      zip(study, ok, strict=True)], dtype=bool)  # fmt: skip
    in_events = np.array([event_outcome[(s_, o_)] for s_, o_ in zip(study, ok, strict=True)],
                         dtype=bool)  # fmt: skip
    reported = _col(rows, "precalc_g") if direction == "file" else \
        np.where(in_events, -g_metapsy, g_metapsy)  # fmt: skip
    reported = np.where(lower, -reported, reported) if direction == "file" else reported
    results.loc[pre, "yi_reported"] = reported[pre]
    results.loc[pre, "vi_reported"] = _col(rows, "precalc_g_se")[pre] ** 2
    # precalc_log_rr as the file gives it (arm 1 against arm 2, unflipped, like the events):
    # the store flips it by the outcome's direction
    rr = formula == REPORTED_FORMULA
    results.loc[rr, "yi_reported"] = _col(rows, "precalc_log_rr")[rr]
    results.loc[rr, "vi_reported"] = _col(rows, "precalc_log_rr_se")[rr] ** 2
    for src, dst in _BASELINE.items():
        results[dst] = _col(rows, src)
    # effect-level moderators go on the results sheet, study-level ones on the studies sheet
    for m in moderators:
        source = rows[m.column] if m.level == "effect" else first[m.column]
        values = _numeric_text(source) if m.type == "numeric" else source.map(
            lambda v: str(v).strip() if _present(v) else None)  # fmt: skip
        if values is None:  # numeric in the file, but no value on the rows with effect data
            values = pd.Series(np.nan, index=source.index)
        if m.level == "effect":
            results[m.name] = values.to_numpy()
        else:
            studies[m.name] = studies["study_key"].map(dict(zip(first.index, values, strict=True)))
    sheets = {
        "studies": studies,
        "arms": pd.DataFrame(list(arm_rows.values())),
        "outcomes": outcomes,
        "timepoints": timepoints.reset_index(drop=True),
        "results": results,
    }
    return sheets, rows, left_out


@dataclass(frozen=True)
class MetapsyImport:
    """What :func:`import_metapsy` read, wrote and found when comparing with ``.g``."""

    file: str
    review: str
    direction: str
    sign: str
    rows: int
    loaded: int
    no_effect_data: tuple[int, ...]
    skipped: tuple[int, ...]
    failures: tuple[dict[str, Any], ...]
    repaired: tuple[dict[str, Any], ...]
    ingest: IngestReport
    comparison: MetapsyComparison | None = field(repr=False, default=None)
    renames: tuple[Rename, ...] = ()
    readings: tuple[dict[str, Any], ...] = ()  # cells read by a rule (a year among several)
    measure: str = "SMD"
    not_binary: tuple[int, ...] = ()  # rows without event counts (RR: nor precalc_log_rr)
    effect_source: str = "computed"
    from_file: int = 0
    risk_of_bias: str = ""
    ignored: tuple[str, ...] = ()  # columns left out by the curator (ignore_columns)

    def __str__(self) -> str:
        lines = [
            f"{self.file}: {self.rows} rows; {self.loaded} loaded as results of review "
            f"{self.review} (direction {self.direction}, .g sign convention {self.sign})",
        ]
        if self.measure == "RR":
            lines.append(f"measure RR from the event counts (else precalc_log_rr); "
                         f"{len(self.not_binary)} rows without either were left out")  # fmt: skip
        elif self.measure != "SMD":
            lines.append(f"measure {self.measure} from the event counts; {len(self.not_binary)}"
                         f" rows without event counts were left out (the Metapsy standard has"
                         f" no precalculated log odds ratio)")  # fmt: skip
        for r in self.renames:
            lines.append(f"study renamed: {r.old} -> {r.new} (matched by {r.by})")
        for r in self.readings:
            lines.append(f"file row {r['row']}: {r['column']} {r['value']!r} read as "
                         f"{r['read']} (the first year named)")  # fmt: skip
        if self.no_effect_data:
            lines.append(
                f"{len(self.no_effect_data)} rows carry no effect data and were left "
                f"out (file rows {_rows(self.no_effect_data)})"
            )
        if self.skipped:
            lines.append(
                f"{len(self.skipped)} invalid rows were left out (file rows "
                f"{_rows(self.skipped)}): {len(self.failures)} failing cells"
            )
        if self.repaired:
            lines.append(f"{len(self.repaired)} text cells were decoded back from mojibake")
        if self.ignored:
            lines.append("columns left out (--ignore-column): " + ", ".join(self.ignored))
        if self.effect_source == "file":
            lines.append(f"effect sizes: the file's .g/.g_se on {self.from_file} rows "
                         f"(--effect-source file)")  # fmt: skip
        if self.risk_of_bias:
            lines.append(self.risk_of_bias)
        if self.comparison is not None:
            who = "computed by the store" if self.effect_source == "computed" else "stored"
            cols = (".log_rr/.log_rr_se (shown as .g/.g_se)" if self.measure == "RR"
                    else ".g/.g_se")  # fmt: skip
            lines.append(f"effect sizes {who} against the file's {cols}:")
            lines.append(str(self.comparison))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "file": self.file, "review": self.review, "direction": self.direction,
            "sign": self.sign, "rows": self.rows, "loaded": self.loaded,
            "no_effect_data": list(self.no_effect_data), "skipped": list(self.skipped),
            "failures": list(self.failures), "repaired": list(self.repaired),
            "ingest": self.ingest.to_dict(), "renames": [r.to_dict() for r in self.renames],
            "readings": list(self.readings), "measure": self.measure,
            "not_binary": list(self.not_binary),
            "comparison": self.comparison.to_dict() if self.comparison is not None else None,
            "effect_source": self.effect_source, "from_file": self.from_file,
            "risk_of_bias": self.risk_of_bias, "ignored": list(self.ignored),
        }  # fmt: skip


def _rows(rows: tuple[int, ...], shown: int = 12) -> str:
    text = ", ".join(str(r) for r in rows[:shown])
    return text + (f", ... ({len(rows) - shown} more)" if len(rows) > shown else "")


def import_metapsy(
    path: str | Path,
    *,
    direction: str,
    database: str | sa.Engine | None = None,
    review: str | None = None,
    sign: str = "auto",
    skip_invalid: bool = False,
    repair_text: bool = False,
    dry_run: bool = False,
    author: str | None = None,
    message: str | None = None,
    command: str | None = None,
    events: str | None = None,
    measure: str = "SMD",
    effect_source: str = "computed",
    ignore_columns: tuple[str, ...] = (),
) -> MetapsyImport:
    """Load a Metapsy file into a review of the database (module docstring).

    Parameters
    ----------
    path
        A Metapsy file (``;``-separated, decimal commas).
    direction
        ``"lower"``, ``"higher"`` or ``"file"``: which sign of Metapsy's g is an improvement.
    database
        URL or engine (default: ``EVIDENCE_DATABASE_URL``, else ``./evidence.db``).
    review
        The review to load into (default: ``metapsy_`` + the database's name).
    sign
        The convention of the file's ``.g``: ``"metapsy"``, ``"reversed"`` or ``"auto"``.
    skip_invalid, repair_text
        As :func:`~evidence.ingest.metapsy.read_metapsy`.
    dry_run, author, message, command
        As :func:`~evidence.ingest.loader.ingest`.
    events
        For outcomes with event counts: ``"more"`` (more events are better: response,
        remission) or ``"fewer"`` (suicide attempts, relapse, dropout); overrides
        *direction* for them. Default: Metapsy's convention, in which the event g is the
        negated log odds ratio, so ``direction="lower"`` makes more events better, and
        ``"file"`` reads it off ``.g`` (a binary outcome whose rows carry no ``.g``, as in
        suicide-psyctr, needs *events*).
    measure
        ``"SMD"`` (default: Hedges' g, events as Metapsy's g from the log odds ratio), or
        ``"RR"``/``"OR"``: the review pools log risk (odds) ratios of the rows with event
        counts and, for RR, of the rows with ``precalc_log_rr`` and its SE as reported
        (:mod:`evidence.ingest.metapsy_binary`); RR is compared with ``.log_rr``. Not with
        ``effect_source="file"`` (the file's ``.g`` is a g).
    effect_source
        ``"computed"`` (default): the store computes every effect size from the row's
        statistics; ``"file"``: the stored effect sizes (what views pool) are the file's
        ``.g`` and ``.g_se`` squared, oriented as ``precalc_g`` (rows without ``.g`` are
        computed); recorded in the review's description.
    ignore_columns
        Moderator columns not to import (a column damaged throughout); listed in the report,
        written empty by an export.

    Raises
    ------
    ValidationError
        An invalid file (every failing cell, with its file row and column) or options;
        nothing is written.
    """
    if events not in EVENTS:
        raise ValidationError(f"events must be one of more, fewer, not {events!r}")
    if measure not in MEASURES:
        raise ValidationError(f"measure must be one of {', '.join(MEASURES)}, not {measure!r}")
    if direction not in DIRECTIONS:
        raise ValidationError(f"direction must be one of {', '.join(DIRECTIONS)}, "
                              f"not {direction!r}")  # fmt: skip
    if sign not in SIGNS:
        raise ValidationError(f"sign must be one of {', '.join(SIGNS)}, not {sign!r}")
    mf = read_metapsy(path, skip_invalid=skip_invalid, repair_text=repair_text,
                      ignore_columns=tuple(ignore_columns))  # fmt: skip
    frame, file = mf.frame, Path(path).name
    used_sign = infer_sign(frame) if sign == "auto" else sign
    review = review or review_name(path)
    if effect_source not in EFFECT_SOURCES:
        raise ValidationError(f"effect_source must be one of {', '.join(EFFECT_SOURCES)}, "
                              f"not {effect_source!r}")  # fmt: skip
    if effect_source == "file" and ".g" not in frame.columns:
        raise ValidationError(f"{file}: effect_source 'file' pools the file's .g and .g_se, "
                              "but the file has no .g column")  # fmt: skip
    not_binary: tuple[int, ...] = ()
    half: list[dict[str, Any]] = []  # precalc_log_rr rows lacking a number (measure RR)
    if measure in BINARY_MEASURES:  # metapsy_binary: the rows with events, as log RR/OR
        if effect_source == "file":
            raise ValidationError(f"{file}: effect_source 'file' pools the file's .g (Hedges' "
                                  f"g), not a log {'risk' if measure == 'RR' else 'odds'} "
                                  f"ratio: give --effect-source computed with --measure "
                                  f"{measure}")  # fmt: skip
        frame, not_binary, half = binary_rows(frame, measure, file)
        if half and not skip_invalid:
            f = half[0]
            raise ValidationError(
                f"{file}: row {f['row']}: {f['column']}: {f['rule']} ({len(half)} failing "
                f"cells; nothing was written; --skip-invalid (skip_invalid=True) leaves these "
                f"rows out)", half)  # fmt: skip

    def sheets_of(frame: pd.DataFrame) -> tuple:
        held, loaded = _held(frame, effect_source, measure)
        frame = with_not_reported(with_residuals(frame, held), mf.not_reported_cells)
        mods = _moderators(frame, loaded)
        return (*metapsy_sheets(frame, direction=direction, sign=used_sign, file=file,
                                moderators=mods, events=events, measure=measure),
                mods, frame)  # fmt: skip

    try:
        sheets, rows, left_out, mods, frame = sheets_of(frame)
        same = ()
    except ValidationError as error:  # rows sharing one identity: left out with skip_invalid
        same = tuple(f for f in error.failures if f.get("identity"))
        if not skip_invalid or not same or len(same) != len(error.failures):
            raise
        frame = frame[~frame["file_row"].isin({f["row"] for f in same})]
        sheets, rows, left_out, mods, frame = sheets_of(frame)
    extras = _extras(mf, sheets, rows, left_out, direction, used_sign, effect_source, mods)
    sign_text = "" if direction == "file" else f"; sign convention of .g: {used_sign}"
    if events is not None:
        sign_text += f"; outcomes with events: {events} events are better"
    if measure != "SMD":
        sign_text += f"; measure {measure} from the event counts"
        sign_text += " (else precalc_log_rr)" if measure == "RR" else ""
    codebook = metapsy_codebook(review, mods, description=(
        f"Imported from a Metapsy file; direction {direction} "
        f"({_DIRECTION_TEXT[direction]}){sign_text}; {extras.source_text}."),
        layout=extras.layout, rob="risk_of_bias" in sheets)  # fmt: skip
    codebook = with_measure(codebook, measure) if measure != "SMD" else codebook
    renames = _renames(database, review, sheets, frame)
    firsts = frame[frame["study"].map(lambda v: str(v).strip()).isin(
        set(sheets["studies"]["study_key"]))].groupby("study", sort=False).head(1)  # fmt: skip
    readings = study_years(firsts["year"], firsts["file_row"])[1] if "year" in frame else []
    with tempfile.TemporaryDirectory() as tmp:
        for name, sheet in sheets.items():
            sheet.to_csv(Path(tmp) / f"{name}.csv", index=False)
        try:
            report = ingest(
                [tmp], codebook=codebook, database=database, dry_run=dry_run, author=author,
                complete=True, renames={r.old: r.new for r in renames},
                message=message or f"Metapsy {Path(path).stem} (direction {direction})",
                command=command or f"import_metapsy {file}",
            )  # fmt: skip
        except ValidationError as error:
            raise _in_file_terms(error, tmp, file, sheets, rows) from None
    comparison = None
    if not dry_run and measure == "SMD":
        comparison = _compare(database, review, rows, direction, used_sign)
    elif not dry_run and measure == "RR":  # log RR against the file's .log_rr, unoriented
        comparison = _compare(database, review, for_log_rr(rows), "lower", "metapsy")
    return MetapsyImport(
        file=file, review=review, direction=direction, sign=used_sign,
        rows=len(mf.frame) + len(mf.skipped), loaded=len(rows),
        no_effect_data=tuple(int(r) for r in left_out),
        skipped=tuple(sorted({*mf.skipped, *(f["row"] for f in (*same, *half))})),
        failures=mf.failures + same + tuple(half), repaired=mf.repaired, ingest=report,
        comparison=comparison,
        renames=tuple(renames), readings=tuple(readings), measure=measure,
        not_binary=not_binary,
        effect_source=effect_source, from_file=extras.from_file,
        risk_of_bias=extras.rob_note, ignored=mf.ignored,
    )  # fmt: skip


def _renames(database, review: str, sheets, frame: pd.DataFrame) -> list[Rename]:
    """Stored studies the file holds under another label ([] for a new or unmigrated store;
    the ingest then says what is wrong with the database)."""
    try:
        with _connect(database) as conn:
            return find_renames(conn, review, sheets, frame)
    except sa.exc.DBAPIError:
        return []


@dataclass(frozen=True)
class _Extras:
    layout: str
    source_text: str
    from_file: int
    rob_note: str


def _extras(mf, sheets: dict[str, pd.DataFrame], rows: pd.DataFrame, left_out: np.ndarray,
            direction: str, sign: str, effect_source: str,
            mods: list[_Moderator]) -> _Extras:  # fmt: skip
    """What the import adds to the sheets (module :mod:`~evidence.ingest.metapsy_layout`):
    the file's effect sizes (``effect_source="file"``), the risk-of-bias sheet, the layout."""
    from_file = 0
    text = "effect sizes computed by the store from each row's statistics"
    if effect_source == "file":
        dirs = sheets["outcomes"].set_index(["study_key", "outcome_key"])["direction"]
        keys = zip(rows["study"].map(lambda v: str(v).strip()), rows["outcome_key"], strict=True)
        lower = np.array([dirs[k] == "lower" for k in keys], dtype=bool)
        sheets["results"], take = file_effects(sheets["results"], rows, lower, _RESULT_STATS,
                                               direction=direction, sign=sign)  # fmt: skip
        from_file = int(take.sum())
        text = (f"effect sizes: the file's .g and .g_se squared ({from_file} rows; computed "
                f"from the statistics of {len(rows) - from_file} rows without .g)")  # fmt: skip
    taken = {m.name for m in mods}
    for column in verbatim_columns(rows, sheets):  # as the file has them (effect level)
        name = f"metapsy_{column}"
        while name in taken:
            name += "_"
        taken.add(name)
        numeric = exact_numeric(rows[column])
        values = rows[column].map(lambda v: str(v) if _present(v) else None)
        sheets["results"][name] = (_numeric_text(rows[column]) if numeric else values).to_numpy()
        mods.append(_Moderator(name, column, "effect", "numeric" if numeric else "text"))
    rob, note = rob_sheet(mf.frame)
    if rob is not None:
        rob = rob[rob["study_key"].isin(set(sheets["studies"]["study_key"]))]
        sheets["risk_of_bias"] = rob.reset_index(drop=True)
    return _Extras(layout_text(mf, rows, left_out), text, from_file, note)


_DIRECTION_TEXT = {
    "lower": "lower scores are better: a negative Metapsy g is an improvement",
    "higher": "higher scores are better: a positive Metapsy g is an improvement",
    "file": "each outcome oriented as the file's .g, positive = improvement",
}


def _in_file_terms(error: ValidationError, tmp: str, file: str, sheets, rows) -> ValidationError:
    """A loader error on the generated sheets, re-addressed to the Metapsy file's rows."""
    results_rows = rows["file_row"].to_numpy(dtype=int)
    first_row = rows.groupby("study")["file_row"].min().to_dict()
    out = []
    for f in error.failures:
        f = dict(f)
        sheet = Path(str(f.get("file") or "")).stem if str(f.get("file", "")).startswith(tmp) \
            else f.get("sheet")  # fmt: skip
        row = f.get("row")
        if sheet == "results" and isinstance(row, int) and 2 <= row < len(results_rows) + 2:
            f["row"] = int(results_rows[row - 2])
        elif sheet in sheets and isinstance(row, int) and 2 <= row < len(sheets[sheet]) + 2:
            key = sheets[sheet]["study_key"].iat[row - 2]
            f["row"] = int(first_row.get(key, row))
        f["file"], f["sheet"] = file, None
        f["rule"] = f"{f.get('rule')} (generated {sheet} column {f.get('column')})"
        out.append(f)
    if not out:
        return ValidationError(f"{file}: {error}")
    first = out[0]
    return ValidationError(
        f"{file}: row {first['row']}: {first['rule']} ({len(out)} failing cells; nothing was "
        f"written)", out)  # fmt: skip


@contextmanager
def _connect(database: str | sa.Engine | None) -> Iterator[sa.Connection]:
    """A connection to *database* (an engine, or a URL whose engine is disposed of after)."""
    engine = database if isinstance(database, sa.Engine) else get_engine(database)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        if engine is not database:
            engine.dispose()


def _stored_effects(conn: sa.Connection, review: str) -> pd.DataFrame:
    t = metadata.tables
    s, r, e, rv = t["study"], t["result"], t["effect_size"], t["review"]
    q = (sa.select(s.c.study_key, r.c.result_key, e.c.yi, e.c.vi, e.c.flipped, e.c.formula)
         .select_from(e.join(r, r.c.id == e.c.result_id).join(s, s.c.id == r.c.study_id)
                      .join(rv, rv.c.id == s.c.review_id))
         .where(rv.c.name == review))  # fmt: skip
    return pd.DataFrame(
        conn.execute(q).all(), columns=["study", "result_key", "yi", "vi", "flipped", "formula"]
    )


def _compare(database, review: str, rows: pd.DataFrame, direction: str,
             sign: str) -> MetapsyComparison:  # fmt: skip
    """The stored effect sizes of the imported rows against the file's ``.g``/``.g_se``."""
    with _connect(database) as conn:
        stored = _stored_effects(conn, review)
    key = rows.assign(study=rows["study"].map(lambda v: str(v).strip()))
    merged = key.merge(stored, on=["study", "result_key"], how="left", suffixes=("", "_db"))
    yi, vi = merged["yi"].to_numpy(dtype=float), merged["vi"].to_numpy(dtype=float)
    if direction == "file":
        g = yi  # oriented as the file's .g by construction
    else:
        raw = np.where(merged["flipped"].fillna(False).astype(bool), -yi, yi)
        metapsy = np.where(merged["formula_db"].fillna("").str.startswith("SMD:logOR"), -raw, raw)
        g = -metapsy if sign == "reversed" else metapsy
    return compare_effects(
        merged, g, np.sqrt(vi), merged["formula_db"].to_numpy(),
        sign=sign if direction != "file" else "file", formulas="escalc (the store's)",
        tolerance=TOLERANCE,
    )  # fmt: skip


def __getattr__(name: str) -> Any:
    """The export side lives in :mod:`evidence.ingest.metapsy_export` (kept importable here)."""
    if name in ("EXPORT_SIGNS", "MetapsyExport", "export_metapsy"):
        from evidence.ingest import metapsy_export

        return getattr(metapsy_export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
