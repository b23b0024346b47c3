"""`evidence view ...` and `evidence diff` on the SIMULATED seed (SQLite)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from evidence.cli import app
from evidence.config import project_root
from evidence.db.engine import get_engine
from evidence.db.migrate import upgrade
from evidence.ingest.loader import ingest

ROOT = project_root()


@pytest.fixture
def url(sqlite_url: str) -> str:
    upgrade(sqlite_url)
    engine = get_engine(sqlite_url)
    ingest(
        [ROOT / "seeds" / "peer_support"],
        codebook=ROOT / "schemas" / "peer_support.yaml",
        database=engine,
    )
    engine.dispose()
    return sqlite_url


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_view_commands_create_show_list_refresh_history_drop(url: str) -> None:
    code, out = run(
        "view", "create", "m", "--select", 'domain == "mental"', "--model", "che", "--url", url
    )
    assert code == 0, out
    assert "Multivariate Meta-Analysis Model (k = 118" in out and "SIMULATED" in out
    code, out = run("view", "show", "m", "--json", "--url", url)
    data = json.loads(out)
    assert data["fresh"] and data["k_effects"] == 118 and data["model"] == "che"
    engine = get_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE result SET m1i = m1i + 10 WHERE id IN (SELECT r.id FROM result r"
                " JOIN outcome o ON o.id = r.outcome_id WHERE o.domain = 'mental'"
                " AND r.m1i IS NOT NULL LIMIT 1)"
            )
        )
    engine.dispose()
    code, out = run("view", "show", "m", "--no-refresh", "--url", url)
    assert code == 0 and "STALE" in out
    code, out = run("view", "list", "--json", "--url", url)
    assert json.loads(out)[0]["fresh"] is False
    code, out = run("view", "refresh", "--url", url)
    assert code == 0 and "1 recomputed" in out
    code, out = run("view", "history", "m", "--json", "--url", url)
    entries = json.loads(out)["entries"]
    # revision 2: the plain-SQL edit; 3: the effect size recomputed from it
    assert [e["revision"] for e in entries] == [1, 3]
    assert {c["table"] for c in entries[1]["changes"]} == {"result", "effect_size"}
    code, out = run("view", "show", "m", "--as-of", "1", "--json", "--url", url)
    assert json.loads(out)["estimate"] == entries[0]["estimate"]
    code, out = run("diff", "1", "3", "--url", url)
    assert code == 0 and "2 changed records" in out
    code, out = run("view", "drop", "m", "--url", url)
    assert code == 0 and "2 stored results" in out


def test_view_create_with_bad_selection_exits_non_zero_with_one_line(url: str) -> None:
    code, out = run("view", "create", "x", "--select", 'domain = "mental"', "--url", url)
    assert code != 0
    assert "position 8: unexpected character '=' (compare with ==)" in out
    assert "Traceback" not in out


def test_view_plan_and_results_print_the_simulated_table(url: str) -> None:
    code, out = run("view", "plan", "--url", url)
    assert code == 0 and "22 views" in out
    code, out = run("view", "results", "--json", "--url", url)
    rows = json.loads(out)
    assert {r["view"] for r in rows} >= {"physical-overall", "mental-region"}


def test_every_view_command_has_help_text() -> None:
    for command in ("create", "list", "show", "refresh", "drop", "history", "plan", "results"):
        code, out = run("view", command, "--help")
        assert code == 0 and "Usage" in out
    code, out = run("diff", "--help")
    assert code == 0 and "Records changed between two revisions" in out
