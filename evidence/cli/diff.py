"""How `evidence diff` prints a :class:`evidence.views.diff.DiffSummary`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["print_diff"]

#: Names shown per kind of study change, then "… and M more".
SHOWN = 10
#: Records listed after the summary, then "... M more".
RECORDS = 30


def _names(names: list[str]) -> str:
    shown = "; ".join(names[:SHOWN])
    return shown + (f" … and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.4f}"


def _ci(state: Any) -> str:
    if state.ci_lb is None or state.ci_ub is None:
        return "—"
    return f"[{state.ci_lb:.4f}, {state.ci_ub:.4f}]"


def _k(state: Any) -> str:
    return "—" if state.k_effects is None else f"{state.k_effects} ({state.k_studies})"


def _studies_table(summary: Any) -> Table:
    table = Table(title="studies", title_justify="left")
    for col in ("", "n", "studies"):
        table.add_column(col, overflow="fold")
    rows = (
        ("added", list(summary.added)),
        ("withdrawn", list(summary.withdrawn)),
        ("renamed", [f"{old} → {new}" for old, new in summary.renamed]),
        ("changed", list(summary.changed)),
    )
    for label, names in rows:
        table.add_row(label, str(len(names)), _names(names))
    return table


def _views_table(summary: Any) -> Table:
    moved = summary.moved
    table = Table(title=f"views moved: {len(moved)} of {len(summary.views)}", title_justify="left")
    for col in ("view", "k (studies)", "estimate", "change", "CI"):
        table.add_column(col)
    for v in moved:
        a, b = v.before, v.after
        note = "" if a.source == b.source == "stored" else f" ({a.source} → {b.source})"
        change = "—" if v.change is None else f"{v.change:+.4f}"
        if a.status != b.status:
            change += f" status {a.status} → {b.status}"
        table.add_row(
            v.view + note,
            f"{_k(a)} → {_k(b)}",
            f"{_num(a.estimate)} → {_num(b.estimate)}",
            change,
            f"{_ci(a)} → {_ci(b)}",
        )
    return table


def print_diff(summary: Any, console: Console) -> None:
    """Studies, views that moved, then the changed records (first :data:`RECORDS`)."""
    head = f"review {summary.review}: revisions {summary.from_revision} -> {summary.to_revision}"
    if summary.swapped:
        head += f" (given newest first; shown from {summary.from_revision})"
    console.print(head, highlight=False)
    console.print(_studies_table(summary))
    console.print(_views_table(summary))
    if any(v.before.source != "stored" or v.after.source != "stored" for v in summary.moved):
        console.print(
            "  recomputed: no stored result was confirmed at that revision (the view was stale "
            "or not yet created); refitted on the data as of the revision",
            highlight=False,
        )
    records = summary.records
    console.print(
        f"revisions {summary.from_revision} -> {summary.to_revision}: "
        f"{len(records)} changed records",
        highlight=False,
    )
    if summary.counts:
        counts = "; ".join(
            f"{t} " + ", ".join(f"{n} {op}" for op, n in ops.items())
            for t, ops in summary.counts.items()
        )
        console.print(f"  {counts}", highlight=False)
    if summary.recomputed:
        console.print(
            f"  {summary.recomputed} rows rewritten with only derived columns changed (effect "
            "sizes' computed_at, inputs, engine_version): derived recomputation, not listed",
            highlight=False,
        )
    for c in summary.record_dicts(RECORDS):
        key = c["key"] or "#" + str(c["row_id"])
        where = f"{c['study']}/" if c["study"] and c["table"] != "study" else ""
        cols = f" ({', '.join(c['columns'])})" if c["columns"] else ""
        console.print(
            f"  r{c['revision']} {c['op']:<6} {c['table']} {where}{key}{cols}", highlight=False
        )
    if len(records) > RECORDS:
        console.print(f"  ... {len(records) - RECORDS} more", highlight=False)
