"""Rich rendering of the results table (used by the command line and the quickstart)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

__all__ = ["results_rich_table"]


def _n(x: Any, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    text = f"{x:.{digits}f}"
    return text[1:] if text.startswith("-") and not text.strip("-0.") else text  # no "-0.00"


def _interval(lb: Any, ub: Any) -> str:
    a, b = _n(lb), _n(ub)
    return f"{a} to {b}" if a and b else ""


def _count(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return str(int(x))


#: Room the heterogeneity and moderator-test columns need to stay readable (wrapped).
_WRAPPED_ROOM = 32


def results_rich_table(frame: pd.DataFrame, console: Console | None = None) -> Table:
    """A Rich table of :func:`evidence.views.results_table`, titled (SIMULATED when so).

    A view's subgroups follow it on indented rows of the same first column. Names, numbers
    and intervals are never cut: on a *console* too narrow for the whole table, the
    heterogeneity and moderator-test columns (then the prediction interval) are left out,
    and a caption says so, rather than cropping a k or an interval. A caption names the views
    that leave out some of the results they select (their k counts what is in the model).
    """
    table = _fitted(frame, console)
    notes = [table.caption] if table.caption else []
    views = _excluding(frame)
    if views:
        notes.append(
            f"{len(views)} view{'s' if len(views) != 1 else ''} ({', '.join(views[:3])}"
            f"{', ...' if len(views) > 3 else ''}) leave out selected results without an effect"
            " size or a moderator value: `evidence view show VIEW` lists them"
        )
    table.caption = "\n".join(str(n) for n in notes) or None
    return table


def _excluding(frame: pd.DataFrame) -> list[str]:
    """Views that leave out some of the results they select."""
    if "excluded" not in frame:
        return []
    rows = frame[pd.to_numeric(frame["excluded"], errors="coerce").fillna(0) > 0]
    return [str(v) for v in rows["view"]]


def _fitted(frame: pd.DataFrame, console: Console | None) -> Table:
    if console is None:
        return _table(frame, ("pi", "wrapped"))
    unbounded = console.options.update(max_width=10_000)
    core = Measurement.get(console, unbounded, _table(frame, ("pi",))).maximum
    if core + _WRAPPED_ROOM <= console.width:
        return _table(frame, ("pi", "wrapped"))
    if core <= console.width:
        table = _table(frame, ("pi",))
        table.caption = "heterogeneity and tests of moderators: widen the terminal, or --json"
        return table
    table = _table(frame, ())
    table.caption = "prediction intervals, heterogeneity, tests: widen the terminal, or --json"
    return table


def _table(frame: pd.DataFrame, parts: tuple[str, ...]) -> Table:
    table = Table(title=frame.attrs.get("title", "Results"), title_justify="left")
    labels = [
        f"  {row.level}" if row.level else str(row.view) for row in frame.itertuples(index=False)
    ]
    columns = ["view / subgroup", "studies", "k", "estimate", "95% CI"]
    columns += ["95% PI"] if "pi" in parts else []
    columns += ["heterogeneity", "test of moderators"] if "wrapped" in parts else []
    for col in columns:
        table.add_column(
            col,
            justify="right" if col in ("studies", "k", "estimate") else "left",
            no_wrap=col not in ("heterogeneity", "test of moderators"),
            overflow="fold",
            min_width=max(map(len, labels), default=4) if col == "view / subgroup" else None,
        )
    for label, row in zip(labels, frame.itertuples(index=False), strict=True):
        estimate = _n(row.estimate) if row.error is None or row.level else "n.e."
        cells = [
            label,
            _count(row.k_studies),
            _count(row.k_effects),
            estimate,
            _interval(row.ci_lb, row.ci_ub),
        ]
        cells += [_interval(row.pi_lb, row.pi_ub)] if "pi" in parts else []
        cells += [row.heterogeneity, row.test] if "wrapped" in parts else []
        table.add_row(*cells)
    return table
