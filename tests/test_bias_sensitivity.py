"""The sensitivity suite and the three-level Egger test against metafor / clubSandwich
(tests/golden/bias.json: dat.assink2016, rho = 0.6).

Tolerances: 1e-8 relative for the univariate REML rows (1e-7 for p values and I2); 1e-6 for
everything multilevel (three-level, CHE with CR2, the Egger-type test), because metafor's
optimiser of rma.mv stops about 1e-7 short of the REML optimum that rma_mv finds (the same
tolerance as tests/test_rma_mv_golden.py); 1e-10 for the closed-form aggregation. The
suite's three-level and CHE rows (CR2, as metapsyTools' runMetaAnalysis) are checked against
tests/golden/che.json in tests/test_che.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evidence.errors import ModelError
from evidence.stats import rma_mv
from evidence.stats.bias import regtest_mv
from evidence.stats.sensitivity import aggregate_cs, sensitivity_suite

GOLDEN = json.loads((Path(__file__).parent / "golden" / "bias.json").read_text())
TL = GOLDEN["threelevel"]
SENS = GOLDEN["sensitivity"]
CHE = json.loads((Path(__file__).parent / "golden" / "che.json").read_text())
Y = np.array(TL["data"]["yi"])
V = np.array(TL["data"]["vi"])
STUDY = np.array(TL["data"]["study"])
ESID = np.array(TL["data"]["esid"])


def close(a, b, rtol, atol=1e-12):
    np.testing.assert_allclose(
        np.atleast_1d(np.asarray(a, float)),
        np.atleast_1d(np.asarray(b, float)),
        rtol=rtol,
        atol=atol,
    )


@pytest.mark.parametrize("test", ["z", "t"])
def test_regtest_mv_matches_rma_mv_with_sqrt_vi_moderator(test):
    fit = rma_mv(Y, V, random=[STUDY, ESID], test=test)
    res = regtest_mv(fit)
    g = TL[test]
    close(res.zval, g["zval"][1], 1e-6)
    close(res.pval, g["pval"][1], 1e-4)
    close([res.est, res.ci_lb, res.ci_ub], [g["beta"][0], g["ci_lb"][0], g["ci_ub"][0]], 1e-6)
    close(res.slope, g["beta"][1], 1e-6)
    if test == "t":
        close(res.dfs, g["ddf"][1], 0)
        assert "t = " in str(res) and "df = 98" in str(res)
    else:
        assert np.isnan(res.dfs) and "z = " in str(res)
    assert res.to_dict()["zval"] == pytest.approx(res.zval)
    assert list(res.to_frame().columns)[:3] == ["zval", "dfs", "pval"]


def test_aggregate_cs_matches_metafor_aggregate():
    ay, av, labels = aggregate_cs(Y, V, STUDY, 0.6)
    order = np.argsort(labels.astype(float))
    close(np.sort(ay), np.sort(SENS["combined"]["yi"]), 1e-10)
    close(np.sort(av), np.sort(SENS["combined"]["vi"]), 1e-10)
    assert ay[order].size == 17


@pytest.fixture(scope="module")
def suite():
    return sensitivity_suite(Y, V, STUDY, ESID, rob=SENS["rob"], rho=SENS["rho"])


@pytest.mark.parametrize(
    "ours,theirs",
    [
        ("overall", "overall"),
        ("combined", "combined"),
        ("lowest", "lowest"),
        ("highest", "highest"),
        ("outliers_removed", "outliers"),
        ("influence_removed", "influence"),
        ("rob_low", "rob_low"),
    ],
)
def test_sensitivity_rows_match_metafor(suite, ours, theirs):
    row, g = suite.row(ours), SENS[theirs]
    tol = 1e-8
    assert row.k == g["k"]
    close([row.g, row.ci_lb, row.ci_ub], [g["est"], g["ci_lb"], g["ci_ub"]], tol)
    close(row.pval, g["pval"], 1e-7, atol=1e-300)
    close(row.I2, g["I2"], max(tol, 1e-7))
    close([row.pi_lb, row.pi_ub], g["pi"], tol)


def test_sensitivity_removes_the_outliers_metafor_finds(suite):
    assert [i + 1 for i in suite.removed_outliers] == SENS["outliers"]["removed"]
    assert list(suite.removed_influential) == [i - 1 for i in (SENS["influence"]["removed"] or [])]


def test_sensitivity_table_prints_every_analysis_and_frames(suite):
    text = str(suite)
    for label in (
        "Overall",
        "One effect per study",
        "Lowest effect",
        "Highest effect",
        "Outliers removed",
        "Influential cases removed",
        "Low risk of bias only",
        "Three-level model",
        "CHE model (robust, CR2)",
    ):
        assert label in text
    frame = suite.to_frame()
    assert list(frame.index)[0] == "overall" and len(frame) == 9
    assert set(["k", "g", "ci_lb", "ci_ub", "pval", "I2", "pi_lb", "pi_ub"]) <= set(frame.columns)
    assert json.dumps(suite.to_dict())


def test_sensitivity_without_rob_leaves_that_row_empty_with_a_note():
    res = sensitivity_suite(Y, V, STUDY, ESID)
    row = res.row("rob_low")
    assert np.isnan(row.g) and "no risk-of-bias" in row.note
    assert "no risk-of-bias ratings given" in str(res)


def test_sensitivity_rejects_mismatched_lengths_naming_the_argument():
    with pytest.raises(ModelError, match="'study' has 3 values"):
        sensitivity_suite(Y, V, STUDY[:3])


def _che_fit():
    from evidence.stats.covariance import impute_covariance
    from evidence.stats.robust import robust

    V_che = impute_covariance(V, STUDY, SENS["rho"])
    che = rma_mv(Y, None, V=V_che, random=[STUDY, ESID])
    return robust(che, STUDY, clubSandwich=True)


def test_sensitivity_first_row_is_the_analysis_model_as_clubsandwich_reports_it():
    # the view's own model: CHE (rho = 0.6) with CR2 inference, dat.assink2016, clubSandwich
    res = sensitivity_suite(Y, V, STUDY, ESID, rho=SENS["rho"], model=_che_fit(),
                            model_label="View mental-overall (che)")  # fmt: skip
    row, g = res.rows[0], SENS["che"]
    assert row.analysis == "model" and row.label == "View mental-overall (che)"
    assert (row.k, row.studies) == (g["k"], 17)
    close([row.g, row.ci_lb, row.ci_ub], [g["est"], g["ci_lb"], g["ci_ub"]], 1e-6)
    close(row.pval, g["pval"], 1e-4)
    close(row.I2, g["I2"], 1e-6)
    # a robust fit's prediction interval as runMetaAnalysis: t on k - p df (che.json, the
    # same model unsmoothed; metafor's predict(robust(...)) takes the Satterthwaite df)
    che_raw = next(c for c in CHE["cases"] if c["id"] == "a16_che_raw")
    close([row.pi_lb, row.pi_ub], che_raw["pi"], 1e-6)
    assert str(res).splitlines()[5].startswith("View mental-overall (che)")
    assert list(res.to_frame().index)[:2] == ["model", "overall"] and len(res.rows) == 10


@pytest.mark.parametrize("kind", ["three_level", "rma"])
def test_with_model_takes_a_three_level_or_univariate_fit_and_replaces_the_row(suite, kind):
    from evidence.stats import rma

    if kind == "rma":  # dat.assink2016, rma(yi, vi) REML
        fit, g, tol = rma(Y, V), SENS["overall"], 1e-8
    else:  # rma.mv(yi, vi, random = ~ 1 | study/esid)
        fit, g, tol = rma_mv(Y, V, random=[STUDY, ESID]), SENS["threelevel"], 1e-6
    res = suite.with_model(_che_fit()).with_model(fit)
    assert [r.analysis for r in res.rows].count("model") == 1
    row = res.rows[0]
    assert row.label == "The analysis's own model" and row.k == g["k"]
    close([row.g, row.ci_lb, row.ci_ub], [g["est"], g["ci_lb"], g["ci_ub"]], tol)
    close([row.pi_lb, row.pi_ub], g["pi"], tol)
    close(row.I2, g["I2"], max(tol, 1e-7))


def test_with_model_refuses_a_meta_regression(suite):
    from evidence.stats import rma

    with pytest.raises(ModelError, match="without moderators"):
        suite.with_model(rma(Y, V, mods=np.asarray(V)))
