"""A review's stored records as text coding sheets, so a codebook can re-validate them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from evidence.ingest.codebook import Codebook
from evidence.ingest.readers import ROW, Sheet

__all__ = ["stored_sheets"]


def _cell(x: Any) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return ""
    if isinstance(x, bool | np.bool_):
        return "true" if x else "false"
    if isinstance(x, float):
        return str(int(x)) if x.is_integer() and abs(x) < 2**53 else repr(x)
    if hasattr(x, "isoformat"):
        return x.isoformat()[:10]
    return str(x)


def stored_sheets(
    conn: Connection, codebook: Codebook, rid: int, study_ids: Iterable[int] | None = None
) -> dict[str, Sheet]:
    """The stored records of a review as text coding sheets (to re-validate them).

    *study_ids* limits them to those studies (their records are complete: each study's
    arms, outcomes, timepoints, results, moderator values and judgements).
    """
    where = f"review {codebook.name} in the database"
    scope = ""
    if study_ids is not None:
        ids = ", ".join(str(int(i)) for i in sorted(set(study_ids))) or "NULL"
        scope = f" AND s.id IN ({ids})"
    q = {
        "studies": f"SELECT s.* FROM study s WHERE s.review_id = {rid}",
        "arms": "SELECT s.study_key, a.* FROM arm a JOIN study s ON s.id = a.study_id "
        f"WHERE s.review_id = {rid}",
        "outcomes": "SELECT s.study_key, o.* FROM outcome o JOIN study s ON s.id = o.study_id "
        f"WHERE s.review_id = {rid}",
        "timepoints": "SELECT s.study_key, t.* FROM timepoint t JOIN study s ON "
        f"s.id = t.study_id WHERE s.review_id = {rid}",
        "results": "SELECT s.study_key, o.outcome_key, t.timepoint_key, a1.arm_key AS arm1_key,"
        " a2.arm_key AS arm2_key, r.* FROM result r JOIN study s ON s.id = r.study_id "
        "JOIN outcome o ON o.id = r.outcome_id LEFT JOIN timepoint t ON t.id = r.timepoint_id "
        "LEFT JOIN arm a1 ON a1.id = r.arm1_id LEFT JOIN arm a2 ON a2.id = r.arm2_id "
        f"WHERE s.review_id = {rid}",
    }
    if "risk_of_bias" in codebook.sheets:
        q["risk_of_bias"] = (
            "SELECT s.study_key, r.result_key, b.* FROM risk_of_bias b JOIN study s ON "
            f"s.id = b.study_id LEFT JOIN result r ON r.id = b.result_id WHERE s.review_id = {rid}"
        )
    q = {name: sql + scope for name, sql in q.items()}
    owned = ""
    if scope:
        studies = f"SELECT s.id FROM study s WHERE s.review_id = {rid}{scope}"
        owned = (f" AND (v.study_id IN ({studies}) OR v.arm_id IN (SELECT id FROM arm WHERE "
                 f"study_id IN ({studies})) OR v.result_id IN (SELECT id FROM result WHERE "
                 f"study_id IN ({studies})))")  # fmt: skip
    values = pd.DataFrame(conn.execute(sa.text(
        "SELECT m.name, v.study_id, v.arm_id, v.result_id, v.value_text, v.value_num "
        f"FROM moderator_value v JOIN moderator m ON m.id = v.moderator_id "
        f"WHERE m.review_id = {rid}{owned}")).all(),
        columns=["name", "study_id", "arm_id", "result_id", "value_text", "value_num"])  # fmt: skip
    target = {"studies": "study_id", "arms": "arm_id", "results": "result_id"}
    sheets = {}
    for name, sql in q.items():
        rows = conn.execute(sa.text(sql))
        frame = pd.DataFrame(rows.all(), columns=list(rows.keys()))
        if name in target and not frame.empty and not values.empty:
            sub = values[values[target[name]].notna()]
            text = sub["value_text"].where(sub["value_text"].notna(), sub["value_num"].map(_cell))
            wide = pd.DataFrame(
                {"id": sub[target[name]].astype(int), "name": sub["name"], "v": text}
            ).pivot(index="id", columns="name", values="v")
            frame = frame.merge(wide, left_on="id", right_index=True, how="left")
        columns = [c for c in codebook.columns(name) if c in frame.columns]
        out = pd.DataFrame({c: [_cell(x) for x in frame[c]] for c in columns}, dtype=object)
        out[ROW] = pd.Series(np.arange(2, len(frame) + 2), dtype="int64")
        sheets[name] = Sheet(name=name, file=where, frame=out, header=tuple(columns))
    return sheets
