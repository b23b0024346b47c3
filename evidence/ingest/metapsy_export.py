"""A review of the database written back as a Metapsy file (:func:`export_metapsy`).

The inverse of :func:`~evidence.ingest.metapsy_store.import_metapsy`: one row per two-arm
result, the stored statistics in Metapsy's columns, every moderator under its Metapsy column
name, and ``.g``/``.g_se`` from the stored effect sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from evidence.db.models import metadata
from evidence.errors import NotFoundError, ValidationError
from evidence.ingest.metapsy import _fmt
from evidence.ingest.metapsy_layout import (
    MODEL_OF,
    NR_TEXT,
    REST_TEXT,
    layout_of,
    neutralise,
    number_text,
    positions,
    restore,
    text_check,
)
from evidence.ingest.metapsy_store import (
    _BASELINE,
    _FORMULA_TYPE,
    _RESULT_STATS,
    _STAT_MAP,
    _connect,
)

__all__ = ["EXPORT_EFFECTS", "EXPORT_SIGNS", "MetapsyExport", "export_metapsy"]

EXPORT_SIGNS = ("improvement", "metapsy", "reversed")
EXPORT_EFFECTS = ("file", "store")
_EFFECT_COLUMNS = (".g", ".g_se", "precalc_g", "precalc_g_se")
#: Columns written from the records (the rest of an imported file's come from moderators).
_MODELLED = {"study", ".id", *MODEL_OF, *_BASELINE,
             *(c for cols in _STAT_MAP.values() for c in cols)}  # fmt: skip


@dataclass(frozen=True)
class MetapsyExport:
    """What :func:`export_metapsy` wrote."""

    path: str
    review: str
    rows: int
    left_out: int
    sign: str
    effects: str = "store"

    def __str__(self) -> str:
        g = ("as imported" if self.effects == "file" else
             f"the store's, in the {self.sign} sign convention")  # fmt: skip
        text = (f"wrote {self.rows} rows of review {self.review} to {self.path} (Metapsy "
                f"standard; .g {g})")  # fmt: skip
        if self.left_out:
            text += f"; {self.left_out} results without a second arm have no Metapsy row"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return dict(vars(self))


def export_metapsy(
    path: str | Path,
    *,
    database: str | sa.Engine | None = None,
    review: str | None = None,
    sign: str = "improvement",
    effects: str = "file",
) -> MetapsyExport:
    """Write a review's two-arm results in the Metapsy standard.

    One row per result with two arms: study, arms, outcome, time, the stored statistics in
    Metapsy's columns (means, change scores, events, ``precalc_g``), every moderator under its
    Metapsy column name (from the import) or its own name, and ``.g``/``.g_se`` from the
    stored effect size: ``sign="improvement"`` (default) writes the store's own orientation,
    positive = improvement of arm 1 (what an import with ``direction="file"`` reads back);
    ``"metapsy"`` writes Metapsy's convention (means: arm 1 minus arm 2; events: the negated
    log odds ratio) and ``"reversed"`` its negation. ``precalc_g`` follows the same choice.

    A review imported from a Metapsy file is written back as that file (lossless,
    :mod:`~evidence.ingest.metapsy_layout`): its columns in its order, its rows in its order,
    every value it had. With ``effects="file"`` (default) ``.g``, ``.g_se``, ``precalc_g``
    and ``precalc_g_se`` are the file's own; ``effects="store"`` writes the stored effect
    sizes in the *sign* convention instead. Text cells that a spreadsheet would run as a
    formula get a leading ``'`` (removed again when the file is read).
    """
    if sign not in EXPORT_SIGNS:
        raise ValidationError(f"sign must be one of {', '.join(EXPORT_SIGNS)}, not {sign!r}")
    if effects not in EXPORT_EFFECTS:
        raise ValidationError(f"effects must be one of {', '.join(EXPORT_EFFECTS)}, "
                              f"not {effects!r}")  # fmt: skip
    with _connect(database) as conn:
        frame, name, left_out, from_file = _export_frame(conn, review, sign, effects)
    frame.to_csv(path, sep=";", index=False, na_rep="NA")  # cells as text (_as_text)
    return MetapsyExport(path=str(path), review=name, rows=len(frame), left_out=left_out,
                         sign=sign, effects=effects if from_file else "store")  # fmt: skip


def _export_frame(conn: sa.Connection, review: str | None, sign: str, effects: str):
    t = metadata.tables
    rv = t["review"]
    reviews = conn.execute(sa.select(rv.c.id, rv.c.name, rv.c.codebook)).all()
    if review is None:
        if len(reviews) != 1:
            names = ", ".join(r.name for r in reviews) or "none"
            raise NotFoundError(f"name the review to export (--review): the database holds "
                                f"{len(reviews)} reviews ({names})")  # fmt: skip
        rid, name, codebook = reviews[0]
    else:
        match = [r for r in reviews if r.name == review]
        if not match:
            raise NotFoundError(f"review {review!r} is not in the database")
        rid, name, codebook = match[0]
    s, a1, a2 = t["study"], t["arm"].alias("a1"), t["arm"].alias("a2")
    o, tp, r, e = t["outcome"], t["timepoint"], t["result"], t["effect_size"]
    q = (sa.select(r.c.id.label("result_id"), r.c.result_key, s.c.id.label("study_id"),
                   s.c.study_key,
                   s.c.citation, s.c.year, s.c.country, a1.c.label.label("condition_arm1"),
                   a1.c.description.label("multi_arm1"), a2.c.label.label("condition_arm2"),
                   a2.c.description.label("multi_arm2"), o.c.domain, o.c.construct,
                   o.c.instrument, tp.c.label.label("time"), tp.c.weeks,
                   *[r.c[c] for c in _RESULT_STATS], r.c.notes, e.c.yi, e.c.vi, e.c.flipped,
                   e.c.formula)
         .select_from(r.join(s, s.c.id == r.c.study_id).join(o, o.c.id == r.c.outcome_id)
                      .outerjoin(tp, tp.c.id == r.c.timepoint_id)
                      .outerjoin(a1, a1.c.id == r.c.arm1_id)
                      .outerjoin(a2, a2.c.id == r.c.arm2_id)
                      .outerjoin(e, e.c.result_id == r.c.id))
         .where(s.c.review_id == rid).order_by(s.c.study_key, r.c.result_key))  # fmt: skip
    res = conn.execute(q)
    db = pd.DataFrame(res.all(), columns=list(res.keys()))
    two_arm = db["condition_arm2"].notna() | db["m2i"].notna() | db["n2i"].notna()
    left_out = int((~two_arm).sum())
    db = db[two_arm].reset_index(drop=True)
    out = pd.DataFrame({"study": db["study_key"]})
    for col in ("condition_arm1", "condition_arm2", "multi_arm1", "multi_arm2"):
        out[col] = db[col]
    formula = db["formula"].fillna("")
    out["outcome_type"] = [
        next((v for k, v in _FORMULA_TYPE.items() if f.startswith(k)), "msd") for f in formula
    ]
    out["outcome_category"], out["outcome_subcategory"] = db["domain"], db["construct"]
    out["instrument"], out["time"], out["time_weeks"] = db["instrument"], db["time"], db["weeks"]
    inverse = {dst: src for kind in ("means", "change") for src, dst in _STAT_MAP[kind].items()
               if not dst.startswith("n")}  # fmt: skip
    for dst, src in inverse.items():
        out[src] = db[dst].astype(float)
    is_change = out["outcome_type"] == "change"
    is_dich = out["outcome_type"] == "dich"
    is_means = ~is_change & ~is_dich & (out["outcome_type"] != "precalc")
    for arm, n in (("arm1", "n1i"), ("arm2", "n2i")):
        out[f"n_{arm}"] = db[n].astype(float).where(is_means)
        out[f"n_change_{arm}"] = db[n].astype(float).where(is_change)
        out[f"event_{arm}"] = db["event1i" if arm == "arm1" else "event2i"].astype(float)
        out[f"totaln_{arm}"] = db[n].astype(float).where(is_dich)
    for src, dst in _BASELINE.items():
        out[src] = db[dst].astype(float)
    flipped = db["flipped"].fillna(False).astype(bool).to_numpy()
    events = formula.str.startswith("SMD:logOR").to_numpy()

    def oriented(yi: np.ndarray, stored: bool) -> np.ndarray:
        """*yi* (the store's orientation when *stored*, else raw) in the chosen convention."""
        better = yi if stored else np.where(flipped, -yi, yi)
        if sign == "improvement":
            return better
        raw = np.where(flipped, -better, better)
        g = np.where(events, -raw, raw)
        return -g if sign == "reversed" else g

    out["precalc_g"] = oriented(db["yi_reported"].astype(float).to_numpy(), stored=False)
    out["precalc_g_se"] = np.sqrt(db["vi_reported"].astype(float))
    out[".g"] = oriented(db["yi"].astype(float).to_numpy(), stored=True)
    out[".g_se"] = np.sqrt(db["vi"].astype(float))
    out["year"], out["country"], out["full_ref"] = db["year"], db["country"], db["citation"]
    out[".id"] = db["notes"]
    keep = _EFFECT_COLUMNS if effects == "store" else ()
    imported = _export_moderators(conn, rid, db, out, keep)
    layout = layout_of(codebook)
    if layout is not None:  # a column the file had empty on every loaded row: empty again
        for col in set(out.columns) - imported - _MODELLED - set(keep):
            out[col] = None
        out, at = _in_layout(out, db, layout, keep)
    out = _as_text(out)
    for col in layout.get("blank", ()) if layout is not None else ():
        out[col] = out[col].astype(object).where(out[col].notna(), "")
    if layout is not None:
        out = _verbatim(out, at, layout)
    return out, name, left_out, layout is not None


def _in_layout(out: pd.DataFrame, db: pd.DataFrame, layout: dict[str, Any],
               store: tuple[str, ...]) -> tuple[pd.DataFrame, np.ndarray]:  # fmt: skip
    """*out* with the imported file's columns in its order and its rows in its order, the
    rows the store could not hold (no effect data) back in their places (rows the file did
    not have, added to the review since, at the end); the *store* columns (the stored effect
    sizes) are added at the end when the file had none. Also returns each row's position
    in the layout's rows (``len(rows)`` for a row the file did not have)."""
    entries = layout["rows"]
    position = {tuple(e[:2]): i for i, e in enumerate(entries) if isinstance(e, list)}
    keys = list(zip(db["study_key"], db["result_key"], strict=True))
    labels = {tuple(e[:2]): e[2] for e in entries if isinstance(e, list) and len(e) > 2}
    if labels:  # Metapsy's .id of each loaded row, as the file had it
        out = out.assign(**{".id": [labels.get(key) for key in keys]})
    loaded = out.assign(_at=[position.get(key, len(entries)) for key in keys],
                        _study=db["study_key"], _key=db["result_key"])  # fmt: skip
    kept = [(i, e["cells"]) for i, e in enumerate(entries) if isinstance(e, dict)]
    unloaded = pd.DataFrame([cells for _, cells in kept], dtype=object).assign(
        _at=[i for i, _ in kept], _study="", _key="")  # fmt: skip
    out = pd.concat([loaded, unloaded], ignore_index=True) if kept else loaded
    out = out.sort_values(["_at", "_study", "_key"], kind="stable")
    at = out["_at"].to_numpy(dtype=int)
    columns = layout["columns"] + [c for c in store[:2] if c not in layout["columns"]]
    out = out.reset_index(drop=True).reindex(columns=columns)
    if layout.get("row_names"):
        out.insert(0, "", [str(i) for i in range(1, len(out) + 1)])
    return out, at


def _verbatim(out: pd.DataFrame, at: np.ndarray, layout: dict[str, Any]) -> pd.DataFrame:
    """*out* (cells as text) with the imported file's own text of the cells its layout
    records (:func:`~evidence.ingest.metapsy_layout.layout_text`): a number as the file
    wrote it (``0,50``) where that text is still the stored number, text with its leading
    and trailing blanks where the stored text is still the file's; a value a curator changed
    since is written as stored. *at*: each row's position in the layout's rows."""
    row_of = {int(p): i for i, p in enumerate(at)}

    def cell(column: str, p: int) -> tuple[int, int, str] | None:
        """(row, column index, exported text or "") of a recorded cell still exported."""
        i = row_of.get(p)
        if column not in out.columns or i is None:
            return None
        return i, out.columns.get_loc(column), out[column].iat[i] or ""

    for column, hows in layout.get("numbers", {}).items():
        for how, at_runs in hows.items():
            for p in positions(at_runs):
                if (at_cell := cell(column, p)) and (x := _number(at_cell[2])) is not None:
                    text = number_text(x, how)
                    if _number(text) == x:  # the stored number (a changed one stays as is)
                        out.iat[at_cell[0], at_cell[1]] = text
    for column, pads in layout.get("padded", {}).items():
        for pad, at_runs in pads.items():
            lead, trail, check = pad.split("|")
            for p in positions(at_runs):
                at_cell = cell(column, p)
                if at_cell and text_check(stored := restore(at_cell[2])) == check:
                    out.iat[at_cell[0], at_cell[1]] = neutralise(lead + stored + trail)
    return out


def _number(text: str) -> float | None:
    try:
        return float(text.strip().replace(",", "."))
    except ValueError:
        return None


def _as_text(out: pd.DataFrame) -> pd.DataFrame:
    """Every cell as the Metapsy standard writes it: numbers in the decimal-comma format,
    text guarded against spreadsheet formula injection, missing as None."""
    for col in out.columns:
        if pd.api.types.is_numeric_dtype(out[col]) and not pd.api.types.is_bool_dtype(out[col]):
            out[col] = [_fmt(float(x)) for x in out[col].to_numpy(dtype=float, na_value=np.nan)]
        else:
            out[col] = out[col].map(_cell_text)
    return out


def _cell_text(x: Any) -> str | None:
    if x is None or isinstance(x, bool):
        return None if x is None else str(x)
    if isinstance(x, int | float | np.number):
        return _fmt(float(x))
    return neutralise(x) if isinstance(x, str) else str(x)


def _export_moderators(conn: sa.Connection, rid: int, db: pd.DataFrame, out: pd.DataFrame,
                       keep: tuple[str, ...]) -> set[str]:  # fmt: skip
    """Every moderator of the review into *out*, under its Metapsy column (its description,
    :mod:`~evidence.ingest.metapsy_layout`) or its own name: a column the model does not hold
    replaces the model's (e.g. ``outcome_type`` as the file wrote it), except the columns in
    *keep*; the rest of a statistics column fills the cells the results do not hold.
    Returns the Metapsy columns written from moderators."""
    t = metadata.tables
    m, v = t["moderator"], t["moderator_value"]
    mods = conn.execute(sa.select(m.c.id, m.c.name, m.c.level, m.c.description)
                        .where(m.c.review_id == rid).order_by(m.c.id)).all()  # fmt: skip
    written: set[str] = set()
    not_reported = [mod for mod in mods if (mod.description or "").endswith(NR_TEXT)]
    for mod in [mod for mod in mods if mod not in not_reported] + not_reported:
        column, rest, imported, nr = mod.name, False, False, False
        described = mod.description or ""
        if described.startswith("Metapsy column "):
            column, imported = described.removeprefix("Metapsy column "), True
            rest, nr = column.endswith(REST_TEXT), column.endswith(NR_TEXT)
            column = column.removesuffix(REST_TEXT).removesuffix(NR_TEXT)
        if mod.level == "arm" or column in keep or (column in out.columns and not imported):
            continue
        values = conn.execute(
            sa.select(v.c.study_id, v.c.result_id, v.c.value_text, v.c.value_num).where(
                v.c.moderator_id == mod.id
            )
        ).all()
        frame = pd.DataFrame(values, columns=["study_id", "result_id", "text", "num"])
        value = frame["text"].where(frame["text"].notna(), frame["num"].astype(float))
        ids = "study_id" if mod.level == "study" else "result_id"
        column_values = db[ids].map(dict(zip(frame[ids], value, strict=True)))
        if rest and column in out.columns:
            column_values = out[column].where(out[column].notna(), column_values)
        elif nr and column in out.columns:  # NR where the file had it, after the numbers
            column_values = out[column].astype(object).where(column_values.isna(), "NR")
        out[column] = column_values
        written |= {column} if imported else set()
    return written
