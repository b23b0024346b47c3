"""Ingest of coding sheets into the store: seeds, idempotence, edits, history, codebook defaults."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _ingest_data import (
    BCG_CODEBOOK,
    BCG_SEED,
    PEER_CODEBOOK,
    PEER_SEED,
    counts,
    dump,
    query,
    small,
    write_csv,
    write_xlsx,
)
from typer.testing import CliRunner

from evidence.cli import app
from evidence.db.engine import get_engine
from evidence.db.migrate import upgrade
from evidence.errors import ValidationError
from evidence.ingest.codebook import parse_codebook
from evidence.ingest.loader import apply_codebook, ingest
from evidence.stats import rma
from evidence.views import create_plan_views, show_view

# metafor 3.8-1: escalc(measure="RR", ai=tpos, bi=tneg, ci=cpos, di=cneg, data=dat.bcg)
BCG_YI = [-0.88931133392020545, -1.5853886572014306, -1.3480731482996933, -1.4415511900213054,
          -0.21754732221129558, -0.78611558581886398, -1.6208982235983918, 0.011952333523840508,
          -0.4694176487381494, -1.3713448034727844, -0.33935882833839059, 0.44591340057137874,
          -0.017313948216879815]  # fmt: skip
BCG_VI = [0.32558476500396133, 0.19458112139814385, 0.41536796536796539, 0.020010031902247573,
          0.051210172169630863, 0.0069056184559087574, 0.22301724757231517,
          0.0039615792978177295, 0.056434210463248966, 0.07302479361302891, 0.01241221397155972,
          0.53250584520015276, 0.071404659683986293]  # fmt: skip
TABLES = ("study", "arm", "outcome", "timepoint", "result", "effect_size", "moderator",
          "moderator_value", "revision", "change_log")  # fmt: skip


def _csv(name: str) -> pd.DataFrame:
    return pd.read_csv(PEER_SEED / f"{name}.csv", keep_default_na=False, dtype=str)


def _log(url: str, revision: int) -> list[tuple[str, str, int]]:
    rows = query(url, "SELECT table_name, op, row_id FROM change_log WHERE revision_id = :r "
                 "ORDER BY table_name, op, row_id", r=revision)  # fmt: skip
    return [tuple(r) for r in rows]


def test_ingest_loads_the_peer_support_seed_with_every_effect_size(migrated_db_url: str) -> None:
    url = migrated_db_url
    report = ingest([PEER_SEED], codebook=PEER_CODEBOOK, database=url, author="tester",
                    message="seed")  # fmt: skip
    assert report.revision == 1 and report.simulated == 120
    got = counts(url, "study", "arm", "outcome", "timepoint", "result", "effect_size")
    sheets = {
        t: len(_csv(s))
        for t, s in (
            ("study", "studies"),
            ("arm", "arms"),
            ("outcome", "outcomes"),
            ("timepoint", "timepoints"),
            ("result", "results"),
        )
    }
    assert got == {**sheets, "effect_size": 194}  # fmt: skip
    per_domain = query(url, "SELECT o.domain, COUNT(*), COUNT(DISTINCT r.study_id) FROM "
                       "effect_size e JOIN result r ON r.id = e.result_id JOIN outcome o ON "
                       "o.id = r.outcome_id GROUP BY o.domain ORDER BY o.domain")  # fmt: skip
    assert [tuple(r) for r in per_domain] == [("mental", 118, 73), ("physical", 76, 47)]
    # imputed exactly where a single-group pre-post row reports no r
    res = _csv("results")
    expected = int(((res["arm2_key"] == "") & (res["ri"] == "") & (res["ti"] == "")).sum())
    imputed = query(url, "SELECT COUNT(*), MIN(ri_used), MAX(ri_used) FROM effect_size "
                    "WHERE imputed_r")[0]  # fmt: skip
    assert tuple(imputed) == (expected, 0.5, 0.5) and expected > 0
    flipped = query(url, "SELECT COUNT(*) FROM effect_size e JOIN result r ON r.id = e.result_id"
                    " JOIN outcome o ON o.id = r.outcome_id WHERE e.flipped <> "
                    "(o.direction = 'lower')")[0][0]  # fmt: skip
    assert flipped == 0
    row = query(url, "SELECT e.formula, e.inputs, e.yi, e.vi FROM effect_size e JOIN result r "
                "ON r.id = e.result_id JOIN study s ON s.id = r.study_id WHERE "
                "s.study_key = 'SIM-002' AND r.result_key = 'r1'")[0]  # fmt: skip
    assert row.formula == "SMD:means"
    sheet = res[(res["study_key"] == "SIM-002") & (res["result_key"] == "r1")].iloc[0]
    expected_inputs = {c: float(sheet[c]) for c in ("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i")}
    assert json.loads(row.inputs) == expected_inputs
    rev = query(url, "SELECT author, message FROM revision WHERE id = 1")[0]
    assert tuple(rev) == ("tester", "seed")


def test_ingest_loads_bcg_with_metafor_log_risk_ratios_flipped_to_benefit(
    migrated_db_url: str,
) -> None:
    ingest([BCG_SEED], codebook=BCG_CODEBOOK, database=migrated_db_url)
    rows = query(migrated_db_url, "SELECT s.study_key, e.measure, e.yi, e.vi, e.flipped, "
                 "e.formula FROM effect_size e JOIN result r ON r.id = e.result_id JOIN study s"
                 " ON s.id = r.study_id ORDER BY s.study_key")  # fmt: skip
    assert [r.study_key for r in rows] == [f"BCG-{i:02d}" for i in range(1, 14)]
    assert {(r.measure, bool(r.flipped), r.formula) for r in rows} == {("RR", True, "RR:events")}
    for r, yi, vi in zip(rows, BCG_YI, BCG_VI, strict=True):
        assert r.yi == pytest.approx(-yi, rel=1e-10)
        assert r.vi == pytest.approx(vi, rel=1e-10)
    mods = query(
        migrated_db_url,
        "SELECT m.name, COUNT(*) FROM moderator_value v JOIN "
        "moderator m ON m.id = v.moderator_id GROUP BY m.name ORDER BY m.name",
    )
    assert [tuple(m) for m in mods] == [("ablat", 13), ("alloc", 13)]


def _bcg_reported(tmp_path: Path, **cells: float) -> tuple[Path, object]:
    """The BCG seed whose first trial (results row 2) has no 2x2 table but *cells* of a reported
    log risk ratio, and the BCG codebook with the ``yi_reported``/``vi_reported`` columns."""
    raw = yaml.safe_load(BCG_CODEBOOK.read_text())
    for col in ("yi_reported", "vi_reported"):
        raw["sheets"]["results"]["columns"][col] = {"type": "numeric"}
    seed = tmp_path / "bcg"
    seed.mkdir()
    for sheet in BCG_SEED.glob("*.csv"):
        (seed / sheet.name).write_bytes(sheet.read_bytes())
    results = pd.read_csv(BCG_SEED / "results.csv", dtype=str, keep_default_na=False)
    results.loc[0, ["event1i", "n1i", "event2i", "n2i"]] = ""
    for col in ("yi_reported", "vi_reported"):
        results[col] = ""
        results.loc[0, col] = repr(cells[col]) if col in cells else ""
    results.to_csv(seed / "results.csv", index=False)
    return seed, parse_codebook(raw, "bcg.yaml + reported columns")


def test_a_reported_log_rr_stands_in_for_the_2x2_table_as_given_and_is_pooled(
    migrated_db_url: str, tmp_path: Path
) -> None:
    # BCG-01 reports only metafor's log risk ratio and variance (no events): the store takes
    # them as given, flips them like the events of the other trials, and the overall view
    # pools all 13 to metafor's dat.bcg REML estimate
    seed, codebook = _bcg_reported(tmp_path, yi_reported=BCG_YI[0], vi_reported=BCG_VI[0])
    ingest([seed], codebook=codebook, database=migrated_db_url)
    rows = query(migrated_db_url, "SELECT s.study_key, e.yi, e.vi, e.flipped, e.formula, "
                 "e.inputs FROM effect_size e JOIN result r ON r.id = e.result_id JOIN study s"
                 " ON s.id = r.study_id ORDER BY s.study_key")  # fmt: skip
    first = rows[0]
    assert first.study_key == "BCG-01" and (first.formula, bool(first.flipped)) == (
        "RR:reported", True)  # fmt: skip
    assert (first.yi, first.vi) == pytest.approx((-BCG_YI[0], BCG_VI[0]), abs=1e-12)
    assert json.loads(first.inputs) == {"yi_reported": BCG_YI[0], "vi_reported": BCG_VI[0]}
    assert {r.formula for r in rows[1:]} == {"RR:events"}
    engine = get_engine(migrated_db_url)
    try:
        create_plan_views(engine, codebook)
        overall = show_view(engine, "overall")
    finally:
        engine.dispose()
    expected = rma([-y for y in BCG_YI], BCG_VI, method="REML")
    assert overall.k_effects == 13
    assert overall.headline["estimate"] == pytest.approx(float(expected.beta[0]), abs=1e-8)
    assert overall.headline["tau2"] == pytest.approx(float(expected.tau2), abs=1e-8)
    assert overall.headline["estimate"] == pytest.approx(0.7145, abs=5e-5)  # metafor, 4 dp


@pytest.mark.parametrize(
    ("cells", "column", "rule"),
    [({"yi_reported": -0.89}, "vi_reported", "yi_reported is given without vi_reported"),
     ({"vi_reported": 0.33}, "yi_reported", "vi_reported is given without yi_reported"),
     ({"yi_reported": -0.89, "vi_reported": 0.0}, "vi", "sampling variance must be finite "
      "and > 0; RR:reported from"),
     ({"yi_reported": -12.0, "vi_reported": 0.3}, "yi", r"implausible effect size: \|log RR\| "
      "= 12 exceeds 10; RR:reported from")],
)  # fmt: skip
def test_a_half_or_implausible_reported_log_rr_is_refused_naming_the_cell(
    sqlite_url: str, tmp_path: Path, cells: dict, column: str, rule: str
) -> None:
    upgrade(sqlite_url)
    seed, codebook = _bcg_reported(tmp_path, **cells)
    with pytest.raises(ValidationError, match=rule) as caught:
        ingest([seed], codebook=codebook, database=sqlite_url)
    assert [(f["row"], f["column"]) for f in caught.value.failures] == [(2, column)]
    assert counts(sqlite_url, "study", "effect_size") == {"study": 0, "effect_size": 0}


def test_reingesting_the_same_sheets_changes_nothing(migrated_db_url: str) -> None:
    ingest([PEER_SEED], codebook=PEER_CODEBOOK, database=migrated_db_url)
    before = dump(migrated_db_url)
    report = ingest([PEER_SEED], codebook=PEER_CODEBOOK, database=migrated_db_url)
    assert not report.changed and report.revision is None
    assert dump(migrated_db_url) == before  # no revision, no change_log rows, nothing


def test_edited_sheet_updates_exactly_the_changed_records_in_history(
    migrated_db_url: str, tmp_path: Path
) -> None:
    url = migrated_db_url
    sheets = small()
    ingest([write_csv(tmp_path / "v1", sheets)], codebook=PEER_CODEBOOK, database=url)
    ids = {(r.study_key, r.result_key): r.id for r in query(
        url, "SELECT s.study_key, r.result_key, r.id FROM result r JOIN study s ON "
        "s.id = r.study_id")}  # fmt: skip
    es = {r.result_id: r.id for r in query(url, "SELECT id, result_id FROM effect_size")}
    arm = query(url, "SELECT a.id FROM arm a JOIN study s ON s.id = a.study_id WHERE "
                "s.study_key = 'S2' AND a.arm_key = 'peer'")[0].id  # fmt: skip
    uptake = query(
        url,
        "SELECT v.id FROM moderator_value v JOIN moderator m ON m.id = "
        "v.moderator_id WHERE m.name = 'uptake' AND v.arm_id = :a",
        a=arm,
    )[0].id
    sheets["results"][0]["m1i"] = 7.5  # S1 r1
    sheets["arms"][2]["uptake"] = 65  # S2 peer
    del sheets["results"][1]  # S1 r2 is withdrawn
    report = ingest([write_csv(tmp_path / "v2", sheets)], codebook=PEER_CODEBOOK, database=url,
                    message="corrected S1")  # fmt: skip
    r1, r2 = ids[("S1", "r1")], ids[("S1", "r2")]
    assert _log(url, report.revision) == sorted([
        ("effect_size", "delete", es[r2]), ("effect_size", "update", es[r1]),
        ("moderator_value", "update", uptake),
        ("result", "delete", r2), ("result", "update", r1),
    ])  # fmt: skip
    old, new = query(
        url,
        "SELECT old_values, new_values FROM change_log WHERE revision_id = :r"
        " AND table_name = 'result' AND op = 'update'",
        r=report.revision,
    )[0]
    assert json.loads(old)["m1i"] == 8.0 and json.loads(new)["m1i"] == 7.5


def test_changing_the_default_r_recomputes_exactly_the_imputed_effect_sizes(
    migrated_db_url: str,
) -> None:
    url = migrated_db_url
    ingest([PEER_SEED], codebook=PEER_CODEBOOK, database=url)
    imputed = {r.id: r.vi for r in query(url, "SELECT id, vi FROM effect_size WHERE imputed_r")}
    others = query(url, "SELECT id, yi, vi FROM effect_size WHERE NOT imputed_r ORDER BY id")
    raw = yaml.safe_load(PEER_CODEBOOK.read_text())
    raw["analysis"]["default_ri"] = 0.7
    report = apply_codebook(parse_codebook(raw, "peer_support.yaml"), database=url,
                            message="default r 0.7")  # fmt: skip
    log = _log(url, report.revision)
    assert [x for x in log if x[0] == "effect_size"] == [
        ("effect_size", "update", i) for i in sorted(imputed)
    ]
    assert {x[0] for x in log} == {"effect_size", "review"}
    after = {r.id: r for r in query(url, "SELECT id, vi, ri_used FROM effect_size WHERE "
                                    "imputed_r")}  # fmt: skip
    # SMCR's vi depends on r (its yi does not): a larger r gives a smaller variance
    assert all(after[i].ri_used == 0.7 and after[i].vi < imputed[i] for i in imputed)
    assert query(url, "SELECT id, yi, vi FROM effect_size WHERE NOT imputed_r ORDER BY id") == (
        others
    )
    again = apply_codebook(parse_codebook(raw, "peer_support.yaml"), database=url)
    assert not again.changed


def test_dry_run_counts_changes_and_writes_nothing(migrated_db_url: str) -> None:
    before = dump(migrated_db_url)
    report = ingest([PEER_SEED], codebook=PEER_CODEBOOK, database=migrated_db_url, dry_run=True)
    assert report.dry_run and report.revision is None
    assert report.changes["result"].inserted == 194
    assert report.changes["effect_size"].inserted == 194
    assert dump(migrated_db_url) == before


def test_xlsx_workbook_ingests_the_same_records_as_csv(sqlite_url: str, tmp_path: Path) -> None:
    sheets = {}
    for name in ("studies", "arms", "outcomes", "timepoints", "results"):
        with (PEER_SEED / f"{name}.csv").open(encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        sheets[name] = [{k: (v if v != "" else None) for k, v in r.items()} for r in rows]
    book = write_xlsx(tmp_path / "peer.xlsx", sheets)
    csv_url = f"sqlite:///{tmp_path / 'csv.db'}"
    for url, path in ((sqlite_url, book), (csv_url, PEER_SEED)):
        upgrade(url)
        ingest([path], codebook=PEER_CODEBOOK, database=url)
    sql = (
        "SELECT s.study_key, r.result_key, e.yi, e.vi, e.formula, e.cluster FROM effect_size"
        " e JOIN result r ON r.id = e.result_id JOIN study s ON s.id = r.study_id ORDER BY 1, 2"
    )
    assert query(sqlite_url, sql) == query(csv_url, sql)
    # and the CSV sheets re-ingested into the XLSX-made database change nothing
    assert not ingest([PEER_SEED], codebook=PEER_CODEBOOK, database=sqlite_url).changed


def _three_arm() -> dict:
    sheets = small()
    sheets["arms"].insert(
        1,
        {
            "study_key": "S1",
            "arm_key": "pro",
            "label": "online therapist",
            "role": "intervention",
            "source": "online_professional",
            "platform": "video_conferencing",
            "dosage": 8,
            "uptake": 90,
        },
    )
    sheets["results"].insert(1, {**sheets["results"][0], "result_key": "r1b", "arm1_key": "pro",
                                 "m1i": 8.2, "sd1i": 4.1, "n1i": 38})  # fmt: skip
    return sheets


def test_multi_arm_trial_effects_share_one_cluster(migrated_db_url: str, tmp_path: Path) -> None:
    ingest([write_csv(tmp_path, _three_arm())], codebook=PEER_CODEBOOK, database=migrated_db_url)
    rows = query(migrated_db_url, "SELECT s.study_key, r.result_key, e.cluster, e.n_split FROM "
                 "effect_size e JOIN result r ON r.id = e.result_id JOIN study s ON "
                 "s.id = r.study_id ORDER BY 1, 2")  # fmt: skip
    assert [(r.study_key, r.result_key, r.cluster, bool(r.n_split)) for r in rows] == [
        ("S1", "r1", "S1/control+peer+pro", False),
        ("S1", "r1b", "S1/control+peer+pro", False),
        ("S1", "r2", "S1/control+peer+pro", False),
        ("S2", "r1", "S2/peer", False),
    ]


def test_split_setting_divides_the_shared_arm_n(migrated_db_url: str, tmp_path: Path) -> None:
    raw = yaml.safe_load(PEER_CODEBOOK.read_text())
    raw["analysis"]["split_shared_arm_n"] = True
    cb = parse_codebook(raw, "peer_support.yaml")
    ingest([write_csv(tmp_path, _three_arm())], codebook=cb, database=migrated_db_url)
    rows = query(migrated_db_url, "SELECT r.result_key, e.n_split, e.inputs FROM effect_size e "
                 "JOIN result r ON r.id = e.result_id JOIN study s ON s.id = r.study_id "
                 "WHERE s.study_key = 'S1' ORDER BY 1")  # fmt: skip
    got = [(r.result_key, bool(r.n_split), json.loads(r.inputs)["n2i"]) for r in rows]
    # r1 and r1b share the control arm at post (n 40 -> 20 each); r2 (follow-up) does not
    assert got == [("r1", True, 20.0), ("r1b", True, 20.0), ("r2", False, 36.0)]


def test_new_studies_can_be_added_in_a_later_batch(migrated_db_url: str, tmp_path: Path) -> None:
    sheets = small()
    ingest([write_csv(tmp_path / "a", sheets)], codebook=PEER_CODEBOOK, database=migrated_db_url)
    batch = {name: [dict(r, study_key="S3") for r in rows if r["study_key"] == "S2"]
             for name, rows in sheets.items()}  # fmt: skip
    report = ingest([write_csv(tmp_path / "b", batch)], codebook=PEER_CODEBOOK,
                    database=migrated_db_url)  # fmt: skip
    assert report.changes["study"].inserted == 1 and report.changes["result"].deleted == 0
    keys = [r.study_key for r in query(migrated_db_url, "SELECT study_key FROM study ORDER BY 1")]
    assert keys == ["S1", "S2", "S3"]


def test_cli_ingest_by_review_name_then_codebook_apply(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    upgrade(url)
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(BCG_SEED), "--review", "bcg", "--url", url,
                                 "--author", "curator", "-m", "BCG trials"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "revision 1 written" in result.output
    # no codebook given: the database's only review and its stored codebook are used
    result = runner.invoke(app, ["ingest", str(BCG_SEED), "-d", url, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["changed"] is False
    result = runner.invoke(app, ["codebook", "apply", str(BCG_CODEBOOK), "--database", url])
    assert result.exit_code == 0 and "no changes" in result.output
    author = query(url, "SELECT author, message, command FROM revision WHERE id = 1")[0]
    assert author.author == "curator" and author.message == "BCG trials"
    assert author.command.startswith("evidence ")


_KILLED_INGEST = """
import sys, time
from pathlib import Path
import evidence.ingest.loader as loader

marker = Path(sys.argv[1])
original = loader.apply_diff

def slow(conn, table, d, **kw):
    original(conn, table, d, **kw)
    if table.name == "result":
        marker.write_text("results written, not committed")
        time.sleep(120)

loader.apply_diff = slow
from evidence.cli import main
sys.argv = ["evidence", "ingest", *sys.argv[2:]]
main()
"""


def test_a_killed_ingest_leaves_the_database_as_it_was(
    migrated_db_url: str, tmp_path: Path
) -> None:
    url = migrated_db_url
    ingest([BCG_SEED], codebook=BCG_CODEBOOK, database=url)
    before = dump(url)
    marker = tmp_path / "marker"
    script = tmp_path / "killed.py"
    script.write_text(_KILLED_INGEST)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(marker), str(PEER_SEED), "-c", str(PEER_CODEBOOK),
         "-d", url], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the ingest never reached the results"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert dump(url) == before
    # and the database is usable: the same ingest now goes through
    report = ingest([PEER_SEED], codebook=PEER_CODEBOOK, database=url)
    assert report.changes["result"].inserted == 194


def test_risk_of_bias_sheet_is_stored_per_study_and_per_result(
    migrated_db_url: str, tmp_path: Path
) -> None:
    sheets = small()
    sheets["risk_of_bias"] = [
        {"study_key": "S1", "tool": "RoB 2", "domain": "randomization", "judgement": "low"},
        {"study_key": "S1", "result_key": "r2", "tool": "RoB 2", "domain": "missing data",
         "judgement": "high", "support": "30% lost at follow-up"},
    ]  # fmt: skip
    ingest([write_csv(tmp_path / "a", sheets)], codebook=PEER_CODEBOOK, database=migrated_db_url)
    rows = query(migrated_db_url, "SELECT s.study_key, r.result_key, b.domain, b.judgement FROM "
                 "risk_of_bias b JOIN study s ON s.id = b.study_id LEFT JOIN result r ON "
                 "r.id = b.result_id ORDER BY b.domain")  # fmt: skip
    assert [tuple(r) for r in rows] == [("S1", "r2", "missing data", "high"),
                                        ("S1", None, "randomization", "low")]  # fmt: skip
    again = ingest([write_csv(tmp_path / "b", sheets)], codebook=PEER_CODEBOOK,
                   database=migrated_db_url)  # fmt: skip
    assert not again.changed
    sheets["risk_of_bias"][1]["judgement"] = "some concerns"
    edited = ingest([write_csv(tmp_path / "c", sheets)], codebook=PEER_CODEBOOK,
                    database=migrated_db_url)  # fmt: skip
    assert edited.changes["risk_of_bias"].updated == 1 and edited.changes["result"].total == 0


def test_ingest_into_a_missing_database_says_db_init_and_creates_no_file(tmp_path: Path) -> None:
    path = tmp_path / "evidence.db"
    result = CliRunner().invoke(app, ["ingest", str(BCG_SEED), "--review", "bcg",
                                      "--url", f"sqlite:///{path}"])  # fmt: skip
    assert result.exit_code == 1
    assert "create it with `evidence db init`" in result.output
    assert not path.exists()


def test_ingest_without_a_codebook_into_an_empty_database_says_how_to_give_one(
    sqlite_url: str,
) -> None:
    upgrade(sqlite_url)
    result = CliRunner().invoke(app, ["ingest", str(BCG_SEED), "--url", sqlite_url])
    assert result.exit_code == 1
    assert "holds no review yet" in result.output and "--codebook FILE" in result.output
    assert "Traceback" not in result.output


def test_ingest_reports_progress_for_every_stage_and_table(sqlite_url: str) -> None:
    upgrade(sqlite_url)
    calls: list[tuple[str, int, int]] = []
    ingest([PEER_SEED], codebook=PEER_CODEBOOK, database=sqlite_url,
           progress=lambda stage, done, total: calls.append((stage, done, total)))  # fmt: skip
    stages = list(dict.fromkeys(stage for stage, _, _ in calls))
    assert stages[:3] == ["read", "validate", "effects"]
    assert {"study", "arm", "result", "effect_size"} <= set(stages)
    last = {stage: (done, total) for stage, done, total in calls}
    assert all(done == total for done, total in last.values())
    assert last["result"] == (194, 194)
