"""The living report: one self-contained HTML file built from the quickstart database."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest

from evidence import __version__
from evidence.db.engine import get_engine
from evidence.db.migrate import head
from evidence.report.build import build_report, read_report_data
from evidence.report.quickstart import quickstart
from evidence.views import show_view
from evidence.views.fit import fit_views

CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    """The quickstart database with its report (SIMULATED seed, 22 plan views)."""
    return quickstart(tmp_path_factory.mktemp("report") / "qs")


@pytest.fixture(scope="module")
def page(built) -> str:
    return built.report.path.read_text(encoding="utf-8")


def test_quickstart_writes_the_report_beside_the_database(built) -> None:
    assert built.report.path == built.directory / "report.html"
    assert built.report.views == len(built.views) == 22
    assert built.report.previous_revision is None  # the first report of a new database


def test_report_loads_nothing_from_the_network(page: str) -> None:
    refs = re.findall(r'\b(?:src|href)\s*=\s*["\']([^"\']*)', page, flags=re.I)
    assert refs, "the page has in-page links (contents, figures)"
    assert not [r for r in refs if re.match(r"\s*(https?:)?//", r, flags=re.I)]
    assert not re.search(r"<script[^>]*\bsrc=", page, flags=re.I)
    assert not re.search(r"<link[^>]*stylesheet", page, flags=re.I)
    assert not re.search(r"@import|url\(\s*['\"]?https?:", page, flags=re.I)
    # the only script is the JSON data block, which browsers never execute
    scripts = re.findall(r"<script([^>]*)>", page)
    assert scripts == [' type="application/json" id="evidence-report-data"']


def test_report_inlines_forest_and_funnel_figures_as_svg_with_unique_ids(page: str) -> None:
    svgs = re.findall(r"<svg\b", page)
    assert len(svgs) >= 2 + 2  # forest and funnel of each domain's overall view at least
    assert page.count('id="f0fo-effects"') == 1  # forest of the first view: its squares
    assert page.count('id="f0fu-observed"') == 1  # funnel of the first view: its points
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page


def test_report_banner_says_the_evidence_is_simulated(page: str) -> None:
    banner = re.search(r'<div class="banner" id="simulated-banner"[^>]*>(.*?)</div>', page, re.S)
    assert banner is not None
    assert "SIMULATED DATA" in banner.group(1) and "not real" in banner.group(1)
    assert page.index("simulated-banner") < page.index('id="changes"')  # before any result


def test_report_states_its_provenance(built, page: str) -> None:
    prov = page[page.index('id="provenance"') :]
    assert f"evidence {__version__}" in prov
    assert f"<dd>{head()}</dd>" in prov  # the database's migration is the code's head
    assert "<dt>data revision</dt><dd>1</dd>" in prov
    assert re.search(r"<dt>built</dt><dd>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</dd>", prov)
    data = read_report_data(built.report.path)
    assert data["revision"] == 1 and data["review"] == "peer_support"


def test_report_estimate_table_shows_each_views_stored_estimate(built, page: str) -> None:
    engine = get_engine(built.database_url)
    try:
        for name in ("physical-overall", "mental-overall", "mental-dosage"):
            st = show_view(engine, name)
            article = page[page.index(f'<article class="view" id="{name}">') :]
            article = article[: article.index("</article>")]
            est = f"{st.headline['estimate']:.2f}"
            ci = f"{st.headline['ci_lb']:.2f} to {st.headline['ci_ub']:.2f}"
            pi = f"{st.headline['pi_lb']:.2f} to {st.headline['pi_ub']:.2f}"
            cells = f'<td class="n">{st.k_studies}</td><td class="n">{st.k_effects}</td>'
            assert (
                f'{cells}<td class="n">{est}</td><td class="ci">{ci}</td><td class="ci">{pi}</td>'
                in article
            )
        dosage = page[page.index('id="mental-dosage"') :]
        qm = show_view(engine, "mental-dosage").headline["QM"]
        assert f"QM={qm:.3f}" in dosage[: dosage.index("</article>")]
    finally:
        engine.dispose()


def _article(page: str, name: str) -> str:
    article = page[page.index(f'<article class="view" id="{name}">') :]
    return article[: article.index("</article>")]


def test_report_prints_the_bias_tests_once_per_set_of_effect_sizes(built, page: str) -> None:
    engine = get_engine(built.database_url)
    try:
        fits = {f.spec.name: f for f in fit_views(engine)}
    finally:
        engine.dispose()
    first: dict[tuple, str] = {}
    for name in built.views:  # in the report's order
        article = _article(page, name)
        key = tuple(fits[name].data["es_id"].tolist())
        if key not in first:
            first[key] = name
            assert "Egger&#39;s regression test" in article and "Trim and fill" in article
        else:
            assert "Egger&#39;s regression test" not in article
            assert f'Publication-bias tests: those of <a href="#{first[key]}">' in article
    assert set(first.values()) >= {"physical-overall", "mental-overall"}


def test_report_warns_about_missing_studies_heterogeneity_and_risk_of_bias(
    built, page: str
) -> None:
    from evidence.views import bias_tests

    engine = get_engine(built.database_url)
    try:
        fits = {f.spec.name: f for f in fit_views(engine, ["physical-overall", "mental-overall"])}
    finally:
        engine.dispose()
    for name, vf in fits.items():
        warns = re.findall(r'<p class="warn">⚠ (.*?)</p>', _article(page, name))
        tf = bias_tests(vf).results["trimfill"]
        assert tf.k0 > 0
        assert (
            f"Trim and fill imputes {tf.k0} missing effects on the {tf.side}; the adjusted "
            f"estimate is {float(tf.fit.beta[0]):.2f}." in warns
        )
        assert "No risk-of-bias judgements are stored for these studies." in warns
        considerable = f"Considerable heterogeneity (I² = {vf.result.I2:.0f}%)."
        # CHE as metapsyTools (smoothed vi): mental-overall's I² is 71.9%, below 75%
        assert (considerable in warns) == (vf.result.I2 >= 75)


def test_report_draws_forest_plots_full_width_with_aligned_estimate_columns(page: str) -> None:
    assert ".figs figure.forest, .figs figure.cumulative { flex: 1 1 100%; }" in page
    assert "svg.fig text { white-space: pre; }" in page  # SVG would collapse the padding
    assert "td.ci {" in page and "white-space: nowrap" in page
    forest = _article(page, "physical-overall")
    forest = forest[forest.index('<figure class="forest">') :]
    texts = re.findall(r"<text[^>]*DejaVu Sans Mono[^>]*>([^<]*)</text>", forest)
    rows = [t for t in texts if "[" in t]
    assert len(rows) == 77 and len({len(t) for t in rows}) == 1  # 76 effects + the model
    assert "CHE model, robust (k = 76, 47 studies)" in forest


def test_report_groups_views_by_outcome_domain(page: str) -> None:
    heads = re.findall(r'<h2 id="view-\d+">Domain: (\w+)</h2>', page)
    assert heads == ["physical", "mental"]


def test_report_lists_an_edit_between_two_reports_and_the_estimate_shift(
    built, tmp_path: Path
) -> None:
    copy = tmp_path / "qs"
    shutil.copytree(built.directory, copy)
    url = f"sqlite:///{copy / 'evidence.db'}"
    engine = get_engine(url)
    try:
        before = show_view(engine, "physical-overall").headline["estimate"]
        # a change by plain SQL (not through evidence): the history triggers record it
        with sqlite3.connect(copy / "evidence.db") as conn:
            conn.execute(  # SIM-001, physical: its effect size follows at the next read
                "UPDATE result SET m1i = m1i + 8 WHERE id = "
                "(SELECT result_id FROM effect_size WHERE id = 1)"
            )
        result = build_report(engine, copy / "report.html")  # the old file is the previous one
        after = show_view(engine, "physical-overall").headline["estimate"]
    finally:
        engine.dispose()
    # revision 2: the plain-SQL edit; 3: the effect size recomputed from it
    assert result.previous_revision == 1 and result.revision == 3
    assert result.changes == {"effect_size changed": 1, "result changed": 1}
    page = result.path.read_text(encoding="utf-8")
    changes = page[page.index('id="changes"') : page.index('class="domain"')]
    assert "data revision 1" in changes and "This report: data revision 3" in changes
    assert '<td>effect_size changed</td><td class="n">1</td>' in changes
    assert re.search(
        r"<td>SIM-001</td><td>1 effect_size changed, 1 result changed</td><td>[^<]*m1i[^<]*yi</td>",
        changes,
    )
    moved = {m["view"]: m for m in result.moved}
    assert set(moved) == {v for v in built.views if v.startswith("physical-")}
    assert moved["physical-overall"]["shift"] == pytest.approx(after - before, abs=1e-12)
    assert abs(after - before) > 0.005  # the estimate moved
    row = re.search(r"<td>physical-overall</td>(.*?)</tr>", changes, re.S)
    assert row is not None
    assert f"{before:.3f}</td>" in row.group(1) and f"{after - before:+.3f}</td>" in row.group(1)


def test_report_against_a_revision_number_takes_the_views_stored_results(
    built, tmp_path: Path
) -> None:
    engine = get_engine(built.database_url)
    try:
        result = build_report(engine, tmp_path / "r.html", previous=1)
    finally:
        engine.dispose()
    assert result.previous_revision == 1 and result.changes == {} and result.moved == ()
    assert "No estimate moved." in result.path.read_text(encoding="utf-8")


_NO_CHROMIUM = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed (no `chromium` on PATH); .ci/run installs "
    "Debian's chromium when apt is available",
)


def _chromium(url: str, shot: Path, profile: Path, height: int = 2000):
    """Open *url* in headless Chromium, screenshot it; (process, console lines)."""
    done = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            f"--screenshot={shot}",
            f"--window-size=1280,{height}",
            "--enable-logging=stderr",
            "--v=0",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    console = [
        line
        for line in done.stderr.splitlines()
        if ":CONSOLE" in line or "Uncaught" in line or "Failed to load resource" in line
    ]
    return done, console


@_NO_CHROMIUM
def test_report_renders_in_headless_chromium_without_console_errors(built, tmp_path: Path) -> None:
    from matplotlib import image

    shot = tmp_path / "report.png"
    done, console = _chromium(built.report.path.resolve().as_uri(), shot, tmp_path / "profile")
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = image.imread(shot)
    assert pixels.shape[:2] == (2000, 1280)
    gray = pixels[..., :3].mean(axis=2)
    assert float(np.var(gray)) > 0.01  # not a blank page
    # the amber banner is drawn near the top of the page
    top = pixels[:400, :, :3]
    amber = (top[..., 0] > 0.95) & (top[..., 1] > 0.9) & (top[..., 2] < 0.85)
    assert amber.sum() > 5000
    assert console == []


@_NO_CHROMIUM
def test_the_chromium_check_sees_console_errors_and_blank_pages(tmp_path: Path) -> None:
    """Negative control: the two checks above would fail on a broken or blank page."""
    from matplotlib import image

    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('boom'); no_such();</script></body></html>")
    done, console = _chromium(bad.as_uri(), tmp_path / "bad.png", tmp_path / "p1", 400)
    assert done.returncode == 0, done.stderr[-2000:]
    assert any("boom" in line for line in console)
    assert any("no_such is not defined" in line for line in console)
    gray = image.imread(tmp_path / "bad.png")[..., :3].mean(axis=2)
    assert float(np.var(gray)) < 1e-6  # a blank page has no variance
