"""`evidence meta`: text output is str(result), JSON has exactly the keys of issue 4."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from evidence.cli import app
from evidence.stats import confint, predict, rma, subgroup

runner = CliRunner()

# dat.bcg log risk ratios (metafor escalc(measure="RR"))
ROWS = [
    ("Aronson", -0.8893113, 0.3255848, 44, "random"),
    ("Ferguson & Simes", -1.5853887, 0.1943047, 55, "random"),
    ("Rosenthal et al", -1.3480731, 0.4155069, 42, "random"),
    ("Hart & Sutherland", -1.4415512, 0.0200144, 52, "random"),
    ("Frimodt-Moller et al", -0.2175473, 0.0512101, 13, "alternate"),
    ("Stein & Aronson", -0.7861155, 0.0069049, 44, "alternate"),
    ("Vandiviere et al", -1.6208982, 0.2230172, 19, "random"),
    ("TPT Madras", 0.0119523, 0.0039630, 13, "random"),
    ("Coetzee & Berjak", -0.4694176, 0.0564342, 27, "random"),
    ("Rosenthal et al", -1.3713448, 0.0730477, 42, "systematic"),
    ("Comstock et al", -0.3393926, 0.0124754, 18, "systematic"),
    ("Comstock & Webster", 0.4459134, 0.5325035, 33, "systematic"),
    ("Comstock et al", -0.0173139, 0.0714034, 33, "systematic"),
]

TOP_KEYS = ["model", "method", "test", "level", "k", "p", "coefficients", "tau2", "se_tau2",
            "tau2_ci_lb", "tau2_ci_ub", "I2", "H2", "QE", "QE_df", "QEp", "QM", "QM_df", "QMp",
            "pi_lb", "pi_ub", "converged", "iterations", "warnings"]  # fmt: skip
COEF_KEYS = ["name", "estimate", "se", "stat", "df", "pval", "ci_lb", "ci_ub"]


@pytest.fixture()
def bcg_csv(tmp_path):
    path = tmp_path / "bcg.csv"
    lines = ["author,yi,vi,ablat,alloc"]
    lines += [f'"{a}",{y},{v},{lat},{al}' for a, y, v, lat, al in ROWS]
    path.write_text("\n".join(lines) + "\n")
    return path


def _arrays():
    yi = np.array([r[1] for r in ROWS])
    vi = np.array([r[2] for r in ROWS])
    return yi, vi


def test_meta_prints_the_result_in_metafors_layout(bcg_csv):
    out = runner.invoke(app, ["meta", str(bcg_csv), "--yi", "yi", "--vi", "vi"])
    assert out.exit_code == 0, out.output
    yi, vi = _arrays()
    assert out.output == str(rma(yi, vi))
    assert "Random-Effects Model (k = 13; tau^2 estimator: REML)" in out.output


def test_meta_json_has_exactly_the_issue_keys_and_the_fit_values(bcg_csv):
    out = runner.invoke(app, ["meta", str(bcg_csv), "--yi", "yi", "--vi", "vi", "--json"])
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    assert list(d) == TOP_KEYS
    assert list(d["coefficients"][0]) == COEF_KEYS
    yi, vi = _arrays()
    res = rma(yi, vi)
    assert d["model"] == "random-effects" and d["method"] == "REML" and d["level"] == 95
    assert d["coefficients"][0]["estimate"] == res.beta[0]
    assert d["coefficients"][0]["df"] is None  # z test
    assert d["I2"] == res.I2 and d["I2"] > 90  # percent, as metafor prints it
    ci = confint(res).random["tau2"]
    assert (d["tau2_ci_lb"], d["tau2_ci_ub"]) == (ci[1], ci[2])
    pr = predict(res)
    assert (d["pi_lb"], d["pi_ub"]) == (pr.pi_lb[0], pr.pi_ub[0])
    assert d["QE_df"] == 12 and d["QM_df"] == [1, None]
    assert d["converged"] is True and d["iterations"] == res.iterations


def test_meta_json_with_moderators_and_knha_gives_t_df_and_no_interval_keys_values(bcg_csv):
    args = ["meta", str(bcg_csv), "--yi", "yi", "--vi", "vi", "--mods", "ablat + C(alloc)",
            "--test", "knha", "--method", "DL", "--level", "90", "--json"]  # fmt: skip
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    assert list(d) == TOP_KEYS
    assert d["model"] == "mixed-effects" and d["level"] == 90 and d["p"] == 4
    assert [c["name"] for c in d["coefficients"]] == [
        "intrcpt", "ablat", "allocrandom", "allocsystematic"
    ]  # fmt: skip
    assert all(c["df"] == 9 for c in d["coefficients"])
    assert d["QM_df"] == [3, 9]
    assert d["tau2_ci_lb"] is None and d["pi_lb"] is None


def test_meta_json_with_subgroups_adds_subgroups_and_test_between(bcg_csv):
    args = ["meta", str(bcg_csv), "--yi", "yi", "--vi", "vi", "--subgroup", "alloc", "--json"]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    d = json.loads(out.output)
    assert list(d) == TOP_KEYS + ["subgroups", "test_between"]
    assert [s["level"] for s in d["subgroups"]] == ["alternate", "random", "systematic"]
    assert all(set(TOP_KEYS) <= set(s) for s in d["subgroups"])
    assert list(d["test_between"]) == ["Q", "df", "pval"]
    yi, vi = _arrays()
    s = subgroup(yi, vi, np.array([r[4] for r in ROWS], dtype=object))
    assert d["test_between"]["Q"] == s.Q_between and d["test_between"]["df"] == 2


def test_meta_text_with_subgroups_prints_the_subgroup_table(bcg_csv):
    args = ["meta", str(bcg_csv), "--yi", "yi", "--vi", "vi", "--subgroup", "alloc"]
    out = runner.invoke(app, args)
    assert out.exit_code == 0
    assert "Test for Subgroup Differences (separate tau^2):" in out.output


def test_meta_unknown_column_is_one_line_error(bcg_csv):
    out = runner.invoke(app, ["meta", str(bcg_csv), "--yi", "yi", "--vi", "variance"])
    assert out.exit_code == 1
    assert "no column 'variance'" in out.output
    assert "Traceback" not in out.output


def test_meta_unknown_moderator_is_one_line_error(bcg_csv):
    args = ["meta", str(bcg_csv), "--yi", "yi", "--vi", "vi", "--mods", "latitude"]
    out = runner.invoke(app, args)
    assert out.exit_code == 1 and "Unknown column 'latitude' in 'mods'" in out.output


def test_meta_missing_file_is_not_found(tmp_path):
    out = runner.invoke(app, ["meta", str(tmp_path / "none.csv"), "--yi", "y", "--vi", "v"])
    assert out.exit_code == 1 and "does not exist" in out.output


def test_meta_with_cluster_delegates_to_the_multilevel_command(bcg_csv, monkeypatch):
    import sys
    import types

    calls = {}

    def multilevel_command(frame, **kwargs):
        calls.update(kwargs, rows=len(frame))
        return "multilevel output\n"

    fake = types.ModuleType("evidence.cli.meta_mv")
    fake.multilevel_command = multilevel_command
    monkeypatch.setitem(sys.modules, "evidence.cli.meta_mv", fake)
    args = ["meta", str(bcg_csv), "--yi", "yi", "--vi", "vi", "--cluster", "author",
            "--model", "che", "--rho", "0.5", "--robust", "CR2", "--json"]  # fmt: skip
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert out.output == "multilevel output\n"
    assert calls["cluster"] == "author" and calls["model"] == "che" and calls["rho"] == 0.5
    assert calls["robust"] == "CR2" and calls["as_json"] is True and calls["rows"] == 13
    assert set(calls) >= {"yi", "vi", "es_id", "smooth_vi", "mods", "method", "test", "level"}


def test_meta_help_lists_the_options():
    out = runner.invoke(app, ["meta", "--help"])
    assert out.exit_code == 0
    for opt in ("--yi", "--vi", "--mods", "--subgroup", "--method", "--test", "--level",
                "--json", "--cluster", "--es-id", "--model", "--rho", "--smooth-vi",
                "--robust"):  # fmt: skip
        assert opt in out.output
