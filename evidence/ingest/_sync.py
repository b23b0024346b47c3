"""Compare desired rows with stored rows by natural key and write only the differences.

Every write is a Core bulk statement (``executemany``): inserts, updates by id, deletes by id,
in chunks, so the history triggers log exactly the rows that changed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

__all__ = ["CHUNK", "Diff", "apply_diff", "diff", "load"]

CHUNK = 5000

Progress = Callable[[str, int, int], None]


@dataclass
class Diff:
    """What must change in one table."""

    table: str
    insert: pd.DataFrame
    update: pd.DataFrame  # with column ``id``
    delete: list[int]

    @property
    def counts(self) -> tuple[int, int, int]:
        return len(self.insert), len(self.update), len(self.delete)


def _kind(column: sa.Column) -> str:
    t = column.type
    if isinstance(t, sa.Boolean):
        return "bool"
    if isinstance(t, sa.Integer):
        return "int"
    if isinstance(t, sa.Float | sa.Numeric):
        return "float"
    if isinstance(t, sa.DateTime):
        return "datetime"
    if isinstance(t, sa.Date):
        return "date"
    return "text"


def _canonical(series: pd.Series, kind: str) -> pd.Series:
    """Values in a comparable form: float64 for numbers and flags, str/None otherwise."""
    if kind in ("int", "float", "bool"):
        if kind == "bool":
            series = series.map(lambda x: None if x is None or x is pd.NA else float(bool(x)))
        return pd.to_numeric(series, errors="coerce").astype("float64")
    values = series.to_numpy(dtype=object)
    if kind in ("date", "datetime"):
        width = 10 if kind == "date" else None
        out = np.array([None if _null(x) else str(x)[:width] for x in values], dtype=object)
    else:
        out = values.copy()
        out[pd.isna(values)] = None
    return pd.Series(out, index=series.index, dtype=object)


def _null(x: object) -> bool:
    return x is None or x is pd.NA or x is pd.NaT or (isinstance(x, float) and x != x)


def _equal(a: pd.Series, b: pd.Series) -> np.ndarray:
    if a.dtype == "float64" and b.dtype == "float64":
        x, y = a.to_numpy(), b.to_numpy()
        return (x == y) | (np.isnan(x) & np.isnan(y))
    x, y = a.to_numpy(dtype=object), b.to_numpy(dtype=object)
    same = np.asarray(x == y, dtype=bool) if len(x) else np.zeros(0, dtype=bool)
    return same | (pd.isna(x) & pd.isna(y))


def load(conn: Connection, table: sa.Table, where: sa.ColumnElement | None,
         columns: Sequence[str]) -> pd.DataFrame:  # fmt: skip
    """Stored rows (``id`` and *columns*) of *table* matching *where*."""
    cols = [table.c.id, *(table.c[c] for c in columns)]
    query = sa.select(*cols)
    if where is not None:
        query = query.where(where)
    # Driver rows without per-value result processing: the comparison canonicalises values
    # (SQLite gives 0/1 for flags and ISO text for dates; PostgreSQL gives bool and date).
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    rows = [tuple(r) for r in conn.exec_driver_sql(sql).fetchall()]
    return (
        pd.DataFrame(rows, columns=["id", *columns])
        if rows
        else pd.DataFrame({c: pd.Series([], dtype=object) for c in ["id", *columns]})
    )


def diff(table: sa.Table, desired: pd.DataFrame, current: pd.DataFrame, keys: Sequence[str],
         values: Sequence[str], deletable: pd.Series | None = None) -> Diff:  # fmt: skip
    """Rows to insert, update (changed values) and delete (stored, not desired, deletable).

    *deletable* is a boolean mask over *current*: which stored rows the desired set speaks
    for (rows of other studies are left alone). ``None`` means none may be deleted.
    """
    keys, values = list(keys), list(values)
    kinds = {c: _kind(table.c[c]) for c in keys + values}
    left = desired[keys + values].copy()
    right = current[["id", *keys, *values]].copy()
    for c in keys:
        left[c] = _canonical(left[c], kinds[c])
        right[c] = _canonical(right[c], kinds[c])
    merged = left.reset_index(names="_pos").merge(
        right, on=keys, how="outer", suffixes=("", "__cur"), indicator=True
    )
    new = merged["_merge"] == "left_only"
    both = merged["_merge"] == "both"
    changed = np.zeros(len(merged), dtype=bool)
    for c in values:
        a = _canonical(merged[c], kinds[c])
        b = _canonical(merged[f"{c}__cur"], kinds[c])
        changed |= ~_equal(a, b)
    ins_pos = merged.loc[new, "_pos"].astype(int).to_numpy()
    upd = merged[both & changed]
    update = desired.iloc[upd["_pos"].astype(int).to_numpy()][keys + values].copy()
    update["id"] = upd["id"].astype(int).to_numpy()
    delete: list[int] = []
    if deletable is not None:
        gone = merged["_merge"] == "right_only"
        ids = set(merged.loc[gone, "id"].astype(int))
        allowed = set(current.loc[deletable.to_numpy(dtype=bool), "id"].astype(int))
        delete = sorted(ids & allowed)
    return Diff(table.name, desired.iloc[ins_pos][keys + values].copy(), update, delete)


def _columns(conn: Connection, table: sa.Table, frame: pd.DataFrame, columns: Sequence[str],
             extra: dict) -> tuple[list[str], list[tuple]]:  # fmt: skip
    """Frame rows as tuples of driver values (each column's bind processor applied)."""
    n = len(frame)
    names, values = [], []
    for c in columns:
        kind = _kind(table.c[c])
        s = frame[c]
        if kind in ("int", "float"):
            arr = pd.to_numeric(s, errors="coerce").astype("float64").to_numpy()
            conv = int if kind == "int" else float
            col = [None if x != x else conv(x) for x in arr.tolist()]
        elif kind == "bool":
            col = [None if _null(x) else bool(x) for x in s.to_numpy(object)]
        elif kind == "date":
            col = [None if _null(x) else x if isinstance(x, dt.date)
                   else dt.date.fromisoformat(str(x)) for x in s.to_numpy(object)]  # fmt: skip
        else:
            col = [None if _null(x) else x for x in s.to_numpy(object)]
        names.append(c)
        values.append(col)
    for c, v in extra.items():
        names.append(c)
        values.append([v] * n)
    for i, c in enumerate(names):
        proc = table.c[c].type.bind_processor(conn.dialect)
        if proc is not None:
            values[i] = [None if v is None else proc(v) for v in values[i]]
    return names, list(zip(*values, strict=True)) if values else []


def _sql(conn: Connection, table: sa.Table, names: Sequence[str], update: bool) -> str:
    quote = conn.dialect.identifier_preparer.quote
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    if update:
        sets = ", ".join(f"{quote(c)} = {mark}" for c in names)
        return f"UPDATE {quote(table.name)} SET {sets} WHERE id = {mark}"
    cols = ", ".join(quote(c) for c in names)
    return f"INSERT INTO {quote(table.name)} ({cols}) VALUES ({', '.join([mark] * len(names))})"


def apply_diff(conn: Connection, table: sa.Table, d: Diff, *, extra: dict | None = None,
               progress: Progress | None = None) -> None:  # fmt: skip
    """Write one table's differences: inserts, updates by id, deletes by id, in chunks.

    Inserts and updates go to the driver's ``executemany`` directly (one prepared statement,
    tuples of values already converted by each column's SQLAlchemy type), the fastest bulk
    path on SQLite and PostgreSQL alike.
    """
    extra = extra or {}
    total = sum(d.counts)
    done = 0
    if len(d.insert):
        names, rows = _columns(conn, table, d.insert, list(d.insert.columns), extra)
        sql = _sql(conn, table, names, update=False)
        for i in range(0, len(rows), CHUNK):
            chunk = rows[i : i + CHUNK]
            conn.exec_driver_sql(sql, chunk)
            done += len(chunk)
            if progress:
                progress(table.name, done, total)
    if len(d.update):
        cols = [c for c in d.update.columns if c != "id"]
        names, rows = _columns(conn, table, d.update, [*cols, "id"], extra={})
        extra_values = tuple(
            table.c[c].type.bind_processor(conn.dialect)(v)
            if table.c[c].type.bind_processor(conn.dialect) else v
            for c, v in extra.items()
        )  # fmt: skip
        rows = [r[:-1] + extra_values + r[-1:] for r in rows]
        sql = _sql(conn, table, [*cols, *extra], update=True)
        for i in range(0, len(rows), CHUNK):
            chunk = rows[i : i + CHUNK]
            conn.exec_driver_sql(sql, chunk)
            done += len(chunk)
            if progress:
                progress(table.name, done, total)
    for i in range(0, len(d.delete), 900):
        ids = d.delete[i : i + 900]
        conn.execute(table.delete().where(table.c.id.in_(ids)))
        done += len(ids)
        if progress:
            progress(table.name, done, total)
