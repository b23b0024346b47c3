"""`evidence history` and `evidence restore`: read the change log, bring rows back."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from evidence.cli.app import DatabaseUrl, console, fail
from evidence.db.engine import get_engine
from evidence.db.history import Change, list_changes, restore
from evidence.db.migrate import ensure_migrated
from evidence.errors import EvidenceError

#: Columns that change with every recomputation; shown only when nothing else changed
#: (``--json`` keeps them).
_BOOKKEEPING = ("computed_at", "engine_version", "updated_at")


def _short(value: Any) -> str:
    if value is None:
        return "NULL"
    text = format(value, ".6g") if isinstance(value, float) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def record_label(change: Change) -> str:
    """``study SIM-001``, ``result SIM-001/post`` or ``effect_size #12 (SIM-001)``."""
    key, study = change.key, change.study
    if change.table_name == "study" or study is None:
        return f"{change.table_name} {key if key is not None else '#' + str(change.row_id)}"
    if key is not None:
        return f"{change.table_name} {study}/{key}"
    return f"{change.table_name} #{change.row_id} ({study})"


def describe(change: Change) -> str:
    """One line saying what changed (updated columns with old -> new values)."""
    if change.op == "update":
        old, new = change.old_values or {}, change.new_values or {}
        columns = [c for c in change.changed_columns if c not in _BOOKKEEPING]
        return "; ".join(
            f"{c}: {_short(old.get(c))} -> {_short(new.get(c))}"
            for c in columns or change.changed_columns
        )
    return "new row" if change.op == "insert" else "row removed"


def history_command(
    table: str | None = typer.Option(None, "--table", help="Only this table (study, result...)."),
    record: str | None = typer.Option(
        None,
        "--record",
        help="A natural key such as SIM-001, or a row id with --table. Without --table,"
        " the rows that belong to the record (arms, results...) are listed too.",
    ),
    author: str | None = typer.Option(None, "--author", help="Only changes by this author."),
    since: str | None = typer.Option(None, "--since", help="From this UTC date/time."),
    until: str | None = typer.Option(None, "--until", help="Up to this UTC date/time."),
    revision: int | None = typer.Option(None, "--revision", help="Only this data revision."),
    limit: int = typer.Option(50, "--limit", help="Show the newest N changes (0: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines, one per change."),
    url: DatabaseUrl = None,
) -> None:
    """List recorded changes: who changed what, when, why, with old and new values."""
    try:
        ensure_migrated(url)
        engine = get_engine(url)
        try:
            changes = list_changes(
                engine,
                table=table,
                record=record,
                author=author,
                since=since,
                until=until,
                revision=revision,
                limit=limit or None,
            )
        finally:
            engine.dispose()
    except EvidenceError as error:
        fail(error)
    if as_json:
        for change in changes:
            console.print_json(json.dumps(change.to_dict(), default=str), indent=None)
        return
    if not changes:
        console.print("no changes match")
        return
    view = Table(box=None, header_style="bold", pad_edge=False)
    view.add_column("rev", justify="right", no_wrap=True)
    view.add_column("when (UTC)", no_wrap=True)
    view.add_column("author", overflow="fold")
    view.add_column("op", no_wrap=True)
    view.add_column("record", overflow="fold")
    view.add_column("change", overflow="fold")
    view.add_column("message", overflow="fold")
    for change in changes:
        view.add_row(
            str(change.revision_id),
            change.changed_at.strftime("%Y-%m-%d %H:%M"),
            change.author or f"({change.source})",
            change.op,
            record_label(change),
            describe(change),
            change.message or "",
        )
    console.print(view)


def restore_command(
    table: str = typer.Argument(..., help="Table of the deleted row (study, result...)."),
    key: str = typer.Argument(..., help="Its natural key (SIM-001) or row id."),
    author: str | None = typer.Option(
        None, "--author", help="Who restores (default: EVIDENCE_AUTHOR, else the OS user)."
    ),
    message: str | None = typer.Option(None, "--message", "-m", help="Why."),
    url: DatabaseUrl = None,
) -> None:
    """Restore a deleted row, with every row deleted with it, from the history."""
    try:
        ensure_migrated(url)
        engine = get_engine(url)
        try:
            result = restore(engine, table, key, author=author, message=message)
        finally:
            engine.dispose()
    except EvidenceError as error:
        fail(error)
    console.print(str(result), highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``history`` and ``restore`` to *app*."""
    app.command("history")(history_command)
    app.command("restore")(restore_command)
