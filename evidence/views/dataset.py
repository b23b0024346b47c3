"""The analysis dataset: one row per effect size, every codebook moderator a column.

Built from the stored records of one review, either as they are now or as they stood at a
data revision (rebuilt from ``change_log`` by :func:`evidence.db.history.state_as_of`).
Both paths go through the same :func:`build_dataset`, so a view computed now and the same
view recomputed later "as of" that revision see identical numbers.

Columns
-------
``es_id, result_id, study_id, review, study, result, outcome, timepoint_key, timepoint``
(the timepoint's label, e.g. ``post``/``follow-up``), ``weeks, arm1, arm2, measure, yi, vi,
cluster``, the study's ``citation, doi, year, country, design, n_total, simulated``, the
outcome's ``domain, construct, instrument, direction, unit``, ``n1i, n2i``, then one column
per moderator (arm-level moderators are those of the intervention arm ``arm1``; the
comparator's are ``arm2.<name>``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from evidence.db.history import state_as_of
from evidence.db.models import metadata
from evidence.errors import NotFoundError
from evidence.ingest.codebook import Codebook, parse_codebook
from evidence.views.selection import FieldType

__all__ = [
    "FIXED_COLUMNS",
    "TABLE_COLUMNS",
    "build_dataset",
    "field_types",
    "load_tables",
    "read_dataset",
    "review_codebook",
    "review_row",
]

#: Columns each source table contributes (besides ids), as read from the database.
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "study": (
        "id",
        "review_id",
        "study_key",
        "citation",
        "doi",
        "year",
        "country",
        "design",
        "n_total",
        "simulated",
    ),
    "arm": ("id", "study_id", "arm_key"),
    "outcome": (
        "id",
        "study_id",
        "outcome_key",
        "domain",
        "construct",
        "instrument",
        "direction",
        "unit",
    ),
    "timepoint": ("id", "study_id", "timepoint_key", "label", "weeks"),
    "result": (
        "id",
        "study_id",
        "result_key",
        "outcome_id",
        "timepoint_id",
        "arm1_id",
        "arm2_id",
        "n1i",
        "n2i",
    ),
    "effect_size": ("id", "result_id", "measure", "yi", "vi", "cluster"),
    "moderator": ("id", "review_id", "name", "level", "type"),
    "moderator_value": (
        "id",
        "moderator_id",
        "study_id",
        "arm_id",
        "result_id",
        "value_text",
        "value_num",
    ),
}

#: The dataset's columns before the moderators (also those of the SQL view's fixed part).
FIXED_COLUMNS: tuple[str, ...] = (
    "es_id",
    "result_id",
    "study_id",
    "review",
    "study",
    "result",
    "outcome",
    "timepoint_key",
    "timepoint",
    "weeks",
    "arm1",
    "arm2",
    "measure",
    "yi",
    "vi",
    "cluster",
    "citation",
    "doi",
    "year",
    "country",
    "design",
    "n_total",
    "simulated",
    "domain",
    "construct",
    "instrument",
    "direction",
    "unit",
    "n1i",
    "n2i",
)

_NUMBER = {"weeks", "yi", "vi", "year", "n_total", "n1i", "n2i"}
_TEXT = {
    "review",
    "study",
    "result",
    "outcome",
    "timepoint_key",
    "arm1",
    "arm2",
    "measure",
    "cluster",
    "citation",
    "doi",
    "country",
    "construct",
    "instrument",
    "unit",
}
_CODEBOOK_COLUMN = {
    "design": ("studies", "design"),
    "domain": ("outcomes", "domain"),
    "direction": ("outcomes", "direction"),
    "timepoint": ("timepoints", "label"),
}


def review_row(conn: Connection, review: str | None = None) -> sa.Row:
    """The review named *review* (or the database's only review)."""
    table = metadata.tables["review"]
    query = sa.select(table.c.id, table.c.name, table.c.codebook)
    if review is not None:
        query = query.where(table.c.name == review)
    rows = conn.execute(query.order_by(table.c.id)).all()
    if review is not None and not rows:
        raise NotFoundError(f"review {review!r} is not in the database")
    if len(rows) != 1:
        if not rows:
            raise NotFoundError("the database holds no review; ingest coding sheets first")
        names = ", ".join(r.name for r in rows)
        raise NotFoundError(f"the database holds several reviews ({names}); name one with --review")
    return rows[0]


def review_codebook(codebook_json: str | None, name: str) -> Codebook:
    """The codebook stored with a review."""
    if not codebook_json:
        raise NotFoundError(f"review {name!r} has no stored codebook; apply one first")
    return parse_codebook(json.loads(codebook_json), f"database review {name}")


def field_types(codebook: Codebook) -> dict[str, FieldType]:
    """Type of every field a selection, subgroup or moderator list may name."""
    types: dict[str, FieldType] = {}
    for name in FIXED_COLUMNS:
        if name in ("es_id", "result_id", "study_id"):
            continue
        if name in _NUMBER:
            types[name] = FieldType("number")
        elif name == "simulated":
            types[name] = FieldType("bool")
        elif name in _CODEBOOK_COLUMN:
            sheet, col = _CODEBOOK_COLUMN[name]
            column = codebook.sheets.get(sheet, {}).get(col)
            if column is not None and column.levels:
                levels = tuple(str(v) for v in column.levels)
                types[name] = FieldType("categorical", levels, column.ordered)
            else:
                types[name] = FieldType("text")
        else:
            types[name] = FieldType("text")
    for mod in codebook.moderators.values():
        ftype = _moderator_type(mod)
        types[mod.name] = ftype
        if mod.level == "arm":
            types[f"arm2.{mod.name}"] = ftype
    return types


def _moderator_type(mod: Any) -> FieldType:
    if mod.type in ("numeric", "integer"):
        return FieldType("number")
    if mod.type == "boolean":
        return FieldType("bool")
    if mod.type == "categorical" and mod.levels:
        ordered = bool(mod.column is not None and mod.column.ordered)
        return FieldType("categorical", tuple(str(v) for v in mod.levels), ordered)
    return FieldType("text")


# ---------------------------------------------------------------------------- reading


def load_tables(
    conn: Connection,
    review_id: int,
    revision: int | None = None,
    study_ids: Iterable[int] | None = None,
) -> dict[str, pd.DataFrame]:
    """The rows of one review that the dataset needs, now or as of *revision*.

    *study_ids* (now only) limits the rows to those studies (an incremental refresh).
    """
    out: dict[str, pd.DataFrame] = {}
    if revision is None:
        st = metadata.tables["study"]
        mt = metadata.tables["moderator"]
        at, rt = metadata.tables["arm"], metadata.tables["result"]
        where = st.c.review_id == review_id
        if study_ids is not None:
            where = sa.and_(
                where, st.c.id.in_(sa.bindparam("ids", sorted(set(study_ids)), expanding=True))
            )
        studies = sa.select(st.c.id).where(where).scalar_subquery()
        mods = sa.select(mt.c.id).where(mt.c.review_id == review_id).scalar_subquery()
        results = sa.select(rt.c.id).where(rt.c.study_id.in_(studies)).scalar_subquery()
        for name, cols in TABLE_COLUMNS.items():
            table = metadata.tables[name]
            query = sa.select(*(table.c[c] for c in cols))
            if name == "study":
                query = query.where(where)
            elif name == "moderator":
                query = query.where(table.c.review_id == review_id)
            elif name == "effect_size":
                query = query.where(table.c.result_id.in_(results))
            elif name == "moderator_value":
                query = query.where(table.c.moderator_id.in_(mods))
                if study_ids is not None:
                    arms = sa.select(at.c.id).where(at.c.study_id.in_(studies)).scalar_subquery()
                    query = query.where(
                        sa.or_(
                            table.c.study_id.in_(studies),
                            table.c.arm_id.in_(arms),
                            table.c.result_id.in_(results),
                        )
                    )
            else:
                query = query.where(table.c.study_id.in_(studies))
            rows = conn.execute(query).all()
            out[name] = pd.DataFrame([tuple(r) for r in rows], columns=list(cols))
        return out
    for name, cols in TABLE_COLUMNS.items():
        rows = state_as_of(conn, name, revision)
        out[name] = pd.DataFrame([[r.get(c) for c in cols] for r in rows], columns=list(cols))
    study_ids = set(out["study"].loc[out["study"]["review_id"] == review_id, "id"])
    out["study"] = out["study"][out["study"]["review_id"] == review_id]
    out["moderator"] = out["moderator"][out["moderator"]["review_id"] == review_id]
    for name in ("arm", "outcome", "timepoint", "result"):
        out[name] = out[name][out[name]["study_id"].isin(study_ids)]
    out["effect_size"] = out["effect_size"][
        out["effect_size"]["result_id"].isin(set(out["result"]["id"]))
    ]
    out["moderator_value"] = out["moderator_value"][
        out["moderator_value"]["moderator_id"].isin(set(out["moderator"]["id"]))
    ]
    return out


def _num(series: pd.Series) -> pd.Series:
    return pd.to_numeric(series, errors="coerce").astype("float64")


def _text(series: pd.Series) -> pd.Series:
    return series.astype(object).where(series.notna(), None)


def build_dataset(
    tables: Mapping[str, pd.DataFrame], review: str, moderators: Mapping[str, Any] | None = None
) -> pd.DataFrame:
    """Join the tables into the analysis dataset (one row per effect size, sorted by id).

    Parameters
    ----------
    tables
        From :func:`load_tables`.
    review
        The review's name (the ``review`` column).
    moderators
        Codebook moderators by name (their order fixes the column order; default: the
        ``moderator`` table's order).
    """
    es = tables["effect_size"].rename(columns={"id": "es_id"})
    res = tables["result"].rename(columns={"id": "result_id", "result_key": "result"})
    st = tables["study"].rename(columns={"id": "study_id", "study_key": "study"})
    oc = tables["outcome"].rename(columns={"id": "outcome_id", "outcome_key": "outcome"})
    tp = tables["timepoint"].rename(columns={"id": "timepoint_id", "label": "timepoint"})
    arm = tables["arm"]
    frame = es.merge(res, on="result_id", how="inner")
    frame = frame.merge(st.drop(columns=["review_id"]), on="study_id", how="left")
    frame = frame.merge(oc.drop(columns=["study_id"]), on="outcome_id", how="left")
    frame = frame.merge(tp.drop(columns=["study_id"]), on="timepoint_id", how="left")
    keys = dict(zip(arm["id"], arm["arm_key"], strict=True))
    frame["arm1"] = frame["arm1_id"].map(keys)
    frame["arm2"] = frame["arm2_id"].map(keys)
    frame["review"] = review
    frame = frame.sort_values("es_id", kind="stable").reset_index(drop=True)
    out = pd.DataFrame(index=frame.index)
    for name in FIXED_COLUMNS:
        values = frame[name] if name in frame else pd.Series(None, index=frame.index)
        if name in ("es_id", "result_id", "study_id"):
            out[name] = values.astype("int64")
        elif name in _NUMBER:
            out[name] = _num(values)
        elif name == "simulated":
            out[name] = values.map(lambda x: None if x is None or x != x else bool(x))
        else:
            out[name] = _text(values)
    _add_moderators(out, frame, tables, moderators)
    return out


def _add_moderators(
    out: pd.DataFrame,
    frame: pd.DataFrame,
    tables: Mapping[str, pd.DataFrame],
    declared: Mapping[str, Any] | None,
) -> None:
    mods = tables["moderator"].sort_values("id")
    values = tables["moderator_value"]
    names = list(declared) if declared is not None else list(mods["name"])
    info = {row.name: row for row in mods.itertuples(index=False)}
    columns: dict[str, pd.Series] = {}
    for name in names:
        row = info.get(name)
        empty = pd.Series([None] * len(out), index=out.index, dtype=object)
        if row is None:
            columns[name] = empty
            continue
        part = values[values["moderator_id"] == row.id]
        numeric = row.type in ("numeric", "integer")
        if numeric:
            vals = _num(part["value_num"])
        elif row.type == "boolean":
            vals = part["value_num"].map(lambda x: None if x is None or x != x else bool(x))
        else:
            vals = _text(part["value_text"])
        target = {"study": "study_id", "arm": "arm_id", "effect": "result_id"}[row.level]
        at_level = part[target].notna().to_numpy()  # values coded before a change of level
        lookup = dict(zip(part[target][at_level].astype("int64"), vals[at_level], strict=True))
        if row.level == "arm":
            pairs = (("", "arm1_id"), ("arm2.", "arm2_id"))
        else:
            pairs = (("", target),)
        for prefix, key in pairs:
            ids = frame[key]
            col = pd.Series(
                [lookup.get(int(i)) if i == i and i is not None else None for i in ids],
                index=out.index,
                dtype=object,
            )
            columns[prefix + name] = _num(col) if numeric else col
    ordered = [n for n in names if n in columns]
    ordered += [f"arm2.{n}" for n in names if f"arm2.{n}" in columns]
    for name in ordered:
        out[name] = columns[name]


def read_dataset(
    conn: Connection,
    review: str | None = None,
    revision: int | None = None,
    study_ids: Iterable[int] | None = None,
) -> tuple[pd.DataFrame, Codebook]:
    """The analysis dataset of a review and its codebook, now or as of *revision*.

    As of a revision, the review's codebook is the one stored then.
    """
    row = review_row(conn, review)
    codebook_json = row.codebook
    if revision is not None:
        past = [r for r in state_as_of(conn, "review", revision) if r["id"] == row.id]
        if not past:
            raise NotFoundError(f"review {row.name!r} did not exist at revision {revision}")
        codebook_json = past[0].get("codebook")
    codebook = review_codebook(codebook_json, row.name)
    tables = load_tables(conn, row.id, revision, study_ids)
    frame = build_dataset(tables, row.name, codebook.moderators)
    return frame, codebook


def usable_rows(frame: pd.DataFrame) -> np.ndarray:
    """Rows with a usable effect size (finite yi and vi)."""
    return np.isfinite(frame["yi"].to_numpy(float)) & np.isfinite(frame["vi"].to_numpy(float))
