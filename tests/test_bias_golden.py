"""Bias and case diagnostics against metafor 3.8-1 (tests/golden/bias.json, from bias.R).

Tolerances: 1e-8 relative for quantities that go through an iterative tau2 estimate (REML
fits, refits, trim-and-fill), 1e-10 for closed forms (EE/DL fits, weighted least squares,
Kendall's tau and its p value, fail-safe N). Absolute floors (1e-12 or as noted) cover
values that are zero in exact arithmetic.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from evidence.stats import rma
from evidence.stats.bias import fsn, pet_peese, ranktest, regtest, trimfill
from evidence.stats.influence import cumul, influence, leave1out

GOLDEN = json.loads((Path(__file__).parent / "golden" / "bias.json").read_text())
DATA = GOLDEN["datasets"]
FITS = {f["name"]: f for f in GOLDEN["fits"]}
CASES = GOLDEN["cases"]
for _c in CASES:  # R writes an empty list() as []
    _c["args"] = _c["args"] or {}

ITER = 1e-8
CLOSED = 1e-10


def _tol(fit_name: str) -> float:
    f = FITS[fit_name]
    return CLOSED if f["method"] in ("EE", "DL") else ITER


def _arr(x) -> np.ndarray:
    if x is None:
        return np.array([np.nan])
    return np.array([np.nan if v is None else v for v in np.atleast_1d(x)], dtype=float)


def close(ours, theirs, rtol, atol=1e-12) -> None:
    a, b = np.atleast_1d(np.asarray(ours, dtype=float)), _arr(theirs)
    assert a.shape == b.shape, (a, b)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=True)


_fit_cache: dict[str, object] = {}


def fit_of(name: str):
    if name not in _fit_cache:
        f = FITS[name]
        d = DATA[f["data"]]
        mods = "ablat" if f["mods"] else None
        data = {"ablat": np.array(d["ablat"], dtype=float)} if f["mods"] else None
        _fit_cache[name] = rma(
            d["yi"], d["vi"], mods=mods, data=data, method=f["method"], test=f["test"]
        )
    return _fit_cache[name]


def ids(case) -> str:
    args = ",".join(f"{k}={v}" for k, v in case["args"].items())
    return f"{case['fit']}-{case['kind']}-{args}"


def text_lines(s: str) -> list[str]:
    return [line.rstrip() for line in s.strip("\n").split("\n")]


def by_kind(kind: str):
    return [pytest.param(c, id=ids(c)) for c in CASES if c["kind"] == kind]


# ---------------------------------------------------------------------------- regtest
@pytest.mark.parametrize("case", by_kind("regtest"))
def test_regtest_matches_metafor(case):
    fit = fit_of(case["fit"])
    d = DATA[FITS[case["fit"]]["data"]]
    args = case["args"]
    res = regtest(fit, args["predictor"], args["model"], ni=d["ni"])
    r = case["result"]
    tol = CLOSED if args["model"] == "lm" else _tol(case["fit"])
    close(res.zval, r["zval"], tol)
    close(res.pval, r["pval"], tol, atol=1e-14)
    close(res.dfs, r["ddf"], 0)
    if r["est"] is None:
        assert res.est is None
    else:
        close([res.est, res.ci_lb, res.ci_ub], [r["est"], r["ci_lb"], r["ci_ub"]], tol)
    assert text_lines(str(res)) == text_lines(r["text"])


# ---------------------------------------------------------------------------- ranktest
@pytest.mark.parametrize("case", by_kind("ranktest"))
def test_ranktest_matches_metafor(case):
    res = ranktest(fit_of(case["fit"]))
    close(res.tau, case["result"]["tau"], CLOSED)
    close(res.pval, case["result"]["pval"], CLOSED)
    assert text_lines(str(res)) == text_lines(case["result"]["text"])


# ---------------------------------------------------------------------------- trimfill
@pytest.mark.parametrize("case", by_kind("trimfill"))
def test_trimfill_matches_metafor(case):
    fit = fit_of(case["fit"])
    side = None if case["args"]["side"] == "auto" else case["args"]["side"]
    res = trimfill(fit, side=side, estimator=case["args"]["estimator"])
    r = case["result"]
    tol = _tol(case["fit"])
    assert res.k0 == r["k0"]
    assert res.side == r["side"]
    close(res.se_k0, r["se_k0"], CLOSED)
    close(res.p_k0, r["p_k0"], CLOSED)
    assert res.fit.k == r["k"]
    close(res.yi, r["yi"], tol)
    close(res.vi, r["vi"], CLOSED)
    assert res.fill.tolist() == r["fill"]
    for ours, key in (
        (res.fit.beta, "beta"),
        (res.fit.se, "se"),
        (res.fit.ci_lb, "ci_lb"),
        (res.fit.ci_ub, "ci_ub"),
        (res.fit.zval, "zval"),
        (res.fit.pval, "pval"),
        (res.fit.QE, "QE"),
        (res.fit.I2, "I2"),
    ):
        close(ours, r[key], tol)
    close(res.fit.tau2, r["tau2"], tol, atol=1e-10)
    assert text_lines(str(res)) == text_lines(r["text"])


# ---------------------------------------------------------------------------- fsn
@pytest.mark.parametrize("case", by_kind("fsn"))
def test_fsn_matches_metafor(case):
    d = DATA[FITS[case["fit"]]["data"]]
    a = case["args"]
    res = fsn(
        d["yi"], d["vi"], type=a["type"], target=a.get("target"), weighted=a.get("weighted", False)
    )
    r = case["result"]
    assert res.fsnum == r["fsnum"]
    close(res.pval, r["pval"], CLOSED, atol=1e-300)
    close(res.meanes, r["meanes"], CLOSED)
    close(res.target, r["target"], CLOSED)
    assert text_lines(str(res)) == text_lines(r["text"])


# ---------------------------------------------------------------------------- pet-peese
@pytest.mark.parametrize("case", by_kind("pet_peese"))
def test_pet_peese_matches_weighted_lm(case):
    res = pet_peese(fit_of(case["fit"]))
    r = case["result"]
    close(
        [res.pet.est, float(res.pet.se[0]), res.pet_pval],
        [r["pet"]["est"], r["pet"]["se"], r["pet"]["pval"]],
        CLOSED,
    )
    close([res.pet.ci_lb, res.pet.ci_ub], r["pet"]["ci"], CLOSED)
    close([res.peese.est, float(res.peese.se[0])], [r["peese"]["est"], r["peese"]["se"]], CLOSED)
    close([res.peese.ci_lb, res.peese.ci_ub], r["peese"]["ci"], CLOSED)
    close(res.pet.pval, r["pet"]["slope_p"], CLOSED)
    expected = "PEESE" if r["pet"]["pval"] < 0.05 else "PET"
    assert res.selected == expected
    chosen = r["peese"] if expected == "PEESE" else r["pet"]
    close([res.estimate, res.ci_lb, res.ci_ub], [chosen["est"], *chosen["ci"]], CLOSED)


# ---------------------------------------------------------------------------- leave1out / cumul
_SUMMARY_KEYS = {
    "estimate": "estimate",
    "se": "se",
    "zval": "zval",
    "tval": "tval",
    "pval": "pval",
    "ci_lb": "ci.lb",
    "ci_ub": "ci.ub",
    "Q": "Q",
    "Qp": "Qp",
    "tau2": "tau2",
    "I2": "I2",
    "H2": "H2",
}


def _check_case_table(res, r, tol, pkey="pval"):
    for ours, theirs in _SUMMARY_KEYS.items():
        if theirs == "pval":
            theirs = pkey
        if r.get(theirs) is None:
            assert ours not in res.columns
            continue
        atol = 1e-10 if ours in ("tau2", "I2") else 1e-13
        close(res.columns[ours], r[theirs], tol, atol=atol)


@pytest.mark.parametrize("case", by_kind("leave1out"))
def test_leave1out_matches_metafor(case):
    res = leave1out(fit_of(case["fit"]))
    _check_case_table(res, case["result"], _tol(case["fit"]))
    assert text_lines(str(res)) == text_lines(case["result"]["text"])


@pytest.mark.parametrize("case", by_kind("cumul"))
def test_cumul_by_order_matches_metafor(case):
    fit = fit_of(case["fit"])
    res = cumul(fit, order=DATA[FITS[case["fit"]]["data"]]["order"])
    _check_case_table(res, case["result"], _tol(case["fit"]), pkey="pvals")
    assert text_lines(str(res)) == text_lines(case["result"]["text"])


# ---------------------------------------------------------------------------- influence
@pytest.mark.parametrize("case", by_kind("influence"))
def test_influence_matches_metafor(case):
    fit = fit_of(case["fit"])
    res = influence(fit)
    r = case["result"]
    tol = _tol(case["fit"])
    for ours, key in (
        ("rstudent", "rstudent"),
        ("dffits", "dffits"),
        ("cook_d", "cook_d"),
        ("cov_r", "cov_r"),
        ("QE_del", "QE_del"),
        ("hat", "hat"),
        ("weight", "weight"),
    ):
        close(getattr(res, ours), r[key], tol, atol=1e-12)
    close(res.tau2_del, r["tau2_del"], tol, atol=1e-10)
    for j, col in enumerate(r["dfbs"].values()):
        close(res.dfbs[:, j], col, tol, atol=1e-12)
    assert res.is_infl.tolist() == r["is_infl"]
    # R names the moderator of `mods = ~ d$ablat` "d.ablat"; ours is "ablat"
    assert text_lines(str(res)) == text_lines(r["text"].replace("d.ablat", "  ablat"))


def test_golden_grid_is_complete():
    kinds: dict[str, set] = {}
    for c in CASES:
        kinds.setdefault(c["kind"], set()).add((c["fit"], json.dumps(c["args"], sort_keys=True)))
    int_only = [n for n, f in FITS.items() if not f["mods"]]
    assert len(FITS) == 7 and {f["data"] for f in FITS.values()} == set(DATA)
    # regtest: 4 predictors x 2 models where sample sizes exist, else 2 x 2
    n_reg = sum(8 if DATA[f["data"]]["ni"] is not None else 4 for f in FITS.values())
    assert len(kinds["regtest"]) == n_reg
    assert len(kinds["ranktest"]) == len(int_only)
    assert len(kinds["trimfill"]) == 6 * len(int_only)
    assert len(kinds["leave1out"]) == len(kinds["cumul"]) == len(int_only)
    assert len(kinds["influence"]) == len(FITS)
    reml = [n for n in int_only if FITS[n]["method"] == "REML"]
    assert len(kinds["fsn"]) == 5 * len(reml)
    assert len(kinds["pet_peese"]) == len(reml)
    assert math.isclose(GOLDEN["sensitivity"]["rho"], 0.6)
    assert GOLDEN["meta"]["metafor"] == "3.8.1"
