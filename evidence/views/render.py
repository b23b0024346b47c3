"""Rich rendering of the results table (used by the command line and the quickstart)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from rich.table import Table

__all__ = ["results_rich_table"]


def _n(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return f"{x:.{digits}f}"


def _interval(lb: Any, ub: Any) -> str:
    a, b = _n(lb), _n(ub)
    return f"{a} to {b}" if a and b else ""


def _count(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return str(int(x))


def results_rich_table(frame: pd.DataFrame) -> Table:
    """A Rich table of :func:`evidence.views.results_table`, titled (SIMULATED when so)."""
    table = Table(title=frame.attrs.get("title", "Results"), title_justify="left")
    for col in (
        "view",
        "level",
        "studies",
        "k",
        "estimate",
        "95% CI",
        "95% PI",
        "heterogeneity",
        "test of moderators",
    ):
        table.add_column(col, justify="right" if col in ("studies", "k", "estimate") else "left")
    for row in frame.itertuples(index=False):
        estimate = _n(row.estimate) if row.error is None or row.level else "n.e."
        table.add_row(
            row.view if not row.level else "",
            row.level,
            _count(row.k_studies),
            _count(row.k_effects),
            estimate,
            _interval(row.ci_lb, row.ci_ub),
            _interval(row.pi_lb, row.pi_ub),
            row.heterogeneity,
            row.test,
        )
    return table
