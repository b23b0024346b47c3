"""Bubble plot of a meta-regression and the living plot of a view across revisions."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from evidence.errors import ModelError
from evidence.plots._common import ACCENT, INK, MUTED, axes_for

__all__ = ["bubble", "living"]


def bubble(
    result: Any,
    mod: str | int,
    ax: Any = None,
    *,
    n_grid: int = 100,
    xlabel: str | None = None,
    ylabel: str = "Effect size",
    title: str | None = None,
) -> Figure:
    """Bubble plot: effect sizes against one moderator of a meta-regression.

    Parameters
    ----------
    result
        A meta-regression: an :class:`~evidence.stats.RMAResult` with moderators, or a
        multilevel one (:class:`~evidence.stats.rma_mv.RmaMvResult`, robust or not).
    mod
        The moderator: its coefficient name (``"ablat"``) or its column index in ``X``.

    Notes
    -----
    Point areas are proportional to the model's weights (for a multilevel model to
    ``1 / (v_i + sum sigma^2)``, the inverse of each effect's marginal variance). The line is
    the fitted value ``x'b`` along the moderator with the other moderators at their
    (unweighted) means, the band its confidence interval from the model's ``predict``
    (robust, with its t quantiles, for a robust fit), as metafor's ``regplot``. Artists
    carry ids ``points``, ``fit``, ``ci``.
    """
    names = list(getattr(result, "names", ()))
    X, yi, w, predict_rows = _regression(result)
    if getattr(result, "p", 1) < 2 or X is None:
        raise ModelError("A bubble plot needs a meta-regression (a model with moderators).")
    if isinstance(mod, str):
        if mod not in names:
            raise ModelError(f"Argument 'mod' names no coefficient of the model ('{mod}').")
        j = names.index(mod)
    else:
        j = int(mod)
        if not 0 <= j < len(names):
            raise ModelError(f"Argument 'mod' must be a column index below {len(names)}.")
    if names[j] == "intrcpt":
        raise ModelError("Argument 'mod' must name a moderator, not the intercept.")
    x = X[:, j]
    fig, ax = axes_for(ax, (6.5, 4.5))
    sizes = 10 + 190 * w / np.max(w)
    pts = ax.scatter(
        x, yi, s=sizes, facecolor="#cbd5e1", edgecolor=INK, linewidth=0.6, alpha=0.8, zorder=3
    )
    pts.set_gid("points")
    grid = np.linspace(float(np.min(x)), float(np.max(x)), n_grid)
    rows = np.tile(X.mean(axis=0), (n_grid, 1))
    rows[:, j] = grid
    keep = [c for c, n in enumerate(names) if n != "intrcpt"]
    pred, ci_lb, ci_ub = predict_rows(rows[:, keep])
    (line,) = ax.plot(grid, pred, color=ACCENT, linewidth=1.5, zorder=4)
    line.set_gid("fit")
    band = ax.fill_between(grid, ci_lb, ci_ub, color=ACCENT, alpha=0.15, linewidth=0, zorder=2)
    band.set_gid("ci")
    ax.axhline(0, color=MUTED, linewidth=0.8, linestyle=":", zorder=1)
    ax.set_xlabel(xlabel or names[j])
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, loc="left", fontsize=10)
    return fig


def _regression(result: Any):
    """``X, yi, weights`` of a meta-regression and a function giving ``pred, ci_lb, ci_ub``
    for rows of moderator values (without the intercept column)."""
    from evidence.stats import predict

    if hasattr(result, "X") and hasattr(result, "weights"):
        X = np.asarray(result.X, dtype=float)

        def rows_univariate(nm: np.ndarray):
            pr = predict(result, newmods=nm)
            return pr.pred, pr.ci_lb, pr.ci_ub

        return X, np.asarray(result.yi, float), np.asarray(result.weights, float), rows_univariate
    model = getattr(result, "_model", None)
    if model is None or getattr(model, "X", None) is None:
        return None, None, None, None
    vi = np.asarray(model.vi, dtype=float)
    w = 1.0 / (vi + float(np.sum(result.sigma2)))

    def rows_multilevel(nm: np.ndarray):
        pr = result.predict(newmods=nm)
        return pr.pred, pr.ci_lb, pr.ci_ub

    return np.asarray(model.X, dtype=float), np.asarray(model.yi, float), w, rows_multilevel


def living(
    history_frame: Any,
    ax: Any = None,
    *,
    xlabel: str = "Revision",
    ylabel: str = "Pooled estimate",
    title: str | None = None,
) -> Figure:
    """The living plot: a view's pooled estimate and CI across data revisions.

    Parameters
    ----------
    history_frame
        A DataFrame (or mapping of columns) with ``revision``, ``estimate``, ``ci_lb``,
        ``ci_ub`` and ``k``, one row per recompute, in the order to draw.

    Notes
    -----
    Revisions are placed at equal steps and labelled with their value; the number of
    effects k is written above each point. Artists carry ids ``estimate`` and ``ci``.
    """
    need = ("revision", "estimate", "ci_lb", "ci_ub", "k")
    cols = {}
    for c in need:
        try:
            cols[c] = np.asarray(history_frame[c])
        except (KeyError, IndexError, TypeError) as err:
            raise ModelError(
                f"The history needs a column '{c}' (columns: {', '.join(need)})."
            ) from err
    n = cols["revision"].size
    if n == 0:
        raise ModelError("The history has no revisions to plot.")
    est = cols["estimate"].astype(float)
    lb, ub = cols["ci_lb"].astype(float), cols["ci_ub"].astype(float)
    xs = np.arange(n, dtype=float)
    fig, ax = axes_for(ax, (max(5.0, 0.6 * n + 2), 4.0))
    band = ax.fill_between(xs, lb, ub, color=ACCENT, alpha=0.15, linewidth=0, step=None)
    band.set_gid("ci")
    ax.vlines(xs, lb, ub, color=ACCENT, linewidth=1, alpha=0.6)
    (line,) = ax.plot(xs, est, marker="o", color=ACCENT, linewidth=1.5, zorder=3)
    line.set_gid("estimate")
    for x, e, k in zip(xs, est, cols["k"], strict=True):
        ax.annotate(
            f"k={int(k)}",
            (x, e),
            textcoords="offset points",
            xytext=(5, 6),
            ha="left",
            fontsize=7,
            color=MUTED,
        )
    ax.axhline(0, color=MUTED, linewidth=0.8, linestyle=":", zorder=1)
    ax.set_xticks(xs, [str(r) for r in cols["revision"]], fontsize=8, rotation=0 if n <= 12 else 45)
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, loc="left", fontsize=10)
    return fig
