"""Derived values follow their inputs: recompute the effect sizes of stored studies.

An effect size is a function of its result row (with the study's arms, outcome and
timepoint) and the review's codebook; a derived moderator is a function of its source
column. A write through :func:`~evidence.ingest.loader.ingest` or
:func:`~evidence.ingest.loader.apply_codebook` recomputes them in the same revision; a
change by any other path (plain SQL: an update, an insert, an edit of an ``effect_size``
row itself) does not. :func:`recompute_effects` re-reads the stored records of the studies
concerned, re-validates them against the stored codebook and recomputes their effect sizes
and derived moderators with the ingest functions, writing exactly what differs in one
revision.

A study whose stored records no longer validate (plain SQL set ``event1i = -5``, or
``n1i`` to NULL) has no computable effect size: every effect size of the study is then
stored with ``yi`` and ``vi`` NULL, ``formula`` :data:`INVALID_FORMULA` and the failure
(study, result, column, value, rule) in ``inputs`` as ``{"error": ...}``, so no number that
does not follow from the records stays in the database, and a view that selects them can
say why. Fixing the record (by any path) recomputes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from evidence import __version__
from evidence.db.engine import database_error, write_transaction
from evidence.db.models import metadata, utcnow
from evidence.errors import NotFoundError, ValidationError
from evidence.ingest._effects import EFFECT_COLUMNS
from evidence.ingest._stored import stored_sheets
from evidence.ingest._sync import apply_diff, diff, load
from evidence.ingest.codebook import Codebook, parse_codebook
from evidence.ingest.loader import Prepared, TableChanges, _prepare_sheets, _Writer
from evidence.ingest.readers import ROW, Sheet

__all__ = ["INVALID_FORMULA", "INVALID_REASON", "RecomputeReport", "recompute_effects"]

#: ``effect_size.formula`` of a result whose stored records fail the codebook.
INVALID_FORMULA = "not computed: invalid record"
#: How the reason stored with such an effect size begins.
INVALID_REASON = "the stored record fails the codebook: "

_KEYS = {"arms": "arm_key", "outcomes": "outcome_key", "timepoints": "timepoint_key",
         "results": "result_key"}  # fmt: skip


@dataclass(frozen=True)
class RecomputeReport:
    """What :func:`recompute_effects` checked and changed."""

    review: str
    studies: tuple[str, ...]
    invalid: dict[str, str] = field(default_factory=dict)  # study key -> reason
    changes: dict[str, TableChanges] = field(default_factory=dict)
    revision: int | None = None

    @property
    def changed(self) -> bool:
        return any(c.total for c in self.changes.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "review": self.review,
            "studies": list(self.studies),
            "invalid": dict(self.invalid),
            "changes": {t: vars(c) for t, c in self.changes.items() if c.total},
            "revision": self.revision,
        }


def _where(sheets: dict[str, Sheet], f: dict[str, Any]) -> tuple[str | None, str]:
    """The study key of a failure and where it is, in record terms."""
    sheet = sheets.get(f.get("sheet") or "")
    parts: list[str] = []
    study = None
    if sheet is not None and f.get("row") is not None:
        frame = sheet.frame
        hit = frame[frame[ROW] == f["row"]]
        if len(hit):
            row = hit.iloc[0]
            study = str(row.get("study_key")) if row.get("study_key") else None
            if study:
                parts.append(f"study {study}")
            key = _KEYS.get(sheet.name)
            if key and row.get(key):
                parts.append(f"{key.removesuffix('_key')} {row[key]}")
    elif f.get("sheet"):
        parts.append(f"sheet {f['sheet']}")
    if f.get("column"):
        parts.append(f"column {f['column']}")
    value = f" (value {f['value']!r})" if f.get("value") not in (None, "") else ""
    return study, ", ".join(parts) + value + f": {f['rule']}"


def _invalid(sheets: dict[str, Sheet], failures: list[dict[str, Any]]) -> dict[str, str]:
    """Study key -> reason (its first failure, and how many more); ``""`` for all studies."""
    by_study: dict[str, list[str]] = {}
    for f in failures:
        study, text = _where(sheets, f)
        by_study.setdefault(study or "", []).append(text)
    out = {}
    for study, texts in by_study.items():
        more = f" (and {len(texts) - 1} more problems)" if len(texts) > 1 else ""
        out[study] = INVALID_REASON + texts[0] + more
    return out


def _without(sheets: dict[str, Sheet], studies: set[str]) -> dict[str, Sheet]:
    out = {}
    for name, sheet in sheets.items():
        frame = sheet.frame
        if "study_key" in frame:
            frame = frame[~frame["study_key"].isin(studies)].reset_index(drop=True)
        out[name] = Sheet(name=sheet.name, file=sheet.file, frame=frame, header=sheet.header)
    return out


def _prepare(sheets: dict[str, Sheet], cb: Codebook) -> tuple[Prepared | None, dict[str, str]]:
    """Validate the stored sheets; leave out the studies that fail (with their reasons)."""
    what = f"the stored records of review {cb.name}"
    sources = (f"review {cb.name}",)
    invalid: dict[str, str] = {}
    for _ in range(2):
        try:
            return _prepare_sheets(sheets, cb, sources, None, what), invalid
        except ValidationError as error:
            found = _invalid(sheets, error.failures)
            if "" in found:  # a failure not tied to a study: none can be trusted
                reason = found.pop("")
                keys = set(sheets["studies"].frame.get("study_key", pd.Series(dtype=object)))
                return None, {**invalid, **found, **{k: reason for k in keys if k not in found}}
            invalid.update(found)
            sheets = _without(sheets, set(found))
    keys = set(sheets["studies"].frame.get("study_key", pd.Series(dtype=object)))
    return None, {**invalid, **{k: "the stored records fail the codebook" for k in keys}}


def _mark_invalid(conn: sa.Connection, rid: int, measure: str, invalid: dict[str, str]) -> Any:
    """Every effect size of the invalid studies: not computed, with the reason."""
    st, rt, et = (metadata.tables[n] for n in ("study", "result", "effect_size"))
    rows = conn.execute(
        sa.select(rt.c.id, st.c.study_key)
        .join(st, st.c.id == rt.c.study_id)
        .where(st.c.review_id == rid, st.c.study_key.in_(sorted(invalid)))
    ).all()
    desired = pd.DataFrame(
        [
            {"result_id": rid_, "measure": measure, "yi": None, "vi": None,
             "formula": INVALID_FORMULA, "inputs": json.dumps({"error": invalid[key]}),
             "flipped": False, "imputed_r": False, "ri_used": None, "cluster": None,
             "n_split": False}
            for rid_, key in rows
        ],
        columns=["result_id", *EFFECT_COLUMNS],
    )  # fmt: skip
    ids = [r[0] for r in rows]
    cur = load(conn, et, et.c.result_id.in_(ids), ["result_id", *EFFECT_COLUMNS])
    keep = cur.set_index("result_id")["cluster"].to_dict()
    desired["cluster"] = desired["result_id"].map(keep)
    d = diff(et, desired, cur, ["result_id"], list(EFFECT_COLUMNS))
    apply_diff(conn, et, d, extra={"computed_at": utcnow(), "engine_version": __version__})
    return d


def recompute_effects(
    engine: Engine,
    review_id: int,
    study_ids: Iterable[int] | None = None,
    *,
    author: str | None = None,
    message: str | None = None,
    command: str | None = None,
) -> RecomputeReport:
    """Recompute the effect sizes (and derived moderators) of stored studies.

    Parameters
    ----------
    review_id
        The review (its stored codebook is used).
    study_ids
        Only these studies (default: every study of the review).
    author, message, command
        Recorded with the revision, when something changed.

    Returns
    -------
    RecomputeReport
        The studies checked, the ones whose records fail the codebook (with the reason)
        and what was written.

    Raises
    ------
    NotFoundError
        The review is not in the database or has no stored codebook.
    """
    review = metadata.tables["review"]
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.select(review.c.name, review.c.codebook).where(review.c.id == review_id)
            ).first()
            if row is None or not row.codebook:
                raise NotFoundError(f"review id {review_id} has no stored codebook")
            cb = parse_codebook(json.loads(row.codebook), f"database review {row.name}")
            only = None if study_ids is None else sorted(set(study_ids))
            sheets = stored_sheets(conn, cb, review_id, only)
    except sa.exc.DBAPIError as error:
        raise database_error(error) from error
    keys = tuple(str(k) for k in sheets["studies"].frame.get("study_key", []))
    if not keys:
        return RecomputeReport(cb.name, ())
    prepared, invalid = _prepare(sheets, cb)
    try:
        with write_transaction(engine, author=author, message=message, command=command) as tx:
            changes: dict[str, TableChanges] = {}
            if prepared is not None and len(prepared.typed["studies"]):
                writer = _Writer(tx.connection, prepared, True, None, only=only)
                writer.run()
                changes = dict(writer.changes)
            if invalid:
                d = _mark_invalid(tx.connection, review_id, cb.analysis.measure, invalid)
                old = changes.get("effect_size", TableChanges())
                i, u, x = d.counts
                changes["effect_size"] = TableChanges(
                    old.inserted + i, old.updated + u, old.deleted + x
                )
    except sa.exc.DBAPIError as error:
        raise database_error(error) from error
    revision = tx.revision_id if tx.changed else None
    return RecomputeReport(cb.name, keys, invalid, changes, revision)
