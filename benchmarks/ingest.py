"""Validate-and-write time of `evidence ingest` for 100,000 effect-size rows.

Generates coding sheets for the peer support codebook (SIMULATED data): by default 5,000
controlled studies, each with 2 arms, 10 outcomes and 2 timepoints, so 100,000 result rows
(and as many effect sizes), then times :func:`evidence.ingest.loader.ingest` on a fresh,
migrated SQLite database (and on PostgreSQL when ``--postgres URL`` or
``EVIDENCE_TEST_POSTGRES_URL`` is given; a temporary database ``evidence_test_bench_*`` is
created and dropped). Stages are timed through the progress callback; a second ingest of the
same sheets (nothing to write) is timed too.

Usage: ``python benchmarks/ingest.py [--studies 5000] [--postgres URL]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from evidence.config import project_root
from evidence.db.migrate import upgrade
from evidence.ingest.loader import ingest

CODEBOOK = project_root() / "schemas" / "peer_support.yaml"
OUTCOMES, TIMEPOINTS = 10, 2


def generate(directory: Path, studies: int, seed: int = 1) -> int:
    """Write the five coding sheets; returns the number of result rows."""
    rng = np.random.default_rng(seed)
    keys = np.array([f"B{i:06d}" for i in range(studies)])
    pd.DataFrame({
        "study_key": keys, "citation": [f"SIMULATED benchmark study {k}" for k in keys],
        "year": rng.integers(2005, 2025, studies), "country": rng.choice(["US", "GB", "CN"],
                                                                       studies),
        "design": "controlled", "n_total": 100, "simulated": "true",
        "mean_age": rng.uniform(18, 70, studies).round(1),
        "age_group": rng.choice(["young_adults", "adults"], studies),
        "health_condition": rng.choice(["none", "low", "moderate", "high"], studies),
    }).to_csv(directory / "studies.csv", index=False)  # fmt: skip
    arms = pd.DataFrame({
        "study_key": np.repeat(keys, 2), "arm_key": np.tile(["peer", "control"], studies),
        "label": np.tile(["peer support", "usual care"], studies),
        "role": np.tile(["intervention", "comparator"], studies),
    })  # fmt: skip
    inter = arms["role"] == "intervention"
    arms.loc[inter, "source"] = rng.choice(["informal", "formal"], studies)
    arms.loc[inter, "platform"] = rng.choice(["app", "forum", "website"], studies)
    arms.loc[inter, "dosage"] = rng.uniform(1, 40, studies).round(1)
    arms.loc[inter, "uptake"] = rng.uniform(30, 100, studies).round(1)
    arms.to_csv(directory / "arms.csv", index=False)
    o = np.arange(1, OUTCOMES + 1)
    pd.DataFrame({
        "study_key": np.repeat(keys, OUTCOMES), "outcome_key": np.tile([f"o{i}" for i in o],
                                                                       studies),
        "domain": np.tile(np.where(o % 2 == 0, "mental", "physical"), studies),
        "construct": "score", "direction": np.tile(np.where(o % 3 == 0, "lower", "higher"),
                                                   studies),
    }).to_csv(directory / "outcomes.csv", index=False)  # fmt: skip
    pd.DataFrame({
        "study_key": np.repeat(keys, TIMEPOINTS), "timepoint_key": np.tile(["post", "fu"], studies),
        "label": np.tile(["post", "follow-up"], studies), "weeks": np.tile([0, 12], studies),
    }).to_csv(directory / "timepoints.csv", index=False)  # fmt: skip
    k = studies * OUTCOMES * TIMEPOINTS
    n1, n2 = rng.integers(20, 200, k), rng.integers(20, 200, k)
    pd.DataFrame({
        "study_key": np.repeat(keys, OUTCOMES * TIMEPOINTS),
        "result_key": np.tile([f"r{i}" for i in range(1, OUTCOMES * TIMEPOINTS + 1)], studies),
        "outcome_key": np.tile(np.repeat([f"o{i}" for i in o], TIMEPOINTS), studies),
        "timepoint_key": np.tile(["post", "fu"], studies * OUTCOMES),
        "arm1_key": "peer", "arm2_key": "control", "n1i": n1, "n2i": n2,
        "m1i": rng.normal(10.5, 1, k).round(2), "sd1i": rng.uniform(3, 6, k).round(2),
        "m2i": rng.normal(10.0, 1, k).round(2), "sd2i": rng.uniform(3, 6, k).round(2),
    }).to_csv(directory / "results.csv", index=False)  # fmt: skip
    return k


def run(url: str, directory: Path) -> dict[str, float]:
    """Time a first ingest (everything inserted) and a second one (nothing changes)."""
    upgrade(url)
    marks: list[tuple[str, float]] = []

    def progress(stage: str, done: int, total: int) -> None:
        if not marks or marks[-1][0] != stage:
            marks.append((stage, time.perf_counter()))

    start = time.perf_counter()
    report = ingest([directory], codebook=CODEBOOK, database=url, progress=progress,
                    message="benchmark")  # fmt: skip
    end = time.perf_counter()
    assert report.changes["effect_size"].inserted == len(pd.read_csv(directory / "results.csv"))
    out: dict[str, float] = {"total": end - start}
    stages = {"read": "read", "validate": "validate", "effects": "effects"}
    times = dict(marks)
    write_start = next((t for s, t in marks if s not in stages), end)
    out["read"] = times.get("validate", start) - start
    out["validate"] = times.get("effects", write_start) - times.get("validate", start)
    out["effects"] = write_start - times.get("effects", write_start)
    out["compare+write"] = end - write_start
    start = time.perf_counter()
    again = ingest([directory], codebook=CODEBOOK, database=url)
    out["re-ingest (no change)"] = time.perf_counter() - start
    assert not again.changed
    return out


def _print(name: str, figures: dict[str, float], rows: int) -> None:
    parts = ", ".join(f"{k} {v:.2f} s" for k, v in figures.items() if k != "total")
    print(f"{name:<11} validate+write {figures['total']:6.2f} s  "
          f"({rows / figures['total']:,.0f} effect sizes/s; {parts})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=5000)
    parser.add_argument("--postgres", default=os.environ.get("EVIDENCE_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sheets = Path(tmp) / "sheets"
        sheets.mkdir()
        rows = generate(sheets, args.studies)
        print(f"coding sheets: {args.studies:,} studies, {2 * args.studies:,} arms, "
              f"{OUTCOMES * args.studies:,} outcomes, {rows:,} results (SIMULATED)")  # fmt: skip
        sqlite = run(f"sqlite:///{Path(tmp) / 'bench.db'}", sheets)
        _print("SQLite", sqlite, rows)
        print(f"            target < 20 s: {'met' if sqlite['total'] < 20 else 'NOT met'}")
        if args.postgres:
            admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT",
                                     poolclass=sa.pool.NullPool)  # fmt: skip
            name = f"evidence_test_bench_{uuid.uuid4().hex[:8]}"
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            try:
                url = sa.make_url(args.postgres).set(database=name)
                pg = run(url.render_as_string(hide_password=False), sheets)
                _print("PostgreSQL", pg, rows)
                print(f"            PostgreSQL / SQLite: {pg['total'] / sqlite['total']:.2f}x")
            finally:
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                admin.dispose()
        else:
            print("PostgreSQL  skipped (give --postgres URL or set EVIDENCE_TEST_POSTGRES_URL)")


if __name__ == "__main__":
    main()
