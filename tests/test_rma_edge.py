"""rma: input handling, failures, results API, design matrices (no R needed).

Numbers that come from metafor are in tests/test_rma_golden.py; here the claims are about
behaviour: clear errors, recorded warnings, frozen results, O(k p^2) algebra identities.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from evidence.errors import ConvergenceError, ModelError
from evidence.stats import confint, predict, rma, subgroup
from evidence.stats._design import check_design, factor_levels, model_matrix
from evidence.stats._rma_linalg import WLS, zeroin

# dat.bcg log risk ratios and variances (metafor escalc(measure="RR"))
YI = np.array([-0.8893113, -1.5853887, -1.3480731, -1.4415512, -0.2175473, -0.7861155,
               -1.6208982, 0.0119523, -0.4694176, -1.3713448, -0.3393926, 0.4459134,
               -0.0173139])  # fmt: skip
VI = np.array([0.3255848, 0.1943047, 0.4155069, 0.0200144, 0.0512101, 0.0069049, 0.2230172,
               0.0039630, 0.0564342, 0.0730477, 0.0124754, 0.5325035, 0.0714034])  # fmt: skip
ABLAT = np.array([44, 55, 42, 52, 13, 44, 19, 13, 27, 42, 18, 33, 33], dtype=float)
ALLOC = np.array(["random", "random", "random", "random", "alternate", "alternate", "random",
                  "random", "random", "systematic", "systematic", "systematic", "systematic"],
                 dtype=object)  # fmt: skip
DATA = {"yi": YI, "vi": VI, "ablat": ABLAT, "alloc": ALLOC}


# --------------------------------------------------------------------------- input handling
def test_rma_drops_rows_with_missing_values_and_records_it():
    yi = YI.copy()
    yi[3] = np.nan
    res = rma(yi, VI)
    assert res.k == 12 and res.k_all == 13
    assert "Studies with NAs omitted from model fitting." in res.warnings
    assert not res.not_na[3] and res.not_na.sum() == 12
    assert res.tau2 == pytest.approx(rma(np.delete(YI, 3), np.delete(VI, 3)).tau2, rel=1e-14)


def test_rma_drops_rows_with_a_missing_moderator():
    ablat = ABLAT.copy()
    ablat[0] = np.nan
    res = rma(YI, VI, mods=ablat)
    assert res.k == 12 and "Studies with NAs omitted from model fitting." in res.warnings


@pytest.mark.parametrize("what", ["yi", "vi"])
def test_rma_rejects_infinite_values_naming_the_row(what):
    yi, vi = YI.copy(), VI.copy()
    (yi if what == "yi" else vi)[4] = np.inf
    with pytest.raises(ModelError, match=rf"'{what}' has an infinite value at row 5"):
        rma(yi, vi)


def test_rma_rejects_unknown_method_and_test():
    with pytest.raises(ModelError, match="Unknown method 'XX'"):
        rma(YI, VI, method="XX")
    with pytest.raises(ModelError, match="Unknown test 'q'"):
        rma(YI, VI, test="q")


def test_rma_rejects_mismatched_lengths():
    with pytest.raises(ModelError, match="'vi' has 12 values but 'yi' has 13"):
        rma(YI, VI[:-1])


def test_rma_needs_vi_or_sei_and_accepts_sei():
    with pytest.raises(ModelError, match="'vi' or the standard errors 'sei'"):
        rma(YI)
    assert rma(YI, sei=np.sqrt(VI)).tau2 == pytest.approx(rma(YI, VI).tau2, rel=1e-12)


def test_rma_rejects_more_parameters_than_effects():
    with pytest.raises(ModelError, match="more parameters to estimate \\(3\\) than effects"):
        rma(YI[:2], VI[:2], mods=ABLAT[:2])


def test_rma_equal_effects_allows_p_equal_k():
    res = rma(YI[:2], VI[:2], mods=ABLAT[:2], method="EE")
    assert res.QE == 0 and res.QEp == 1
    assert res.fitted == pytest.approx(YI[:2], abs=1e-10)


def test_rma_drops_a_constant_moderator_with_metafors_warning():
    res = rma(YI, VI, mods=np.column_stack([ABLAT, np.full(13, 2.0)]))
    assert res.names == ("intrcpt", "X1")
    assert res.dropped == ("X2",)
    assert "Redundant predictors dropped from the model." in res.warnings


def test_rma_recognises_a_column_of_ones_as_the_intercept():
    X = np.column_stack([ABLAT, np.ones(13)])
    res = rma(YI, VI, mods=X, intercept=False)
    assert res.names[0] == "intrcpt" and res.int_incl
    ref = rma(YI, VI, mods=ABLAT)
    assert res.beta == pytest.approx(ref.beta, rel=1e-12)


def test_rma_coerces_the_intercept_when_there_is_no_column():
    res = rma(YI, VI, intercept=False)
    assert res.int_only and any("Coerced intercept" in w for w in res.warnings)


def test_rma_with_one_effect_returns_it_with_tau2_zero():
    res = rma([0.5], [0.1], test="knha")
    assert res.beta[0] == 0.5 and res.tau2 == 0 and res.test == "z"
    assert math.isnan(res.se_tau2)
    with pytest.raises(ModelError, match="k = 1"):
        confint(res)


def test_rma_identical_effects_give_tau2_zero_and_i2_zero():
    res = rma(np.full(6, 0.3), np.linspace(0.1, 0.3, 6))
    assert res.tau2 == 0 and res.I2 == 0 and res.QE == pytest.approx(0, abs=1e-20)
    assert res.beta[0] == pytest.approx(0.3)


def test_rma_zero_variance_fails_clearly_for_dl_and_warns_otherwise():
    vi = VI.copy()
    vi[0] = 0
    with pytest.raises(ModelError, match="DL estimator cannot be used"):
        rma(YI, vi, method="DL")
    res = rma(YI, vi, method="REML")
    assert "There are outcomes with non-positive sampling variances." in res.warnings
    assert math.isnan(res.QE) and math.isnan(res.I2)


def test_rma_zero_variance_with_zero_tau2_is_a_division_by_zero_error():
    with pytest.raises(ModelError, match="Division by zero"):
        rma(np.full(4, 0.2), np.array([0.0, 0.1, 0.1, 0.1]), method="REML")


def test_rma_negative_variances_are_set_to_zero_with_a_warning():
    vi = VI.copy()
    vi[2] = -0.1
    res = rma(YI, vi, method="HE")
    assert res.vi[2] == 0 and "Negative sampling variances constrained to zero." in res.warnings


def test_rma_warns_about_a_huge_ratio_of_variances():
    vi = VI.copy()
    vi[0] = 1e-9
    res = rma(YI, vi, method="DL")
    assert any("Ratio of largest to smallest" in w for w in res.warnings)


def test_fisher_scoring_that_cannot_converge_raises_convergence_error():
    with pytest.raises(ConvergenceError, match="did not converge in 1 iterations"):
        rma(YI, VI, method="REML", control={"maxiter": 1, "threshold": 1e-300})


def test_paule_mandel_with_a_too_small_search_interval_raises():
    with pytest.raises(ConvergenceError, match="tau2_max"):
        rma(YI, VI, method="PM", control={"tau2_max": 0.01})


def test_unknown_control_option_is_rejected():
    with pytest.raises(ModelError, match="Unknown control option 'foo'"):
        rma(YI, VI, control={"foo": 1})


# --------------------------------------------------------------------------- result API
def test_result_is_frozen_with_read_only_arrays():
    res = rma(YI, VI)
    with pytest.raises(AttributeError):
        res.tau2 = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        res.beta[0] = 1.0
    assert not res.vb.flags.writeable and not res.yi.flags.writeable


def test_to_dict_is_json_safe_and_complete():
    res = rma(YI, VI, mods="ablat + C(alloc)", data=DATA, test="knha")
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    keys = ("beta", "se", "zval", "pval", "ci_lb", "ci_ub", "vb", "tau2", "se_tau2", "I2", "H2",
            "QE", "QEp", "QM", "QMp", "k", "p", "logLik", "deviance", "AIC", "BIC", "AICc",
            "converged", "iterations", "warnings", "names", "coefficients")  # fmt: skip
    assert set(keys) <= set(d)
    assert d["coefficients"][1]["name"] == "ablat" and d["coefficients"][1]["df"] == 9


def test_to_frame_and_html_show_the_coefficients():
    res = rma(YI, VI, mods="ablat", data=DATA)
    frame = res.to_frame()
    assert list(frame.index) == ["intrcpt", "ablat"]
    assert frame.loc["ablat", "estimate"] == res.beta[1]
    assert "<table>" in res._repr_html_() and "ablat" in res._repr_html_()


def test_summary_adds_fit_statistics_to_the_printed_layout():
    res = rma(YI, VI)
    text = res.summary()
    assert "logLik" in text and f"{res.logLik:.4f}" in text


def test_fit_statistics_follow_the_method():
    reml, ml = rma(YI, VI, method="REML"), rma(YI, VI, method="ML")
    assert reml.logLik == reml.fit_stats["REML"]["logLik"]
    assert ml.logLik == ml.fit_stats["ML"]["logLik"]
    assert ml.AIC == pytest.approx(-2 * ml.logLik + 2 * 2)


def test_predict_rejects_newmods_for_an_intercept_only_model():
    with pytest.raises(ModelError, match="without moderators"):
        predict(rma(YI, VI), newmods=[1.0])


def test_predict_accepts_a_mapping_of_moderator_values():
    res = rma(YI, VI, mods="ablat + C(alloc)", data=DATA)
    pr = predict(res, {"ablat": [20, 40], "allocrandom": 1, "allocsystematic": 0})
    assert pr.pred == pytest.approx(res.beta[0] + res.beta[1] * np.array([20, 40]) + res.beta[2])
    with pytest.raises(ModelError, match="gives no values for: allocsystematic"):
        predict(res, {"ablat": [20], "allocrandom": [1]})


def test_confint_pl_needs_ml_or_reml():
    with pytest.raises(ModelError, match="ML or REML"):
        confint(rma(YI, VI, method="DL"), type="PL")


def test_btt_rejects_indices_that_do_not_exist():
    with pytest.raises(ModelError, match="no existing coefficient"):
        rma(YI, VI, mods=ABLAT, btt=[5])


def test_subgroup_needs_two_levels_and_drops_missing_groups():
    by = ALLOC.copy()
    by[0] = None
    s = subgroup(YI, VI, by)
    assert sum(s.fits[lev].k for lev in s.levels) == 12
    assert s.warnings and "missing" in s.warnings[0]
    with pytest.raises(ModelError, match="at least two levels"):
        subgroup(YI, VI, np.array(["a"] * 13, dtype=object))


def test_meta_regression_never_forms_a_k_by_k_matrix():
    """k = 200,000 with two moderators: a dense P would need 320 GB; the fit is instant."""
    rng = np.random.default_rng(3)
    k = 200_000
    x = rng.normal(size=(k, 2))
    vi = rng.uniform(0.01, 0.1, k)
    yi = 0.2 + x @ np.array([0.1, -0.2]) + rng.normal(0, np.sqrt(0.05 + vi))
    res = rma(yi, vi, mods=x, test="knha")
    assert res.beta == pytest.approx([0.2, 0.1, -0.2], abs=0.01)
    assert res.tau2 == pytest.approx(0.05, abs=0.005)


# --------------------------------------------------------------------------- algebra
def test_wls_traces_equal_the_dense_formulas():
    rng = np.random.default_rng(0)
    k = 30
    X = np.column_stack([np.ones(k), rng.normal(size=k), rng.normal(size=k)])
    w = rng.uniform(0.5, 3, k)
    d1, d2 = rng.uniform(0.1, 1, k), rng.uniform(0.1, 1, k)
    y = rng.normal(size=k)
    W = np.diag(w)
    P = W - W @ X @ np.linalg.inv(X.T @ W @ X) @ X.T @ W
    fit = WLS(X, w)
    assert fit.yPy(y) == pytest.approx(y @ P @ y, rel=1e-12)
    assert fit.yPPy(y) == pytest.approx(y @ P @ P @ y, rel=1e-12)
    assert fit.tr_PD(d1) == pytest.approx(np.trace(P @ np.diag(d1)), rel=1e-12)
    dense = np.trace(P @ np.diag(d1) @ P @ np.diag(d2))
    assert fit.tr_PDPD(d1, d2) == pytest.approx(dense, rel=1e-12)
    assert fit.tr_PDPD() == pytest.approx(np.sum(P * P), rel=1e-12)
    assert fit.logdet() == pytest.approx(np.linalg.slogdet(X.T @ W @ X)[1], rel=1e-12)


def test_zeroin_finds_the_root_to_the_requested_tolerance():
    out = zeroin(lambda x: x**3 - 2, 0.0, 5.0, tol=1e-12)
    assert out.converged and out.root == pytest.approx(2 ** (1 / 3), abs=1e-11)
    with pytest.raises(ValueError, match="opposite sign"):
        zeroin(lambda x: x * x + 1, -1.0, 1.0)


# --------------------------------------------------------------------------- design matrices
def test_model_matrix_names_columns_as_metafor():
    X, names = model_matrix("ablat * C(alloc)", DATA, k=13)
    assert names == ["intrcpt", "ablat", "allocrandom", "allocsystematic",
                     "ablat:allocrandom", "ablat:allocsystematic"]  # fmt: skip
    assert X.shape == (13, 6)
    assert X[:, 4] == pytest.approx(ABLAT * (ALLOC == "random"))


def test_model_matrix_without_intercept_codes_every_level():
    _, names = model_matrix("0 + alloc", DATA, k=13)
    assert names == ["allocalternate", "allocrandom", "allocsystematic"]
    _, names = model_matrix("~ ablat - 1", DATA, k=13)
    assert names == ["ablat"]


def test_model_matrix_reports_an_unknown_column():
    with pytest.raises(ModelError, match="Unknown column 'latitude' in 'mods'"):
        model_matrix("latitude", DATA, k=13)


def test_model_matrix_evaluates_arithmetic_inside_I():
    X, names = model_matrix("I(ablat - 30) + log(ablat)", DATA, k=13)
    assert names == ["intrcpt", "I(ablat - 30)", "log(ablat)"]
    assert X[:, 1] == pytest.approx(ABLAT - 30) and X[:, 2] == pytest.approx(np.log(ABLAT))


def test_factor_levels_sort_as_r_does():
    assert factor_levels(np.array(["b", "A", "a", "B"], dtype=object)) == ["a", "A", "b", "B"]
    assert factor_levels(np.array([10, 2, 1])) == [1, 2, 10]


def test_check_design_can_fail_instead_of_dropping():
    X = np.column_stack([np.ones(5), np.arange(5.0), 2 * np.arange(5.0)])
    assert check_design(X, ["a", "b", "c"]).dropped == ["c"]
    with pytest.raises(ModelError, match="'c' are linear combinations"):
        check_design(X, ["a", "b", "c"], drop=False)


def test_predict_prints_as_metafor():
    """metafor: print(predict(rma(yi, vi, data = dat.bcg)))."""
    from pathlib import Path

    golden = json.loads((Path(__file__).parent / "golden" / "rma.json").read_text())
    cols = golden["datasets"]["bcg"]["columns"]  # full-precision escalc values
    text = str(predict(rma(np.array(cols["yi"]), np.array(cols["vi"]))))
    assert text == (
        "\n    pred     se   ci.lb   ci.ub   pi.lb  pi.ub \n"
        " -0.7145 0.1798 -1.0669 -0.3622 -1.8667 0.4376 \n"
    )
