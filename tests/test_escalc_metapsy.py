"""Metapsy interchange: reading, validation, g and SE, comparison with .g, writing back.

Real releases are read from shared/data/metapsy beside the repository (Metapsy project,
metapsy.org, ODC-By 1.0; see tests/_metapsy.py); the tests skip with a reason when that
folder is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _metapsy import DATA, needs_data

from evidence.errors import NotFoundError, ValidationError
from evidence.ingest.metapsy import (
    compare_with_file,
    infer_sign,
    metapsy_effect_sizes,
    read_metapsy,
    write_metapsy,
)
from evidence.stats.escalc import escalc

HEADER = (
    '"";"study";"condition_arm1";"condition_arm2";"instrument";"time";"time_weeks";'
    '"mean_arm1";"mean_arm2";"sd_arm1";"sd_arm2";"n_arm1";"n_arm2";"event_arm1";'
    '"event_arm2";"totaln_arm1";"totaln_arm2";"precalc_g";"precalc_g_se";".g";".g_se"'
)


def _file(tmp_path: Path, rows: list[str], name: str = "demo__v1.0.0.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return path


GOOD = [
    '"1";"A, 2020";"cbt";"wl";"phq";"post";8;"10,5";"13,2";"4,1";"4,4";40;42;NA;NA;NA;NA;NA;NA;'
    '"-0,62";"0,23"',
    '"2";"B, 2021";"cbt";"cau";"bdi";"post";12;NA;NA;NA;NA;NA;NA;12;5;30;31;NA;NA;"-0,7";"0,3"',
    '"3";"C, 2019";"ipt";"wl";"hamd";"post";NR;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;"0,4";"0,2";'
    '"0,4";"0,2"',
    '"4";"D, 2018";"cbt";"wl";"phq";"post";6;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA;NA',
]


def test_reader_parses_decimal_commas_na_and_nr(tmp_path: Path) -> None:
    mf = read_metapsy(_file(tmp_path, GOOD))
    f = mf.frame
    assert list(f["file_row"]) == [2, 3, 4, 5]
    assert f.loc[0, "mean_arm1"] == 10.5 and f.loc[1, "event_arm1"] == 12.0
    assert np.isnan(f.loc[2, "time_weeks"]) and mf.not_reported == 1
    assert f.loc[0, "study"] == "A, 2020" and "Unnamed: 0" not in f.columns
    assert mf.skipped == () and mf.name == "demo__v1.0.0"


def test_effect_sizes_follow_metapsys_priority_and_use_escalc(tmp_path: Path) -> None:
    f = read_metapsy(_file(tmp_path, GOOD)).frame
    est = metapsy_effect_sizes(f)
    assert list(est["g_formula"].iloc[:3]) == ["SMD:means", "SMD:logOR", "precalc"]
    assert pd.isna(est["g_formula"].iloc[3]) and np.isnan(est["g"].iloc[3])
    ref = escalc("SMD", m1i=10.5, sd1i=4.1, n1i=40, m2i=13.2, sd2i=4.4, n2i=42)
    assert est["g"].iloc[0] == pytest.approx(ref.yi[0], rel=1e-12)
    assert est["g_se"].iloc[0] == pytest.approx(ref.sei[0], rel=1e-12)
    # events: more events in arm 1 give a negative g, Metapsy's orientation
    ref = escalc("OR2DL", ai=12, n1i=30, ci=5, n2i=31)
    assert est["g"].iloc[1] == pytest.approx(-ref.yi[0], rel=1e-12)
    assert (est["g"].iloc[2], est["g_se"].iloc[2]) == (0.4, 0.2)
    rev = metapsy_effect_sizes(f, sign="reversed")
    assert rev["g"].iloc[0] == -est["g"].iloc[0] and rev["g"].iloc[2] == 0.4


def test_metapsy_formulas_reproduce_esc_hedges_g(tmp_path: Path) -> None:
    f = read_metapsy(_file(tmp_path, GOOD)).frame
    est = metapsy_effect_sizes(f, formulas="metapsy")
    sp = np.sqrt((39 * 4.1**2 + 41 * 4.4**2) / 80)
    d = (10.5 - 13.2) / sp
    assert est["g"].iloc[0] == pytest.approx(d * (1 - 3 / (4 * 82 - 9)), rel=1e-13)
    assert est["g_se"].iloc[0] == pytest.approx(np.sqrt(82 / (40 * 42) + d**2 / 164), rel=1e-13)


@pytest.mark.parametrize(
    ("row", "column", "rule"),
    [
        (
            '"1";"A";"x";"y";"i";"post";8;"10,5";"13,2";"0";"4,4";40;42;NA;NA;NA;NA;NA;NA;NA;NA',
            "sd_arm1",
            "sd_arm1 > 0",
        ),
        (
            '"1";"A";"x";"y";"i";"post";8;"10,5";"13,2";"4";"4,4";1;42;NA;NA;NA;NA;NA;NA;NA;NA',
            "n_arm1",
            "n_arm1 >= 2",
        ),
        (
            '"1";"A";"x";"y";"i";"post";8;NA;NA;NA;NA;NA;NA;31;5;30;31;NA;NA;NA;NA',
            "event_arm1",
            "event_arm1 <= totaln_arm1",
        ),
        (
            '"1";"A";"x";"y";"i";"post";-2;NA;NA;NA;NA;NA;NA;3;5;30;31;NA;NA;NA;NA',
            "time_weeks",
            "time_weeks >= 0",
        ),
        (
            '"1";"A";"x";"y";"i";"post";8;1844;234;"7,88";"8,29";70;91;NA;NA;NA;NA;NA;NA;NA;NA',
            "mean_arm1",
            "standardized difference",
        ),
        (
            '"1";"A";"x";"y";"i";"post";8;"10,5";NA;"4";NA;40;NA;NA;NA;NA;NA;NA;NA;NA;NA',
            "mean_arm2",
            "complete means",
        ),
        (
            '"1";"A";"x";"y";"i";"post";8;"1O,5";"13,2";"4";"4,4";40;42;NA;NA;NA;NA;NA;NA;NA;NA',
            "mean_arm1",
            "a number",
        ),
        (
            '"1";"A";"x";"y";"i";"post";8;NA;NA;NA;NA;NA;NA;3;5;30;31;NA;NA;"-8,07e14";"0,1"',
            ".g",
            "|.g| <= 10",
        ),
    ],
)
def test_reader_refuses_a_file_with_a_bad_row_naming_row_column_rule(
    tmp_path: Path, row: str, column: str, rule: str
) -> None:
    path = _file(tmp_path, [GOOD[0], row])
    with pytest.raises(ValidationError) as info:
        read_metapsy(path)
    failure = info.value.failures[0]
    assert (failure["row"], failure["column"], failure["file"]) == (3, column, path.name)
    assert rule in failure["rule"]
    assert "row 3" in str(info.value) and "nothing was read" in str(info.value)


def test_skip_invalid_leaves_out_exactly_the_failing_rows(tmp_path: Path) -> None:
    bad = '"9";"Z";"x";"y";"i";"post";8;"10,5";"13,2";"-1";"4,4";40;42;NA;NA;NA;NA;NA;NA;NA;NA'
    mf = read_metapsy(_file(tmp_path, [GOOD[0], bad, GOOD[1]]), skip_invalid=True)
    assert mf.skipped == (3,)
    assert [f["row"] for f in mf.failures] == [3]
    assert list(mf.frame["file_row"]) == [2, 4]


def test_reader_rejects_missing_files_and_non_metapsy_tables(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        read_metapsy(tmp_path / "absent.csv")
    other = tmp_path / "other.csv"
    other.write_text('"study";"x"\n"A";1\n', encoding="utf-8")
    with pytest.raises(ValidationError, match="not a Metapsy file"):
        read_metapsy(other)


def test_written_file_reads_back_identically(tmp_path: Path) -> None:
    mf = read_metapsy(_file(tmp_path, GOOD))
    est = metapsy_effect_sizes(mf.frame)
    out = tmp_path / "out.csv"
    write_metapsy(mf.frame, out, effects=est)
    text = out.read_text(encoding="utf-8")
    assert ";" in text.splitlines()[0] and "10,5" in text and "NA" in text
    back = read_metapsy(out).frame
    assert list(back["study"]) == list(mf.frame["study"])
    np.testing.assert_allclose(back[".g"], est["g"], rtol=1e-15)
    for col in ("mean_arm1", "event_arm1", "precalc_g", "time_weeks"):
        np.testing.assert_array_equal(back[col].to_numpy(), mf.frame[col].to_numpy())


def test_comparison_counts_rows_within_rounding_and_lists_the_others(tmp_path: Path) -> None:
    f = read_metapsy(_file(tmp_path, GOOD)).frame.copy()
    est = metapsy_effect_sizes(f)
    f[".g"] = np.round(est["g"], 2)
    f[".g_se"] = np.round(est["g_se"], 2)
    f.loc[1, ".g"] = 0.9
    cmp = compare_with_file(f)
    assert (cmp.n_compared, cmp.n_within) == (3, 2)
    assert list(cmp.disagreeing["file_row"]) == [3]
    assert cmp.max_abs_diff_g == pytest.approx(abs(0.9 - est["g"].iloc[1]))
    assert "1 rows disagree" in str(cmp) and cmp.to_dict()["n_within"] == 2


@needs_data
def test_real_release_reproduces_metapsys_g_and_se_to_rounding_error() -> None:
    # inpatients 22.2.1: means, events and change scores; .g stored at full precision
    mf = read_metapsy(DATA / "databases" / "depression-inpatients__v22.2.1.csv")
    assert infer_sign(mf.frame) == "metapsy"
    exact = compare_with_file(mf.frame, formulas="metapsy", tolerance=1e-10)
    assert exact.n_compared == 142 and exact.n_within == 142
    ours = compare_with_file(mf.frame)  # escalc: exact correction, LS variance
    assert ours.n_within >= 110 and ours.max_abs_diff_g < 0.2


@needs_data
def test_real_release_with_reversed_sign_is_recognised() -> None:
    mf = read_metapsy(DATA / "databases" / "ptsd-psyctr__v23.0.3.csv")
    assert infer_sign(mf.frame) == "reversed"
    cmp = compare_with_file(mf.frame, sign="reversed", formulas="metapsy", tolerance=1e-10)
    assert cmp.n_within == cmp.n_compared == 131


@needs_data
@pytest.mark.parametrize(
    ("name", "row", "column"),
    [
        ("databases/depression-anxiety-transdiagnostic__v22.0.5.csv", 2, "mean_arm1"),
        ("databases/depression-psiloctr__v25.1.2.csv", 2, "time_weeks"),
        ("databases/depression-psyctr__v24.0.2.csv", 708, "sd_arm1"),
        ("versions/gambling-psyctr__v24.0.2.csv", 2, ".g"),
        # text encoded twice: "RÃ¼sch, 2014" would become a second study next to "Rüsch, 2014"
        ("versions/peer-support__v23.0.3.csv", 57, "study"),
        ("databases/borderline-psyctr__v23.0.1.csv", 2, "full_ref"),
        # an msd row carrying only the events of another outcome (an MDD diagnosis)
        ("versions/peer-support__v23.0.2.csv", 13, "outcome_type"),
    ],
)
def test_real_world_errors_in_releases_are_caught(name: str, row: int, column: str) -> None:
    with pytest.raises(ValidationError) as info:
        read_metapsy(DATA / name)
    assert (row, column) in {(f["row"], f["column"]) for f in info.value.failures}
    assert str(info.value).startswith(name.split("/")[1])
    mf = read_metapsy(DATA / name, skip_invalid=True)
    assert row in mf.skipped and row not in set(mf.frame["file_row"])
    assert set(mf.skipped) == {f["row"] for f in info.value.failures}


@needs_data
def test_every_current_release_reads_or_is_refused_with_failures() -> None:
    for path in sorted((DATA / "databases").glob("*.csv")):
        try:
            mf = read_metapsy(path)
        except ValidationError as err:
            assert err.failures, path.name
            continue
        est = metapsy_effect_sizes(mf.frame, sign=infer_sign(mf.frame))
        assert len(est) == len(mf.frame), path.name
