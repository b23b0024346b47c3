"""Shared plumbing of the figures: the Agg backend, new axes, saving, data access."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from evidence.errors import EvidenceError, ModelError  # noqa: E402

__all__ = ["axes_for", "save", "model_data", "INK", "MUTED", "ACCENT"]

INK = "#1f2933"
MUTED = "#7b8794"
ACCENT = "#2563eb"
SUMMARY = "#111827"
FORMATS = {".png": "png", ".svg": "svg"}


def axes_for(ax: Any, size: tuple[float, float]) -> tuple[Figure, Any]:
    """The figure and axes to draw on: *ax* if given, else a new figure of *size* inches."""
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def save(fig: Figure, path: str | Path, *, dpi: int = 150) -> Path:
    """Write *fig* to *path* as PNG or SVG (chosen by the file suffix).

    Raises
    ------
    EvidenceError
        The suffix is neither ``.png`` nor ``.svg``, or the file cannot be written.
    """
    p = Path(path)
    fmt = FORMATS.get(p.suffix.lower())
    if fmt is None:
        raise EvidenceError(
            f"Cannot save a figure as '{p.name}': the file name must end in .png or .svg."
        )
    try:
        fig.savefig(p, format=fmt, dpi=dpi, bbox_inches="tight", pad_inches=0.1)
    except OSError as err:
        raise EvidenceError(f"Cannot write the figure to '{p}': {err.strerror or err}.") from err
    return p


def model_data(result: Any, yi: Any = None, vi: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Effect sizes and sampling variances of a fitted model (or given explicitly)."""
    if yi is not None and vi is not None:
        return np.asarray(yi, dtype=float), np.asarray(vi, dtype=float)
    if hasattr(result, "yi") and hasattr(result, "vi"):
        return np.asarray(result.yi, dtype=float), np.asarray(result.vi, dtype=float)
    model = getattr(result, "_model", None)
    if model is not None:
        return np.asarray(model.yi, dtype=float), np.asarray(model.vi, dtype=float)
    raise ModelError("The figure needs the effect sizes: give 'yi' and 'vi'.")
