"""The CHE recipe against metapsyTools' ``threelevel.che`` and ``threelevel`` defaults
(tests/golden/che.json, written by tests/golden/che.R with metafor 3.8-1 and clubSandwich
0.5.8 following metapsyTools 1.0.14's code; data sets dat.assink2016 and
dat.konstantopoulos2011).

Tolerances: 1e-6 relative for everything (estimates, CR2 SE, Satterthwaite df, CIs, I2,
prediction intervals, sigma2), as tests/test_rma_mv_golden.py: the R fits are the best of
four optimisers, so they are the REML optimum to ~1e-8; p values on the log scale (1e-6).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from evidence.errors import ModelError
from evidence.stats import che, three_level
from evidence.stats.che import che_setting
from evidence.stats.sensitivity import sensitivity_suite

GOLDEN = json.loads((Path(__file__).parent / "golden" / "che.json").read_text())
CASES = {c["id"]: c for c in GOLDEN["cases"]}
ITER = 1e-6


def close(actual, expected, rtol=ITER, atol=0.0):
    np.testing.assert_allclose(
        np.atleast_1d(np.asarray(actual, dtype=float)),
        np.atleast_1d(np.asarray(expected, dtype=float)),
        rtol=rtol,
        atol=atol,
    )


def close_p(actual, expected, rtol=ITER):
    la = np.log(np.atleast_1d(np.asarray(actual, float)))
    lb = np.log(np.atleast_1d(np.asarray(expected, float)))
    assert np.all(np.abs(la - lb) <= rtol * np.maximum(1.0, np.abs(lb))), (actual, expected)


def fit(case):
    args = (case["yi"], case["vi"], case["study"], case["es_id"])
    mods = None
    data = None
    if case["mods"]:
        mods, data = "C(deltype)", {"deltype": np.array(case["deltype"], dtype=object)}
    if case["model"] == "threelevel":
        return three_level(*args, mods=mods, data=data)
    if mods is None:
        return che(*args, rho=case["rho"], smooth_vi=case["smooth_vi"])
    # 17 studies, two rare delinquency types: Satterthwaite df near 2, as clubSandwich's
    with pytest.warns(UserWarning, match="Few clusters"):
        return che(*args, rho=case["rho"], smooth_vi=case["smooth_vi"], mods=mods, data=data)


def test_golden_grid_is_complete():
    assert set(CASES) == {
        "a16_che", "a16_che_raw", "a16_che_rho08", "a16_che_mods", "a16_threelevel",
        "k11_che", "k11_che_raw", "k11_threelevel"}  # fmt: skip
    grid = {(c["data"], c["model"], c["smooth_vi"]) for c in GOLDEN["cases"]}
    for data in ("assink2016", "konstantopoulos2011"):
        assert {(data, "che", True), (data, "che", False), (data, "threelevel", None)} <= grid


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: c["id"])
def test_che_matches_metapsytools_recipe_with_cr2(case):
    res = fit(case)
    rob, g = res.robust, case["cr2"]
    assert rob is not None and rob.robust_type == "CR2" and res.model.k == case["k"]
    close(res.model.beta, case["beta"])
    close(res.model.sigma2, case["sigma2"])
    close(res.model.se, case["model_se"])
    close(rob.beta, case["beta"])
    close(rob.se, g["se"])
    close(rob.ddf, g["df"])
    close(rob.zval, g["tstat"])
    close(rob.ci_lb, g["ci_lb"])
    close(rob.ci_ub, g["ci_ub"])
    close_p(rob.pval, g["pval"])
    close(rob.I2, case["I2"])
    close(rob.I2_levels, case["I2_levels"])
    if case["pi"] is not None:
        close([res.pi_lb, res.pi_ub], case["pi"])
        # metafor's predict(robust(...)) uses the Satterthwaite df instead of k - p
        pr = rob.predict()
        close([pr.pi_lb[0], pr.pi_ub[0]], [case["metafor_robust"]["pi_lb"],
                                           case["metafor_robust"]["pi_ub"]])  # fmt: skip


def test_che_defaults_are_metapsytools_rho_06_smoothed_and_cr2():
    case = CASES["a16_che"]
    res = che(case["yi"], case["vi"], case["study"], case["es_id"])
    assert (res.rho, res.smooth_vi, res.small_sample) == (0.6, True, "CR2")
    close(res.result.beta, case["beta"])
    close(res.result.ci_lb, case["cr2"]["ci_lb"])
    assert res.result is res.robust


def test_smoothing_moves_the_estimate_as_in_r():
    smooth, raw = fit(CASES["a16_che"]), fit(CASES["a16_che_raw"])
    assert abs(smooth.result.beta[0] - raw.result.beta[0]) > 0.03
    close(raw.result.beta, CASES["a16_che_raw"]["beta"])


def test_che_states_its_setting_in_text_and_json():
    case = CASES["a16_che"]
    res = che(case["yi"], case["vi"], case["study"], case["es_id"])
    text = str(res)
    assert "CHE: rho = 0.6, sampling variances smoothed, CR2 (metapsyTools' defaults)" in text
    out = json.loads(json.dumps(res.to_dict()))
    assert out["che"]["smooth_vi"] is True and out["che"]["rho"] == 0.6
    assert out["robust"] == {"type": "CR2", "clusters": 17}
    close([out["pi_lb"], out["pi_ub"]], case["pi"])


def test_che_setting_names_each_difference_from_metapsytools():
    text = che_setting(0.8, False, "CR1")
    assert text == (
        "CHE: rho = 0.8, sampling variances not smoothed, CR1 "
        "(metapsyTools: rho 0.6, smoothed, CR2)"
    )
    assert "no robust variance" in che_setting(small_sample=None)


def test_che_without_small_sample_correction_reports_the_model_fit():
    case = CASES["a16_che"]
    res = che(case["yi"], case["vi"], case["study"], case["es_id"], small_sample=None)
    assert res.robust is None and res.result is res.model
    close(res.model.se, case["model_se"])
    assert "no robust variance" in res.setting


def test_che_rejects_a_missing_vi_naming_the_row():
    case = CASES["a16_che"]
    vi = np.array(case["vi"])
    vi[4] = np.nan
    with pytest.raises(ModelError, match="Row 5 has a missing"):
        che(case["yi"], vi, case["study"], case["es_id"])
    with pytest.raises(ModelError, match="'rho' must lie between"):
        che(case["yi"], case["vi"], case["study"], rho=1.0)
    with pytest.raises(ModelError, match="small_sample"):
        che(case["yi"], case["vi"], case["study"], small_sample="CR3")


@pytest.fixture(scope="module")
def suite():
    case = CASES["a16_che"]
    return sensitivity_suite(case["yi"], case["vi"], case["study"], case["es_id"], rho=0.6)


@pytest.mark.parametrize("row,case", [("three_level", "a16_threelevel"), ("che_robust", "a16_che")])
def test_sensitivity_multilevel_rows_use_cr2_as_run_meta_analysis(suite, row, case):
    r, g = suite.row(row), CASES[case]
    assert r.k == g["k"] and r.studies == 17
    close([r.g, r.ci_lb, r.ci_ub], [g["beta"], g["cr2"]["ci_lb"], g["cr2"]["ci_ub"]])
    close_p(r.pval, g["cr2"]["pval"])
    close(r.I2, g["I2"])
    close([r.pi_lb, r.pi_ub], g["pi"])


def test_sensitivity_suite_states_its_che_setting(suite):
    assert "sampling variances smoothed, CR2 (metapsyTools' defaults)" in str(suite)
    assert suite.to_dict()["smooth_vi"] is True
    raw = sensitivity_suite(*(CASES["a16_che_raw"][k] for k in ("yi", "vi", "study", "es_id")),
                            smooth_vi=False)  # fmt: skip
    close(raw.row("che_robust").g, CASES["a16_che_raw"]["beta"])
    assert "not smoothed" in str(raw)


def test_cli_che_defaults_to_the_metapsytools_recipe():
    import pandas as pd

    from evidence.cli.meta_mv import multilevel_command

    case = CASES["k11_che"]
    frame = pd.DataFrame({k: case[k] for k in ("study", "es_id", "yi", "vi")})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = json.loads(multilevel_command(frame, yi="yi", vi="vi", cluster="study",
                                            es_id="es_id", model="che", as_json=True))  # fmt: skip
        text = multilevel_command(frame, yi="yi", vi="vi", cluster="study", es_id="es_id",
                                  model="che", smooth_vi=False, robust="CR2")  # fmt: skip
    assert out["robust"]["type"] == "CR2" and out["che"]["smooth_vi"] is True
    close(out["coefficients"][0]["estimate"], case["beta"])
    close(out["coefficients"][0]["se"], case["cr2"]["se"])
    assert "not smoothed" in text and "(metapsyTools: smoothed)" in text


def _che_view_computation(**options):
    import pandas as pd

    from evidence.views.compute import compute
    from evidence.views.spec import ViewSpec, check_spec

    case = CASES["a16_che"]
    ids = [f"{s}-{e}" for s, e in zip(case["study"], case["es_id"], strict=True)]
    frame = pd.DataFrame({"es_id": ids,
                          "study": [str(s) for s in case["study"]], "yi": case["yi"],
                          "vi": case["vi"], "cluster": None, "simulated": False})  # fmt: skip
    spec, selection = check_spec(
        ViewSpec("assink", model="che", options={"rho": 0.6, **options}), {}
    )
    return compute(spec, selection, frame, {}), spec


def test_che_view_is_the_metapsytools_recipe_and_says_so_in_text_and_json():
    comp, _ = _che_view_computation()
    case = CASES["a16_che"]
    assert comp.status == "ok", comp.error
    close(comp.headline["estimate"], case["beta"])
    close([comp.headline["ci_lb"], comp.headline["ci_ub"]],
          [case["cr2"]["ci_lb"], case["cr2"]["ci_ub"]])  # fmt: skip
    close(comp.headline["I2"], case["I2"])
    close([comp.headline["pi_lb"], comp.headline["pi_ub"]], case["pi"])
    close([comp.result["overall"]["pi_lb"], comp.result["overall"]["pi_ub"]], case["pi"])
    line = comp.summary.splitlines()[1]
    assert line == "CHE: rho = 0.6, sampling variances smoothed, CR2 (metapsyTools' defaults)"
    assert comp.result["che"] == {"rho": 0.6, "smooth_vi": True, "small_sample": "CR2",
                                  "setting": line}  # fmt: skip


def test_che_view_without_smoothing_is_the_unsmoothed_recipe_and_says_so():
    comp, spec = _che_view_computation(smooth_vi="false")
    assert spec.options["smooth_vi"] is False
    close(comp.headline["estimate"], CASES["a16_che_raw"]["beta"])
    assert "not smoothed" in comp.summary.splitlines()[1]
    assert comp.result["che"]["smooth_vi"] is False


def test_che_view_refuses_a_smooth_vi_that_is_not_true_or_false():
    from evidence.errors import SelectionError

    with pytest.raises(SelectionError, match="smooth_vi must be true or false"):
        _che_view_computation(smooth_vi="sometimes")


def test_che_view_results_fitted_before_smoothing_are_stale():
    # the fingerprint before this recipe: definition, engine version, columns, row hashes
    import hashlib

    import pandas as pd

    from evidence.views.compute import ENGINE_VERSION, fingerprint

    comp, spec = _che_view_computation()
    data = pd.DataFrame({"es_id": ["1-1"], "study": ["1"], "yi": [0.1], "vi": [0.01]})
    old = hashlib.sha256()
    for part in (spec.canonical(), ENGINE_VERSION, json.dumps(list(data.columns))):
        old.update(part.encode())
    old.update(pd.util.hash_pandas_object(data.astype(object), index=False).to_numpy().tobytes())
    assert fingerprint(spec, data) != old.hexdigest()
    assert len(comp.fingerprint) == 64


def test_suite_model_row_of_a_che_view_fit_is_metapsytools_numbers(suite):
    # a CHE view hands the suite its robust fit; the row shows what runMetaAnalysis shows
    case = CASES["a16_che"]
    fit = che(case["yi"], case["vi"], case["study"], case["es_id"])
    for model in (fit.result, fit):
        row = suite.with_model(model).row("model")
        close([row.g, row.ci_lb, row.ci_ub], [case["beta"], case["cr2"]["ci_lb"],
                                              case["cr2"]["ci_ub"]])  # fmt: skip
        close(row.I2, case["I2"])
        close([row.pi_lb, row.pi_ub], case["pi"])


def test_forest_of_a_che_fit_draws_the_prediction_interval_the_view_reports():
    from evidence.plots import forest

    case = CASES["a16_che"]
    fit = che(case["yi"], case["vi"], case["study"], case["es_id"])
    fig = forest(fit.result, yi=case["yi"], vi=case["vi"], study=case["study"])
    (line,) = [a for a in fig.axes[0].findobj() if a.get_gid() == "pi"]
    close(line.get_xdata(), case["pi"])
