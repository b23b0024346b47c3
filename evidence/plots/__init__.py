"""Figures of meta-analytic results (matplotlib, Agg backend): forest, funnel, cumulative,
bubble and living plots. Each takes a result and an optional axes and returns the figure;
:func:`save` writes it as PNG or SVG."""

from evidence.plots._common import save
from evidence.plots.bubble import bubble, living
from evidence.plots.forest import cumulative, forest
from evidence.plots.funnel import funnel

__all__ = ["forest", "funnel", "cumulative", "bubble", "living", "save"]
