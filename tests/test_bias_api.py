"""Bias and case diagnostics: result objects, renderings, errors and edge cases."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from evidence.errors import ModelError
from evidence.stats import (
    cumul,
    fsn,
    influence,
    leave1out,
    pet_peese,
    ranktest,
    regtest,
    rma,
    trimfill,
)
from evidence.stats._bias_kendall import kendall_test, pkendall

GOLDEN = json.loads((Path(__file__).parent / "golden" / "bias.json").read_text())
BCG = GOLDEN["datasets"]["bcg"]


@pytest.fixture(scope="module")
def fit():
    return rma(BCG["yi"], BCG["vi"])


def test_results_are_frozen_with_read_only_arrays(fit):
    res = regtest(fit)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.zval = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        res.beta[0] = 1.0
    tf = trimfill(fit, side="right")
    with pytest.raises(ValueError):
        tf.yi[0] = 1.0
    inf = influence(fit)
    with pytest.raises(ValueError):
        inf.cook_d[0] = 1.0


def test_every_result_has_json_dict_and_frame(fit):
    results = [
        regtest(fit),
        ranktest(fit),
        trimfill(fit),
        fsn(fit, type="Rosenberg"),
        pet_peese(fit),
        leave1out(fit),
        influence(fit),
        cumul(fit),
    ]
    for res in results:
        d = res.to_dict()
        assert json.loads(json.dumps(d)) == d
        frame = res.to_frame()
        assert len(frame) >= 1
        assert str(res).strip()
    assert list(leave1out(fit).to_frame().index[:2]) == ["1", "2"]
    assert trimfill(fit).to_frame()["fill"].sum() == 1


def test_leave1out_row_equals_a_refit_without_that_study(fit):
    res = leave1out(fit)
    y, v = np.delete(BCG["yi"], 4), np.delete(BCG["vi"], 4)
    ref = rma(y, v)
    assert res.estimate[4] == pytest.approx(float(ref.beta[0]), rel=1e-12)
    assert res.tau2[4] == pytest.approx(ref.tau2, rel=1e-12)


def test_cumul_last_row_is_the_full_model_and_order_is_stable(fit):
    res = cumul(fit, order=BCG["order"])
    assert res.estimate[-1] == pytest.approx(float(fit.beta[0]), rel=1e-10)
    assert list(res.index) == list(np.argsort(BCG["order"], kind="stable"))
    dec = cumul(fit, order=BCG["order"], decreasing=True)
    assert dec.slab[0] == str(int(np.argmax(BCG["order"])) + 1)


def test_influence_flags_agree_with_the_stated_criteria(fit):
    inf = influence(fit)
    k, p = fit.k, fit.p
    crit = (
        (np.abs(inf.dffits) > 3 * math.sqrt(p / (k - p)))
        | (sps.chi2.cdf(inf.cook_d, p) > 0.5)
        | (inf.hat > 3 * p / k)
        | np.any(np.abs(inf.dfbs) > 1, axis=1)
    )
    assert inf.is_infl.tolist() == crit.tolist()
    assert inf.weight.sum() == pytest.approx(100)
    assert inf.hat.sum() == pytest.approx(p)


def test_diagnostics_need_a_model_without_moderators():
    fm = rma(BCG["yi"], BCG["vi"], mods=np.array(BCG["ablat"]))
    for f in (leave1out, cumul, trimfill):
        with pytest.raises(ModelError, match="without moderators"):
            f(fm)
    with pytest.raises(ModelError, match="without moderators"):
        pet_peese(fm)


def test_regtest_keeps_moderators_and_needs_sample_sizes_for_ni():
    fm = rma(BCG["yi"], BCG["vi"], mods=np.array(BCG["ablat"]))
    res = regtest(fm)
    assert res.names == ("intrcpt", "X1", "sei") or res.names[-1] == "sei"
    assert res.est is None
    with pytest.raises(ModelError, match="'ni'"):
        regtest(fm, "ni")
    with pytest.raises(ModelError, match="'ni' has 3 values"):
        regtest(fm, "ninv", ni=[1, 2, 3])
    with pytest.raises(ModelError, match="Unknown predictor"):
        regtest(fm, "sqrtni")


def test_fsn_rejects_unknown_type_and_missing_variances():
    with pytest.raises(ModelError, match="Unknown type"):
        fsn([0.1, 0.2], [0.01, 0.02], type="REM")
    with pytest.raises(ModelError, match="'vi' is needed"):
        fsn([0.1, 0.2])
    assert fsn([0.2, 0.4], type="Orwin").fsnum == 2
    assert math.isinf(fsn([0.2, 0.4], type="Orwin", target=0).fsnum)


def test_trimfill_rejects_a_bad_side(fit):
    with pytest.raises(ModelError, match="'side'"):
        trimfill(fit, side="up")


@pytest.mark.parametrize("n", [5, 12, 30])
def test_exact_kendall_p_matches_scipy_exact_without_ties(n):
    rng = np.random.default_rng(n)
    x, y = rng.normal(size=n), rng.normal(size=n)
    tau, p, exact = kendall_test(x, y)
    ref = sps.kendalltau(x, y, method="exact")
    assert exact
    assert tau == pytest.approx(ref.statistic, rel=1e-12)
    assert p == pytest.approx(ref.pvalue, rel=1e-10)


def test_kendall_uses_the_tie_corrected_normal_approximation_with_ties_and_large_n():
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=40), 1)
    y = rng.normal(size=40)
    tau, p, exact = kendall_test(x, y)
    ref = sps.kendalltau(x, y, method="asymptotic")
    assert not exact
    assert tau == pytest.approx(ref.statistic, rel=1e-12)
    assert p == pytest.approx(ref.pvalue, rel=1e-10)
    big = rng.normal(size=400)
    _, p_big, exact_big = kendall_test(big, big + rng.normal(size=400))
    assert not exact_big and 0 <= p_big < 1e-6


def test_pkendall_is_the_mahonian_distribution():
    # permutations of 4 by number of inversions: 1, 3, 5, 6, 5, 3, 1 (of 24)
    assert [pkendall(q, 4) * 24 for q in range(7)] == pytest.approx([1, 4, 9, 15, 20, 23, 24])
    assert pkendall(-1, 6) == 0.0 and pkendall(15, 6) == 1.0
    # symmetry: P(T <= q) = 1 - P(T <= N - q - 1), N = n(n - 1)/2
    assert pkendall(20, 10) == pytest.approx(1 - pkendall(45 - 20 - 1, 10), rel=1e-12)


def test_diagnostics_with_user_weights_refit_with_those_weights():
    w = np.arange(1, 14, dtype=float)
    fw = rma(BCG["yi"], BCG["vi"], weights=w)
    res = leave1out(fw)
    ref = rma(np.delete(BCG["yi"], 0), np.delete(BCG["vi"], 0), weights=np.delete(w, 0))
    assert res.estimate[0] == pytest.approx(float(ref.beta[0]), rel=1e-12)
    inf = influence(fw)
    assert np.all(np.isfinite(inf.dffits))


def test_regtest_points_a_multilevel_fit_to_regtest_mv():
    from evidence.stats import rma_mv

    d = GOLDEN["threelevel"]["data"]
    fit3 = rma_mv(d["yi"], d["vi"], random=[d["study"], d["esid"]])
    with pytest.raises(ModelError, match="regtest_mv"):
        regtest(fit3)


def test_sensitivity_with_knapp_hartung_runs_every_analysis():
    from evidence.stats import sensitivity_suite

    d = GOLDEN["threelevel"]["data"]
    res = sensitivity_suite(d["yi"], d["vi"], d["study"], d["esid"], test="knha")
    assert all(np.isfinite(r.g) for r in res.rows if r.analysis != "rob_low")
    overall = rma(d["yi"], d["vi"], test="knha")
    assert res.row("overall").ci_lb == pytest.approx(float(overall.ci_lb[0]), rel=1e-12)
