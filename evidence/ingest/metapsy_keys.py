"""Record keys of a Metapsy file, and studies renamed between two releases.

A key is built only from what identifies a record in its source, never from a value a later
release may correct (weeks, n, means), so an unchanged row of a new release matches its stored
record and a corrected row is one update with its old and new values.

Keys (:func:`record_keys`)
--------------------------
- study: the ``study`` label, as the file gives it (stripped).
- arm: the ``condition_arm*`` text, and the ``multi_arm*`` label after ``" | "`` when there is
  one (``"cbt | cbt-I+"``): the text is kept, never slugged, so two arms of a study that the
  file tells apart never share a key (Sadler 2018's ``cbt-I+`` and ``cbt-I``). An arm 2 whose
  condition and multi-arm label equal arm 1's is keyed ``"... (arm 2)"`` (its position in the
  row is what tells them apart). A missing condition is ``"arm 1"``/``"arm 2"``.
- outcome: ``outcome_type | outcome_category | outcome_subcategory | instrument`` (missing
  parts as ``NA``, a missing category as ``outcome``, the stored domain; the formula Metapsy
  picks stands for ``outcome_type`` when the file has no such column).
- timepoint: the ``time`` label (``post`` when missing). ``time_weeks`` is a value of the
  timepoint -- except where a study has one label at several ``time_weeks`` (Burns 2013:
  ``post`` at 15 and 33 weeks; the psilocybin trials, which have no ``time`` column): there the
  weeks are what the source tells the timepoints apart by, and the key is ``"post @ 15w"``.
- result: ``outcome @ timepoint : arm 1 vs arm 2``. Rows of a study that still share a key
  are told apart by the file's own row id ``.id`` (``"... #<.id>"``) when it differs between
  them; else the file is refused naming the rows (``skip_invalid`` leaves them all out:
  total-response 23.0.1 lists Spence 2011 twice and Zang 2014 twice with other numbers).

Two different source texts that would give one key (a condition containing ``" | "``, say)
are refused naming both, so two source entities never become one record.

Renames (:func:`match_renames`)
-------------------------------
On a living update, a study of the file that is not stored and a stored study that is not in
the file are one study renamed when they have the same DOI, else the same normalised full
reference (``full_ref``: letters and digits only, lower case), else the same arms, outcomes
and sample sizes; each step pairs only studies that match exactly one candidate on each side.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from evidence.db.models import metadata
from evidence.errors import ValidationError

__all__ = [
    "Rename",
    "StudyIdentity",
    "file_identities",
    "find_renames",
    "match_renames",
    "normalise_ref",
    "record_keys",
    "stored_identities",
    "study_years",
]

SEP = " | "


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    return text if text and text != "NA" else None


def _failure(file: str, row: int, column: str, value: Any, rule: str) -> dict[str, Any]:
    return {"file": file, "sheet": None, "row": row, "column": column, "value": value,
            "rule": rule}  # fmt: skip


def _arm(condition: str | None, multi: str | None, position: int) -> str:
    base = condition or f"arm {position}"
    return base + SEP + multi if multi else base


def _injective(study: Sequence[str], keys: Sequence[str], sources: Sequence[tuple],
               rows: Sequence[int], file: str, what: str, column: str) -> list[dict]:  # fmt: skip
    """Failures for every key of a study that two different source texts would share."""
    seen: dict[tuple[str, str], tuple[tuple, int]] = {}
    out = []
    for s, k, src, row in zip(study, keys, sources, rows, strict=True):
        first = seen.setdefault((s, k), (src, row))
        if first[0] != src:
            out.append(_failure(
                file, row, column, k,
                f"two different {what}s of study {s} would share the key {k!r} (file rows "
                f"{first[1]} and {row}: {first[0]} and {src}); rename one in the file",
            ))  # fmt: skip
    return out


def record_keys(rows: pd.DataFrame, otype: Sequence[str], *, file: str = "") -> pd.DataFrame:
    """Keys of every row of a validated Metapsy frame (module docstring).

    Parameters
    ----------
    rows
        The rows that become results (with ``file_row`` and the standard columns).
    otype
        Per row, the outcome type (``outcome_type``, or the formula's type without one).

    Returns
    -------
    pandas.DataFrame
        Same index: ``study``, ``arm1``, ``arm2``, ``outcome``, ``time``, ``timepoint``,
        ``result``.

    Raises
    ------
    ValidationError
        Two source entities would share a key, or two rows of a study are the same record
        (both rows named).
    """

    def col(name: str) -> list[str | None]:
        if name not in rows.columns:
            return [None] * len(rows)
        return [_text(v) for v in rows[name].to_numpy(dtype=object)]

    study = col("study")
    file_rows = rows["file_row"].astype(int).tolist()
    c1, m1, c2, m2 = (col(c) for c in ("condition_arm1", "multi_arm1", "condition_arm2",
                                       "multi_arm2"))  # fmt: skip
    a1 = [_arm(c, m, 1) for c, m in zip(c1, m1, strict=True)]
    a2 = [_arm(c, m, 2) for c, m in zip(c2, m2, strict=True)]
    a2 = [b + " (arm 2)" if a == b else b for a, b in zip(a1, a2, strict=True)]
    domain = [c or "outcome" for c in col("outcome_category")]  # as the outcome's domain
    parts = list(zip([_text(t) for t in otype], domain, col("outcome_subcategory"),
                     col("instrument"), strict=True))  # fmt: skip
    outcome = [SEP.join(p or "NA" for p in ps) for ps in parts]
    time = [t or "post" for t in col("time")]
    weeks = (rows["time_weeks"].to_numpy(dtype=float, na_value=np.nan)
             if "time_weeks" in rows.columns else np.full(len(rows), np.nan))  # fmt: skip

    failures = []
    failures += _injective(study * 2, a1 + a2, [("arm", c, m) for c, m in zip(c1, m1, strict=True)]
                           + [("arm", c, m) for c, m in zip(c2, m2, strict=True)],
                           file_rows * 2, file, "arm", "condition_arm1")  # fmt: skip
    failures += _injective(study, outcome, parts, file_rows, file, "outcome", "instrument")

    # a label at several weeks within a study: the weeks tell the timepoints apart
    frame = pd.DataFrame({"study": study, "time": time, "weeks": weeks})
    spread = frame.assign(w=frame["weeks"].fillna(-1.0)).groupby(["study", "time"])["w"]
    several = spread.transform("nunique").to_numpy() > 1
    timepoint = [
        f"{t} @ {w:g}w" if many and w == w else (f"{t} @ NA" if many else t)
        for t, w, many in zip(time, weeks, several, strict=True)
    ]
    base = [f"{o} @ {t} : {x} vs {y}" for o, t, x, y in
            zip(outcome, timepoint, a1, a2, strict=True)]  # fmt: skip
    result = list(base)
    ids = col(".id")
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (s, b) in enumerate(zip(study, base, strict=True)):
        groups.setdefault((s, b), []).append(i)
    for (s, b), members in groups.items():
        if len(members) == 1:
            continue
        their_ids = [ids[i] for i in members]
        if all(their_ids) and len(set(their_ids)) == len(members):
            for i in members:
                result[i] = f"{b} #{ids[i]}"
            continue
        shown = ", ".join(str(file_rows[i]) for i in members)
        failures.extend(_failure(
            file, file_rows[i], "study", s,
            f"file rows {shown} are the same record of study {s} ({b}): the same outcome, "
            f"time, time_weeks and arms, and no distinct .id to tell them apart")
            for i in members)  # fmt: skip
    if failures:
        failures.sort(key=lambda f: f["row"])
        for f in failures:
            f["identity"] = True  # what skip_invalid may leave out
        raise ValidationError(
            f"{file}: row {failures[0]['row']}: {failures[0]['rule']} ({len(failures)} failing "
            f"cells; nothing was written; --skip-invalid (skip_invalid=True) leaves these rows "
            "out)",
            failures)  # fmt: skip
    return pd.DataFrame({"study": study, "arm1": a1, "arm2": a2, "outcome": outcome,
                         "time": time, "timepoint": timepoint, "result": result},
                        index=rows.index)  # fmt: skip


def normalise_ref(ref: Any) -> str | None:
    """A full reference reduced to lower-case letters and digits (None when empty)."""
    text = _text(ref)
    if text is None:
        return None
    out = re.sub(r"[\W_]+", "", text.lower())
    return out or None


def _doi(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    match = re.search(r"10\.\d{4,9}/\S+", text.lower())
    return match.group(0).rstrip(".;,") if match else None


@dataclass(frozen=True)
class StudyIdentity:
    """What a study is recognised by across releases."""

    key: str
    doi: str | None
    ref: str | None
    arms: frozenset[str]
    outcomes: frozenset[str]
    sizes: tuple = ()  # the results' (n1, n2), sorted

    @classmethod
    def of(cls, key: str, doi: Any, ref: Any, arms, outcomes, sizes=()) -> StudyIdentity:
        """From raw values (the DOI and reference are normalised)."""
        return cls(key, _doi(doi), normalise_ref(ref), frozenset(arms), frozenset(outcomes),
                   _sizes(sizes))  # fmt: skip


def _sizes(pairs) -> tuple:
    def n(x: Any) -> float | None:
        return None if x is None or x != x else round(float(x), 6)

    return tuple(sorted(((n(a), n(b)) for a, b in pairs), key=repr))


@dataclass(frozen=True)
class Rename:
    """A stored study that the file holds under another label."""

    old: str
    new: str
    by: str  # doi | full_ref | arms and outcomes

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return {"old": self.old, "new": self.new, "by": self.by}


def match_renames(new: Sequence[StudyIdentity], gone: Sequence[StudyIdentity]) -> list[Rename]:
    """Pair studies only in the file (*new*) with stored studies not in it (*gone*).

    By DOI, then normalised full reference, then identical arm and outcome sets with the same
    sample sizes (arms and outcomes alone pair unrelated small trials: "cbt vs cau, BDI-II");
    a pair is made only when the value is shared by exactly one study on each side.
    """
    out: list[Rename] = []
    left, right = list(new), list(gone)
    steps = (("doi", lambda s: s.doi), ("full_ref", lambda s: s.ref),
             ("arms, outcomes and sample sizes",
              lambda s: (s.arms, s.outcomes, s.sizes) if s.arms and s.outcomes else None),
             )  # fmt: skip
    for by, value in steps:
        a: dict[Any, list[StudyIdentity]] = {}
        b: dict[Any, list[StudyIdentity]] = {}
        for s in left:
            if value(s) is not None:
                a.setdefault(value(s), []).append(s)
        for s in right:
            if value(s) is not None:
                b.setdefault(value(s), []).append(s)
        paired = set()
        for v, xs in a.items():
            ys = b.get(v, [])
            if len(xs) == 1 and len(ys) == 1:
                out.append(Rename(old=ys[0].key, new=xs[0].key, by=by))
                paired.add(xs[0].key)
                paired.add(("old", ys[0].key))
        left = [s for s in left if s.key not in paired]
        right = [s for s in right if ("old", s.key) not in paired]
    return sorted(out, key=lambda r: r.new)


def file_identities(sheets: dict[str, pd.DataFrame], frame: pd.DataFrame) -> list[StudyIdentity]:
    """The identity of every study of a Metapsy file's coding sheets (DOI: its ``doi`` column)."""
    doi: dict[str, Any] = {}
    if "doi" in frame.columns:
        for s, d in zip(frame["study"], frame["doi"], strict=True):
            if _text(s) is not None and _doi(d) is not None:
                doi.setdefault(_text(s), d)
    arms = sheets["arms"].groupby("study_key")["arm_key"].agg(set).to_dict()
    outcomes = sheets["outcomes"].groupby("study_key")["outcome_key"].agg(set).to_dict()
    res = sheets["results"]
    sizes: dict[str, list] = {}
    for k, a, b in zip(res["study_key"], res["n1i"], res["n2i"], strict=True):
        sizes.setdefault(k, []).append((a, b))
    return [StudyIdentity.of(k, doi.get(k), ref, arms.get(k, ()), outcomes.get(k, ()),
                             sizes.get(k, ()))
            for k, ref in zip(sheets["studies"]["study_key"], sheets["studies"]["citation"],
                              strict=True)]  # fmt: skip


def stored_identities(conn: sa.Connection, review: str) -> list[StudyIdentity]:
    """The identity of every stored study of *review* ([] when there is no such review).

    The DOI is the study's ``doi``, else its study-level moderator ``metapsy_doi`` or ``doi``
    (where an import kept the file's ``doi`` column).
    """
    t = metadata.tables
    rv, st, arm, out, res = t["review"], t["study"], t["arm"], t["outcome"], t["result"]
    mod, val = t["moderator"], t["moderator_value"]
    rid = conn.execute(sa.select(rv.c.id).where(rv.c.name == review)).scalar()
    if rid is None:
        return []
    studies = conn.execute(sa.select(st.c.id, st.c.study_key, st.c.doi, st.c.citation)
                           .where(st.c.review_id == rid)).all()  # fmt: skip
    ids = sa.select(st.c.id).where(st.c.review_id == rid).scalar_subquery()
    arms: dict[int, set[str]] = {}
    for sid, key in conn.execute(sa.select(arm.c.study_id, arm.c.arm_key)
                                 .where(arm.c.study_id.in_(ids))):  # fmt: skip
        arms.setdefault(sid, set()).add(key)
    outcomes: dict[int, set[str]] = {}
    for sid, key in conn.execute(sa.select(out.c.study_id, out.c.outcome_key)
                                 .where(out.c.study_id.in_(ids))):  # fmt: skip
        outcomes.setdefault(sid, set()).add(key)
    sizes: dict[int, list] = {}
    for sid, a, b in conn.execute(sa.select(res.c.study_id, res.c.n1i, res.c.n2i)
                                  .where(res.c.study_id.in_(ids))):  # fmt: skip
        sizes.setdefault(sid, []).append((a, b))
    doi_mod = dict(conn.execute(
        sa.select(val.c.study_id, val.c.value_text).select_from(
            val.join(mod, mod.c.id == val.c.moderator_id))
        .where(mod.c.review_id == rid, mod.c.name.in_(["metapsy_doi", "doi"]),
               val.c.study_id.is_not(None))).all())  # fmt: skip
    return [StudyIdentity.of(s.study_key, s.doi or doi_mod.get(s.id), s.citation,
                             arms.get(s.id, ()), outcomes.get(s.id, ()), sizes.get(s.id, ()))
            for s in studies]  # fmt: skip


def find_renames(conn: sa.Connection, review: str, sheets: dict[str, pd.DataFrame],
                 frame: pd.DataFrame) -> list[Rename]:  # fmt: skip
    """Stored studies of *review* that the file holds under another label (module docstring)."""
    stored = stored_identities(conn, review)
    if not stored:
        return []
    mine = file_identities(sheets, frame)
    in_file = {s.key for s in mine}
    in_store = {s.key for s in stored}
    return match_renames([s for s in mine if s.key not in in_store],
                         [s for s in stored if s.key not in in_file])  # fmt: skip


def study_years(text: pd.Series, rows: pd.Series) -> tuple[list[Any], list[dict[str, Any]]]:
    """Each study's ``year``: a whole number as it is; a cell naming several years of reports
    (grief-psyctr: ``"2004, 2006 (2006 - follow-ups)"``) is the first of them, the year of the
    main report, and each such reading is listed (file row, cell, year read). Anything else
    is left as it is (the codebook refuses it)."""
    years: list[Any] = []
    readings: list[dict[str, Any]] = []
    for value, row in zip(text, rows, strict=True):
        cell = _text(value)
        if cell is None:
            years.append(None)
            continue
        number = pd.to_numeric(cell.replace(",", "."), errors="coerce")
        if number == number and float(number).is_integer():
            years.append(int(number))
            continue
        first = re.match(r"((?:19|20)\d\d)\b(?:\s*[,;/&]|\s*\(|\s+and\b)", cell)
        if first is None:
            years.append(cell)
            continue
        years.append(int(first.group(1)))
        readings.append({"row": int(row), "column": "year", "value": cell,
                         "read": int(first.group(1))})  # fmt: skip
    return years, readings
