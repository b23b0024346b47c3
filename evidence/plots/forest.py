"""Forest plots: effect sizes with their confidence intervals, subgroup and overall summaries
(diamonds) and the prediction interval; and the cumulative forest plot."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Polygon
from matplotlib.transforms import blended_transform_factory
from scipy import stats as sps

from evidence.errors import ModelError
from evidence.plots._common import ACCENT, INK, MUTED, SUMMARY, axes_for, model_data

__all__ = ["forest", "cumulative", "diamond"]


def diamond(
    ax: Any,
    est: float,
    lb: float,
    ub: float,
    y: float,
    *,
    gid: str,
    height: float = 0.3,
    color: str = SUMMARY,
) -> Polygon:
    """Draw a summary diamond with vertices (lb, y), (est, y + h), (ub, y), (est, y - h)."""
    poly = Polygon(
        [(lb, y), (est, y + height), (ub, y), (est, y - height)],
        closed=True,
        facecolor=color,
        edgecolor=color,
        zorder=3,
    )
    poly.set_gid(gid)
    ax.add_patch(poly)
    return poly


def _num(x: float, digits: int) -> str:
    """x with *digits* decimals; a value that rounds to zero prints without a minus sign."""
    out = f"{x:.{digits}f}"
    return out[1:] if out.startswith("-") and float(out) == 0 else out


def _aligned(rows: list[tuple[float, float, float]], digits: int) -> list[str]:
    """``est [lb, ub]`` per row, each part padded to a common width (for a monospace
    column, so that decimal points line up as in metafor's forest plots)."""
    parts = [(_num(e, digits), _num(lo, digits), _num(hi, digits)) for e, lo, hi in rows]
    if not parts:
        return []
    w = [max(len(p[j]) for p in parts) for j in range(3)]
    return [f"{e:>{w[0]}} [{lo:>{w[1]}}, {hi:>{w[2]}}]" for e, lo, hi in parts]


def _bounds(fit: Any) -> tuple[float, float, float] | None:
    """(estimate, ci_lb, ci_ub) of a fitted model or of a 3-sequence; None if not given."""
    if fit is None:
        return None
    if hasattr(fit, "beta"):
        return float(fit.beta[0]), float(fit.ci_lb[0]), float(fit.ci_ub[0])
    est, lb, ub = (float(x) for x in fit)
    return est, lb, ub


def _summary(result: Any) -> tuple[float, float, float, float, float]:
    """Pooled estimate, CI and prediction interval of an intercept-only fit."""
    if getattr(result, "p", 1) != 1:
        raise ModelError("A forest plot needs a model without moderators (use bubble() instead).")
    if getattr(result, "robust_type", None) is not None:  # a CHE view's: as it reports it
        from evidence.stats.che import prediction_interval

        lb, ub = prediction_interval(result)
        return float(result.beta[0]), float(result.ci_lb[0]), float(result.ci_ub[0]), lb, ub
    if hasattr(result, "predict"):
        pr = result.predict()
    else:
        from evidence.stats import predict

        pr = predict(result)
    return (
        float(result.beta[0]),
        float(result.ci_lb[0]),
        float(result.ci_ub[0]),
        float(pr.pi_lb[0]),
        float(pr.pi_ub[0]),
    )


def _tau2(result: Any) -> float:
    if hasattr(result, "tau2"):
        return float(result.tau2)
    return float(np.sum(getattr(result, "sigma2", [0.0])))


def forest(
    result: Any,
    ax: Any = None,
    *,
    slab: Sequence[Any] | None = None,
    study: Sequence[Any] | None = None,
    by: Sequence[Any] | None = None,
    subgroups: Mapping[str, Any] | None = None,
    yi: Any = None,
    vi: Any = None,
    level: float | None = None,
    show_pi: bool = True,
    transf: Callable[[np.ndarray], np.ndarray] | None = None,
    refline: float | None = 0.0,
    xlabel: str = "Effect size",
    digits: int = 2,
    summary_label: str | None = None,
    title: str | None = None,
) -> Figure:
    """Forest plot of a fitted intercept-only model.

    Parameters
    ----------
    result
        An :class:`~evidence.stats.RMAResult` (or a multilevel result, then with ``yi``/``vi``
        unless the result carries them).
    ax
        Axes to draw on (a new figure otherwise).
    slab
        Row labels, one per effect (default: ``Study 1`` ...).
    study
        Study of each effect: effects are grouped by study (in order of first appearance),
        only the first effect of a study shows the study's name, and every other study is
        drawn on a light band so that a study's rows read as one block.
    by
        Subgroup of each effect: effects are drawn in blocks with a summary diamond per
        subgroup.
    subgroups
        The summary of each subgroup: level -> a fitted model (its first coefficient and CI)
        or ``(estimate, ci_lb, ci_ub)``, or None when the subgroup could not be estimated;
        blocks follow this order. Default: a model with the result's method fitted to each
        subgroup (univariate; give the analysis's own subgroup models for multilevel fits).
    level
        Confidence level of the effects' intervals (default: the model's).
    show_pi
        Draw the prediction interval as a line through the overall diamond.
    transf
        A function applied to every estimate and bound before drawing (e.g. ``np.exp``).
    refline
        Position of the vertical reference line (None: none), on the drawn scale.
    summary_label
        Label of the overall row (default ``RE Model (k = ...)`` as metafor).

    Returns
    -------
    matplotlib.figure.Figure
        Artists carry ids for inspection: ``effects`` (the squares), ``ci`` (their
        intervals), ``summary:overall`` and ``summary:<subgroup>`` (diamonds), ``pi``,
        ``study-bands`` (the bands behind every other study). The right-hand column
        ``estimate [ci.lb, ci.ub]`` is set in a monospace font with aligned decimals.
    """
    y_all, v_all = model_data(result, yi, vi)
    k = y_all.size
    lev = float(getattr(result, "level", 95) if level is None else level)
    crit = float(sps.norm.isf((1 - lev / 100) / 2))
    lab = np.array(
        [f"Study {i + 1}" for i in range(k)] if slab is None else [str(s) for s in slab],
        dtype=object,
    )
    if lab.size != k:
        raise ModelError(f"Argument 'slab' has {lab.size} labels but the model has {k} effects.")
    tf = transf if transf is not None else (lambda x: x)
    est, lb, ub, pi_lb, pi_ub = _summary(result)
    groups: list[tuple[str | None, np.ndarray]]
    if by is None:
        groups = [(None, np.arange(k))]
    else:
        b = np.asarray([str(x) for x in by], dtype=object)
        if b.size != k:
            raise ModelError(f"Argument 'by' has {b.size} values but the model has {k} effects.")
        seen = list(dict.fromkeys(b.tolist()))
        if subgroups is not None:
            order = [str(g) for g in subgroups if str(g) in seen]
            seen = order + [g for g in seen if g not in order]
        groups = [(g, np.flatnonzero(b == g)) for g in seen]
    first = np.ones(k, bool)
    st = None
    if study is not None:
        st = np.asarray(study, dtype=object)
        if st.size != k:
            raise ModelError(f"Argument 'study' has {st.size} values but the model has {k}.")
        order_st = {s: i for i, s in enumerate(dict.fromkeys(st.tolist()))}
        groups = [
            (g, idx[np.argsort([order_st[s] for s in st[idx]], kind="stable")]) for g, idx in groups
        ]
        first[:] = False
        for _, idx in groups:
            seen_in_block: set = set()
            for i in idx:
                if st[i] not in seen_in_block:
                    first[i] = True
                    seen_in_block.add(st[i])
        if slab is None:
            lab = np.array([str(st[i]) if first[i] else "" for i in range(k)], dtype=object)

    n_rows = k + (2 * len(groups) if by is not None else 0) + 2
    fig, ax = axes_for(ax, (8.0, max(3.0, 0.28 * n_rows + 1.2)))
    w = 1.0 / (v_all + _tau2(result))
    sizes = 20 + 120 * w / np.max(w)
    ypos, labels = [], []
    row = n_rows
    xs, ys, ss, los, his = [], [], [], [], []
    right = blended_transform_factory(ax.transAxes, ax.transData)
    head_rows: set[float] = set()
    text_rows: list[tuple[float, tuple[float, float, float], bool]] = []
    band_rows: list[float] = []
    n_study = 0
    for name, idx in groups:
        if name is not None:
            ypos.append(row)
            labels.append(name)
            head_rows.add(row)
            row -= 1
        for i in idx:
            if st is not None and first[i]:
                n_study += 1
            if st is not None and n_study % 2 == 0:
                band_rows.append(row)
            lo, hi = y_all[i] - crit * np.sqrt(v_all[i]), y_all[i] + crit * np.sqrt(v_all[i])
            xs.append(tf(y_all[i]))
            ys.append(row)
            ss.append(sizes[i])
            los.append(tf(lo))
            his.append(tf(hi))
            ypos.append(row)
            labels.append(lab[i])
            text_rows.append((row, (tf(y_all[i]), tf(lo), tf(hi)), False))
            row -= 1
        if name is not None:
            if subgroups is not None:
                sub = _bounds(subgroups.get(name))
            else:
                fit = _subgroup_fit(result, y_all[idx], v_all[idx])
                sub = _bounds(fit)
            ypos.append(row)
            count = f"k = {idx.size}"
            if st is not None:
                n_st = len(set(st[idx].tolist()))
                count += f", {n_st} {'study' if n_st == 1 else 'studies'}"
            if sub is None or not all(np.isfinite(sub)):
                labels.append(f"Subtotal ({count}): not estimable")
            else:
                d = diamond(ax, tf(sub[0]), tf(sub[1]), tf(sub[2]), row,
                            gid=f"summary:{name}", color=MUTED)  # fmt: skip
                d.set_label(name)
                labels.append(f"Subtotal ({count})")
                text_rows.append((row, (tf(sub[0]), tf(sub[1]), tf(sub[2])), False))
            row -= 1
    if band_rows:  # one artist (one id in an SVG) for all bands, across the axes' width
        across = blended_transform_factory(ax.transAxes, ax.transData)
        verts = [[(0, y - 0.5), (1, y - 0.5), (1, y + 0.5), (0, y + 0.5)] for y in band_rows]
        bands = PolyCollection(verts, transform=across, facecolor="#eef2f6", linewidth=0,
                               zorder=0)  # fmt: skip
        bands.set_gid("study-bands")
        ax.add_collection(bands, autolim=False)
    pts = ax.scatter(xs, ys, s=ss, marker="s", color=INK, zorder=3)
    pts.set_gid("effects")
    ci = ax.hlines(ys, los, his, color=INK, linewidth=1)
    ci.set_gid("ci")
    row -= 0.5
    if show_pi and np.isfinite(pi_lb) and np.isfinite(pi_ub):
        (pi_line,) = ax.plot(
            [tf(pi_lb), tf(pi_ub)],
            [row, row],
            color=ACCENT,
            linewidth=1.5,
            linestyle="--",
            zorder=2,
        )
        pi_line.set_gid("pi")
    diamond(ax, tf(est), tf(lb), tf(ub), row, gid="summary:overall")
    ypos.append(row)
    model_name = (
        "RE Model"
        if _tau2(result) > 0 or getattr(result, "method", "") not in ("EE", "FE", "CE")
        else "EE Model"
    )
    labels.append(summary_label or f"{model_name} (k = {k})")
    text_rows.append((row, (tf(est), tf(lb), tf(ub)), True))
    for (y, _, bold), txt in zip(
        text_rows, _aligned([t[1] for t in text_rows], digits), strict=True
    ):
        ax.text(1.02, y, txt, transform=right, va="center", ha="left", fontsize=8, color=INK,
                family="monospace", fontweight="bold" if bold else "normal")  # fmt: skip
    if refline is not None:
        ax.axvline(refline, color=MUTED, linewidth=0.8, linestyle=":", zorder=1)
    ax.set_yticks(ypos, labels, fontsize=8)
    heads = {str(g) for g, _ in groups if g is not None}
    for tick, y in zip(ax.get_yticklabels(), ypos, strict=True):
        if tick.get_text() in heads and y in head_rows:
            tick.set_fontweight("bold")
    ax.set_ylim(row - 1, n_rows + 0.8)
    ax.set_xlabel(xlabel)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)
    if title:
        ax.set_title(title, loc="left", fontsize=10)
    return fig


def _subgroup_fit(result: Any, y: np.ndarray, v: np.ndarray):
    from evidence.stats import rma

    method = getattr(result, "method", "REML")
    if method not in (
        "EE",
        "FE",
        "CE",
        "DL",
        "HE",
        "HS",
        "HSk",
        "SJ",
        "ML",
        "REML",
        "EB",
        "PM",
        "PMM",
    ):
        method = "REML"
    test = getattr(result, "test", "z")
    return rma(y, v, method=method, test=test if test in ("z", "t", "knha", "adhoc") else "z")


def cumulative(
    cumul_result: Any,
    ax: Any = None,
    *,
    transf: Callable[[np.ndarray], np.ndarray] | None = None,
    refline: float | None = 0.0,
    xlabel: str = "Cumulative estimate",
    digits: int = 2,
    title: str | None = None,
) -> Figure:
    """Cumulative forest plot of :func:`evidence.stats.cumul`: one row per added study.

    Row i shows the estimate and confidence interval of the model fitted to the first i
    studies, labelled ``+ <study>``; the last row is the model with all studies. The points
    carry the id ``cumulative``, the intervals ``ci``.
    """
    cols = getattr(cumul_result, "columns", None)
    if cols is None or getattr(cumul_result, "kind", "") != "cumul":
        raise ModelError("cumulative() needs the result of evidence.stats.cumul().")
    tf = transf if transf is not None else (lambda x: x)
    est = np.asarray(cols["estimate"], dtype=float)
    lb = np.asarray(cols["ci_lb"], dtype=float)
    ub = np.asarray(cols["ci_ub"], dtype=float)
    k = est.size
    fig, ax = axes_for(ax, (8.0, max(3.0, 0.28 * k + 1.2)))
    ys = np.arange(k, 0, -1, dtype=float)
    pts = ax.scatter(tf(est), ys, marker="o", s=28, color=INK, zorder=3)
    pts.set_gid("cumulative")
    ci = ax.hlines(ys, tf(lb), tf(ub), color=INK, linewidth=1)
    ci.set_gid("ci")
    right = blended_transform_factory(ax.transAxes, ax.transData)
    ok = np.isfinite(est) & np.isfinite(lb) & np.isfinite(ub)
    rows = zip(est[ok], lb[ok], ub[ok], strict=True)
    texts = _aligned([(tf(e), tf(lo), tf(hi)) for e, lo, hi in rows], digits)
    for y, txt in zip(ys[ok], texts, strict=True):
        ax.text(1.02, y, txt, transform=right, va="center", ha="left", fontsize=8, color=INK,
                family="monospace")  # fmt: skip
    labels = [f"+ {s}" if i else str(s) for i, s in enumerate(cumul_result.slab)]
    ax.set_yticks(ys, labels, fontsize=8)
    if refline is not None:
        ax.axvline(refline, color=MUTED, linewidth=0.8, linestyle=":", zorder=1)
    ax.set_ylim(0.3, k + 0.7)
    ax.set_xlabel(xlabel)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.tick_params(axis="y", length=0)
    if title:
        ax.set_title(title, loc="left", fontsize=10)
    return fig
