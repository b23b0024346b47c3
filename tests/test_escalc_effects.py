"""compute_effect / compute_effects: formula priority, direction, imputed r, shared arms.

Reference numbers are metafor's (tests/golden/escalc.json, written by escalc.R).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evidence.errors import ValidationError
from evidence.stats.effects import EffectComputation, compute_effect, compute_effects

GOLDEN = {
    (
        c["name"],
        c["options"].get("vtype", "LS"),
        c["options"].get("to", "only0"),
        c["options"].get("drop00", False),
        c["options"].get("add", 0.5),
    ): c
    for c in json.loads((Path(__file__).parent / "golden" / "escalc.json").read_text())["cases"]
}
RTOL = 1e-10


def _golden(name: str, row: int = 0) -> tuple[dict[str, float], float, float]:
    case = GOLDEN[(name, "LS", "only0", False, 0.5)]
    args = {k: v[row] for k, v in case["args"].items()}
    return args, case["yi"][row], case["vi"][row]


def test_two_arm_means_give_metafors_hedges_g() -> None:
    args, yi, vi = _golden("SMD/normand1999", 2)
    eff = compute_effect(args)
    assert eff.formula == "SMD:means" and eff.measure == "SMD"
    assert eff.yi == pytest.approx(yi, rel=RTOL) and eff.vi == pytest.approx(vi, rel=RTOL)
    assert eff.inputs == {k: float(args[k]) for k in ("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i")}
    assert not eff.flipped and not eff.imputed_r and eff.ri_used is None


def test_change_scores_use_the_smd_formula_on_the_change_columns() -> None:
    args, yi, vi = _golden("SMD/normand1999", 1)
    record = {
        "n1i": args["n1i"],
        "n2i": args["n2i"],
        "m1i_change": args["m1i"],
        "sd1i_change": args["sd1i"],
        "m2i_change": args["m2i"],
        "sd2i_change": args["sd2i"],
    }
    eff = compute_effect(record)
    assert eff.formula == "SMD:change"
    assert eff.yi == pytest.approx(yi, rel=RTOL) and eff.vi == pytest.approx(vi, rel=RTOL)


def test_controlled_pre_post_is_the_difference_of_standardized_mean_changes() -> None:
    args, yi, vi = _golden("SMCRD/morris2008", 0)
    eff = compute_effect(args)
    assert eff.formula == "SMD:prepost-controlled"
    assert eff.yi == pytest.approx(yi, rel=RTOL) and eff.vi == pytest.approx(vi, rel=RTOL)
    assert eff.ri_used == args["ri"] and not eff.imputed_r


def test_single_group_pre_post_imputes_the_default_r_and_says_so() -> None:
    case = GOLDEN[("SMCR/morris2008_T", "LS", "only0", False, 0.5)]
    a = {k: v[1] for k, v in case["args"].items()}
    record = {"m1i": a["m1i"], "m1i_pre": a["m2i"], "sd1i_pre": a["sd1i"], "n1i": a["ni"]}
    eff = compute_effect(record, default_ri=a["ri"])
    assert (eff.formula, eff.measure) == ("SMCR:prepost", "SMCR")
    assert eff.imputed_r and eff.ri_used == a["ri"]
    assert eff.yi == pytest.approx(case["yi"][1], rel=RTOL)
    assert eff.vi == pytest.approx(case["vi"][1], rel=RTOL)
    reported = compute_effect({**record, "ri": a["ri"]}, default_ri=0.1)
    assert not reported.imputed_r and reported.vi == pytest.approx(case["vi"][1], rel=RTOL)


def test_without_r_and_without_a_default_pre_post_rows_cannot_be_computed() -> None:
    record = {"m1i": 10.0, "m1i_pre": 12.0, "sd1i_pre": 3.0, "n1i": 20}
    with pytest.raises(ValidationError) as info:
        compute_effect(record, default_ri=None)
    assert "baseline scores without ri" in str(info.value)


@pytest.mark.parametrize(
    ("formula", "golden", "column"),
    [("SMD:d", "SMD:d/edge", "di"), ("SMD:t", "SMD:t/edge", "ti"), ("SMD:p", "SMD:p/edge", "pi")],
)
def test_reported_statistics_give_metafors_smd(formula: str, golden: str, column: str) -> None:
    for row in range(6):
        args, yi, vi = _golden(golden, row)
        eff = compute_effect(args)
        assert eff.formula == formula
        assert eff.yi == pytest.approx(yi, rel=RTOL, abs=1e-14)
        assert eff.vi == pytest.approx(vi, rel=RTOL)
        assert column in eff.inputs


def test_f_statistic_takes_its_sign_from_the_means_then_p_then_itself() -> None:
    args, yi, vi = _golden("SMD:t/normand1999", 2)  # t < 0: arm 2 higher
    f = args["ti"] ** 2
    base = {"fi": f, "n1i": args["n1i"], "n2i": args["n2i"]}
    by_means = compute_effect({**base, "m1i": 1.0, "m2i": 2.0})
    assert by_means.formula == "SMD:F" and by_means.inputs["sign"] == -1.0
    assert by_means.yi == pytest.approx(yi, rel=1e-9) and by_means.vi == pytest.approx(vi, rel=1e-9)
    by_p = compute_effect({**base, "pi": -0.2})
    assert by_p.formula == "SMD:F" and by_p.yi == pytest.approx(yi, rel=1e-9)
    by_itself = compute_effect({**base, "fi": -f})
    assert by_itself.yi == pytest.approx(yi, rel=1e-9)
    assert compute_effect(base).yi == pytest.approx(-yi, rel=1e-9)


def test_events_give_the_logistic_log_odds_ratio_conversion() -> None:
    case = GOLDEN[("OR2DL/nielweise2007", "LS", "only0", False, 0.5)]
    for row in (0, 4):  # a zero cell and a regular table
        a = {k: v[row] for k, v in case["args"].items()}
        eff = compute_effect(
            {"event1i": a["ai"], "n1i": a["n1i"], "event2i": a["ci"], "n2i": a["n2i"]}
        )
        assert eff.formula == "SMD:logOR"
        assert eff.yi == pytest.approx(case["yi"][row], rel=RTOL)
        assert eff.vi == pytest.approx(case["vi"][row], rel=RTOL)


def test_reported_odds_ratio_with_ci_converts_log_or_and_its_se() -> None:
    eff = compute_effect({"ori": 2.0, "ci_lb": 1.1, "ci_ub": 3.7})
    se = (math.log(3.7) - math.log(1.1)) / (2 * 1.959963984540054)
    assert eff.formula == "SMD:logOR"
    assert eff.yi == pytest.approx(math.log(2.0) * math.sqrt(3) / math.pi, rel=1e-12)
    assert eff.vi == pytest.approx(se**2 * 3 / math.pi**2, rel=1e-12)


def test_means_take_priority_over_reported_statistics() -> None:
    args, yi, _ = _golden("SMD/normand1999", 0)
    eff = compute_effect({**args, "di": 5.0, "ti": 9.0, "pi": 0.5, "event1i": 1, "event2i": 2})
    assert eff.formula == "SMD:means" and eff.yi == pytest.approx(yi, rel=RTOL)
    only_stats = compute_effect({"n1i": 10, "n2i": 10, "ti": 2.0, "pi": 0.5})
    assert only_stats.formula == "SMD:t"


def test_lower_is_better_flips_the_sign_and_records_it() -> None:
    args, yi, vi = _golden("SMD/normand1999", 0)
    eff = compute_effect(args, direction="lower")
    assert eff.flipped and eff.yi == pytest.approx(-yi, rel=RTOL) and eff.vi == pytest.approx(vi)


def test_shared_comparator_arm_divides_n2_and_records_the_divisor() -> None:
    args, _, _ = _golden("SMD/normand1999", 0)
    eff = compute_effect(args, n2_divisor=2)
    ref = compute_effect({**args, "n2i": args["n2i"] / 2})
    assert eff.inputs["n2i"] == args["n2i"] / 2 and eff.inputs["n2_divisor"] == 2.0
    assert (eff.yi, eff.vi) == (ref.yi, ref.vi)
    events = compute_effect({"event1i": 4, "n1i": 20, "event2i": 6, "n2i": 40}, n2_divisor=2)
    assert events.inputs["event2i"] == 3.0 and events.inputs["n2i"] == 20.0


def test_a_row_with_nothing_usable_names_what_is_missing() -> None:
    with pytest.raises(ValidationError) as info:
        compute_effect({"n1i": 20, "n2i": 20, "m1i": 3.0, "m2i": 4.0})
    assert "no SD and no t, p or d" in str(info.value)
    with pytest.raises(ValidationError) as info:
        compute_effect({"m1i": 3.0, "sd1i": 1.0, "ti": 2.0})
    assert "ti without n1i and n2i" in str(info.value)


@pytest.mark.parametrize(
    ("record", "column", "rule"),
    [
        ({"n1i": 20, "m1i": 1, "sd1i": 0, "n2i": 20, "m2i": 2, "sd2i": 1}, "sd1i", "sd1i > 0"),
        ({"n1i": 20, "event1i": 25, "n2i": 20, "event2i": 2}, "event1i", "event1i <= n1i"),
        ({"n1i": 1, "m1i": 1, "sd1i": 1, "n2i": 20, "m2i": 2, "sd2i": 1}, "n1i", "n1i >= 2"),
        ({"n1i": 20, "n2i": 20, "pi": 1.5}, "pi", "-1 <= pi <= 1"),
        ({"m1i": 1, "m1i_pre": 2, "sd1i_pre": 1, "n1i": 20, "ri": 1.0}, "ri", "-1 < ri < 1"),
        ({"ori": 2.0, "ci_lb": 3.0, "ci_ub": 1.0}, "ci_ub", "ci_ub > ci_lb"),
    ],
)
def test_bad_values_are_rejected_naming_column_and_rule(record, column, rule) -> None:
    with pytest.raises(ValidationError) as info:
        compute_effect(record)
    assert info.value.failures[0]["column"] == column
    assert rule in info.value.failures[0]["rule"] and column in str(info.value)


def test_bad_options_are_rejected() -> None:
    args, _, _ = _golden("SMD/normand1999", 0)
    for kwargs in (
        {"direction": "up"},
        {"default_ri": 1.5},
        {"n2_divisor": 0.5},
        {"measure": "OR"},
    ):
        with pytest.raises(ValidationError):
            compute_effect(args, **kwargs)


def _mixed_records() -> list[dict]:
    out = []
    for name in ("SMD/normand1999", "SMD:t/curtis1998", "SMD:p/edge", "SMD:d/normand1999"):
        case = GOLDEN[(name, "LS", "only0", False, 0.5)]
        n = len(case["yi"])
        out += [{k: v[i] for k, v in case["args"].items()} for i in range(n)]
    case = GOLDEN[("SMCRD/morris2008", "LS", "only0", False, 0.5)]
    out += [{k: v[i] for k, v in case["args"].items()} for i in range(5)]
    case = GOLDEN[("SMCR/edge", "LS", "only0", False, 0.5)]
    out += [
        {
            "m1i": case["args"]["m1i"][i],
            "m1i_pre": case["args"]["m2i"][i],
            "sd1i_pre": case["args"]["sd1i"][i],
            "n1i": case["args"]["ni"][i],
        }
        for i in range(5)
    ]
    case = GOLDEN[("OR/bcg", "LS", "only0", False, 0.5)]
    a = case["args"]
    out += [
        {
            "event1i": a["ai"][i],
            "n1i": a["ai"][i] + a["bi"][i],
            "event2i": a["ci"][i],
            "n2i": a["ci"][i] + a["di"][i],
        }
        for i in range(13)
    ]
    out += [{"ori": 1.5 + i / 10, "ci_lb": 1.0, "ci_ub": 3.0 + i} for i in range(3)]
    out += [{"fi": 4.0 - i, "n1i": 10 + i, "n2i": 12, "m1i": i, "m2i": 1.5} for i in range(3)]
    return [{k: v for k, v in r.items() if v is not None} for r in out]


def test_vectorised_compute_effects_agrees_with_compute_effect_row_by_row() -> None:
    records = _mixed_records()
    frame = pd.DataFrame(records)
    directions = ["lower" if i % 3 == 0 else "higher" for i in range(len(records))]
    divisors = [
        2.0 if i % 5 == 0 and r.get("n2i", 100) >= 8 else 1.0 for i, r in enumerate(records)
    ]
    assert divisors.count(2.0) >= 5
    out = compute_effects(frame, direction=directions, default_ri=0.6, n2_divisor=divisors)
    assert len(out) == len(records)
    assert set(out["formula"]) == {
        "SMD:means",
        "SMD:t",
        "SMD:p",
        "SMD:d",
        "SMD:prepost-controlled",
        "SMCR:prepost",
        "SMD:logOR",
        "SMD:F",
    }
    for i, record in enumerate(records):
        ref = compute_effect(
            record, direction=directions[i], default_ri=0.6, n2_divisor=divisors[i]
        )
        row = out.iloc[i]
        assert isinstance(ref, EffectComputation)
        assert row["formula"] == ref.formula and row["measure"] == ref.measure
        assert row["yi"] == pytest.approx(ref.yi, rel=1e-13, abs=1e-15)
        assert row["vi"] == pytest.approx(ref.vi, rel=1e-13)
        assert row["inputs"] == ref.inputs
        assert (bool(row["flipped"]), bool(row["imputed_r"])) == (ref.flipped, ref.imputed_r)
        assert (pd.isna(row["ri_used"]) and ref.ri_used is None) or row["ri_used"] == ref.ri_used


def test_compute_effects_reports_every_failing_row_with_its_sheet_row() -> None:
    frame = pd.DataFrame(
        [
            {"n1i": 20, "m1i": 1, "sd1i": 1, "n2i": 20, "m2i": 2, "sd2i": 1},
            {"n1i": 20, "m1i": 1, "sd1i": -1, "n2i": 20, "m2i": 2, "sd2i": 1},
            {"n1i": 20, "n2i": 20, "m1i": 1, "m2i": 2},
            {"n1i": 20, "event1i": 30, "n2i": 20, "event2i": 1},
        ]
    )
    with pytest.raises(ValidationError) as info:
        compute_effects(frame)
    got = [(f["row"], f["column"]) for f in info.value.failures]
    assert got == [(3, "sd1i"), (4, None), (5, "event1i")]
    assert "row 3" in str(info.value) and "(and 2 more)" in str(info.value)


def test_compute_effects_handles_a_large_sheet_in_one_call() -> None:
    frame = pd.DataFrame(_mixed_records() * 500)
    out = compute_effects(frame)
    assert len(out) == len(frame) and not out["yi"].isna().any()
    assert np.isfinite(out["vi"]).all()
