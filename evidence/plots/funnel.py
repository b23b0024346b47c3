"""Contour-enhanced funnel plots (Peters et al., 2008), with trim-and-fill's filled effects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Polygon, Rectangle
from scipy import stats as sps

from evidence.errors import ModelError
from evidence.plots._common import ACCENT, INK, axes_for, model_data

__all__ = ["funnel"]

_SHADES = ("#ffffff", "#e5e7eb", "#c7ccd3", "#a3aab5")
_EDGE = "#9aa5b1"


def funnel(
    result: Any,
    ax: Any = None,
    *,
    contours: Sequence[float] = (90, 95, 99),
    trimfill: Any = None,
    yi: Any = None,
    vi: Any = None,
    level: float = 95,
    xlabel: str = "Effect size",
    title: str | None = None,
) -> Figure:
    """Contour-enhanced funnel plot: effect sizes against their standard errors.

    Parameters
    ----------
    result
        A fitted model (:class:`~evidence.stats.RMAResult`, or a multilevel result with
        ``yi``/``vi``); with moderators the residuals are plotted.
    ax
        Axes to draw on (a new figure otherwise).
    contours
        Confidence levels (percent) of the significance contours around zero: the band
        ``|y| < z_(1 - (1 - L)/2) se`` of each level is shaded, darker for higher levels, so
        a study's shade tells at which level it is significant (two-sided).
    trimfill
        A :class:`~evidence.stats.TrimfillResult` of the same model: its filled effects are
        drawn hollow and the reference line moves to the filled model's estimate.
    level
        Level of the pseudo-confidence funnel around the estimate.

    Returns
    -------
    matplotlib.figure.Figure
        The y axis is inverted (standard error 0 at the top, as metafor draws it). Artists
        carry ids: ``observed``, ``filled``, ``contour:<L>``, ``funnel``, ``refline``.
    """
    y_obs, v_obs = model_data(result, yi, vi)
    if getattr(result, "p", 1) > 1 and hasattr(result, "resid"):
        y_obs = np.asarray(result.resid, dtype=float)
        center = 0.0
    else:
        center = float(result.beta[0])
    observed_center = center
    y_fill = np.empty(0)
    v_fill = np.empty(0)
    if trimfill is not None:
        if not hasattr(trimfill, "fill"):
            raise ModelError("Argument 'trimfill' must be a result of evidence.stats.trimfill().")
        y_fill = np.asarray(trimfill.yi_fill, dtype=float)
        v_fill = np.asarray(trimfill.vi_fill, dtype=float)
        center = float(trimfill.fit.beta[0])
    se_obs, se_fill = np.sqrt(v_obs), np.sqrt(v_fill)
    levels = sorted(float(c) for c in contours)
    if any(not 0 < c < 100 for c in levels):
        raise ModelError("Argument 'contours' must hold confidence levels between 0 and 100.")
    se_max = float(np.max(np.concatenate([se_obs, se_fill]))) * 1.05
    if not np.isfinite(se_max) or se_max <= 0:
        raise ModelError("The funnel plot needs positive sampling variances.")
    fig, ax = axes_for(ax, (7.5, 5.0))
    se_grid = np.array([0.0, se_max])
    z_outer = float(sps.norm.isf((1 - levels[-1] / 100) / 2)) if levels else 1.96
    all_y = np.concatenate([y_obs, y_fill, [center]])
    half = max(z_outer * se_max * 1.1, float(np.max(np.abs(all_y - 0))) * 1.05)
    xlim = (-half, half) if levels else (float(all_y.min()), float(all_y.max()))
    if levels:
        alphas = [f"{1 - lev / 100:.2g}" for lev in levels]
        back = ax.axvspan(xlim[0], xlim[1], color=_SHADES[-1], zorder=0, linewidth=0)
        back.set_gid("contour:outside")
        back.set_label(f"p < {alphas[-1]}")
        # from the widest band inwards, each one lighter
        for j, lev in enumerate(reversed(levels)):
            z = float(sps.norm.isf((1 - lev / 100) / 2))
            shade = _SHADES[min(len(_SHADES) - 2, max(0, len(levels) - 1 - j))]
            poly = ax.fill_betweenx(
                se_grid, -z * se_grid, z * se_grid, color=shade, zorder=1, linewidth=0
            )
            poly.set_gid(f"contour:{lev:g}")
            i = len(levels) - 1 - j
            poly.set_label(f"p > {alphas[0]}" if i == 0 else f"{alphas[i]} < p < {alphas[i - 1]}")
    z = float(sps.norm.isf((1 - level / 100) / 2))
    (fl,) = ax.plot(
        np.r_[center - z * se_grid[::-1], center + z * se_grid],
        np.r_[se_grid[::-1], se_grid],
        color=INK,
        linewidth=0.8,
        linestyle="--",
        zorder=2,
        label=f"{level:g}% pseudo-CI",
    )
    fl.set_gid("funnel")
    ref = ax.axvline(
        center,
        color=ACCENT,
        linewidth=1,
        zorder=2,
        label="estimate with filled effects" if trimfill is not None else "estimate",
    )
    ref.set_gid("refline")
    if trimfill is not None and trimfill.k0 > 0:
        obs_ref = ax.axvline(observed_center, color=INK, linewidth=1, linestyle=":", zorder=2,
                             label="estimate (observed effects)")  # fmt: skip
        obs_ref.set_gid("refline:observed")
    obs = ax.scatter(y_obs, se_obs, s=30, color=INK, edgecolor=INK, zorder=3, label="observed")
    obs.set_gid("observed")
    if trimfill is not None:
        fil = ax.scatter(
            y_fill,
            se_fill,
            s=30,
            facecolor="none",
            edgecolor=INK,
            zorder=3,
            label="filled (trim and fill)",
        )
        fil.set_gid("filled")
    ax.set_xlim(*xlim)
    ax.set_ylim(se_max, 0.0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Standard error")
    handles, texts = ax.get_legend_handles_labels()
    # the shaded bands as swatches with an edge, so that the white one shows in the legend
    handles = [
        Patch(facecolor=h.get_facecolor()[0] if isinstance(h, PolyCollection)
              else h.get_facecolor(), edgecolor=_EDGE, linewidth=0.6)
        if isinstance(h, PolyCollection | Polygon | Rectangle) else h
        for h in handles
    ]  # fmt: skip
    ax.legend(handles, texts, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7,
              frameon=False)  # fmt: skip
    if title:
        ax.set_title(title, loc="left", fontsize=10)
    return fig
