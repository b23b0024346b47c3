"""Metapsy files in and out of the database: mapping, direction, comparison, export, CLI.

The expected effect sizes are computed here from the textbook formulas (Hedges' g with the
exact correction and metafor's large-sample variance; the log odds ratio converted with
sqrt(3)/pi, Hasselblad & Hedges 1995), independently of the engine.
"""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from scipy.special import gammaln
from typer.testing import CliRunner

from evidence.cli import app
from evidence.db.migrate import upgrade
from evidence.errors import ValidationError
from evidence.ingest.metapsy import read_metapsy
from evidence.ingest.metapsy_export import export_metapsy
from evidence.ingest.metapsy_store import import_metapsy, review_name

HEADER = ('"";"study";"outcome_type";"instrument";"time";"time_weeks";"condition_arm1";'
          '"condition_arm2";"multi_arm1";"multi_arm2";"mean_arm1";"sd_arm1";"n_arm1";'
          '"mean_arm2";"sd_arm2";"n_arm2";"mean_change_arm1";"sd_change_arm1";"n_change_arm1";'
          '"mean_change_arm2";"sd_change_arm2";"n_change_arm2";"event_arm1";"event_arm2";'
          '"totaln_arm1";"totaln_arm2";"precalc_g";"precalc_g_se";".g";".g_se";"year";'
          '"country";"format";"rob";"percent_women"')  # fmt: skip
NA16 = ";".join(["NA"] * 16)
ROWS = [
    # study A: means at post and follow-up (BDI, lower is better)
    '"1";"A, 2010";"msd";"BDI";"post";8;"cbt";"wl";NA;NA;10,5;5;30;14;6;32;'
    + ";".join(["NA"] * 12)
    + ';-0,62;0,26;2010;"US";"group";2;60,5',
    '"2";"A, 2010";"msd";"BDI";"fu";26;"cbt";"wl";NA;NA;11;5,5;28;13;6;30;'
    + ";".join(["NA"] * 12)
    + ';-0,34;0,265;2010;"US";"group";3;60,5',
    # study B: change scores, and a response rate (more events = better)
    '"3";"B, 2015";"change";"PHQ-9";"post";6;"ipt";"cau";NA;NA;NA;NA;NA;NA;NA;NA;'
    '-6;4;40;-3;4,5;41;NA;NA;NA;NA;NA;NA;-0,70;0,23;2015;"DE";"individual";1;55',
    '"4";"B, 2015";"response";"PHQ-9";"post";6;"ipt";"cau";NA;NA;NA;NA;NA;NA;NA;NA;'
    'NA;NA;NA;NA;NA;NA;20;10;40;41;NA;NA;-0,62;0,27;2015;"DE";"individual";1;55',
    # study C: only a precomputed g (Metapsy's convention: negative = improvement here)
    '"5";"C, 2019";"other stat";"HAM-D";"post";12;"ba";"wl";NA;NA;'
    + NA16
    + ';-0,4;0,2;-0,4;0,2;2019;"NL";"group";2;70',
    # study D: moderators only, no effect data
    '"6";"D, 2020";"msd";"BDI";"post";8;"cbt";"wl";NA;NA;'
    + NA16
    + ';NA;NA;NA;NA;2020;"UK";"guided";1;50',
]


def _write(tmp_path: Path, rows: list[str], name: str = "demo-db__v1.0.0.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


def _hedges(m1, sd1, n1, m2, sd2, n2):
    df = n1 + n2 - 2
    j = math.exp(gammaln(df / 2) - math.log(math.sqrt(df / 2)) - gammaln((df - 1) / 2))
    sp = math.sqrt(((n1 - 1) * sd1**2 + (n2 - 1) * sd2**2) / df)
    g = j * (m1 - m2) / sp
    return g, 1 / n1 + 1 / n2 + g**2 / (2 * (n1 + n2))


def _logor_d(a, n1, c, n2):
    b, d = n1 - a, n2 - c
    f = math.sqrt(3) / math.pi
    return math.log(a * d / (b * c)) * f, (1 / a + 1 / b + 1 / c + 1 / d) * f**2


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    upgrade(url)
    return url


def _stored(url: str) -> dict[tuple[str, str], tuple[float, float, str, int]]:
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT s.study_key, t.label, e.yi, e.vi, e.formula, e.flipped FROM effect_size e "
            "JOIN result r ON r.id = e.result_id JOIN study s ON s.id = r.study_id "
            "JOIN timepoint t ON t.id = r.timepoint_id"
        ).fetchall()
    return {(r[0], r[1] + ("/" + r[4] if r[0] == "B, 2015" else "")): r[2:] for r in rows}


def test_import_stores_positive_improvement_for_every_kind_of_row(url: str, tmp_path: Path):
    path = _write(tmp_path, ROWS)
    result = import_metapsy(path, direction="lower", database=url)
    assert result.review == "metapsy_demo_db" == review_name(path)
    assert (result.rows, result.loaded, result.no_effect_data) == (6, 5, (7,))
    stored = _stored(url)
    g, v = _hedges(10.5, 5, 30, 14, 6, 32)  # arm 1 lower on a lower-is-better scale
    assert stored[("A, 2010", "post")][:2] == pytest.approx((-g, v), rel=1e-12)
    assert -g > 0 and stored[("A, 2010", "post")][2:] == ("SMD:means", 1)
    g, v = _hedges(-6, 4, 40, -3, 4.5, 41)
    assert stored[("B, 2015", "post/SMD:change")][:2] == pytest.approx((-g, v), rel=1e-12)
    d, v = _logor_d(20, 40, 10, 41)  # more responders in arm 1: an improvement, not flipped
    assert stored[("B, 2015", "post/SMD:logOR")][:2] == pytest.approx((d, v), rel=1e-12)
    assert stored[("B, 2015", "post/SMD:logOR")][3] == 0
    assert stored[("C, 2019", "post")][:2] == pytest.approx((0.4, 0.04), rel=1e-12)
    assert ("D, 2020", "post") not in stored
    # the file's .g (Metapsy's convention, two decimals) agrees with the store's g and SE
    cmp = result.comparison
    assert (cmp.n_compared, cmp.n_within) == (5, 5) and cmp.sign == "metapsy"
    assert "direction lower" in str(result) and "7" in str(result)


def test_direction_is_recorded_on_outcomes_and_in_the_review(url: str, tmp_path: Path):
    import_metapsy(_write(tmp_path, ROWS), direction="higher", database=url)
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        dirs = dict(
            conn.execute(
                "SELECT instrument || '/' || domain, direction FROM outcome "
                "WHERE outcome_key LIKE 'msd |%' OR outcome_key LIKE 'response |%'"
            )
        )
        description = conn.execute("SELECT codebook FROM review").fetchone()[0]
    assert set(dirs.values()) <= {"higher", "lower"}
    assert dirs["BDI/outcome"] == "higher" and dirs["PHQ-9/outcome"] == "lower"  # events
    assert "direction higher" in json.loads(description)["review"]["description"]
    assert _stored(url)[("A, 2010", "post")][0] < 0  # higher is better: arm 1 is worse


def test_moderators_are_generated_at_the_right_level(url: str, tmp_path: Path) -> None:
    import_metapsy(_write(tmp_path, ROWS), direction="lower", database=url)
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        mods = dict(conn.execute("SELECT name, level || ':' || type FROM moderator"))
        country = dict(conn.execute("SELECT study_key, country FROM study"))
    # every column the data model does not hold is kept, the computed .g columns included
    assert mods == {"format": "study:text", "rob": "effect:numeric",
                    "percent_women": "study:numeric", "outcome_type": "effect:text",
                    "g": "effect:numeric", "g_se": "effect:numeric",
                    "precalc_g": "study:numeric", "precalc_g_se": "study:numeric"}  # fmt: skip
    assert country == {"A, 2010": "US", "B, 2015": "DE", "C, 2019": "NL"}


def test_reimport_writes_nothing_and_a_new_release_updates_exactly(url: str, tmp_path: Path):
    path = _write(tmp_path, ROWS)
    import_metapsy(path, direction="lower", database=url)
    again = import_metapsy(path, direction="lower", database=url)
    assert not again.ingest.changed and again.ingest.revision is None
    # next release: A's follow-up mean corrected, C withdrawn, rows in another order
    rows = [ROWS[1].replace(";11;5,5;", ";11,5;5,5;"), ROWS[0], ROWS[2], ROWS[3], ROWS[5]]
    update = import_metapsy(_write(tmp_path, rows, "demo-db__v1.1.0.csv"), direction="lower",
                            database=url, review="metapsy_demo_db")  # fmt: skip
    changes = update.ingest.changes
    assert (changes["effect_size"].updated, changes["effect_size"].deleted) == (1, 1)
    assert changes["study"].deleted == 1 and changes["effect_size"].inserted == 0
    assert ("C, 2019", "post") not in _stored(url)


def test_export_writes_the_standard_and_reimports_to_no_change(url: str, tmp_path: Path):
    # outcome_type is part of an outcome's key: the export writes it as the file had it
    path = _write(tmp_path, ROWS)
    import_metapsy(path, direction="lower", database=url)
    out = tmp_path / "export__v1.0.0.csv"
    report = export_metapsy(out, database=url, sign="metapsy", effects="store")
    # the five results and D's row without effect data, kept with the file's layout
    assert report.rows == 6 and report.review == "metapsy_demo_db"
    text = out.read_text(encoding="utf-8")
    assert text.splitlines()[0] == HEADER.replace('"', "") and "10,5" in text
    back = read_metapsy(out).frame.set_index(["study", "time", "outcome_type"])
    stored = _stored(url)
    g_post = back.loc[("A, 2010", "post", "msd")]
    assert g_post[".g"] == pytest.approx(-stored[("A, 2010", "post")][0], rel=1e-15)
    assert g_post["mean_arm1"] == 10.5 and g_post["n_arm2"] == 32 and g_post["rob"] == "2"
    assert back.loc[("C, 2019", "post", "other stat"), "precalc_g"] == pytest.approx(-0.4)
    assert back.loc[("B, 2015", "post", "response"), "totaln_arm2"] == 41
    assert (back["format"].dropna() != "").all() and "percent_women" in back.columns
    lossless = tmp_path / "lossless__v1.0.0.csv"
    export_metapsy(lossless, database=url)  # the file's own .g: the import reads it back
    again = import_metapsy(lossless, direction="lower", database=url, review="metapsy_demo_db")
    assert not again.ingest.changed


def test_direction_file_reads_each_outcome_off_the_files_g(url: str, tmp_path: Path) -> None:
    # .g oriented as improvement: BDI rows negative in Metapsy's convention -> .g positive
    rows = [r.replace(";-0,62;", ";0,62;").replace(";-0,34;", ";0,34;") for r in ROWS[:2]]
    result = import_metapsy(_write(tmp_path, rows), direction="file", database=url)
    assert result.comparison.n_within == 2
    assert _stored(url)[("A, 2010", "post")][0] == pytest.approx(0.62, abs=0.005)


def test_invalid_file_is_refused_naming_row_and_column_and_writes_nothing(
    url: str, tmp_path: Path
) -> None:
    db = Path(url.removeprefix("sqlite:///"))
    before = db.read_bytes()
    bad = [ROWS[0].replace(";5;30;", ";-5;30;"), ROWS[1].replace('"A, 2010"', '"RÃ¼sch, 2014"')]
    with pytest.raises(ValidationError) as info:
        import_metapsy(_write(tmp_path, bad), direction="lower", database=url)
    where = {(f["row"], f["column"]) for f in info.value.failures}
    assert {(2, "sd_arm1"), (3, "study")} <= where
    assert db.read_bytes() == before
    with pytest.raises(ValidationError, match="direction must be one of lower, higher, file"):
        import_metapsy(_write(tmp_path, ROWS), direction="up", database=url)
    assert db.read_bytes() == before


def test_repaired_text_and_skipped_rows_are_reported(url: str, tmp_path: Path) -> None:
    rows = [ROWS[0].replace('"A, 2010"', '"RÃ¼sch, 2014"'), ROWS[2].replace(";4;40;", ";0;40;")]
    result = import_metapsy(_write(tmp_path, rows), direction="lower", database=url,
                            repair_text=True, skip_invalid=True)  # fmt: skip
    assert result.repaired[0]["repaired"] == "Rüsch, 2014" and result.skipped == (3,)
    assert set(_stored(url)) == {("Rüsch, 2014", "post")}


def test_cli_import_and_export(url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    path = _write(tmp_path, ROWS)
    res = runner.invoke(app, ["import", "metapsy", str(path), "--direction", "lower",
                              "--url", url, "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["loaded"] == 5 and data["comparison"]["n_within"] == 5
    assert data["ingest"]["revision"] == 1 and data["direction"] == "lower"
    res = runner.invoke(app, ["import", "metapsy", str(path), "--direction", "lower", "-d", url])
    assert res.exit_code == 0 and "no changes" in res.output
    out = tmp_path / "out.csv"
    res = runner.invoke(app, ["export", "metapsy", "-o", str(out), "--url", url])
    assert res.exit_code == 0 and "wrote 6 rows" in res.output and out.is_file()
    bad = _write(tmp_path, [ROWS[0].replace(";5;30;", ";0;30;")], "bad__v1.csv")
    res = runner.invoke(app, ["import", "metapsy", str(bad), "--direction", "lower", "-d", url])
    assert res.exit_code == 2 and "sd_arm1 > 0" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["import", "metapsy", str(path), "-d", url])
    assert res.exit_code != 0 and "--direction" in res.output
    res = runner.invoke(app, ["export", "metapsy", "-o", str(out), "--url", url,
                              "--review", "nope"])  # fmt: skip
    assert res.exit_code != 0 and "nope" in res.output


def test_export_of_a_coded_review_is_a_valid_metapsy_file(tmp_path: Path) -> None:
    from evidence.ingest.loader import ingest

    url = f"sqlite:///{tmp_path / 'seed.db'}"
    upgrade(url)
    seeds = Path(__file__).resolve().parents[1] / "seeds" / "bcg"
    ingest([seeds], review="bcg", database=url)
    out = tmp_path / "bcg__v1.csv"
    report = export_metapsy(out, database=url)
    back = read_metapsy(out).frame
    assert report.rows == len(back) == 13
    # positive = improvement (fewer TB cases with the vaccine), as the store keeps it
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        yi = [r[0] for r in conn.execute("SELECT yi FROM effect_size ORDER BY id")]
    assert sorted(np.round(back[".g"], 12)) == sorted(np.round(yi, 12))


def test_events_option_says_which_count_is_better_and_lets_file_read_binary_outcomes(
    url: str, tmp_path: Path
) -> None:
    # B's response row: 20/40 vs 10/41 events; "fewer" (attempts, relapse): arm 1 is worse
    result = import_metapsy(_write(tmp_path, ROWS), direction="lower", database=url,
                            events="fewer")  # fmt: skip
    d, v = _logor_d(20, 40, 10, 41)
    stored = _stored(url)
    assert stored[("B, 2015", "post/SMD:logOR")][:2] == pytest.approx((-d, v), rel=1e-12)
    assert stored[("B, 2015", "post/SMD:logOR")][3] == 1
    assert stored[("A, 2010", "post")][0] > 0  # scores still follow --direction
    assert result.loaded == 5
    # a binary outcome without .g: "file" cannot read its direction, and says which flag can
    no_g = [ROWS[3].replace(";-0,62;0,27;", ";NA;NA;")]
    with pytest.raises(ValidationError, match="--events more or fewer"):
        import_metapsy(_write(tmp_path, no_g, "bin__v1.csv"), direction="file", database=url)
    again = import_metapsy(_write(tmp_path, no_g, "bin__v1.csv"), direction="file",
                           database=url, events="more")  # fmt: skip
    assert again.loaded == 1 and again.ingest.changes["effect_size"].inserted == 1
    with pytest.raises(ValidationError, match="events must be one of more, fewer"):
        import_metapsy(_write(tmp_path, ROWS), direction="lower", database=url, events="up")


def test_measure_rr_pools_log_risk_ratios_of_the_event_rows(url: str, tmp_path: Path) -> None:
    # B's response row (20/40 vs 10/41) is the only row with events; .log_rr as metapsyTools
    rows = [ROWS[0], ROWS[3]]
    header = HEADER + ';".log_rr";".log_rr_se"'
    log_rr = math.log((20 / 40) / (10 / 41))
    se = math.sqrt(1 / 20 - 1 / 40 + 1 / 10 - 1 / 41)
    body = [rows[0] + ";NA;NA", rows[1] + f";{log_rr:.6f};{se:.6f}".replace(".", ",")]
    path = tmp_path / "bin__v1.csv"
    path.write_text("\n".join([header, *body]) + "\n", encoding="utf-8")
    result = import_metapsy(path, direction="lower", database=url, measure="RR")
    assert (result.loaded, result.not_binary) == (1, (2,))
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        yi, vi, measure = conn.execute("SELECT yi, vi, measure FROM effect_size").fetchone()
        codebook = json.loads(conn.execute("SELECT codebook FROM review").fetchone()[0])
    assert (yi, vi) == pytest.approx((log_rr, se**2), rel=1e-12) and measure == "RR"
    assert codebook["analysis"]["measure"] == "RR"
    assert (result.comparison.n_compared, result.comparison.n_within) == (1, 1)
    fewer = import_metapsy(path, direction="lower", database=url, measure="RR",
                           events="fewer", review="fewer")  # fmt: skip
    assert fewer.loaded == 1 and "measure RR" in str(fewer)
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        flipped = conn.execute(
            "SELECT e.yi FROM effect_size e JOIN result r ON r.id = e.result_id JOIN study s "
            "ON s.id = r.study_id JOIN review v ON v.id = s.review_id WHERE v.name = 'fewer'"
        ).fetchone()[0]
    assert flipped == pytest.approx(-log_rr, rel=1e-12)  # more events in arm 1: worse
    with pytest.raises(ValidationError, match="measure must be one of SMD, RR, OR"):
        import_metapsy(path, direction="lower", database=url, measure="HR")
