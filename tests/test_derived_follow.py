"""Derived values follow their inputs by every path; no result leaves a view silently.

On the BCG seed (metafor's dat.bcg; log risk ratios, REML), a plain-SQL change of a result
(update, insert), of an effect size itself, or one that makes a record invalid, is followed
at the next read through ``evidence``. Reference numbers come from the coding sheets carrying
the same edit, validated and turned into effect sizes by ``evidence.ingest.prepare`` and
pooled by ``evidence.stats.rma``, not from the store; the published estimate of the
unedited data (0.7145, Viechtbauer 2010) is the reference where the edit must be undone.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from evidence.cli import app
from evidence.config import project_root
from evidence.db.engine import get_engine, write_transaction
from evidence.ingest.codebook import load_codebook
from evidence.ingest.loader import ingest, prepare
from evidence.stats import rma
from evidence.views import create_plan_views, list_views, show_view

ROOT = project_root()
CODEBOOK = ROOT / "schemas" / "bcg.yaml"
PUBLISHED = 0.7145  # metafor rma(yi, vi) on dat.bcg, 4 decimals (sign: vaccine protects)
TOL_PUBLISHED = 5e-5
TOL = 1e-9  # same formulas, same optimiser: only floating-point noise
VIEWS = ["overall", "latitude", "allocation"]
STUDY_1 = "(SELECT id FROM study WHERE study_key = 'BCG-01')"
RESULT_1 = f"result_key = 'r1' AND study_id = {STUDY_1}"


@pytest.fixture
def url(migrated_db_url: str) -> str:
    engine = get_engine(migrated_db_url)
    ingest([ROOT / "seeds" / "bcg"], codebook=CODEBOOK, database=engine)
    create_plan_views(engine, load_codebook(CODEBOOK))
    engine.dispose()
    return migrated_db_url


@pytest.fixture
def engine(url: str) -> Iterator[sa.Engine]:
    engine = get_engine(url)
    yield engine
    engine.dispose()


def plain_sql(url: str, *statements: str) -> None:
    """Statements run outside evidence (no write transaction, no refresh on commit)."""
    raw = sa.create_engine(url)
    try:
        with raw.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
    finally:
        raw.dispose()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def reference(tmp_path: Path, edit: Callable[[list[dict]], None]) -> tuple[float, list[float]]:
    """Pooled estimate and effect sizes of the BCG sheets carrying *edit* (no database)."""
    sheets = tmp_path / "sheets"
    sheets.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "seeds" / "bcg", sheets)
    path = sheets / "results.csv"
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    edit(rows)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    effects = prepare([sheets], load_codebook(CODEBOOK)).effects
    fit = rma(effects["yi"].to_numpy(float), effects["vi"].to_numpy(float), method="REML")
    return float(fit.beta[0]), [float(y) for y in effects["yi"]]


def stored_yi(engine: sa.Engine, where: str = RESULT_1) -> float | None:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT e.yi FROM effect_size e JOIN result r ON r.id = e.result_id"
                f" WHERE r.{where.replace(' AND study_id', ' AND r.study_id')}"
            )
        ).scalar_one()


def test_plain_sql_update_of_a_result_is_recomputed_and_shown_fresh(
    url: str, engine: sa.Engine, tmp_path: Path
) -> None:
    plain_sql(url, f"UPDATE result SET event1i = 40 WHERE {RESULT_1}")

    def edit(rows: list[dict]) -> None:
        rows[0]["event1i"] = "40"

    expected, yi = reference(tmp_path, edit)
    assert abs(expected - PUBLISHED) > 0.1  # the edit moves the estimate
    code, out = run("view", "refresh", "--json", "--url", url)
    report = json.loads(out)
    assert code == 0 and report["recomputed"] == VIEWS and report["confirmed"] == []
    assert report["effects_recomputed"] == ["bcg/BCG-01"]
    with engine.connect() as conn:
        last = conn.execute(
            sa.text("SELECT source, message FROM revision ORDER BY id DESC LIMIT 1")
        ).one()
    assert last.source == "evidence" and "BCG-01" in last.message
    assert stored_yi(engine) == pytest.approx(yi[0], abs=TOL)
    shown = show_view(engine, "overall")
    assert shown.fresh and shown.status == "ok" and shown.k_effects == 13
    assert shown.headline["estimate"] == pytest.approx(expected, abs=TOL)

    plain_sql(url, f"UPDATE result SET event1i = 41 WHERE {RESULT_1}")  # read, no refresh

    def edit41(rows: list[dict]) -> None:
        rows[0]["event1i"] = "41"

    expected, _ = reference(tmp_path / "41", edit41)
    code, out = run("view", "show", "latitude", "--json", "--url", url)
    data = json.loads(out)
    assert code == 0 and data["fresh"] is True and data["status"] == "ok"
    assert data["estimate"] == pytest.approx(expected, abs=TOL)


def test_plain_sql_insert_gets_an_effect_size_and_an_edited_effect_size_is_recomputed(
    url: str, engine: sa.Engine, tmp_path: Path
) -> None:
    plain_sql(
        url,
        "INSERT INTO result (study_id, result_key, outcome_id, timepoint_id, arm1_id, arm2_id,"
        " event1i, n1i, event2i, n2i) SELECT study_id, 'r2', outcome_id, timepoint_id, arm1_id,"
        f" arm2_id, 10, 120, 20, 130 FROM result WHERE {RESULT_1}",
    )

    def edit(rows: list[dict]) -> None:
        extra = dict(rows[0], result_key="r2", event1i="10", n1i="120", event2i="20", n2i="130")
        rows.append(extra)

    expected, yi = reference(tmp_path, edit)
    shown = show_view(engine, "overall")
    assert shown.fresh and shown.k_effects == 14 and shown.k_studies == 13
    assert shown.headline["estimate"] == pytest.approx(expected, abs=TOL)
    new = f"result_key = 'r2' AND study_id = {STUDY_1}"
    assert stored_yi(engine, new) == pytest.approx(yi[-1], abs=TOL)

    # an effect size is itself derived: a plain-SQL edit of it is recomputed from its result
    plain_sql(
        url,
        f"UPDATE effect_size SET yi = 5 WHERE result_id = (SELECT id FROM result WHERE {RESULT_1})",
    )
    assert show_view(engine, "overall").headline["estimate"] == pytest.approx(expected, abs=TOL)
    assert stored_yi(engine) == pytest.approx(yi[0], abs=TOL)


def test_plain_sql_edit_making_a_record_invalid_is_never_shown_as_current(
    url: str, engine: sa.Engine
) -> None:
    plain_sql(url, f"UPDATE result SET event1i = -5 WHERE {RESULT_1}")
    shown = show_view(engine, "overall")
    assert shown.status == "error" and shown.headline["estimate"] is None
    for part in ("BCG-01", "result r1", "column event1i", "-5", ">= 0"):
        assert part in (shown.error or "")
    assert stored_yi(engine) is None  # no number that does not follow from the record
    code, out = run("view", "show", "allocation", "--url", url)
    assert code == 0 and "not computed" in out and "event1i" in out
    code, out = run("view", "show", "latitude", "--json", "--url", url)
    data = json.loads(out)
    assert data["status"] == "error" and data["estimate"] is None and "BCG-01" in data["error"]
    assert {v.status for v in list_views(engine)} == {"error"}

    plain_sql(url, f"UPDATE result SET event1i = 4, n1i = NULL WHERE {RESULT_1}")
    shown = show_view(engine, "overall")
    assert shown.status == "error" and "n1i" in (shown.error or "")

    plain_sql(url, f"UPDATE result SET n1i = 123 WHERE {RESULT_1}")  # as published
    shown = show_view(engine, "overall")
    assert shown.fresh and shown.status == "ok" and shown.k_effects == 13
    assert shown.headline["estimate"] == pytest.approx(PUBLISHED, abs=TOL_PUBLISHED)


def test_a_result_without_a_computable_effect_size_is_listed_as_excluded(
    url: str, engine: sa.Engine, tmp_path: Path
) -> None:
    # an effect size stored without yi (a writer that is not the ingest loader)
    with write_transaction(engine, message="no yi") as (conn, _):
        conn.execute(
            sa.text(
                "UPDATE effect_size SET yi = NULL WHERE result_id = (SELECT id FROM result WHERE"
                " result_key = 'r1' AND study_id = (SELECT id FROM study"
                " WHERE study_key = 'BCG-02'))"
            )
        )
    expected, _ = reference(tmp_path, lambda rows: rows.pop(1))
    shown = show_view(engine, "overall")
    assert shown.fresh and shown.status == "ok" and shown.k_effects == 12
    assert shown.headline["estimate"] == pytest.approx(expected, abs=TOL)
    assert [(e["study"], e["result"]) for e in shown.excluded] == [("BCG-02", "r1")]
    assert "no effect size" in shown.excluded[0]["reason"]
    assert "Excluded: 1 selected result" in (shown.summary or "")
    code, out = run("view", "show", "overall", "--json", "--url", url)
    assert json.loads(out)["excluded"][0]["study"] == "BCG-02"

    # a study without the meta-regression's moderator (deleted by plain SQL)
    plain_sql(
        url,
        "DELETE FROM moderator_value WHERE moderator_id = (SELECT id FROM moderator"
        " WHERE name = 'ablat') AND study_id = (SELECT id FROM study WHERE study_key = 'BCG-03')",
    )
    code, out = run("view", "show", "latitude", "--url", url)
    assert code == 0 and "BCG-03 / r1: moderator ablat is not coded" in out
    assert "BCG-02 / r1: no effect size" in out
    shown = show_view(engine, "latitude")
    assert shown.k_effects == 11 and len(shown.excluded) == 2
    code, out = run("view", "results", "--json", "--url", url)
    excluded = {r["view"]: r["excluded"] for r in json.loads(out) if not r["level"]}
    assert code == 0 and excluded == {"overall": 1, "latitude": 2, "allocation": 1}
    code, out = run("view", "results", "--url", url)
    assert "3 views (overall, latitude, allocation) leave out selected results" in " ".join(
        out.split()
    )
