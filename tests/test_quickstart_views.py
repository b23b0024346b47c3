"""The quickstart computes the review's analysis plan as living views and prints the results."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from typer.testing import CliRunner

from evidence.cli import app
from evidence.report.quickstart import quickstart


def test_quickstart_stores_every_plan_view_fresh_with_the_seed_counts(tmp_path: Path) -> None:
    built = quickstart(tmp_path / "qs")
    results = built.results
    assert "SIMULATED" in results.attrs["title"]
    overall = results[results["level"] == ""].set_index("view")
    # 47 studies / 76 effect sizes (physical), 73 / 118 (mental): the seed's design (REVIEW.md)
    assert overall.loc["physical-overall", ["k_studies", "k_effects"]].tolist() == [47, 76]
    assert overall.loc["mental-overall", ["k_studies", "k_effects"]].tolist() == [73, 118]
    for domain in ("physical", "mental"):
        for row in ("overall", "source", "design", "follow-up", "dosage", "uptake",
                    "interactivity", "age", "health-condition", "region"):  # fmt: skip
            assert f"{domain}-{row}" in built.views
    assert bool(results["fresh"].all())
    engine = sa.create_engine(built.database_url)
    with engine.connect() as conn:
        pooled = pd.read_sql("SELECT * FROM pooled_estimate", conn)
    engine.dispose()
    assert len(pooled) == len(built.views)
    assert not pooled["stale"].astype(bool).any()


def test_quickstart_prints_the_results_table_labelled_simulated(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["quickstart", str(tmp_path / "qs")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Results of the analysis views (SIMULATED data" in result.output
    assert "physical-overall" in result.output and "mental-region" in result.output
    assert "QM=" in result.output
