"""rma_mv / robust / wald_test / impute_covariance: failures, edge cases, structure, CLI."""

from __future__ import annotations

import json
import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest

from evidence.cli.meta_mv import multilevel_command
from evidence.errors import ModelError
from evidence.stats import BlockCovariance, impute_covariance, rma_mv, robust, wald_test


def simulate(m: int, seed: int = 7, size_max: int = 6):
    rng = np.random.default_rng(seed)
    n = rng.integers(1, size_max + 1, m)
    study = np.repeat(np.arange(m), n)
    k = study.size
    vi = rng.uniform(0.01, 0.1, k)
    yi = 0.3 + rng.normal(0, 0.3, m)[study] + rng.normal(0, 0.15, k) + rng.normal(0, np.sqrt(vi))
    x = rng.normal(size=m)[study]
    return pd.DataFrame({"study": study, "es": np.arange(k), "yi": yi, "vi": vi, "x": x})


def test_rma_mv_never_allocates_a_k_by_k_array():
    df = simulate(4000, size_max=9)
    k = len(df)
    tracemalloc.start()
    res = rma_mv("yi", "vi", random=("study", "es"), data=df, mods="x")
    rob = robust(res, df["study"], clubSandwich=True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert k > 19000
    # one dense k x k float matrix would need k^2 * 8 bytes (about 3 GB here)
    assert peak < 0.02 * k * k * 8
    assert max(g.n for g in res._model.blocks.groups) == 9
    assert rob.converged and np.all(np.isfinite(rob.se))


def test_block_covariance_matches_its_dense_form_and_the_formula():
    vi = np.array([0.1, 0.2, 0.3, 0.05, 0.4])
    cl = np.array(["b", "a", "b", "a", "c"])
    V = impute_covariance(vi, cl, r=0.5)
    D = V.to_dense()
    assert D[0, 2] == pytest.approx(0.5 * np.sqrt(0.1 * 0.3), rel=1e-15)
    assert D[0, 1] == 0.0 and D[4, 4] == 0.4
    np.testing.assert_allclose(V.diagonal(), vi, rtol=1e-15)  # sqrt(v)^2, as clubSandwich
    Vs = impute_covariance(vi, cl, r=0.5, smooth_vi=True)
    assert Vs.to_dense()[0, 0] == pytest.approx(0.2, rel=1e-15)
    sub = V.subset(np.array([True, False, True, True, True]))
    np.testing.assert_array_equal(sub.to_dense(), D[np.ix_([0, 2, 3, 4], [0, 2, 3, 4])])


def test_single_cluster_is_a_clear_error_and_few_clusters_warn():
    df = simulate(30)
    res = rma_mv("yi", "vi", random=("study", "es"), data=df)
    with pytest.raises(ModelError, match="at least two clusters"):
        robust(res, np.zeros(len(df)))
    few = (df["study"] % 3).to_numpy()
    with pytest.warns(UserWarning, match="Few clusters"):
        rob = robust(res, few)
    assert rob.n_clusters == 3 and np.all(rob.ddf == 2)


def test_cr2_refuses_clusters_that_split_an_outer_random_effect():
    df = simulate(30)
    res = rma_mv("yi", "vi", random=("study", "es"), data=df)
    with pytest.raises(ModelError, match="nested within the clusters"):
        robust(res, df["es"] % 5, clubSandwich=True)


def test_bad_inputs_fail_with_one_clear_sentence():
    df = simulate(20)
    with pytest.raises(ModelError, match="method"):
        rma_mv("yi", "vi", random=("study", "es"), data=df, method="DL")
    with pytest.raises(ModelError, match="non-negative"):
        rma_mv(df["yi"], -df["vi"], random=(df["study"], df["es"]))
    with pytest.raises(ModelError, match="no column 'nope'"):
        rma_mv("yi", "vi", random=("nope", "es"), data=df)
    with pytest.raises(ModelError, match="Too few effect sizes"):
        rma_mv([0.1], [0.01], random=([1], [1]))
    V = impute_covariance(df["vi"], df["es"] % 7, r=0.6)
    with pytest.raises(ModelError, match="outermost random-effects level"):
        rma_mv("yi", V=V, random=("study", "es"), data=df)
    res = rma_mv("yi", "vi", random=("study", "es"), data=df)
    with pytest.raises(ModelError, match="clubSandwich=True"):
        wald_test(robust(res, df["study"]), [0])


def test_missing_values_are_dropped_with_metafors_warning():
    df = simulate(25)
    df.loc[3, "yi"] = np.nan
    with pytest.warns(UserWarning, match="NAs omitted"):
        res = rma_mv("yi", "vi", random=("study", "es"), data=df)
    assert res.k == len(df) - 1
    assert "Rows with NAs omitted from model fitting." in res.warnings
    rob = robust(res, df["study"])  # the full-length cluster column is subset like the data
    assert rob.n_clusters == df["study"].nunique()


def test_fixed_zero_component_gives_the_two_level_model():
    df = simulate(40)
    two = rma_mv("yi", "vi", random=("study", "es"), data=df, sigma2=(0, None))
    assert two.sigma2[0] == 0.0 and two.sigma2_fixed == (True, False)
    assert two.parms == 2
    # a model with one level per study row equals a model with a single level
    one = rma_mv("yi", "vi", random=("es",), data=df)
    np.testing.assert_allclose(one.sigma2[0], two.sigma2[1], rtol=1e-8)
    np.testing.assert_allclose(one.beta, two.beta, rtol=1e-8)


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("levels", [2, 3, 1])
def test_closed_form_three_level_path_equals_the_block_path(reml, levels):
    """The compound-symmetric closed forms (diagonal V, levels = studies or rows) give the
    likelihood, its gradient and information of the general block algebra."""
    from evidence.stats._mv_blocks import Blocks
    from evidence.stats._mv_fit import evaluate

    df = simulate(50, seed=11)
    k = len(df)
    study = df["study"].to_numpy()
    codes = [study, np.arange(k), np.arange(k)][:levels]
    rng = np.random.default_rng(5)
    X = np.column_stack([np.ones(k), df["x"], rng.integers(0, 2, k)])
    fast = Blocks(study, codes, df["vi"].to_numpy(), None, X, df["yi"].to_numpy())
    slow = Blocks(
        study, codes, df["vi"].to_numpy(), None, X, df["yi"].to_numpy(), closed_form=False
    )
    assert fast.fast is not None and slow.fast is None
    s2 = rng.uniform(0.01, 0.2, levels)
    for free in (None, np.arange(levels) == 0):
        a = evaluate(fast, s2, reml, derivs=True, free=free)
        b = evaluate(slow, s2, reml, derivs=True, free=free)
        for key in ("ll", "ll_ml", "ll_reml", "beta", "vb", "rss", "logdet", "grad", "info"):
            np.testing.assert_allclose(getattr(a, key), getattr(b, key), rtol=1e-10, err_msg=key)


def test_block_covariance_rejects_blocks_of_the_wrong_shape():
    with pytest.raises(ModelError, match="shape"):
        BlockCovariance.from_blocks([1, 1, 2], [np.eye(3), np.eye(1)])


def test_cli_json_has_the_univariate_keys_plus_the_multilevel_ones():
    df = simulate(30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = multilevel_command(
            df,
            yi="yi",
            vi="vi",
            cluster="study",
            es_id="es",
            model="che",
            robust="CR2",
            mods="x",
            as_json=True,
        )
    out = json.loads(text)
    keys = {
        "model",
        "method",
        "test",
        "level",
        "k",
        "p",
        "coefficients",
        "tau2",
        "se_tau2",
        "tau2_ci_lb",
        "tau2_ci_ub",
        "I2",
        "H2",
        "QE",
        "QE_df",
        "QEp",
        "QM",
        "QM_df",
        "QMp",
        "pi_lb",
        "pi_ub",
        "converged",
        "iterations",
        "warnings",
        "sigma2",
        "sigma2_names",
        "I2_levels",
        "robust",
    }
    assert set(out) == keys | {"che"}  # the CHE recipe adds its settings
    assert out["robust"] == {"type": "CR2", "clusters": 30}
    assert out["model"] == "che" and out["test"] == "t"
    assert set(out["coefficients"][0]) == {
        "name",
        "estimate",
        "se",
        "stat",
        "df",
        "pval",
        "ci_lb",
        "ci_ub",
    }
    assert all(c["df"] is not None for c in out["coefficients"])
    assert out["sigma2_names"] == ["study", "study/es"]
    assert len(out["I2_levels"]) == 2


def test_cli_text_is_the_metafor_layout_and_unknown_options_fail():
    df = simulate(30)
    text = multilevel_command(df, yi="yi", vi="vi", cluster="study")
    assert "Multivariate Meta-Analysis Model (k = " in text and "Variance Components:" in text
    with pytest.raises(ModelError, match="--model"):
        multilevel_command(df, yi="yi", vi="vi", cluster="study", model="four-level")
    with pytest.raises(ModelError, match="--cluster"):
        multilevel_command(df, yi="yi", vi="vi", cluster="site")
