"""Shared data and helpers of the codebook, ingest, seed and quickstart tests."""

from __future__ import annotations

import copy
import csv
import hashlib
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from evidence.config import project_root

ROOT = project_root()
PEER_CODEBOOK = ROOT / "schemas" / "peer_support.yaml"
BCG_CODEBOOK = ROOT / "schemas" / "bcg.yaml"
PEER_SEED = ROOT / "seeds" / "peer_support"
BCG_SEED = ROOT / "seeds" / "bcg"

#: A small valid coding of two studies (peer support codebook): a controlled trial with a
#: follow-up and a single-group pre-post study that does not report r.
SMALL: dict[str, list[dict[str, Any]]] = {
    "studies": [
        {"study_key": "S1", "citation": "Doe (2019)", "year": 2019, "country": "US",
         "design": "controlled", "n_total": 80, "simulated": "true", "mean_age": 34.5,
         "age_group": "adults", "health_condition": "low"},
        {"study_key": "S2", "citation": "Lee (2021)", "year": 2021, "country": "CN",
         "design": "pre-post", "n_total": 30, "simulated": "true", "mean_age": 20.0,
         "age_group": "young_adults", "health_condition": "none"},
    ],
    "arms": [
        {"study_key": "S1", "arm_key": "peer", "label": "peer app", "role": "intervention",
         "source": "formal", "platform": "app", "dosage": 10, "uptake": 80},
        {"study_key": "S1", "arm_key": "control", "label": "usual care", "role": "comparator"},
        {"study_key": "S2", "arm_key": "peer", "label": "forum", "role": "intervention",
         "source": "informal", "platform": "forum", "dosage": 5, "uptake": 60},
    ],
    "outcomes": [
        {"study_key": "S1", "outcome_key": "o1", "domain": "mental", "construct": "depression",
         "instrument": "PHQ-9", "direction": "lower"},
        {"study_key": "S2", "outcome_key": "o1", "domain": "physical",
         "construct": "physical activity", "direction": "higher"},
    ],
    "timepoints": [
        {"study_key": "S1", "timepoint_key": "post", "label": "post", "weeks": 0},
        {"study_key": "S1", "timepoint_key": "fu", "label": "follow-up", "weeks": 12},
        {"study_key": "S2", "timepoint_key": "post", "label": "post", "weeks": 0},
    ],
    "results": [
        {"study_key": "S1", "result_key": "r1", "outcome_key": "o1", "timepoint_key": "post",
         "arm1_key": "peer", "arm2_key": "control", "n1i": 40, "m1i": 8.0, "sd1i": 4.0,
         "n2i": 40, "m2i": 10.0, "sd2i": 4.5},
        {"study_key": "S1", "result_key": "r2", "outcome_key": "o1", "timepoint_key": "fu",
         "arm1_key": "peer", "arm2_key": "control", "n1i": 35, "m1i": 8.5, "sd1i": 4.2,
         "n2i": 36, "m2i": 9.8, "sd2i": 4.4},
        {"study_key": "S2", "result_key": "r1", "outcome_key": "o1", "timepoint_key": "post",
         "arm1_key": "peer", "n1i": 30, "m1i": 25.0, "sd1i": 8.0, "m1i_pre": 22.0,
         "sd1i_pre": 7.5},
    ],
}  # fmt: skip


def small() -> dict[str, list[dict[str, Any]]]:
    """A fresh deep copy of :data:`SMALL` to mutate."""
    return copy.deepcopy(SMALL)


def write_csv(directory: Path, sheets: dict[str, list[dict[str, Any]]]) -> Path:
    """Write each sheet as ``<sheet>.csv`` (columns: union of the rows' keys, in order)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in sheets.items():
        columns: list[str] = []
        for row in rows:
            columns += [c for c in row if c not in columns]
        with (directory / f"{name}.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
    return directory


def write_xlsx(path: Path, sheets: dict[str, list[dict[str, Any]]]) -> Path:
    """Write the sheets as one XLSX workbook, one worksheet per sheet."""
    from openpyxl import Workbook

    wb = Workbook()
    wb.remove(wb.active)
    for name, rows in sheets.items():
        ws = wb.create_sheet(name)
        columns: list[str] = []
        for row in rows:
            columns += [c for c in row if c not in columns]
        ws.append(columns)
        for row in rows:
            ws.append([row.get(c) for c in columns])
    wb.save(path)
    return path


def file_hash(url: str) -> str:
    """SHA-256 of a SQLite database: its file and its write-ahead log, when one is left."""
    path = Path(sa.make_url(url).database or "")
    wal = path.with_name(path.name + "-wal")
    data = path.read_bytes() + (b"\0WAL\0" + wal.read_bytes() if wal.exists() else b"")
    return hashlib.sha256(data).hexdigest()


def dump(url: str) -> dict[str, list[tuple]]:
    """Every row of every table, ordered (a content snapshot for any database)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            names = sa.inspect(conn).get_table_names()
            out = {}
            for name in sorted(names):
                table = sa.Table(name, sa.MetaData(), autoload_with=conn)
                order = list(table.primary_key.columns) or list(table.columns)
                out[name] = [tuple(r) for r in conn.execute(sa.select(table).order_by(*order))]
            return out
    finally:
        engine.dispose()


def counts(url: str, *tables: str) -> dict[str, int]:
    """Row counts of tables."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return {t: conn.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
                    for t in tables}  # fmt: skip
    finally:
        engine.dispose()


def query(url: str, sql: str, **params: Any) -> list[sa.Row]:
    """Rows of a read query."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql), params))
    finally:
        engine.dispose()
