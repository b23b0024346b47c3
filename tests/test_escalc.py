"""escalc() against metafor's escalc() (tests/golden/escalc.json, written by escalc.R)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evidence.errors import ValidationError
from evidence.stats.escalc import MEASURES, EscalcResult, escalc

GOLDEN = json.loads((Path(__file__).parent / "golden" / "escalc.json").read_text())
CASES = GOLDEN["cases"]
RTOL = 1e-10  # relative, yi and vi alike
ATOL = 1e-14  # for values that are exactly zero in metafor (p = 1, t = 0)


def _arr(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _case_id(case: dict) -> str:
    opts = ",".join(f"{k}={v}" for k, v in case["options"].items())
    return f"{case['name']}[{opts}]"


def test_golden_case_grid_is_complete() -> None:
    names = {c["name"] for c in CASES}
    means_sets = ("normand1999", "curtis1998", "morris2008_post", "edge")
    expected = set()
    for m in ("SMD", "SMDH", "MD"):
        expected |= {f"{m}/{s}" for s in means_sets}
    for m in ("SMD:t", "SMD:d", "SMD:p"):
        expected |= {f"{m}/{s}" for s in ("normand1999", "curtis1998", "edge")}
    for m in ("SMCR", "SMCC"):
        expected |= {f"{m}/{s}" for s in ("morris2008_T", "morris2008_C", "edge")}
    expected |= {f"SMCRD/{s}" for s in ("morris2008", "edge", "normand1999_baseline")}
    for m in ("OR", "RR", "RD", "OR2DL", "OR2DN"):
        expected |= {f"{m}/{s}" for s in ("bcg", "nielweise2007", "edge")}
    for m in ("COR", "ZCOR"):
        expected |= {f"{m}/{s}" for s in ("molloy2014", "mcdaniel1994", "edge")}
    assert names == expected
    assert {c["measure"] for c in CASES} == set(MEASURES)
    # every vtype of every measure, and every zero-cell rule, is exercised
    for measure, (_, vtypes) in MEASURES.items():
        seen = {c["options"].get("vtype", "LS") for c in CASES if c["measure"] == measure}
        assert seen == set(vtypes), measure
    rules = {
        (
            c["options"].get("to", "only0"),
            c["options"].get("drop00", False),
            c["options"].get("add", 0.5),
        )
        for c in CASES
        if c["measure"] == "OR"
    }
    assert rules == {
        ("only0", False, 0.5),
        ("all", False, 0.5),
        ("if0all", False, 0.5),
        ("none", False, 0.5),
        ("only0", False, 1),
        ("only0", True, 0.5),
    }
    assert len(CASES) == 177


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_escalc_matches_metafor(case: dict) -> None:
    args = {k: _arr(v) for k, v in case["args"].items()}
    res = escalc(case["measure"], **args, **case["options"])
    yi, vi = _arr(case["yi"]), _arr(case["vi"])
    np.testing.assert_array_equal(np.isnan(res.yi), np.isnan(yi))
    np.testing.assert_array_equal(np.isnan(res.vi), np.isnan(vi))
    np.testing.assert_allclose(res.yi, yi, rtol=RTOL, atol=ATOL, equal_nan=True)
    np.testing.assert_allclose(res.vi, vi, rtol=RTOL, atol=ATOL, equal_nan=True)


def test_escalc_reads_named_columns_of_data_and_appends_yi_vi() -> None:
    case = next(c for c in CASES if c["name"] == "SMD/normand1999")
    frame = pd.DataFrame({f"col_{k}": v for k, v in case["args"].items()})
    res = escalc("SMD", data=frame, **{k: f"col_{k}" for k in case["args"]})
    out = res.to_frame()
    assert list(out.columns) == [f"col_{k}" for k in case["args"]] + ["yi", "vi"]
    np.testing.assert_allclose(out["yi"], case["yi"], rtol=RTOL)


def test_escalc_result_is_frozen_with_read_only_arrays() -> None:
    res = escalc("ZCOR", ri=[0.1, 0.2], ni=[10, 20])
    assert isinstance(res, EscalcResult)
    with pytest.raises(ValueError):
        res.yi[0] = 1.0
    with pytest.raises(AttributeError):
        res.measure = "COR"  # type: ignore[misc]
    assert res.to_dict()["measure"] == "ZCOR"
    np.testing.assert_allclose(res.sei, np.sqrt(res.vi))


def test_escalc_scalars_broadcast_against_vectors() -> None:
    res = escalc("SMCR", m1i=[12.0, 14.0], m2i=10.0, sd1i=2.0, ni=30, ri=0.5)
    assert res.k == 2


@pytest.mark.parametrize(
    ("measure", "kwargs", "row", "column", "rule"),
    [
        (
            "SMD",
            dict(m1i=[1, 2], sd1i=[1, 0], n1i=[10, 10], m2i=[0, 0], sd2i=[1, 1], n2i=[10, 10]),
            2,
            "sd1i",
            "sd1i > 0",
        ),
        (
            "MD",
            dict(m1i=[1, 2], sd1i=[1, 1], n1i=[10, 1], m2i=[0, 0], sd2i=[1, 1], n2i=[10, 10]),
            2,
            "n1i",
            "n1i >= 2",
        ),
        ("OR", dict(ai=[3, 12], n1i=[10, 10], ci=[1, 2], n2i=[10, 10]), 2, "ai", "ai <= n1i"),
        ("RR", dict(ai=[3, 1], bi=[7, 9], ci=[-1, 2], di=[5, 5]), 1, "ci", "ci >= 0"),
        (
            "RD",
            dict(ai=[3, 1], bi=[7, 9], ci=[1, 2], di=[5, 5], n2i=[6, 8]),
            2,
            "n2i",
            "n2i = ci + di",
        ),
        ("COR", dict(ri=[0.5, 1.0], ni=[10, 10]), 2, "ri", "-1 < ri < 1"),
        ("ZCOR", dict(ri=[0.5, 0.2], ni=[10, 3]), 2, "ni", "ni >= 4"),
        (
            "SMCR",
            dict(m1i=[1, 2], m2i=[0, 0], sd1i=[1, 1], ni=[10, 10], ri=[0.5, -1.2]),
            2,
            "ri",
            "-1 < ri < 1",
        ),
        (
            "SMCC",
            dict(m1i=[1, 2], m2i=[0, 0], sd1i=[1, 1], sd2i=[1, 1], ni=[2, 10], ri=0.5),
            1,
            "ni",
            "ni >= 3",
        ),
        ("SMD", dict(pi=[0.04, 1.5], n1i=[10, 10], n2i=[10, 10]), 2, "pi", "-1 <= pi <= 1"),
        ("SMD", dict(pi=[0.0, 0.5], n1i=[10, 10], n2i=[10, 10]), 1, "pi", "pi != 0"),
        ("SMD", dict(ti=[np.inf, 0.5], n1i=[10, 10], n2i=[10, 10]), 1, "ti", "finite"),
    ],
)
def test_escalc_rejects_bad_values_naming_row_argument_and_rule(
    measure: str, kwargs: dict, row: int, column: str, rule: str
) -> None:
    with pytest.raises(ValidationError) as info:
        escalc(measure, **kwargs)
    failure = info.value.failures[0]
    assert (failure["row"], failure["column"]) == (row, column)
    assert rule in failure["rule"]
    assert f"row {row}" in str(info.value) and column in str(info.value)


def test_escalc_lists_every_failing_cell() -> None:
    with pytest.raises(ValidationError) as info:
        escalc("SMD", m1i=[1, 2, 3], sd1i=[-1, 1, -2], n1i=[10, 1, 10], m2i=0, sd2i=1, n2i=10)
    rows = sorted((f["row"], f["column"]) for f in info.value.failures)
    assert rows == [(1, "sd1i"), (2, "n1i"), (3, "sd1i")]
    assert "(and 2 more)" in str(info.value)


def test_escalc_names_the_data_column_of_a_bad_value() -> None:
    frame = pd.DataFrame({"sd_a": [1.0, -3.0], "m_a": [1, 2], "n_a": [5, 5]})
    with pytest.raises(ValidationError) as info:
        escalc("SMD", data=frame, m1i="m_a", sd1i="sd_a", n1i="n_a", m2i=0, sd2i=1, n2i=5)
    assert "sd_a (sd1i)" in str(info.value) and "row 2" in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        (dict(measure="XYZ"), "measure 'XYZ'"),
        (
            dict(measure="SMD", m1i=[1], sd1i=[1], n1i=[5], m2i=[0], sd2i=[1], n2i=[5], vtype="HO"),
            "vtype",
        ),
        (dict(measure="OR", ai=[1], bi=[2], ci=[3], di=[4], to="some"), "to"),
        (dict(measure="COR", ri=[0.3], ni=[10], ai=[1]), "not an argument of measure COR"),
        (dict(measure="SMD", m1i=[1], n1i=[5], n2i=[5]), "required for measure SMD"),
        (dict(measure="SMD", m1i=[1, 2], sd1i=[1], n1i=[5, 5, 5], m2i=0, sd2i=1, n2i=5), "length"),
        (dict(measure="SMD", m1i="a", sd1i=1, n1i=5, m2i=0, sd2i=1, n2i=5), "needs data="),
    ],
)
def test_escalc_rejects_bad_arguments(kwargs: dict, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        escalc(**kwargs)
    assert fragment in str(info.value) or any(fragment in f["rule"] for f in info.value.failures)


def test_escalc_smd_prefers_a_reported_d_over_the_means_like_metafor() -> None:
    res = escalc("SMD", m1i=[10.0], sd1i=[1.0], n1i=[20], m2i=[0.0], sd2i=[1.0], n2i=[20], di=[0.5])
    ref = escalc("SMD", di=[0.5], n1i=[20], n2i=[20])
    assert res.yi[0] == ref.yi[0]
