"""What changed between two revisions, at a glance: studies, then views, then records.

:func:`diff_summary` reads the ``change_log`` rows of revisions (a, b] in one query and
sorts them in bulk:

* studies **added** (their study row was inserted), **withdrawn** (deleted), **renamed**
  (an update of ``study.study_key``: old -> new) and **changed** (any of their records --
  arms, outcomes, timepoints, results, effect sizes, moderator values, risk of bias -- or
  another column of the study row changed). A study inserted and deleted within the range
  is neither added nor withdrawn; one withdrawn while another is added under the same key
  is "changed". A renamed study whose records also changed is listed under both.
* **views that moved**: the estimate, CI, k or status in force at a differs from the one
  in force at b. The stored result in force at a revision r is the one confirmed there
  (``revision <= r <= checked_revision``); a view without one (stale at r, or created
  later) is recomputed on the data as of r, and says so (``source``).
* the changed **records**, oldest first. An update that changed only derived bookkeeping
  columns (:data:`DERIVED_COLUMNS`: an effect size's ``computed_at``, ``inputs`` and
  ``engine_version``; a review's ``updated_at``) is not a changed record: it is counted as
  derived recomputation (``recomputed``), not listed.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine

from evidence.db.engine import database_error
from evidence.db.models import NATURAL_KEYS, metadata
from evidence.errors import NotFoundError
from evidence.views.models import AnalysisView, ViewResult
from evidence.views.revisions import check_revisions

__all__ = ["DERIVED_COLUMNS", "DiffSummary", "ViewMove", "ViewState", "diff_summary"]

#: Columns the store derives and stamps; a change only in them is not a curator's change.
DERIVED_COLUMNS: dict[str, frozenset[str]] = {
    "effect_size": frozenset({"computed_at", "inputs", "engine_version"}),
    "review": frozenset({"updated_at"}),
}
_LOG = metadata.tables["change_log"]
_VIEW = AnalysisView.__table__
_RESULT = ViewResult.__table__
#: ``{study id: (review id, study key)}``
_Studies = dict[int, tuple[int | None, str | None]]
_CHUNK = 5000


@dataclass(frozen=True)
class ViewState:
    """A view's headline at one revision; ``source`` is "stored", "recomputed" or "absent"."""

    revision: int
    source: str
    status: str | None = None
    k_studies: int | None = None
    k_effects: int | None = None
    estimate: float | None = None
    ci_lb: float | None = None
    ci_ub: float | None = None

    def figures(self) -> tuple[Any, ...]:
        return (self.status, self.k_studies, self.k_effects, self.estimate, self.ci_lb, self.ci_ub)


@dataclass(frozen=True)
class ViewMove:
    """One view at both revisions."""

    view: str
    before: ViewState
    after: ViewState

    @property
    def moved(self) -> bool:
        """True when status, k, estimate or CI differ."""
        pairs = zip(self.before.figures(), self.after.figures(), strict=True)
        return not all(_same(x, y) for x, y in pairs)

    @property
    def change(self) -> float | None:
        """Estimate after minus estimate before (None when either is missing)."""
        x, y = self.before.estimate, self.after.estimate
        return None if x is None or y is None else y - x

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "moved": self.moved,
            "change": self.change,
            "before": asdict(self.before),
            "after": asdict(self.after),
        }


@dataclass(frozen=True)
class DiffSummary:
    """What changed between revisions ``from_revision`` and ``to_revision`` of a review.

    ``added``, ``withdrawn`` and ``changed`` are study keys (sorted); ``renamed`` holds
    ``(old, new)`` pairs; ``views`` every view of the review (``moved`` those that moved);
    ``records`` the changed records oldest first, each a dict (revision, table, row_id, op,
    key, study_id, study, columns); ``counts`` their number by table and operation;
    ``recomputed`` the updates that changed derived columns only (not in ``records``).
    ``swapped`` is True when the revisions were given newest first.
    """

    review: str
    from_revision: int
    to_revision: int
    swapped: bool
    added: tuple[str, ...]
    withdrawn: tuple[str, ...]
    renamed: tuple[tuple[str, str], ...]
    changed: tuple[str, ...]
    views: tuple[ViewMove, ...]
    records: pd.DataFrame
    counts: dict[str, dict[str, int]]
    recomputed: int

    @property
    def moved(self) -> tuple[ViewMove, ...]:
        return tuple(v for v in self.views if v.moved)

    def record_dicts(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The first *limit* records (all by default) as dicts of plain values."""
        return _plain(self.records if limit is None else self.records.head(limit))

    def to_dict(self) -> dict[str, Any]:
        return {
            "review": self.review,
            "from": self.from_revision,
            "to": self.to_revision,
            "swapped": self.swapped,
            "studies": {
                "added": list(self.added),
                "withdrawn": list(self.withdrawn),
                "renamed": [{"old": old, "new": new} for old, new in self.renamed],
                "changed": list(self.changed),
            },
            "views_moved": [v.to_dict() for v in self.moved],
            "views_unchanged": [v.view for v in self.views if not v.moved],
            "counts": self.counts,
            "recomputed": self.recomputed,
            "records": self.record_dicts(),
        }


def _plain(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts of plain Python values (<NA> as None, columns as lists)."""
    names = list(frame.columns)
    values = [
        [list(x) for x in frame[n]] if n == "columns" else
        frame[n].astype(object).where(frame[n].notna(), None).tolist()
        for n in names
    ]  # fmt: skip
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
        return True
    return x == y


# ------------------------------------------------------------------------- records

_IDS = ("study_id", "result_id", "arm_id", "review_id")
_COLUMNS = ("revision", "table", "row_id", "op", *_IDS, "key", "old", "new")


def _fields(conn: Connection, values: Any) -> tuple[Any, dict[str, Any]]:
    """The FROM clause and the JSON fields of a logged row the database extracts.

    SQLite: ``json_extract`` per field. PostgreSQL: one ``jsonb_to_record`` per row (the
    row is parsed once, not once per field).
    """
    names = {name: sa.Integer for name in _IDS} | {k: sa.Text for k in NATURAL_KEYS.values()}
    if conn.dialect.name == "postgresql":
        record = (
            sa.func.jsonb_to_record(sa.cast(values, postgresql.JSONB))
            .table_valued(*(sa.column(n, t) for n, t in names.items()))
            .render_derived(name="v", with_types=True)
        )
        return _LOG.join(record, sa.true()), {n: record.c[n] for n in names}
    return _LOG, {n: sa.func.json_extract(values, f"$.{n}") for n in names}


def _read_log(conn: Connection, a: int, b: int) -> pd.DataFrame:
    """The logged changes in (a, b], oldest first: ids and key extracted, full rows of updates.

    The database extracts the few fields needed from each JSON row; only updates and study
    rows (few) come back whole, to compare their old and new values.
    """
    c = _LOG.c
    source, field = _fields(conn, sa.func.coalesce(c.new_values, c.old_values))
    whole = sa.or_(c.op == "update", c.table_name == "study")
    key = sa.case(
        *((c.table_name == t, field[k]) for t, k in NATURAL_KEYS.items()), else_=sa.null()
    )
    query = (
        sa.select(
            c.revision_id,
            c.table_name,
            c.row_id,
            c.op,
            *(field[name] for name in _IDS),
            key,
            sa.case((whole, c.old_values), else_=sa.null()),
            sa.case((whole, c.new_values), else_=sa.null()),
        )
        .select_from(source)
        .where(c.revision_id > a, c.revision_id <= b)
        .order_by(c.id)
    )
    rows = _fetch(conn, query)
    frame = pd.DataFrame(
        dict(zip(_COLUMNS, zip(*rows, strict=True), strict=True))
        if rows
        else {name: [] for name in _COLUMNS}
    )
    for name in ("revision", "row_id", *_IDS):
        frame[name] = frame[name].astype("Int64")
    columns: list[tuple[str, ...]] = [()] * len(frame)
    derived = np.zeros(len(frame), dtype=bool)
    for i in np.flatnonzero((frame["op"] == "update").to_numpy()):
        table, old, new = frame.at[i, "table"], frame.at[i, "old"], frame.at[i, "new"]
        old, new = _json(old), _json(new)
        changed = [k for k in new.keys() | old.keys() if old.get(k) != new.get(k)]
        skip = DERIVED_COLUMNS.get(table, frozenset())
        columns[i] = tuple(sorted(k for k in changed if k not in skip))
        derived[i] = not columns[i]
    frame["columns"] = pd.Series(columns, index=frame.index, dtype=object)
    frame["derived"] = derived
    return frame


def _fetch(conn: Connection, query: sa.Select) -> list[tuple[Any, ...]]:
    """All rows of *query* as plain tuples, straight from the driver (no Row objects).

    The query's parameters are numbers, so they are rendered in the SQL text.
    """
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql)
        return cursor.fetchall()
    finally:
        cursor.close()


def _json(text: Any) -> dict[str, Any]:
    return json.loads(text) if isinstance(text, str) else {}


def _parents(conn: Connection, table: str, ids: set[int]) -> dict[int, int]:
    """``{row id: study id}`` of *table* (``result`` or ``arm``) rows, from their logged insert."""
    c = _LOG.c
    source, field = _fields(conn, c.new_values)
    found: dict[int, int] = {}
    wanted = sorted(ids)
    for start in range(0, len(wanted), _CHUNK):
        part = wanted[start : start + _CHUNK]
        rows = conn.execute(
            sa.select(c.row_id, field["study_id"])
            .select_from(source)
            .where(c.table_name == table, c.op == "insert", c.row_id.in_(part))
        ).all()
        found.update((int(rid), int(sid)) for rid, sid in rows if sid is not None)
    missing = [i for i in wanted if i not in found]
    if missing:  # rows older than the history (not logged): read them where they are
        t = metadata.tables[table]
        for start in range(0, len(missing), _CHUNK):
            part = missing[start : start + _CHUNK]
            found.update(conn.execute(sa.select(t.c.id, t.c.study_id).where(t.c.id.in_(part))))
    return found


def _assign_studies(conn: Connection, frame: pd.DataFrame) -> pd.Series:
    """The study each logged row belongs to (<NA> for review and moderator rows)."""
    study = frame["study_id"].copy()
    is_study = frame["table"] == "study"
    study[is_study] = frame.loc[is_study, "row_id"]
    for table, column in (("result", "result_id"), ("arm", "arm_id")):
        own = frame[(frame["table"] == table) & frame["study_id"].notna()]
        known = dict(zip(own["row_id"].astype(int), own["study_id"].astype(int), strict=True))
        need = set(frame[column].dropna().astype(int)) - set(known)
        if need:
            known |= _parents(conn, table, need)
        study = study.fillna(frame[column].map(known).astype("Int64"))
    return study


def _studies_at(conn: Connection, b: int) -> _Studies:
    """``{study id: (review id, study key)}`` of every study as last logged up to *b*."""
    c = _LOG.c
    last = (
        sa.select(sa.func.max(c.id).label("id"))
        .where(c.table_name == "study", c.revision_id <= b)
        .group_by(c.row_id)
        .subquery()
    )
    source, field = _fields(conn, sa.func.coalesce(c.new_values, c.old_values))
    rows = conn.execute(
        sa.select(c.row_id, field["review_id"], field["study_key"])
        .select_from(source)
        .join(last, last.c.id == c.id)
    ).all()
    return {int(rid): (review, key) for rid, review, key in rows}


# ------------------------------------------------------------------------- studies


def _classify(
    frame: pd.DataFrame, keys: dict[int, str | None]
) -> tuple[list[str], list[str], list[tuple[str, str]], list[str]]:
    """Studies added, withdrawn, renamed (old, new) and changed, from their logged rows."""
    real = frame[~frame["derived"] & frame["study"].notna()]
    rows = real[real["table"] == "study"]
    touched = set(real.loc[real["table"] != "study", "study"].astype(int))
    added: dict[int, str] = {}
    withdrawn: dict[int, str] = {}
    renamed: list[tuple[str, str]] = []
    transient: set[int] = set()
    for sid, seq in rows.groupby("study", sort=False):
        ops = list(seq["op"])
        existed, exists = ops[0] != "insert", ops[-1] != "delete"
        before = _json(seq["old"].iloc[0]).get("study_key")
        after = _json(seq["new"].iloc[-1]).get("study_key")
        if any(set(cols) - {"study_key"} for cols in seq["columns"]):
            touched.add(int(sid))
        if existed and exists:
            if before != after:
                renamed.append((before, after))
            if "delete" in ops:  # deleted and restored
                touched.add(int(sid))
        elif exists:
            added[int(sid)] = after
        elif existed:
            withdrawn[int(sid)] = before
        else:
            transient.add(int(sid))
    # the same key withdrawn and added again (a new row): the study changed
    replaced = set(added.values()) & set(withdrawn.values())
    changed = {keys.get(s) or f"#{s}" for s in touched - set(added) - set(withdrawn) - transient}
    changed |= replaced
    return (
        sorted(k for k in added.values() if k not in replaced),
        sorted(k for k in withdrawn.values() if k not in replaced),
        sorted(renamed),
        sorted(changed),
    )


# --------------------------------------------------------------------------- views


def _view_states(
    conn: Connection, review: Any, views: list[Any], revision: int, latest: int
) -> dict[str, ViewState]:
    """Each view's headline in force at *revision*: stored when confirmed there, else refitted."""
    r = _RESULT.c
    ids = {v.id: v for v in views}
    states: dict[str, ViewState] = {}
    if ids:
        rows = conn.execute(
            sa.select(r.view_id, r.status, r.k_studies, r.k_effects, r.estimate, r.ci_lb, r.ci_ub)
            .where(r.view_id.in_(list(ids)), r.revision <= revision, r.checked_revision >= revision)
            .order_by(r.id)
        ).all()
        for row in rows:  # the last one confirmed at the revision wins
            states[ids[row.view_id].name] = ViewState(revision, "stored", *(row[1:]))
    missing = [v for v in views if v.name not in states]
    if missing:  # the engine is imported only when a view must be refitted
        from evidence.views.history import _compute_at
        from evidence.views.refresh import spec_of

        specs = [spec_of(v) for v in missing]
        try:
            comps = _compute_at(conn, specs, review.name, None if revision == latest else revision)
        except NotFoundError:  # the review did not exist yet
            comps = {}
        for v in missing:
            comp = comps.get(v.name)
            if comp is None:
                states[v.name] = ViewState(revision, "absent")
                continue
            h = comp.headline
            states[v.name] = ViewState(
                revision,
                "recomputed",
                comp.status,
                comp.k_studies,
                comp.k_effects,
                h.get("estimate"),
                h.get("ci_lb"),
                h.get("ci_ub"),
            )
    return states


# --------------------------------------------------------------------------- summary


def _review(conn: Connection, name: str | None) -> Any:
    """The review named *name* (or the only one); ``review_row`` says why when not found."""
    t = metadata.tables["review"]
    query = sa.select(t.c.id, t.c.name)
    rows = conn.execute(query if name is None else query.where(t.c.name == name)).all()
    if len(rows) == 1:
        return rows[0]
    from evidence.views.dataset import review_row  # raises NotFoundError naming the choices

    return review_row(conn, name)


def diff_summary(
    engine: Engine, rev1: int | str, rev2: int | str, *, review: str | None = None
) -> DiffSummary:
    """Studies added, withdrawn, renamed and changed, views moved and records changed.

    Parameters
    ----------
    engine
        The database.
    rev1, rev2
        Revision numbers or dates (:func:`evidence.views.history.resolve_revision`); given
        newest first, they are swapped (``swapped`` says so).
    review
        Review name (default: the database's only review).

    Raises
    ------
    NotFoundError
        A revision that does not exist, or an unknown review.
    """
    try:
        with engine.connect() as conn:
            a, b, swapped = check_revisions(conn, rev1, rev2)
            rv = _review(conn, review)
            frame = _read_log(conn, a, b)
            frame["study"] = _assign_studies(conn, frame)
            studies = _studies_at(conn, b)
            views = conn.execute(
                sa.select(_VIEW).where(_VIEW.c.review_id == rv.id).order_by(_VIEW.c.id)
            ).all()
            latest = conn.execute(sa.select(sa.func.max(metadata.tables["revision"].c.id)))
            latest = latest.scalar() or 0
            before = _view_states(conn, rv, views, a, latest)
            after = _view_states(conn, rv, views, b, latest)
    except sa.exc.DBAPIError as error:
        raise database_error(error) from error
    owner = frame["study"].map({s: r for s, (r, _) in studies.items()}).astype("Int64")
    review_of = frame["review_id"].where(frame["table"] != "study").fillna(owner)
    frame = frame[review_of.isna() | (review_of == rv.id)]  # untraceable rows are shown
    keys = {s: k for s, (_, k) in studies.items()}
    added, withdrawn, renamed, changed = _classify(frame, keys)
    records = frame.loc[~frame["derived"], ["revision", "table", "row_id", "op", "key", "study"]]
    records = records.rename(columns={"study": "study_id"}).reset_index(drop=True)
    records.insert(6, "study", records["study_id"].map(keys))
    records["columns"] = frame.loc[~frame["derived"], "columns"].to_numpy()
    counts: dict[str, dict[str, int]] = {}
    for (table, op), n in records.groupby(["table", "op"], sort=False).size().items():
        counts.setdefault(table, {})[op] = int(n)
    return DiffSummary(
        review=rv.name,
        from_revision=a,
        to_revision=b,
        swapped=swapped,
        added=tuple(added),
        withdrawn=tuple(withdrawn),
        renamed=tuple(renamed),
        changed=tuple(changed),
        views=tuple(ViewMove(v.name, before[v.name], after[v.name]) for v in views),
        records=records,
        counts=counts,
        recomputed=int(frame["derived"].sum()),
    )
