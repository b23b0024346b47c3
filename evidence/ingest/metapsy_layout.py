"""What a Metapsy import keeps beside the data model, so that an export gives the file back.

The data model holds a Metapsy row's study, arms, outcome, time point and the statistics its
effect size is computed from. Everything else of the file is kept too (the import is
lossless):

- every column the model does not hold is a moderator (typed numeric or text) whose
  description names its column: ``Metapsy column .g``;
- a statistics column the model holds on some rows only (the means of a row whose effect size
  comes from change scores, events or ``precalc_g``) keeps its other values in a moderator
  described ``Metapsy column mean_arm1, where the results do not hold it``;
- numeric cells coded ``NR`` (not reported; read as missing) are a text moderator described
  ``Metapsy column baseline_m_arm1, cells coded NR``;
- the file's column order, whether it began with R's unnamed row-name column, the columns
  whose missing cells it writes as blanks, the order of its rows (as study and result
  keys), and the file's own text of the cells the store does not give back as they are
  (text with leading or trailing blanks, which the coding-sheet reader strips; numbers
  written ``0,50``, ``8,0`` or ``0.76`` where the export writes ``0,5``, ``8``, ``0,76``)
  are the :data:`LAYOUT` record in the description of the codebook's results sheet.

Risk of bias (:func:`rob_sheet`): Metapsy's ``rob`` column, and domain columns such as
``d1``..``d5`` or ``rob_domain1``.., become the ``risk_of_bias`` sheet (tool ``metapsy-rob``),
so a view's "low risk of bias only" analysis runs on Metapsy imports.

Spreadsheet formula injection (:func:`neutralise`): an exported text cell beginning with
``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'`` (OWASP's
CSV-injection advice), unless the cell is a number such as ``-0,5``; reading a Metapsy file
removes such a quote again (:func:`restore`), so an export reads back to the same text.
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

import numpy as np
import pandas as pd

from evidence.ingest.metapsy import _col, _fmt

__all__ = [
    "LAYOUT",
    "REST",
    "REST_TEXT",
    "NR",
    "NR_TEXT",
    "with_not_reported",
    "exact_numeric",
    "file_effects",
    "layout_of",
    "layout_text",
    "neutralise",
    "positions",
    "runs",
    "number_text",
    "restore",
    "rob_sheet",
    "text_check",
    "verbatim_columns",
    "with_residuals",
]

#: Prefix of the frame columns holding the values of a statistics column that the model
#: does not hold (see :func:`with_residuals`).
REST = "\x1frest:"
#: How a moderator's description ends when it holds the rest of a statistics column.
REST_TEXT = ", where the results do not hold it"
#: Prefix of the frame columns marking a numeric column's cells coded ``NR`` (not reported),
#: and how such a moderator's description ends.
NR = "\x1fnr:"
NR_TEXT = ", cells coded NR"
#: How the layout record begins in the results sheet's description.
LAYOUT = "Metapsy layout: "
_INJECTION = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$")


def with_residuals(frame: pd.DataFrame, held: dict[str, np.ndarray]) -> pd.DataFrame:
    """*frame* plus, for each column of *held*, a twin ``REST + column`` holding the column's
    values on the rows where *held* is False (the model does not hold them there)."""
    extra = {REST + col: frame[col].where(~mask) for col, mask in held.items()
             if col in frame.columns}  # fmt: skip
    return frame.assign(**extra) if extra else frame


def with_not_reported(frame: pd.DataFrame, cells: tuple[tuple[int, str], ...]) -> pd.DataFrame:
    """*frame* plus, for each numeric column with cells coded ``NR`` (read as missing), a
    twin ``NR + column`` holding ``"NR"`` on those rows (by ``file_row``)."""
    extra = {}
    for column in dict.fromkeys(c for _, c in cells):
        rows = {r for r, c in cells if c == column}
        extra[NR + column] = frame["file_row"].map(lambda r, rows=rows: "NR" if r in rows else None)
    return frame.assign(**extra) if extra else frame


def present(value: Any) -> bool:
    """Whether a cell holds a value (not None, NaN or blank text)."""
    return (
        value is not None
        and not (isinstance(value, float) and np.isnan(value))
        and (not isinstance(value, str) or value.strip() != "")
    )


def exact_numeric(series: pd.Series) -> bool:
    """Whether every present value is a number that an export writes back as the same text
    (decimal comma or point; ``"01"``, ``"2,50"`` or ``"NR"`` keep a column text)."""
    values = series[series.map(present)]
    if values.empty:
        return False
    if pd.api.types.is_float_dtype(values):
        return True
    text = values.astype(str).str.strip()
    numbers = pd.to_numeric(text.str.replace(",", ".", regex=False), errors="coerce")
    if numbers.isna().any():
        return False
    return all(t in (_fmt(float(v)), str(_fmt(float(v))).replace(",", "."))
               for v, t in zip(numbers, text, strict=True))  # fmt: skip


#: Metapsy column -> (sheet, its key columns in the results sheet, the sheet's column).
MODEL_OF = {
    "condition_arm1": ("arms", {"arm1_key": "arm_key"}, "label"),
    "multi_arm1": ("arms", {"arm1_key": "arm_key"}, "description"),
    "condition_arm2": ("arms", {"arm2_key": "arm_key"}, "label"),
    "multi_arm2": ("arms", {"arm2_key": "arm_key"}, "description"),
    "outcome_category": ("outcomes", {"outcome_key": "outcome_key"}, "domain"),
    "outcome_subcategory": ("outcomes", {"outcome_key": "outcome_key"}, "construct"),
    "instrument": ("outcomes", {"outcome_key": "outcome_key"}, "instrument"),
    "time": ("timepoints", {"timepoint_key": "timepoint_key"}, "label"),
    "time_weeks": ("timepoints", {"timepoint_key": "timepoint_key"}, "weeks"),
    "year": ("studies", {}, "year"),
    "country": ("studies", {}, "country"),
    "full_ref": ("studies", {}, "citation"),
}  # fmt: skip


def verbatim_columns(rows: pd.DataFrame, sheets: dict[str, pd.DataFrame]) -> list[str]:
    """The mapped columns (:data:`MODEL_OF`) whose records do not give every loaded row's
    value back: a study whose rows cite it differently, a missing time read as ``post``, two
    spellings of one arm. The import keeps them as they are in the file, as moderators.

    *rows* are the file's loaded rows, in the order of the results sheet.
    """
    results = sheets["results"].reset_index(drop=True)
    out = []
    for column, (sheet, keys, field_) in MODEL_OF.items():
        if column not in rows.columns:
            continue
        target = sheets[sheet].rename(columns={v: k for k, v in keys.items()})
        on = ["study_key", *keys]
        model = results[on].merge(target[[*on, field_]].drop_duplicates(on), how="left")[field_]
        if not all(_same(a, b) for a, b in zip(rows[column], model, strict=True)):
            out.append(column)
    return out


def _same(a: Any, b: Any) -> bool:
    if not present(a) or not present(b):
        return not present(a) and not present(b)
    if str(a).strip() == str(b).strip():
        return True
    x, y = _number(a), _number(b)
    return x is not None and x == y


def _number(value: Any) -> float | None:
    try:
        return float(str(value).strip().replace(",", "."))
    except ValueError:
        return None


def layout_text(mf: Any, rows: pd.DataFrame, left_out: np.ndarray) -> str:
    """The layout record of a read file (:class:`~evidence.ingest.metapsy.MetapsyFile`): its
    columns, its row-name column, the columns it leaves blank rather than ``NA``, and its rows
    in order: a loaded row as its study and result keys (and its ``.id``), a row *left out*
    (file rows of rows
    without effect data, which the data model cannot hold) as its cells."""
    labels = rows[".id"] if ".id" in rows else None  # Metapsy's row label, rebuilt by releases
    entries: dict[int, Any] = {
        int(r): [str(s).strip(), k] + ([_text(labels.iat[i])] if labels is not None else [])
        for i, (r, s, k) in enumerate(
            zip(rows["file_row"], rows["study"], rows["result_key"], strict=True)
        )
    }
    nr = set(mf.not_reported_cells)
    unloaded = mf.frame[mf.frame["file_row"].isin(set(left_out))]
    for record in unloaded.to_dict(orient="records"):
        row = int(record["file_row"])
        entries[row] = {"cells": {c: "NR" if (row, c) in nr else _text(record.get(c))
                                  for c in mf.columns}}  # fmt: skip
    record = {
        "columns": list(mf.columns),
        "row_names": bool(mf.row_names),
        "blank": list(mf.blank_columns),
        "rows": [entries[r] for r in sorted(entries)],
    }
    record |= _verbatim(mf.verbatim_cells, sorted(entries))
    return LAYOUT + json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def _verbatim(cells: Any, rows: list[int]) -> dict[str, Any]:
    """The layout's record of the *cells* (file row, column, text) the store does not give
    back as they are (:attr:`~evidence.ingest.metapsy.MetapsyFile.verbatim_cells`), by their
    positions in *rows* (the layout's rows, as :func:`runs`), compactly:

    - ``numbers``: column -> how the file writes a number -> its positions; ``%,2`` is two
      decimals after a decimal comma (``0,50``), ``%.16`` sixteen after a point
      (``5.0999999999999996``), anything else the file's text (``1e-05``, `` 3``);
    - ``padded``: column -> ``LEAD|TRAIL|check`` -> positions, for text with leading or
      trailing blanks: the blanks around the text the store holds, and :func:`text_check`
      of that text (the export pads only a value a curator has not changed since).
    """
    position = {r: i for i, r in enumerate(rows)}
    found: dict[str, dict[str, dict[str, list[int]]]] = {"numbers": {}, "padded": {}}
    for row, column, text in cells:
        if row not in position:
            continue
        core = text.strip()
        if (x := _number(core)) is not None:
            kind = "numbers"
            key = next((k for k in (_decimals(text, ","), _decimals(text, "."))
                        if number_text(x, k) == text), text)  # fmt: skip
        else:
            kind = "padded"
            lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()) :]
            key = f"{lead}|{trail}|{text_check(core)}"
        found[kind].setdefault(column, {}).setdefault(key, []).append(position[row])
    return {kind: {c: {k: runs(p) for k, p in keys.items()} for c, keys in by.items()}
            for kind, by in found.items() if by}  # fmt: skip


def runs(positions: list[int]) -> list[Any]:
    """Ascending *positions* with each run of three or more as ``[first, last]``."""
    out: list[Any] = []
    for p in positions:
        last = out[-1] if out else None
        if isinstance(last, list) and last[1] == p - 1:
            last[1] = p
        elif out[-2:] == [p - 2, p - 1]:
            out[-2:] = [[p - 2, p]]
        else:
            out.append(p)
    return out


def positions(runs: list[Any]) -> list[int]:
    """The positions of :func:`runs`."""
    return [p for r in runs for p in (range(r[0], r[1] + 1) if isinstance(r, list) else [r])]


def _decimals(text: str, sep: str) -> str:
    return f"%{sep}{len(text) - text.index(sep) - 1 if sep in text else 0}"


def number_text(x: float, how: str) -> str:
    """The number *x* written as recorded (:func:`_verbatim`): ``how`` is ``%,2`` (two
    decimals after a comma), ``%.16`` (sixteen after a point) or the text itself."""
    if not how.startswith("%"):
        return how
    return format(x, f".{int(how[2:])}f").replace(".", how[1])


def text_check(text: str) -> str:
    """A short check of a stored text (CRC-32, hex): whether it is still the file's."""
    return f"{zlib.crc32(text.encode('utf-8')):08x}"


def _text(value: Any) -> str | None:
    if isinstance(value, float):
        return _fmt(value)
    return str(value) if present(value) else None


def layout_of(codebook_json: str | None) -> dict[str, Any] | None:
    """The layout record stored with a review's codebook, or None (not a Metapsy import)."""
    if not codebook_json:
        return None
    raw = json.loads(codebook_json)
    text = ((raw.get("sheets") or {}).get("results") or {}).get("description") or ""
    if not text.startswith(LAYOUT):
        return None
    return json.loads(text.removeprefix(LAYOUT))


def file_effects(
    results: pd.DataFrame,
    rows: pd.DataFrame,
    lower: np.ndarray,
    stats: tuple[str, ...],
    *,
    direction: str,
    sign: str,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The results sheet with the file's ``.g``/``.g_se`` as every row's reported effect.

    ``.g`` is oriented as ``precalc_g`` is (:mod:`evidence.ingest.metapsy_store`): under
    direction ``lower``/``higher`` it is turned into Metapsy's convention (negated under
    ``sign="reversed"``) and stored raw, minus it for events (the store keeps the log odds
    ratio, not its negation), so that the outcome's direction (*lower*: flipped) orients it;
    under ``file`` it is stored as the file gives it. The *stats* columns are cleared (the
    moderators hold their values) so that the store takes the reported effect. Rows without
    ``.g`` or ``.g_se`` keep their statistics and computed effect size.

    Returns the sheet and the mask of the rows whose effect size is the file's.
    """
    g, se = _col(rows, ".g"), _col(rows, ".g_se")
    take = ~np.isnan(g) & (se > 0)
    if direction == "file":
        raw = np.where(lower, -g, g)
    else:
        metapsy = -g if sign == "reversed" else g
        events = (rows["formula"] == "SMD:logOR").to_numpy()
        raw = np.where(events, -metapsy, metapsy)
    out = results.copy()
    for c in stats:
        if c in out.columns:
            out.loc[take, c] = np.nan
    out.loc[take, "yi_reported"] = raw[take]
    out.loc[take, "vi_reported"] = se[take] ** 2
    return out, take


# risk of bias --------------------------------------------------------------------------

_JUDGEMENT = {"low": "low", "low risk": "low", "low risk of bias": "low",
              "some concerns": "some concerns", "some concern": "some concerns",
              "moderate": "some concerns", "unclear": "some concerns",
              "high": "high", "high risk": "high", "high risk of bias": "high"}  # fmt: skip
_RANK = ("low", "some concerns", "high")
_UNRATED = ("", "NA", "NR")  # no judgement (not reported)
_CRITERIA = ("sg", "ac", "ba", "itt")  # Cuijpers' four criteria, scored by Metapsy's rob
_DOMAIN = re.compile(r"^(?:rob_?d|rob_domain|d|domain[ ._]?)([1-9])$", re.IGNORECASE)


def _judgement(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return _JUDGEMENT.get(re.sub(r"\s+", " ", value.strip().lower()))


def _score(value: Any) -> str | None:
    """Metapsy's rob score (criteria met of sg, ac, ba, itt) as a judgement."""
    try:
        x = float(str(value).strip().replace(",", "."))
    except ValueError:
        return None
    if x not in (0, 1, 2, 3, 4):
        return None
    return "low" if x == 4 else "some concerns" if x >= 2 else "high"


def rob_sheet(frame: pd.DataFrame) -> tuple[pd.DataFrame | None, str]:
    """The ``risk_of_bias`` sheet of a Metapsy frame and a one-line account of it.

    ``overall`` (tool ``metapsy-rob``): the ``rob`` column (any case) when its values are
    judgements (``low``, ``some concerns``, ``high``, with or without ``risk``); when they are
    Metapsy's score of the four criteria ``sg``, ``ac``, ``ba``, ``itt`` (the file has those
    columns): 4 criteria met is ``low``, 2 or 3 ``some concerns``, 0 or 1 ``high``; else a
    column named ``overall_rob`` or ``overall`` holding judgements. Domains ``D1``.. from
    columns ``d1``, ``rob_d1``, ``rob_domain1``, ``domain 1``... holding judgements (an ``NR``
    cell is not rated). A study rated differently on two rows gets its worst rating. The
    support column quotes the cell. A numeric ``rob`` without the four criteria columns
    (peer-support's 0/3, psychosis' 0/1) codes nothing the file defines: not read.
    """
    cols = {c.lower(): c for c in frame.columns if isinstance(c, str)}
    candidates: list[tuple[str, str, Any]] = []  # (domain, column, reader)
    rob = cols.get("rob")
    if rob is not None and _reads(frame[rob], _judgement):
        candidates.append(("overall", rob, _judgement))
    elif rob is not None and all(c in cols for c in _CRITERIA) and _reads(frame[rob], _score):
        candidates.append(("overall", rob, _score))
    else:
        for name in ("overall_rob", "overall"):
            if name in cols and _reads(frame[cols[name]], _judgement):
                candidates.append(("overall", cols[name], _judgement))
                break
    for low, col in cols.items():
        m = _DOMAIN.match(low)
        if m and _reads(frame[col], _judgement):
            candidates.append((f"D{m.group(1)}", col, _judgement))
    if not candidates:
        note = "no risk-of-bias column holds judgements or Metapsy's rob score"
        return None, note + (f" (rob: {_values(frame[rob])})" if rob is not None else "")
    parts = []
    for domain, col, read in candidates:
        part = pd.DataFrame({"study_key": frame["study"].map(lambda v: str(v).strip()),
                             "judgement": frame[col].map(read),
                             "support": frame[col].map(lambda v, c=col: f"{c} = {v}")})  # fmt: skip
        part = part.dropna(subset=["judgement"])
        part["rank"] = part["judgement"].map(_RANK.index)
        part = part.sort_values("rank", kind="stable").groupby("study_key").tail(1)
        parts.append(part.assign(tool="metapsy-rob", domain=domain))
    sheet = pd.concat(parts, ignore_index=True).sort_values(["study_key", "domain"])
    sheet = sheet[["study_key", "tool", "domain", "judgement", "support"]].reset_index(drop=True)
    used = ", ".join(f"{d} from {c}" for d, c, _ in candidates)
    studies = sheet["study_key"].nunique()
    return sheet, f"risk of bias (tool metapsy-rob) of {studies} studies: {used}"


def _reads(values: pd.Series, read) -> bool:
    present = values[values.map(lambda v: isinstance(v, str) and v.strip() not in _UNRATED)]
    return len(present) > 0 and bool(present.map(read).notna().all())


def _values(values: pd.Series, shown: int = 6) -> str:
    found = sorted({str(v) for v in values.dropna()})
    return ", ".join(found[:shown]) + (", ..." if len(found) > shown else "")


# formula injection ---------------------------------------------------------------------


def neutralise(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, with a leading ``'``."""
    if isinstance(value, str) and value.startswith(_INJECTION) and not _NUMBER.match(value):
        return "'" + value
    return value


def restore(value: Any) -> Any:
    """The text :func:`neutralise` was given (a ``'`` before ``= + - @``, tab or CR dropped)."""
    if isinstance(value, str) and value.startswith("'") and neutralise(value[1:]) == value:
        return value[1:]
    return value
