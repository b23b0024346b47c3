"""`evidence plot|bias|sensitivity|report` on the quickstart database, and fit_view."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from typer.testing import CliRunner

from evidence.cli import app
from evidence.db.engine import get_engine
from evidence.errors import EvidenceError, NotFoundError
from evidence.report.quickstart import quickstart
from evidence.stats.bias import regtest_mv
from evidence.views import show_view, view_history
from evidence.views.fit import fit_view

runner = CliRunner()


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return quickstart(tmp_path_factory.mktemp("cli") / "qs").database_url


@pytest.fixture(scope="module")
def engine(url: str):
    eng = get_engine(url)
    yield eng
    eng.dispose()


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rich tables at 200 columns, so that the labels are not wrapped."""
    from evidence.cli.app import console

    monkeypatch.setattr(console, "_width", 200)


def _run(url: str, *args: str):
    return runner.invoke(app, [*args, "--url", url], terminal_width=200)


# ----------------------------------------------------------------------------- fit_view
def test_fit_view_reproduces_the_stored_estimate_and_moderator_test(engine) -> None:
    vf = fit_view(engine, "physical-overall")
    stored = show_view(engine, "physical-overall")
    assert vf.k_effects == stored.k_effects == 76 and vf.k_studies == stored.k_studies == 47
    assert float(vf.result.beta[0]) == pytest.approx(stored.headline["estimate"], abs=1e-12)
    assert vf.robust is not None and vf.fit.robust_type is None  # CHE: model and robust fit
    assert list(vf.data["es_id"]) == sorted(vf.data["es_id"])
    assert vf.simulated and vf.domains == ("physical",)
    reg = fit_view(engine, "mental-dosage")
    assert float(reg.moderator_result.QM) == pytest.approx(
        show_view(engine, "mental-dosage").headline["QM"], abs=1e-10
    )


def test_fit_view_as_of_the_seed_revision_equals_its_history(engine) -> None:
    vf = fit_view(engine, "mental-overall", as_of=1)
    first = view_history(engine, "mental-overall").entries[0]
    assert vf.revision == 1
    assert float(vf.result.beta[0]) == pytest.approx(first["estimate"], abs=1e-12)


def test_fit_view_of_an_unknown_view_names_it(engine) -> None:
    with pytest.raises(NotFoundError, match="no view 'nope' in review 'peer_support'"):
        fit_view(engine, "nope")
    with pytest.raises(EvidenceError, match="revision 99 does not exist"):
        fit_view(engine, "mental-overall", as_of=99)


# ----------------------------------------------------------------------------- plot
def test_plot_forest_svg_draws_every_effect_and_the_subgroup_diamonds(url, tmp_path) -> None:
    out = tmp_path / "forest.svg"
    result = _run(url, "plot", "forest", "physical-region", "-o", str(out))
    assert result.exit_code == 0, result.output
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    ids = {el.get("id") for el in root.iter()}
    assert {"effects", "ci", "summary:overall", "summary:Western", "summary:Eastern"} <= ids
    assert "pi" in ids


def test_view_forest_diamonds_are_the_views_stored_estimates(engine) -> None:
    from evidence.report.figures import view_figure

    for name in ("mental-source", "physical-region"):
        stored = show_view(engine, name)
        fig = view_figure(fit_view(engine, name), "forest")
        found = {a.get_gid(): a for a in fig.axes[0].findobj() if a.get_gid()}
        levels = stored.result["subgroup"]["levels"]
        for level, entry in levels.items():  # CHE with CR2, per level, as the view stores it
            xs = found[f"summary:{level}"].get_xy()[:4, 0]
            np.testing.assert_allclose(
                xs, [entry["ci_lb"], entry["estimate"], entry["ci_ub"], entry["estimate"]],
                rtol=1e-10,
            )  # fmt: skip
        xs = found["summary:overall"].get_xy()[:4, 0]
        h = stored.headline
        np.testing.assert_allclose(xs, [h["ci_lb"], h["estimate"], h["ci_ub"], h["estimate"]])
        labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
        assert [x for x in labels if x in levels] == sorted(levels)  # the table's order
        assert labels[-1] == (
            f"CHE model, robust (k = {stored.k_effects}, {stored.k_studies} studies)"
        )


def test_view_cumulative_plot_adds_one_study_at_a_time_by_year(engine) -> None:
    from evidence.report.figures import view_figure
    from evidence.stats import rma

    vf = fit_view(engine, "physical-overall")
    fig = view_figure(vf, "cumulative")
    ax = fig.axes[0]
    pts = [a for a in ax.findobj() if a.get_gid() == "cumulative"][0].get_offsets()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert len(pts) == len(labels) == vf.k_studies == 47
    years = [int(x.rsplit("(", 1)[1].rstrip(")")) for x in labels]
    assert years == sorted(years) and labels[1].startswith("+ ")
    order = [x.lstrip("+ ").rsplit(" (", 1)[0] for x in labels]
    assert len(set(order)) == 47
    ticks = dict(zip(labels, [t.get_position()[1] for t in ax.get_yticklabels()], strict=True))
    x_of = {round(y, 6): x for x, y in pts}
    for j in (0, 9, 46):  # the model of every effect of the first j + 1 studies
        keep = vf.data["study"].astype(str).isin(order[: j + 1]).to_numpy()
        ref = rma(vf.yi[keep], vf.vi[keep], method="REML")
        assert x_of[round(ticks[labels[j]], 6)] == pytest.approx(float(ref.beta[0]), rel=1e-10)
    assert "univariate random-effects model" in ax.get_title(loc="left")


def test_view_bubble_plot_draws_the_views_own_meta_regression(engine) -> None:
    from evidence.report.figures import view_figure

    stored = show_view(engine, "mental-dosage").result["moderators"]["coefficients"]
    b0, b1 = (c["estimate"] for c in stored)  # CHE with CR2, as the view stores it
    fig = view_figure(fit_view(engine, "mental-dosage"), "bubble")
    line = [a for a in fig.axes[0].findobj() if a.get_gid() == "fit"][0]
    x, y = line.get_xdata(), line.get_ydata()
    np.testing.assert_allclose(y, b0 + b1 * x, rtol=1e-10)
    assert "CHE model, robust" in fig.axes[0].get_title(loc="left")


@pytest.mark.parametrize(
    ("kind", "view"),
    [
        ("funnel", "mental-overall"),
        ("cumulative", "physical-overall"),
        ("bubble", "mental-dosage"),
        ("living", "mental-overall"),
    ],
)
def test_plot_writes_a_png_of_each_kind(url, tmp_path, kind: str, view: str) -> None:
    from matplotlib import image

    out = tmp_path / f"{kind}.png"
    result = _run(url, "plot", kind, view, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert f"{kind} plot of {view}" in result.output
    pixels = image.imread(out)
    assert pixels.ndim == 3 and min(pixels.shape[:2]) > 200
    assert float(np.var(pixels[..., :3])) > 0.001


def test_plot_refuses_unknown_views_kinds_and_suffixes_in_one_line(url, tmp_path) -> None:
    cases = [
        (("plot", "forest", "nope", "-o", str(tmp_path / "a.png")), "no view 'nope'"),
        (("plot", "violin", "mental-overall", "-o", str(tmp_path / "a.png")), "unknown plot"),
        (("plot", "forest", "mental-overall", "-o", str(tmp_path / "a.pdf")), ".png or .svg"),
        (("plot", "bubble", "mental-overall", "-o", str(tmp_path / "a.png")), "no moderator"),
    ]
    for args, message in cases:
        result = _run(url, *args)
        assert result.exit_code != 0
        lines = [x for x in result.output.splitlines() if x.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------- bias
def test_bias_prints_one_block_per_test_with_the_three_level_egger_test(url, engine) -> None:
    result = _run(url, "bias", "physical-overall")
    assert result.exit_code == 0, result.output
    out = result.output
    titles = ["Egger's regression test", "Begg's rank correlation test", "Trim and fill",
              "PET-PEESE", "Fail-safe N (Rosenthal)"]  # fmt: skip
    positions = [out.index(f"== {t} ==") for t in titles]
    assert positions == sorted(positions)
    assert "SIMULATED data" in out.splitlines()[0]
    assert "Model:     multilevel mixed-effects meta-regression model" in out
    egger = regtest_mv(fit_view(engine, "physical-overall").fit)
    assert f"t = {egger.zval:.4f}, df = 74" in out
    assert "Rank Correlation Test for Funnel Plot Asymmetry" in out
    assert "Estimated number of missing studies on the" in out


def test_bias_json_holds_every_test(url) -> None:
    result = _run(url, "bias", "mental-overall", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["view"] == "mental-overall" and data["univariate"] is True
    assert set(data["tests"]) == {"egger", "begg", "trimfill", "pet_peese", "fsn"}
    assert 0 <= data["tests"]["egger"]["pval"] <= 1
    assert data["tests"]["fsn"]["fsnum"] > 0


def test_bias_of_an_unknown_view_is_one_error_line(url) -> None:
    result = _run(url, "bias", "nope")
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == [
        "error: no view 'nope' in review 'peer_support'; see `evidence view list`"
    ]


# ----------------------------------------------------------------------------- sensitivity
def test_sensitivity_table_starts_with_the_views_own_model_and_has_every_analysis(
    url, engine
) -> None:
    result = _run(url, "sensitivity", "physical-overall")
    assert result.exit_code == 0, result.output
    labels = ("View's model (che)", "Overall", "One effect per study (aggregated)",
              "Lowest effect per study", "Highest effect per study", "Outliers removed",
              "Influential cases removed", "Low risk of bias only", "Three-level model",
              "CHE model (robust, CR2)")  # fmt: skip
    for label in labels:
        assert label in result.output
    assert "Low risk of bias only: no risk-of-bias ratings given" in result.output
    data = json.loads(_run(url, "sensitivity", "physical-overall", "--json").output)
    assert [r["analysis"] for r in data["rows"]][:2] == ["model", "overall"]
    rows = {r["analysis"]: r for r in data["rows"]}
    assert len(rows) == 10 and data["rho"] == 0.6
    stored = show_view(engine, "physical-overall").headline
    for name in ("model", "che_robust"):  # the view is CHE: both rows are its estimate
        for key, col in (("g", "estimate"), ("ci_lb", "ci_lb"), ("ci_ub", "ci_ub"),
                         ("pi_lb", "pi_lb"), ("pi_ub", "pi_ub")):  # fmt: skip
            assert rows[name][key] == pytest.approx(stored[col], abs=1e-10), (name, key)
    assert rows["overall"]["k"] == 76 and rows["combined"]["k"] == 47


def test_sensitivity_numbers_are_never_cut_on_an_80_column_terminal(url, monkeypatch) -> None:
    from evidence.cli.app import console

    monkeypatch.setattr(console, "_width", 80)
    result = _run(url, "sensitivity", "physical-overall")
    assert result.exit_code == 0, result.output
    assert max(len(line.rstrip()) for line in result.output.splitlines()) <= 80
    assert "…" not in result.output
    monkeypatch.setattr(console, "_width", 200)
    json_rows = json.loads(_run(url, "sensitivity", "physical-overall", "--json").output)["rows"]
    for r in json_rows:
        if r["g"] is not None:
            assert f"[{r['pi_lb']:.3f}, {r['pi_ub']:.3f}]" in result.output


def test_sensitivity_of_an_unknown_view_fails(url) -> None:
    result = _run(url, "sensitivity", "nope")
    assert result.exit_code != 0 and "no view 'nope'" in result.output


# ----------------------------------------------------------------------------- report
def test_report_command_writes_the_file_and_compares_with_it_next_time(url, tmp_path) -> None:
    out = tmp_path / "report.html"
    first = _run(url, "report", "-o", str(out))
    assert first.exit_code == 0, first.output
    assert out.is_file() and "<svg" in out.read_text(encoding="utf-8")
    assert "22 views" in first.output and "first report: nothing to compare with." in first.output
    second = _run(url, "report", "-o", str(out))
    assert second.exit_code == 0, second.output
    assert "since the previous report (revision 1): 0 record changes, 0 estimates moved." in (
        second.output
    )


def test_report_command_with_a_missing_previous_report_fails_in_one_line(url, tmp_path) -> None:
    result = _run(url, "report", "-o", str(tmp_path / "r.html"), "--previous",
                  str(tmp_path / "none.html"))  # fmt: skip
    assert result.exit_code != 0
    assert result.output.strip().startswith("error: cannot read the previous report")
    assert not (tmp_path / "r.html").exists()


def test_view_sensitivity_from_python_starts_with_the_views_own_model(engine) -> None:
    from evidence.views import view_sensitivity

    found = view_sensitivity(fit_view(engine, "mental-overall"))
    first = found.rows[0]
    assert first.analysis == "model" and first.label == "View's model (che)"
    stored = show_view(engine, "mental-overall").headline
    assert first.g == pytest.approx(stored["estimate"], abs=1e-10)
    assert first.ci_lb == pytest.approx(stored["ci_lb"], abs=1e-10)
