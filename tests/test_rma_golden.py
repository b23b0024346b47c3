"""rma against metafor 3.8-1: golden values written by tests/golden/rma.R.

Each test names the metafor call it reproduces. Tolerances are named below by kind of
quantity; where one is looser than 1e-8, the reason is written beside it.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from evidence.errors import EvidenceError
from evidence.stats import anova, confint, predict, rma, subgroup

GOLDEN = Path(__file__).parent / "golden" / "rma.json"

#: Closed-form estimators (EE, DL, HE, HS, HSk, SJ): a fixed sequence of floating-point
#: operations, so results agree with metafor to rounding error.
RTOL_CLOSED = 1e-10
#: Iterative estimators (ML, REML, EB by Fisher scoring; PM, PMM and Q-profile bounds by
#: Brent's root finder) and everything that depends on their tau2.
RTOL_ITER = 1e-8
#: Absolute floor for quantities that are (near) zero, e.g. a tau2 at the boundary (metafor's
#: Fisher scoring stops at tau2 ~ 1e-7, where relative agreement is meaningless).
ATOL = 1e-10
#: p values are tail areas of the statistics: a relative error e in a statistic x becomes
#: about x^2 e / 2 in a chi-square tail area (Q = 152 gives p = 2e-26), so they are compared
#: on the log scale with this tolerance.
RTOL_LOGP = 1e-8
#: The interaction model ablat * year: the product column (~1e5) next to the intercept makes
#: X'WX ill-conditioned (cond(X) ~ 7e7, cond(X'WX) ~ 5e15); metafor solves it by QR of
#: sqrt(W) X with R's LINPACK routines, we by LAPACK's QR, and the two agree to ~2e-7 only.
RTOL_ILL = 1e-5

#: Tail areas below this underflow differently (R returns subnormal numbers such as 1e-321
#: where scipy returns 0); both are "0 to double precision".
TINY_P = 1e-300
#: Raw calendar years next to an intercept (bcg ~ ablat + year): cond(X) ~ 5e5, so
#: cond(X'WX) ~ 2e11 and even closed-form coefficients agree to ~4e-10 only; compared with
#: RTOL_ITER.
MODERATE_COND = ("bcg~ablat+year|",)

CLOSED = ("EE", "DL", "HE", "HS", "HSk", "SJ")
ILL_CONDITIONED = ("bcg~ablat*year",)


@cache
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


def vec(x) -> np.ndarray:
    """A JSON value (scalar, list, None) as a float array with NaN for null."""
    arr = np.atleast_1d(np.array(x, dtype=object))
    return np.array([np.nan if v is None else float(v) for v in arr], dtype=float)


def frame(name: str) -> dict[str, np.ndarray]:
    """A golden data set as a mapping of column name to array (text columns as objects)."""
    cols = golden()["datasets"][name]["columns"]
    out: dict[str, np.ndarray] = {}
    for key, values in cols.items():
        values = values if isinstance(values, list) else [values]
        if all(v is None or isinstance(v, int | float) for v in values):
            out[key] = vec(values)
        else:
            out[key] = np.array(values, dtype=object)
    return out


def rtol_for(method: str, case: str = "") -> float:
    if any(case.startswith(c) for c in ILL_CONDITIONED):
        return RTOL_ILL
    if any(case.startswith(c) for c in MODERATE_COND):
        return RTOL_ITER
    return RTOL_CLOSED if method in CLOSED else RTOL_ITER


def assert_close(ours, theirs, rtol: float, what: str, atol: float = ATOL) -> None:
    a = np.atleast_1d(np.asarray(ours, dtype=float))
    b = vec(theirs)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    # jsonlite writes NA, NaN and +-Inf all as null: a null matches any non-finite value
    both_nan = ~np.isfinite(a) & np.isnan(b)
    assert np.array_equal(~np.isfinite(a), np.isnan(b)), f"{what}: NaN pattern {a} vs {b}"
    with np.errstate(invalid="ignore"):
        ok = both_nan | (np.abs(a - b) <= rtol * np.abs(b) + atol) | (a == b)
    assert ok.all(), f"{what}: {a} vs metafor {b} (rtol {rtol:g})"


def assert_pval_close(ours, theirs, rtol: float, what: str) -> None:
    a = np.atleast_1d(np.asarray(ours, dtype=float))
    b = vec(theirs)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    assert np.array_equal(np.isnan(a), np.isnan(b)), f"{what}: NaN pattern {a} vs {b}"
    m = ~np.isnan(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        la, lb = np.log(a[m]), np.log(b[m])
        ok = (
            (a[m] == b[m])
            | (np.abs(la - lb) <= max(rtol, RTOL_LOGP) * np.maximum(1, np.abs(lb)))
            | ((a[m] < TINY_P) & (b[m] < TINY_P))
        )
    assert ok.all(), f"{what}: {a} vs metafor {b}"


# --------------------------------------------------------------------------- guard
def test_golden_grid_is_complete():
    g = golden()
    assert g["metafor_version"] == "3.8.1"
    assert g["methods"] == ["EE", "DL", "HE", "HS", "HSk", "SJ", "ML", "REML", "EB", "PM", "PMM"]
    assert g["tests"] == ["z", "t", "knha", "adhoc"]
    datasets = {"bcg", "normand1999", "hackshaw1998", "raudenbush1985", "bangertdrowns2004",
                "molloy2014", "curtis1998"}  # fmt: skip
    assert set(g["datasets"]) == datasets
    expected = {f"{d}|{m}|{t}" for d in datasets for m in g["methods"] for t in g["tests"]}
    assert set(g["grid"]) == expected
    assert len(g["metareg"]) == 10 * 11 * 4
    assert len(g["btt"]) == 4
    assert len(g["predict_newmods"]) == 3
    assert len(g["subgroup"]) == 9
    assert len(g["anova"]) == 4
    assert len(g["printed"]) == 7
    edge = {"k1_REML", "k1_REML_knha", "na_yi_REML", "huge_ratio_REML", "na_moderator_REML",
            "constant_moderator_REML", "constant_moderator_DL_knha", "p_gt_k_REML",
            "constant_moderator_only_REML", "p_eq_k_EE"}  # fmt: skip
    edge |= {f"k2_{m}{t}" for m in ("REML", "DL", "PM", "ML", "EE") for t in ("", "_knha")}
    edge |= {f"identical_yi_{m}" for m in ("REML", "DL", "ML", "PM", "SJ", "HE")}
    edge |= {f"vi_zero_{m}" for m in ("REML", "DL", "HE", "ML")}
    assert set(g["edge"]) == edge
    assert all("common_beta" in c for c in g["subgroup"].values())
    confints = [c for k, c in g["grid"].items() if "confint_qp" in c]
    assert len(confints) == 7 * 10  # every data set x every random-effects method (test z)
    assert sum("confint_pl" in c for c in g["grid"].values()) == 7 * 2


# --------------------------------------------------------------------------- comparisons
def _check_fit(res, g: dict, rtol: float, case: str) -> None:
    assert list(res.names) == g["names"], case
    for f in ("beta", "se", "zval", "ci_lb", "ci_ub", "tau2", "se_tau2", "I2", "H2", "QE", "QM"):
        assert_close(getattr(res, f), g[f], rtol, f"{case} {f}")
    vb = [v for row in g["vb"] for v in (row if isinstance(row, list) else [row])]
    assert_close(np.ravel(res.vb), vb, rtol, f"{case} vb")
    for f in ("pval", "QEp", "QMp"):
        assert_pval_close(getattr(res, f), g[f], rtol, f"{case} {f}")
    assert_close(res.dfs, g["dfs"], 0, f"{case} dfs")
    assert_close(res.QMdf, g["QMdf"], 0, f"{case} QMdf")
    assert res.k == g["k"] and res.p == g["p"] and res.parms == g["parms"]
    assert_close(res.s2w, g["s2w"], rtol, f"{case} s2w")
    if g["R2"] is not None or res.R2 is not None:
        assert_close(res.R2, g["R2"], rtol, f"{case} R2")
    for kind in ("ML", "REML"):
        for stat, value in g["fit_stats"][kind].items():
            assert_close(res.fit_stats[kind][stat], value, rtol, f"{case} {kind} {stat}")
    pr = predict(res)
    for f in ("pred", "se", "ci_lb", "ci_ub"):
        assert_close(getattr(pr, f), g["predict"][f], rtol, f"{case} predict {f}")
    if not res.is_ee:
        for f in ("pi_lb", "pi_ub"):
            assert_close(getattr(pr, f), g["predict"][f], rtol, f"{case} predict {f}")
    assert list(res.warnings) == [w.replace("\n", " ") for w in g["warnings"]]


GRID = sorted(golden()["grid"])


@pytest.mark.parametrize("case", GRID)
def test_rma_matches_metafor_on_grid(case):
    """Seven data sets x 11 estimators x 4 tests, metafor rma(yi, vi, method, test)."""
    g = golden()["grid"][case]
    name, method, test = case.split("|")
    d = frame(name)
    if "error" in g:
        with pytest.raises(EvidenceError):
            rma(d["yi"], d["vi"], method=method, test=test)
        return
    res = rma(d["yi"], d["vi"], method=method, test=test)
    rtol = rtol_for(method)
    _check_fit(res, g, rtol, case)
    if "confint_qp" in g:
        ci = confint(res)
        for f in ("tau2", "tau", "I2", "H2"):
            assert_close(ci.random[f], g["confint_qp"][f], RTOL_ITER, f"{case} QP {f}")
        assert (ci.lb_sign, ci.ub_sign) == (g["confint_qp"]["lb_sign"], g["confint_qp"]["ub_sign"])
    if "confint_pl" in g:
        ci = confint(res, type="PL")
        for f in ("tau2", "tau", "I2", "H2"):
            assert_close(ci.random[f], g["confint_pl"][f], RTOL_ITER, f"{case} PL {f}")


@pytest.mark.parametrize("case", sorted(golden()["metareg"]))
def test_meta_regression_matches_metafor(case):
    """Meta-regressions with continuous, categorical and interaction moderators."""
    g = golden()["metareg"][case]
    d = frame(g["data"])
    if "error" in g:
        with pytest.raises(EvidenceError):
            rma(d["yi"], d["vi"], mods=g["mods"], data=d, method=g["method"], test=g["test"])
        return
    res = rma(d["yi"], d["vi"], mods=g["mods"], data=d, method=g["method"], test=g["test"])
    _check_fit(res, g, rtol_for(g["method"], case), case)


@pytest.mark.parametrize("case", sorted(golden()["btt"]))
def test_btt_subset_test_matches_metafor(case):
    g = golden()["btt"][case]
    d = frame("bcg")
    test = case.split("|")[2]
    res = rma(d["yi"], d["vi"], mods="ablat + C(alloc)", data=d, test=test, btt=[3, 4])
    assert res.btt == (3, 4)
    _check_fit(res, g, RTOL_ITER, case)
    by_name = rma(d["yi"], d["vi"], mods="ablat + C(alloc)", data=d, test=test, btt="alloc")
    assert by_name.btt == (3, 4) and by_name.QM == res.QM


@pytest.mark.parametrize("index", range(3))
def test_predictions_at_new_moderator_values_match_metafor(index):
    c = golden()["predict_newmods"][index]
    d = frame(c["data"])
    res = rma(d["yi"], d["vi"], mods=c["mods"], data=d, method=c["method"], test=c["test"])
    pr = predict(res, newmods=np.array(c["newmods"]), level=c["level"])
    for f in ("pred", "se", "ci_lb", "ci_ub", "pi_lb", "pi_ub"):
        assert_close(getattr(pr, f), c["result"][f], RTOL_ITER, f"newmods {index} {f}")


@pytest.mark.parametrize("case", sorted(golden()["subgroup"]))
def test_subgroup_analysis_matches_metafor(case):
    c = golden()["subgroup"][case]
    d = frame(c["data"])
    s = subgroup(d["yi"], d["vi"], d[c["by"]], method=c["method"])
    rtol = rtol_for(c["method"])
    assert list(s.levels) == c["levels"]
    for lev in s.levels:
        fit, ref = s.fits[lev], c["subgroups"][lev]
        assert fit.k == ref["k"]
        for f in ("beta", "se", "tau2", "QE", "I2"):
            assert_close(getattr(fit, f), ref[f], rtol, f"{case} {lev} {f}")
    assert_close(s.Q_between, c["Q_between"], rtol, f"{case} Q_between")
    assert s.df_between == c["df_between"]
    assert_pval_close(s.p_between, c["p_between"], rtol, f"{case} p_between")
    assert_close(s.mixed.QM, c["mixed_QM"], rtol, f"{case} mixed QM")
    assert_pval_close(s.mixed.QMp, c["mixed_QMp"], rtol, f"{case} mixed QMp")
    assert_close(s.mixed.tau2, c["mixed_tau2"], rtol, f"{case} mixed tau2")
    # per-level estimates under the common tau2: rma(yi, vi, mods = ~ factor(by) - 1)
    assert_close(s.common.beta, c["common_beta"], rtol, f"{case} common beta")
    assert_close(s.common.se, c["common_se"], rtol, f"{case} common se")


@pytest.mark.parametrize("index", range(4))
def test_likelihood_ratio_test_matches_metafor(index):
    c = golden()["anova"][index]
    d = frame(c["data"])
    full = rma(d["yi"], d["vi"], mods=c["full"], data=d, method=c["method"])
    reduced = rma(d["yi"], d["vi"], mods=c["reduced"] or None, data=d, method=c["method"])
    a = anova(full, reduced)
    r = c["result"]
    assert (a.parms_f, a.parms_r) == (r["parms_f"], r["parms_r"])
    assert_close(a.LRT, r["LRT"], RTOL_ITER, "LRT")
    assert_pval_close(a.pval, r["pval"], RTOL_ITER, "LRT pval")
    assert_close(a.R2, r["R2"], RTOL_ITER, "R2")
    names = ("logLik", "deviance", "AIC", "BIC", "AICc")
    assert_close([a.fit_stats_f[n] for n in names], r["fit_f"], RTOL_ITER, "full fit stats")
    assert_close([a.fit_stats_r[n] for n in names], r["fit_r"], RTOL_ITER, "reduced fit stats")
    assert anova(reduced, full).LRT == a.LRT  # order of the arguments is free


@pytest.mark.parametrize("index", range(7))
def test_printed_result_is_metafors_text(index):
    """str(result) reproduces print(res) of metafor line for line, trailing blanks included."""
    c = golden()["printed"][index]
    d = frame(c["data"])
    res = rma(d["yi"], d["vi"], mods=c["mods"] or None, data=d, method=c["method"],
              test=c["test"])  # fmt: skip
    assert str(res).rstrip("\n") == c["text"].rstrip("\n")


@pytest.mark.parametrize("case", sorted(golden()["edge"]))
def test_edge_cases_behave_as_metafor(case):
    """k = 1 and 2, identical yi, a vi of 0, a missing yi or moderator, a huge ratio of
    variances, a moderator constant within the data, more parameters than effects."""
    g = golden()["edge"][case]
    inp = g["input"]
    yi, vi = vec(inp["yi"]), vec(inp["vi"])
    mods = inp.get("mods")
    data = {c: vec(v) for c, v in inp.get("columns", {}).items()}

    def fit():
        return rma(yi, vi, mods=mods, data=data or None, method=inp["method"], test=inp["test"])

    if "error" in g:
        with pytest.raises(EvidenceError):
            fit()
        return
    _check_fit(fit(), g, rtol_for(inp["method"]), case)
