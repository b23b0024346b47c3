"""Validated, all-or-nothing ingest of coding sheets, and re-applying a codebook.

:func:`ingest` reads CSV/XLSX coding sheets, validates every cell against the review's
codebook (:mod:`evidence.ingest.schemas`), computes the effect size of every result row
(:func:`evidence.stats.effects.compute_effects`, or escalc's 2x2 measures for RR/OR/RD), and
writes the differences with the stored records inside one
:func:`~evidence.db.engine.write_transaction` (one data revision). Any failure raises a
:class:`~evidence.errors.ValidationError` listing every failing cell, and nothing is written.

Upsert semantics
----------------
Records are matched by natural key: study_key; (study_key, arm_key); (study_key,
outcome_key); (study_key, timepoint_key); (study_key, result_key). Only records whose values
differ are updated, so re-ingesting the same sheets writes nothing (no revision). The sheets
are the full record of each study they contain: an arm, outcome, timepoint or result of such
a study that is no longer in the sheets is deleted (and kept in history). Studies that are
not in the sheets are left alone, so new studies can be added in batches -- unless
``complete=True`` says the sheets are the whole review (a database release), when they are
deleted with their records.

:func:`apply_codebook` re-applies a (changed) codebook to the stored records: derived
moderators and effect sizes are recomputed and exactly the changed ones are written, again in
one revision (e.g. a changed ``default_ri`` updates exactly the imputed effect sizes).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from evidence import __version__
from evidence.db.engine import database_error, get_engine, write_transaction
from evidence.db.migrate import ensure_migrated
from evidence.db.models import metadata, utcnow
from evidence.errors import NotFoundError, ValidationError
from evidence.ingest._effects import EFFECT_COLUMNS, sheet_effects
from evidence.ingest._stored import stored_sheets
from evidence.ingest._sync import Diff, apply_diff, diff, load
from evidence.ingest.codebook import (
    CORE_COLUMNS,
    Codebook,
    find_codebook,
    load_codebook,
    parse_codebook,
)
from evidence.ingest.readers import Sheet, read_sheets
from evidence.ingest.schemas import check_sheets

__all__ = [
    "IngestReport",
    "Prepared",
    "TableChanges",
    "apply_codebook",
    "ingest",
    "prepare",
    "resolve_codebook",
]

Progress = Callable[[str, int, int], None]
TABLES = ("review", "moderator", "study", "arm", "outcome", "timepoint", "result",
          "effect_size", "moderator_value", "risk_of_bias")  # fmt: skip
_SHEET_TABLE = {"studies": "study", "arms": "arm", "outcomes": "outcome",
                "timepoints": "timepoint"}  # fmt: skip
_KEY = {"arm": "arm_key", "outcome": "outcome_key", "timepoint": "timepoint_key"}
_MOD_TYPE = {"country": "text"}
_LEVEL_TARGET = {"study": "study_id", "arm": "arm_id", "effect": "result_id"}


@dataclass(frozen=True)
class TableChanges:
    """Rows inserted, updated and deleted in one table."""

    inserted: int = 0
    updated: int = 0
    deleted: int = 0

    @property
    def total(self) -> int:
        return self.inserted + self.updated + self.deleted


@dataclass(frozen=True)
class IngestReport:
    """What an ingest (or a codebook re-application) found and changed."""

    review: str
    codebook: str
    sources: tuple[str, ...]
    rows: dict[str, int]
    changes: dict[str, TableChanges]
    revision: int | None
    dry_run: bool
    imputed_r: int = 0
    simulated: int = 0

    @property
    def changed(self) -> bool:
        """Whether anything was (or, in a dry run, would be) written."""
        return any(c.total for c in self.changes.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "review": self.review,
            "codebook": self.codebook,
            "sources": list(self.sources),
            "rows": dict(self.rows),
            "changes": {t: vars(c) for t, c in self.changes.items()},
            "revision": self.revision,
            "dry_run": self.dry_run,
            "changed": self.changed,
            "imputed_r": self.imputed_r,
            "simulated": self.simulated,
        }


@dataclass(frozen=True)
class Prepared:
    """Validated coding sheets with their effect sizes, ready to be written."""

    codebook: Codebook
    sources: tuple[str, ...]
    typed: dict[str, pd.DataFrame]
    effects: pd.DataFrame
    moderator_values: dict[str, pd.DataFrame] = field(default_factory=dict)


def _summary(failures: list[dict[str, Any]], what: str) -> str:
    f = failures[0]
    where = ", ".join(
        part
        for part in (
            f"file {f['file']}" if f.get("file") else "",
            f"sheet {f['sheet']}" if f.get("sheet") else "",
            f"row {f['row']}" if f.get("row") is not None else "",
            f"column {f['column']}" if f.get("column") else "",
        )
        if part
    )
    value = f" (value {f['value']!r})" if f.get("value") not in (None, "") else ""
    count = f"{len(failures)} problem{'s' if len(failures) != 1 else ''}"
    return f"{count} in {what}; nothing was written. First: {where}: {f['rule']}{value}"


def _moderator_values(
    typed: dict[str, pd.DataFrame], codebook: Codebook
) -> dict[str, pd.DataFrame]:
    """Per moderator: natural key of its target and ``value_text``/``value_num``."""
    keys = {"study": ["study_key"], "arm": ["study_key", "arm_key"],
            "effect": ["study_key", "result_key"]}  # fmt: skip
    out: dict[str, pd.DataFrame] = {}
    for mod in codebook.moderators.values():
        frame = typed[mod.sheet]
        if mod.derived_from:
            values = frame[mod.derived_from].map(mod.derive)
            kind = "text"
        else:
            values = frame[mod.name] if mod.name in frame else pd.Series(None, index=frame.index)
            kind = {"numeric": "num", "integer": "num", "boolean": "bool"}.get(mod.type, "text")
        keep = values.notna()
        part = frame.loc[keep, keys[mod.level]].copy()
        v = values[keep]
        if kind == "num":
            part["value_text"], part["value_num"] = None, v.astype("float64")
        elif kind == "bool":
            part["value_text"] = v.map(lambda x: "true" if x else "false")
            part["value_num"] = v.map(lambda x: 1.0 if x else 0.0).astype("float64")
        else:
            part["value_text"], part["value_num"] = v.astype(str), np.nan
        out[mod.name] = part
    return out


def _prepare_sheets(sheets: dict[str, Sheet], codebook: Codebook, sources: tuple[str, ...],
                    progress: Progress | None, what: str) -> Prepared:  # fmt: skip
    if progress:
        progress("validate", 0, 1)
    typed, failures = check_sheets(sheets, codebook, source=", ".join(sources))
    if progress:
        progress("validate", 1, 1)
    effects = pd.DataFrame(columns=list(EFFECT_COLUMNS))
    if "results" in typed and "outcomes" in typed:
        if progress:
            progress("effects", 0, 1)
        skip = {f["row"] for f in failures if f["sheet"] == "results" and f["row"] is not None}
        if not any(f["sheet"] == "results" and f["row"] is None for f in failures):
            effects, effect_failures = sheet_effects(typed, codebook, sheets["results"], skip)
            failures.extend(effect_failures)
    if failures:
        raise ValidationError(_summary(failures, what), failures)
    if progress:
        progress("effects", 1, 1)
    return Prepared(codebook, sources, typed, effects, _moderator_values(typed, codebook))


def prepare(paths: Sequence[str | Path], codebook: Codebook,
            progress: Progress | None = None) -> Prepared:  # fmt: skip
    """Read and validate coding sheets and compute their effect sizes (no database).

    Raises
    ------
    ValidationError
        Listing every failing cell (``failures``).
    """
    if progress:
        progress("read", 0, 1)
    sheets = read_sheets(paths, list(codebook.sheets))
    if progress:
        progress("read", 1, 1)
    sources = tuple(str(p) for p in paths)
    return _prepare_sheets(sheets, codebook, sources, progress, "the coding sheets")


def resolve_codebook(codebook: Codebook | str | Path | None = None, review: str | None = None,
                     engine: Engine | None = None) -> Codebook:  # fmt: skip
    """The codebook to use: a given one, a file, ``schemas/<review>.yaml``, or the stored one.

    Without *codebook* and *review*, the database's only review is used.
    """
    if isinstance(codebook, Codebook):
        return codebook
    if codebook is not None:
        return load_codebook(codebook)
    if review is not None:
        try:
            return load_codebook(find_codebook(review))
        except NotFoundError:
            if engine is None:
                raise
    if engine is None:
        raise NotFoundError("no codebook given: use --codebook FILE or --review NAME")
    table = metadata.tables["review"]
    query = sa.select(table.c.name, table.c.codebook)
    if review is not None:
        query = query.where(table.c.name == review)
    try:
        with engine.connect() as conn:
            rows = conn.execute(query).all()
    except sa.exc.DBAPIError as error:
        raise database_error(error) from error
    if not rows:
        what = f"no review {review!r}" if review else "no review yet"
        raise NotFoundError(
            f"the database holds {what}, so it has no codebook to check the sheets with: give"
            " --codebook FILE, or --review NAME for schemas/NAME.yaml"
        )
    if len(rows) > 1:
        names = ", ".join(sorted(r.name for r in rows))
        raise NotFoundError(
            f"the database holds several reviews ({names}): choose one with --review NAME"
        )
    if rows[0].codebook is None:
        raise NotFoundError(f"review {rows[0].name!r} has no stored codebook: use --codebook FILE")
    return parse_codebook(json.loads(rows[0].codebook), f"database review {rows[0].name}")


class _Writer:
    """Diffs desired records against the stored ones, table by table, and writes them."""

    def __init__(self, conn: Connection, prepared: Prepared, write: bool,
                 progress: Progress | None, complete: bool = False,
                 only: Sequence[int] | None = None,
                 renames: Mapping[str, str] | None = None) -> None:  # fmt: skip
        self.conn, self.p, self.write, self.progress = conn, prepared, write, progress
        self.complete = complete  # the sheets hold the whole review: other studies go
        self.only = only  # ids of the only stored studies the sheets speak for (None: all)
        self.renames = dict(renames or {})  # stored study_key -> its key in the sheets
        self.changes: dict[str, TableChanges] = {}
        self.fake = -1

    def t(self, name: str) -> sa.Table:
        return metadata.tables[name]

    def _record(self, d: Diff) -> None:
        old = self.changes.get(d.table, TableChanges())
        i, u, x = d.counts
        self.changes[d.table] = TableChanges(old.inserted + i, old.updated + u, old.deleted + x)

    def _apply(self, d: Diff, extra: dict | None = None) -> None:
        self._record(d)
        if self.write and sum(d.counts):
            apply_diff(self.conn, self.t(d.table), d, extra=extra, progress=self.progress)

    def _ids(self, table: str, where: sa.ColumnElement, keys: list[str],
             desired: pd.DataFrame, d: Diff) -> pd.DataFrame:  # fmt: skip
        """id map (keys -> id) after the writes; fake negative ids for a dry run's inserts."""
        if self.write:
            return load(self.conn, self.t(table), where, keys)
        stored = load(self.conn, self.t(table), where, keys)
        new = d.insert[keys].copy()
        new.insert(0, "id", range(self.fake, self.fake - len(new), -1))
        self.fake -= len(new)
        return pd.concat([stored, new], ignore_index=True) if len(new) else stored

    def run(self) -> None:
        p, cb = self.p, self.p.codebook
        review = self.t("review")
        row = self.conn.execute(sa.select(review).where(review.c.name == cb.name)).first()
        values = {"name": cb.name, "title": cb.title, "codebook_name": Path(cb.source).name,
                  "codebook": cb.to_json(), "codebook_sha256": cb.sha256}  # fmt: skip
        if row is None:
            self._record(Diff("review", pd.DataFrame([values]), pd.DataFrame(), []))
            rid = -1
            if self.write:
                rid = self.conn.execute(review.insert().values(**values)).inserted_primary_key[0]
        else:
            rid = row.id
            if row.codebook_sha256 != cb.sha256 or row.title != cb.title:
                self._record(Diff("review", pd.DataFrame(), pd.DataFrame([values]), []))
                if self.write:
                    self.conn.execute(review.update().where(review.c.id == rid)
                                      .values(**values, updated_at=utcnow()))  # fmt: skip
        self.rid = rid
        if self.renames and rid != -1:
            self._rename_studies(rid)

        # moderators
        mods = pd.DataFrame(
            [{"review_id": rid, "name": m.name, "level": m.level,
              "type": _MOD_TYPE.get(m.type, m.type), "unit": m.unit,
              "levels": json.dumps(list(m.levels)) if m.levels else None,
              "derived_from": m.derived_from, "description": m.description}
             for m in cb.moderators.values()],
            columns=["review_id", "name", "level", "type", "unit", "levels", "derived_from",
                     "description"],
        )  # fmt: skip
        mt = self.t("moderator")
        cur = load(self.conn, mt, mt.c.review_id == rid, list(mods.columns))
        d_mod = diff(mt, mods, cur, ["review_id", "name"], list(mods.columns[2:]),
                     deletable=pd.Series(True, index=cur.index))  # fmt: skip
        stale_mods, d_mod.delete = d_mod.delete, []
        if self.only is not None:  # a write scoped to some studies leaves the review's
            stale_mods, d_mod.update = [], d_mod.update.iloc[:0]  # declarations alone
        self._apply(d_mod)
        mod_ids = self._ids("moderator", mt.c.review_id == rid, ["name"], mods, d_mod)

        # studies
        st = self.t("study")
        studies = p.typed["studies"].copy()
        studies["review_id"] = rid
        cols = [c for c in CORE_COLUMNS["studies"] if c != "study_key"]
        for c in cols:
            if c not in studies:
                studies[c] = None
        self.st_where = st.c.review_id == rid
        if self.only is not None:
            self.st_where = sa.and_(self.st_where, st.c.id.in_(sorted(self.only)))
        cur = load(self.conn, st, self.st_where, ["review_id", "study_key", *cols])
        d = diff(st, studies, cur, ["review_id", "study_key"], cols,
                 deletable=pd.Series(self.complete, index=cur.index))  # fmt: skip
        stale_studies, d.delete = d.delete, []
        self._apply(d)
        study_ids = self._ids("study", self.st_where, ["study_key"], studies, d)
        study_ids = study_ids.rename(columns={"id": "study_id"})
        scope = set(study_ids.merge(studies[["study_key"]])["study_id"]) | set(stale_studies)
        in_review = sa.select(st.c.id).where(self.st_where).scalar_subquery()

        # arms, outcomes, timepoints
        maps: dict[str, pd.DataFrame] = {}
        deferred: list[Diff] = []
        for sheet, table in _SHEET_TABLE.items():
            if table == "study":
                continue
            t = self.t(table)
            frame = p.typed[sheet].merge(study_ids, on="study_key", how="left")
            key = _KEY[table]
            cols = [c for c in CORE_COLUMNS[sheet] if c not in ("study_key", key)]
            for c in cols:
                if c not in frame:
                    frame[c] = None
            where = t.c.study_id.in_(in_review)
            cur = load(self.conn, t, where, ["study_id", key, *cols])
            d = diff(t, frame, cur, ["study_id", key], cols,
                     deletable=cur["study_id"].isin(scope))  # fmt: skip
            deferred.append(Diff(table, d.insert.iloc[:0], d.update.iloc[:0], d.delete))
            d.delete = []
            self._apply(d)
            ids = self._ids(table, where, ["study_id", key], frame, d)
            maps[table] = ids.merge(study_ids, on="study_id")

        # results and their effect sizes
        rt = self.t("result")
        res = p.typed["results"].merge(study_ids, on="study_key", how="left")
        for table, col, out in (
            ("outcome", "outcome_key", "outcome_id"),
            ("timepoint", "timepoint_key", "timepoint_id"),
            ("arm", "arm1_key", "arm1_id"),
            ("arm", "arm2_key", "arm2_id"),
        ):
            m = maps[table].rename(columns={_KEY[table]: col, "id": out})[["study_key", col, out]]
            res = res.merge(m, on=["study_key", col], how="left") if col in res else \
                res.assign(**{out: np.nan})  # fmt: skip
        stats = [c for c in CORE_COLUMNS["results"] if c not in ("study_key", "result_key",
                 "outcome_key", "timepoint_key", "arm1_key", "arm2_key")]  # fmt: skip
        missing = [c for c in stats if c not in res]
        if missing:  # in one step: a wide sheet would fragment the frame column by column
            res = pd.concat([res, pd.DataFrame(None, index=res.index, columns=missing)], axis=1)
        cols = ["outcome_id", "timepoint_id", "arm1_id", "arm2_id", *stats]
        where = rt.c.study_id.in_(in_review)
        cur = load(self.conn, rt, where, ["study_id", "result_key", *cols])
        d_res = diff(rt, res, cur, ["study_id", "result_key"], cols,
                     deletable=cur["study_id"].isin(scope))  # fmt: skip
        stale_results, d_res.delete = d_res.delete, []
        self._apply(d_res)
        res_ids = self._ids("result", where, ["study_id", "result_key"], res, d_res)

        et = self.t("effect_size")
        eff = p.effects.copy()
        eff["study_key"] = p.typed["results"]["study_key"]
        eff["result_key"] = p.typed["results"]["result_key"]
        eff = eff.merge(study_ids, on="study_key").merge(
            res_ids.rename(columns={"id": "result_id"}), on=["study_id", "result_key"]
        )
        res_scope = sa.select(rt.c.id).where(rt.c.study_id.in_(in_review)).scalar_subquery()
        cur = load(self.conn, et, et.c.result_id.in_(res_scope), ["result_id", *EFFECT_COLUMNS])
        deletable = cur["result_id"].isin(set(res_ids.loc[res_ids["study_id"].isin(scope), "id"]))
        d = diff(et, eff, cur, ["result_id"], list(EFFECT_COLUMNS), deletable=deletable)
        self._apply(d, extra={"computed_at": utcnow(), "engine_version": __version__})

        # moderator values, risk of bias
        self._moderator_values(mod_ids, study_ids, maps["arm"], res_ids, scope)
        self._risk_of_bias(study_ids, res_ids, scope, in_review)

        # deletions, children first
        if stale_results:
            self._apply(Diff("result", d_res.insert.iloc[:0], d_res.update.iloc[:0],
                             stale_results))  # fmt: skip
        for dd in deferred:
            self._apply(dd)
        if stale_mods:
            self._apply(Diff("moderator", d_mod.insert.iloc[:0], d_mod.update.iloc[:0],
                             stale_mods))  # fmt: skip
        if stale_studies:  # complete=True: studies no longer in the sheets, records emptied above
            self._apply(Diff("study", studies.iloc[:0], studies.iloc[:0], stale_studies))

    def _rename_studies(self, rid: int) -> None:
        """Give renamed studies their new key before the diff: one update per study (in a
        dry run too, on the connection that is rolled back), so their records match."""
        st = self.t("study")
        renamed = []
        for old, new in self.renames.items():
            row = self.conn.execute(sa.select(st.c.id).where(
                st.c.review_id == rid, st.c.study_key == old)).first()  # fmt: skip
            if row is None:
                raise ValidationError(f"cannot rename study {old!r} of review "
                                      f"{self.p.codebook.name}: it is not stored")  # fmt: skip
            self.conn.execute(st.update().where(st.c.id == row.id).values(study_key=new))
            renamed.append({"id": row.id, "study_key": new})
        self._record(Diff("study", pd.DataFrame(), pd.DataFrame(renamed), []))

    def _risk_of_bias(self, study_ids: pd.DataFrame, res_ids: pd.DataFrame, scope: set,
                      in_review: sa.ScalarSelect) -> None:  # fmt: skip
        """Judgements of the optional risk_of_bias sheet (per study, or per result)."""
        if "risk_of_bias" not in self.p.typed:
            return
        rb = self.t("risk_of_bias")
        frame = self.p.typed["risk_of_bias"].merge(study_ids, on="study_key", how="left")
        if "result_key" not in frame:
            frame["result_key"] = None
        results = res_ids.rename(columns={"id": "result_id"})
        frame = frame.merge(results, on=["study_id", "result_key"], how="left")
        if "support" not in frame:
            frame["support"] = None
        cols = ["study_id", "result_id", "tool", "domain", "judgement", "support"]
        cur = load(self.conn, rb, rb.c.study_id.in_(in_review), cols)
        d = diff(rb, frame, cur, cols[:4], cols[4:], deletable=cur["study_id"].isin(scope))
        self._apply(d)

    def _moderator_values(
        self,
        mod_ids: pd.DataFrame,
        study_ids: pd.DataFrame,
        arm_ids: pd.DataFrame,
        res_ids: pd.DataFrame,
        scope: set,
    ) -> None:
        mv = self.t("moderator_value")
        mt = self.t("moderator")
        st, at, rt = self.t("study"), self.t("arm"), self.t("result")
        ids = dict(zip(mod_ids["name"], mod_ids["id"], strict=True))
        res_map = res_ids.merge(study_ids, on="study_id").rename(columns={"id": "result_id"})
        arm_map = arm_ids.rename(columns={"id": "arm_id"})
        parts = []
        for name, frame in self.p.moderator_values.items():
            mod = self.p.codebook.moderators[name]
            if mod.level == "study":
                f = frame.merge(study_ids, on="study_key")
            elif mod.level == "arm":
                f = frame.merge(arm_map[["study_key", "arm_key", "arm_id"]],
                                on=["study_key", "arm_key"])  # fmt: skip
            else:
                f = frame.merge(res_map[["study_key", "result_key", "result_id"]],
                                on=["study_key", "result_key"])  # fmt: skip
            f = f.assign(moderator_id=ids[name])
            parts.append(f)
        cols = ["moderator_id", "study_id", "arm_id", "result_id", "value_text", "value_num"]
        desired = pd.concat([f.reindex(columns=cols) for f in parts], ignore_index=True) \
            if parts else pd.DataFrame(columns=cols)  # fmt: skip
        in_review = sa.select(mt.c.id).where(mt.c.review_id == self.rid).scalar_subquery()
        studies_of_review = sa.select(st.c.id).where(self.st_where)
        where = mv.c.moderator_id.in_(in_review)
        if self.only is not None:
            owned = studies_of_review.scalar_subquery()
            arms = sa.select(at.c.id).where(at.c.study_id.in_(owned))
            results = sa.select(rt.c.id).where(rt.c.study_id.in_(owned))
            where = sa.and_(where, sa.or_(mv.c.study_id.in_(owned), mv.c.arm_id.in_(arms),
                                          mv.c.result_id.in_(results)))  # fmt: skip
        cur = load(self.conn, mv, where, cols)
        arm_study = dict(self.conn.execute(sa.select(at.c.id, at.c.study_id).where(
            at.c.study_id.in_(studies_of_review.scalar_subquery()))).all())  # fmt: skip
        res_study = dict(self.conn.execute(sa.select(rt.c.id, rt.c.study_id).where(
            rt.c.study_id.in_(studies_of_review.scalar_subquery()))).all())  # fmt: skip
        owner = cur["study_id"].where(cur["study_id"].notna(), cur["arm_id"].map(arm_study))
        owner = owner.where(owner.notna(), cur["result_id"].map(res_study))
        d = diff(mv, desired, cur, cols[:4], cols[4:], deletable=owner.isin(scope))
        self._apply(d)


def _write(engine: Engine, prepared: Prepared, *, dry_run: bool, author: str | None,
           message: str | None, command: str | None, progress: Progress | None,
           complete: bool = False, renames: Mapping[str, str] | None = None,
           ) -> tuple[dict[str, TableChanges], int | None]:  # fmt: skip
    try:
        if dry_run:
            with engine.connect() as conn:
                w = _Writer(conn, prepared, False, progress, complete, renames=renames)
                w.run()
                conn.rollback()
            return w.changes, None
        with write_transaction(engine, author=author, message=message, command=command) as tx:
            w = _Writer(tx.connection, prepared, True, progress, complete, renames=renames)
            w.run()
        return w.changes, (tx.revision_id if tx.changed else None)
    except sa.exc.DBAPIError as error:
        raise database_error(error) from error


def _report(prepared: Prepared, changes: dict[str, TableChanges], revision: int | None,
            dry_run: bool) -> IngestReport:  # fmt: skip
    typed = prepared.typed
    simulated = typed["studies"].get("simulated", pd.Series(dtype=object))
    return IngestReport(
        review=prepared.codebook.name,
        codebook=prepared.codebook.source,
        sources=prepared.sources,
        rows={name: len(frame) for name, frame in typed.items()},
        changes={t: changes.get(t, TableChanges()) for t in TABLES},
        revision=revision,
        dry_run=dry_run,
        imputed_r=int(prepared.effects["imputed_r"].astype(bool).sum()),
        simulated=int((simulated == True).sum()),  # noqa: E712
    )


@contextmanager
def _engine(database: str | Engine | None) -> Iterator[Engine]:
    """The given engine, or one made for a URL and disposed of afterwards.

    Raises :class:`~evidence.errors.DatabaseError` (saying which command to run) unless the
    database exists and is migrated to the newest revision.
    """
    if isinstance(database, Engine):
        ensure_migrated(database)
        yield database
        return
    ensure_migrated(database)  # before connecting: a missing SQLite file is not created
    engine = get_engine(database)
    try:
        yield engine
    finally:
        engine.dispose()


def ingest(
    paths: Sequence[str | Path],
    *,
    codebook: Codebook | str | Path | None = None,
    review: str | None = None,
    database: str | Engine | None = None,
    dry_run: bool = False,
    author: str | None = None,
    message: str | None = None,
    command: str | None = None,
    progress: Progress | None = None,
    complete: bool = False,
    renames: Mapping[str, str] | None = None,
) -> IngestReport:
    """Validate coding sheets and write the changed records in one revision.

    Parameters
    ----------
    paths
        CSV files named after their sheet, XLSX workbooks, or directories holding them.
    codebook, review
        The codebook (object or YAML path), or a review name (``schemas/<review>.yaml``, else
        the codebook stored with the review). Neither: the database's only review.
    database
        URL or engine (default: ``EVIDENCE_DATABASE_URL``, else ``./evidence.db``).
    dry_run
        Validate and count what would change; write nothing.
    author, message, command
        Recorded with the revision.
    progress
        Called as ``progress(stage, done, total)``.
    complete
        The sheets hold the whole review (e.g. a database release): stored studies of the
        review that are not in them are deleted, with their records (kept in history).
        Default: studies not in the sheets are left alone.
    renames
        Stored study keys and the keys the sheets hold them under (a study renamed between
        releases): each stored study's ``study_key`` is updated first, in the same revision
        (one recorded update with old and new key), so its records are updated rather than
        deleted and inserted again.

    Returns
    -------
    IngestReport

    Raises
    ------
    ValidationError
        Any failing cell (all of them are listed); nothing is written.
    DatabaseError
        The database cannot be reached or is not migrated.
    """
    with _engine(database) as engine:
        cb = resolve_codebook(codebook, review, engine)
        prepared = prepare(paths, cb, progress)
        changes, revision = _write(
            engine, prepared, dry_run=dry_run, author=author, message=message, command=command,
            progress=progress, complete=complete, renames=renames,
        )  # fmt: skip
    return _report(prepared, changes, revision, dry_run)


def apply_codebook(
    codebook: Codebook | str | Path,
    *,
    database: str | Engine | None = None,
    dry_run: bool = False,
    author: str | None = None,
    message: str | None = None,
    command: str | None = None,
    progress: Progress | None = None,
) -> IngestReport:
    """Re-apply a codebook to a review's stored records, writing exactly what changes.

    The stored records are re-validated against the codebook; derived moderators and effect
    sizes are recomputed (e.g. with a new ``default_ri``); the codebook is stored with the
    review. Everything changed is written in one revision.

    Raises
    ------
    NotFoundError
        The review of the codebook is not in the database.
    ValidationError
        A stored record breaks a rule of the codebook (nothing is written).
    """
    cb = resolve_codebook(codebook)
    review = metadata.tables["review"]
    with _engine(database) as engine:
        try:
            with engine.connect() as conn:
                row = conn.execute(sa.select(review.c.id).where(review.c.name == cb.name)).first()
                if row is None:
                    raise NotFoundError(
                        f"review {cb.name!r} is not in the database; ingest its coding sheets first"
                    )
                sheets = stored_sheets(conn, cb, row.id)
        except sa.exc.DBAPIError as error:
            raise database_error(error) from error
        prepared = _prepare_sheets(
            sheets, cb, (f"review {cb.name}",), progress, f"the stored records of review {cb.name}"
        )
        changes, revision = _write(
            engine, prepared, dry_run=dry_run, author=author, message=message, command=command,
            progress=progress,
        )  # fmt: skip
    return _report(prepared, changes, revision, dry_run)
