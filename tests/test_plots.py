"""Figures: what is drawn (points, labels, limits, diamonds) and the files written."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from evidence.errors import EvidenceError, ModelError
from evidence.plots import bubble, cumulative, forest, funnel, living, save
from evidence.stats import cumul, predict, rma, trimfill

GOLDEN = json.loads((Path(__file__).parent / "golden" / "bias.json").read_text())
BCG = GOLDEN["datasets"]["bcg"]
HACK = GOLDEN["datasets"]["hackshaw1998"]


def by_gid(fig, gid):
    return [a for a in fig.axes[0].findobj() if a.get_gid() == gid]


def one(fig, gid):
    found = by_gid(fig, gid)
    assert len(found) == 1, (gid, found)
    return found[0]


@pytest.fixture(scope="module")
def fit():
    return rma(BCG["yi"], BCG["vi"])


# ---------------------------------------------------------------------------- forest
def test_forest_draws_every_effect_and_the_pooled_ci_as_the_diamond(fit):
    fig = forest(fit, slab=[f"Trial {i + 1}" for i in range(fit.k)])
    pts = one(fig, "effects").get_offsets()
    assert len(pts) == 13
    np.testing.assert_allclose(np.sort(pts[:, 0]), np.sort(BCG["yi"]))
    verts = one(fig, "summary:overall").get_xy()[:4]
    est, lb, ub = float(fit.beta[0]), float(fit.ci_lb[0]), float(fit.ci_ub[0])
    np.testing.assert_allclose(verts[:, 0], [lb, est, ub, est], rtol=1e-12)
    pr = predict(fit)
    np.testing.assert_allclose(one(fig, "pi").get_xdata(), [pr.pi_lb[0], pr.pi_ub[0]])
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[0] == "Trial 1" and labels[-1] == "RE Model (k = 13)"
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert f"{est:.2f} [{lb:.2f}, {ub:.2f}]" in texts


def test_forest_draws_a_diamond_per_subgroup_from_the_subgroup_fit(fit):
    by = ["high" if x > 30 else "low" for x in BCG["ablat"]]
    fig = forest(fit, by=by)
    for level in ("high", "low"):
        sel = np.array(by) == level
        sub = rma(np.array(BCG["yi"])[sel], np.array(BCG["vi"])[sel])
        verts = one(fig, f"summary:{level}").get_xy()[:4]
        np.testing.assert_allclose(
            verts[:, 0], [sub.ci_lb[0], sub.beta[0], sub.ci_ub[0], sub.beta[0]], rtol=1e-12
        )
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels.count("Subtotal (k = 8)") == 1 and labels.count("Subtotal (k = 5)") == 1
    assert labels[0] == "high"


def test_forest_groups_effects_by_study_and_names_each_study_once():
    yi = [0.2, 0.5, 0.1, 0.4, 0.3]
    vi = [0.04, 0.05, 0.03, 0.06, 0.05]
    study = ["B", "A", "B", "A", "C"]
    fig = forest(rma(yi, vi), study=study)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[:5] == ["B", "", "A", "", "C"]
    ys = one(fig, "effects").get_offsets()
    np.testing.assert_allclose(ys[:, 0], [0.2, 0.1, 0.5, 0.4, 0.3])


def test_forest_with_transf_draws_on_the_transformed_scale(fit):
    fig = forest(fit, transf=np.exp, refline=1.0)
    verts = one(fig, "summary:overall").get_xy()[:4]
    np.testing.assert_allclose(verts[0, 0], np.exp(fit.ci_lb[0]))


def test_forest_draws_on_given_axes_and_returns_its_figure(fit):
    fig = Figure()
    ax = fig.add_subplot()
    assert forest(fit, ax=ax) is fig


def test_forest_rejects_a_meta_regression_and_wrong_label_count(fit):
    fm = rma(BCG["yi"], BCG["vi"], mods=np.array(BCG["ablat"]))
    with pytest.raises(ModelError, match="bubble"):
        forest(fm)
    with pytest.raises(ModelError, match="'slab' has 2 labels"):
        forest(fit, slab=["a", "b"])


# ---------------------------------------------------------------------------- funnel
def test_funnel_draws_filled_points_hollow_and_inverts_the_se_axis():
    f = rma(HACK["yi"], HACK["vi"])
    tf = trimfill(f)
    assert tf.k0 == 7
    fig = funnel(f, trimfill=tf)
    obs = one(fig, "observed")
    fil = one(fig, "filled")
    assert len(obs.get_offsets()) == 37 and len(fil.get_offsets()) == 7
    np.testing.assert_allclose(fil.get_offsets()[:, 0], tf.yi_fill)
    np.testing.assert_allclose(fil.get_offsets()[:, 1], np.sqrt(tf.vi_fill))
    assert fil.get_facecolor().shape[0] == 0 or fil.get_facecolor()[0][3] == 0
    assert obs.get_facecolor()[0][3] == 1
    ymin, ymax = fig.axes[0].get_ylim()
    assert ymax == 0 and ymin == pytest.approx(1.05 * np.sqrt(np.max(HACK["vi"])))
    np.testing.assert_allclose(one(fig, "refline").get_xdata(), [tf.fit.beta[0]] * 2)


def test_funnel_shades_one_contour_per_level_and_the_outside(fit):
    fig = funnel(fit, contours=(90, 95, 99))
    for lev in ("90", "95", "99", "outside"):
        one(fig, f"contour:{lev}")
    # the 95% band reaches +-1.96 se at the bottom of the plot
    band = one(fig, "contour:95").get_paths()[0].vertices
    se_max = 1.05 * np.sqrt(np.max(BCG["vi"]))
    assert np.max(band[:, 0]) == pytest.approx(1.959963984540054 * se_max)
    assert by_gid(fig, "filled") == []
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "p < 0.01" in legend and "p > 0.1" in legend


def test_funnel_marks_the_observed_and_the_filled_estimate_as_metafor_computes_them():
    # dat.hackshaw1998, trimfill(rma(yi, vi)): 7 filled on the left (bias.json)
    case = next(
        c
        for c in GOLDEN["cases"]
        if c["fit"] == "hackshaw1998_REML"
        and c["kind"] == "trimfill"
        and c["args"] == {"estimator": "L0", "side": "auto"}
    )
    f = rma(HACK["yi"], HACK["vi"])
    fig = funnel(f, trimfill=trimfill(f))
    filled = one(fig, "refline").get_xdata()[0]
    observed = one(fig, "refline:observed").get_xdata()[0]
    assert filled == pytest.approx(case["result"]["beta"], rel=1e-8)
    assert observed == pytest.approx(float(f.beta[0]), rel=1e-12) and observed > filled
    legend = fig.axes[0].get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert {"95% pseudo-CI", "estimate with filled effects", "estimate (observed effects)",
            "observed", "filled (trim and fill)", "p > 0.1"} <= set(texts)  # fmt: skip
    white = legend.legend_handles[texts.index("p > 0.1")]
    assert white.get_edgecolor()[3] == 1 and white.get_linewidth() > 0  # a visible swatch
    assert by_gid(funnel(f), "refline:observed") == []


def test_funnel_rejects_bad_contour_levels(fit):
    with pytest.raises(ModelError, match="contours"):
        funnel(fit, contours=(95, 120))


# ---------------------------------------------------------------------------- cumulative
def test_cumulative_plots_one_row_per_added_study_in_order(fit):
    cu = cumul(fit, order=BCG["order"])
    fig = cumulative(cu)
    pts = one(fig, "cumulative").get_offsets()
    np.testing.assert_allclose(pts[:, 0], cu.columns["estimate"])
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[0] == cu.slab[0] and labels[1] == f"+ {cu.slab[1]}" and len(labels) == 13
    with pytest.raises(ModelError, match="cumul"):
        cumulative(fit)


# ---------------------------------------------------------------------------- bubble
def test_bubble_draws_points_by_weight_and_the_regression_line():
    fm = rma(BCG["yi"], BCG["vi"], mods=np.array(BCG["ablat"]))
    fig = bubble(fm, 1)
    pts = one(fig, "points")
    np.testing.assert_allclose(pts.get_offsets()[:, 0], BCG["ablat"])
    sizes = pts.get_sizes()
    assert np.argmax(sizes) == np.argmax(fm.weights)
    line = one(fig, "fit")
    x = line.get_xdata()
    assert x[0] == min(BCG["ablat"]) and x[-1] == max(BCG["ablat"])
    np.testing.assert_allclose(line.get_ydata()[[0, -1]], fm.beta[0] + fm.beta[1] * x[[0, -1]])
    one(fig, "ci")
    with pytest.raises(ModelError, match="meta-regression"):
        bubble(rma(BCG["yi"], BCG["vi"]), 1)
    with pytest.raises(ModelError, match="'nope'"):
        bubble(fm, "nope")


def test_bubble_of_a_three_level_meta_regression_draws_metafors_line():
    # rma.mv(yi, vi, mods = ~ sqrt(vi), random = ~ 1 | study/esid, data = dat.assink2016)
    from evidence.stats import rma_mv
    from evidence.stats.robust import robust

    d, g = GOLDEN["threelevel"]["data"], GOLDEN["threelevel"]["z"]
    sei = np.sqrt(d["vi"])
    fit3 = rma_mv(d["yi"], d["vi"], mods=sei, random=[d["study"], d["esid"]])
    fig = bubble(fit3, 1, xlabel="sqrt(vi)")
    pts = one(fig, "points")
    np.testing.assert_allclose(pts.get_offsets()[:, 0], sei)
    np.testing.assert_allclose(pts.get_offsets()[:, 1], d["yi"])
    assert np.argmax(pts.get_sizes()) == np.argmin(d["vi"])
    x, y = one(fig, "fit").get_xdata(), one(fig, "fit").get_ydata()
    assert x[0] == pytest.approx(sei.min()) and x[-1] == pytest.approx(sei.max())
    np.testing.assert_allclose(y[[0, -1]], g["beta"][0] + g["beta"][1] * x[[0, -1]], rtol=1e-6)
    band = one(fig, "ci").get_paths()[0].vertices
    pr = fit3.predict(newmods=x[[0]])
    assert band[:, 1].min() <= pr.ci_lb[0] + 1e-12 and band[:, 1].max() >= pr.ci_ub[0] - 1e-12
    rob = robust(fit3, d["study"], clubSandwich=True)  # the robust CI is the one drawn then
    lo = one(bubble(rob, "X1"), "ci").get_paths()[0].vertices[:, 1].min()
    assert lo == pytest.approx(float(np.min(rob.predict(newmods=x).ci_lb)), rel=1e-9)


# ---------------------------------------------------------------------------- living
HISTORY = {
    "revision": [3, 7, 12, 15],
    "estimate": [0.5, 0.42, 0.38, 0.40],
    "ci_lb": [0.2, 0.25, 0.28, 0.31],
    "ci_ub": [0.8, 0.6, 0.5, 0.49],
    "k": [5, 9, 14, 20],
}


def test_living_plots_the_estimate_across_revisions_with_k():
    import pandas as pd

    fig = living(pd.DataFrame(HISTORY))
    line = one(fig, "estimate")
    np.testing.assert_allclose(line.get_ydata(), HISTORY["estimate"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["3", "7", "12", "15"]
    assert [t.get_text() for t in ax.texts] == ["k=5", "k=9", "k=14", "k=20"]
    lo, hi = ax.get_ylim()
    assert lo <= min(HISTORY["ci_lb"]) and hi >= max(HISTORY["ci_ub"])


def test_living_names_a_missing_column():
    with pytest.raises(ModelError, match="'ci_ub'"):
        living({k: v for k, v in HISTORY.items() if k != "ci_ub"})


# ---------------------------------------------------------------------------- files
def test_save_writes_a_valid_png_and_svg(fit, tmp_path):
    fig = forest(fit)
    png = save(fig, tmp_path / "forest.png")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    svg = save(funnel(fit), tmp_path / "funnel.SVG")
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg") and svg.stat().st_size > 1000


def test_save_rejects_an_unknown_suffix(fit, tmp_path):
    with pytest.raises(EvidenceError, match="must end in .png or .svg"):
        save(forest(fit), tmp_path / "forest.pdf")


def test_filled_marker_colour_is_transparent_not_white():
    f = rma(HACK["yi"], HACK["vi"])
    fig = funnel(f, trimfill=trimfill(f))
    edge = one(fig, "filled").get_edgecolor()[0]
    assert tuple(edge) == pytest.approx(to_rgba("#1f2933"))


def test_forest_and_funnel_of_a_three_level_model_group_effects_by_study():
    from evidence.stats import rma_mv

    d = GOLDEN["threelevel"]["data"]
    fit3 = rma_mv(d["yi"], d["vi"], random=[d["study"], d["esid"]])
    fig = forest(fit3, study=d["study"])
    assert len(one(fig, "effects").get_offsets()) == 100
    verts = one(fig, "summary:overall").get_xy()[:4]
    np.testing.assert_allclose(
        verts[:, 0], [fit3.ci_lb[0], fit3.beta[0], fit3.ci_ub[0], fit3.beta[0]]
    )
    pr = fit3.predict()
    np.testing.assert_allclose(one(fig, "pi").get_xdata(), [pr.pi_lb[0], pr.pi_ub[0]])
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert sum(1 for x in labels if x) == 17 + 1  # each study once, and the model row
    fig2 = funnel(fit3, yi=d["yi"], vi=d["vi"])
    assert len(one(fig2, "observed").get_offsets()) == 100


# ---------------------------------------------------------------------------- forest details
def test_forest_subgroup_diamonds_come_from_the_given_subgroup_models_in_their_order(fit):
    # the analysis's own subgroup models (here metafor's rma on each subset of dat.bcg)
    by = ["high" if x > 30 else "low" for x in BCG["ablat"]]
    y, v = np.array(BCG["yi"]), np.array(BCG["vi"])
    low = rma(y[np.array(by) == "low"], v[np.array(by) == "low"], method="DL")
    fig = forest(fit, by=by, subgroups={"low": low, "high": None})
    verts = one(fig, "summary:low").get_xy()[:4]
    np.testing.assert_allclose(
        verts[:, 0], [low.ci_lb[0], low.beta[0], low.ci_ub[0], low.beta[0]], rtol=1e-12
    )
    assert by_gid(fig, "summary:high") == []  # not estimable: no diamond, said in the label
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[0] == "low" and "Subtotal (k = 8): not estimable" in labels
    fig2 = forest(fit, by=by, subgroups={"high": (0.1, -0.2, 0.4), "low": low})
    np.testing.assert_allclose(one(fig2, "summary:high").get_xy()[:4, 0], [-0.2, 0.1, 0.4, 0.1])


def test_forest_estimate_column_is_monospace_with_aligned_decimals_and_no_minus_zero():
    yi = [-0.4, 0.004, 1.25, 0.3]
    vi = [0.04, 0.0001, 0.09, 0.02]
    fig = forest(rma(yi, vi), summary_label="Pooled (k = 4)")
    texts = [t for t in fig.axes[0].texts]
    assert len(texts) == 5 and {t.get_fontfamily()[0] for t in texts} == {"monospace"}
    strings = [t.get_text() for t in texts]
    assert len({len(s) for s in strings}) == 1  # padded to one width: decimals line up
    assert len({s.index(".") for s in strings}) == 1
    assert "-0.00" not in "".join(strings) and " 0.00 [" in strings[1]  # 0.004 - 1.96 * 0.01
    assert texts[-1].get_fontweight() == "bold"
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[-1] == "Pooled (k = 4)"


def test_forest_shades_every_other_study_and_counts_studies_per_subgroup():
    yi = [0.2, 0.5, 0.1, 0.4, 0.3, 0.6]
    vi = [0.04, 0.05, 0.03, 0.06, 0.05, 0.02]
    study = ["A", "A", "B", "C", "C", "C"]
    fig = forest(rma(yi, vi), study=study)
    bands = one(fig, "study-bands").get_paths()
    assert len(bands) == 1  # study B (one effect) is the second study
    ys = one(fig, "effects").get_offsets()[:, 1]
    y0, y1 = bands[0].vertices[:, 1].min(), bands[0].vertices[:, 1].max()
    assert y0 == pytest.approx(ys[2] - 0.5) and y1 == pytest.approx(ys[2] + 0.5)
    fig2 = forest(rma(yi, vi), study=study, by=["x", "x", "x", "y", "y", "x"])
    labels = [t.get_text() for t in fig2.axes[0].get_yticklabels()]
    assert "Subtotal (k = 4, 3 studies)" in labels and "Subtotal (k = 2, 1 study)" in labels
    assert labels.count("C") == 2  # a study in two subgroups is named in each block
