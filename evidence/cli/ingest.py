"""`evidence ingest` and `evidence codebook check|apply`: load sheets, (re)apply codebooks."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from evidence.cli.app import DatabaseUrl, console, err_console, fail
from evidence.errors import EvidenceError, ValidationError

__all__ = ["register", "failure_table", "report_table"]

MAX_ROWS_SHOWN = 50


def failure_table(error: ValidationError, limit: int = MAX_ROWS_SHOWN) -> Table:
    """The failing cells of a ValidationError as a Rich table."""
    table = Table(
        title=f"{len(error.failures)} problem(s); nothing was written", title_justify="left"
    )
    for name, style in (("file", "dim"), ("sheet", ""), ("row", "bold"), ("column", "cyan"),
                        ("value", "magenta"), ("rule", "red")):  # fmt: skip
        table.add_column(name, style=style or None, overflow="fold",
                         justify="right" if name == "row" else "left")  # fmt: skip
    for f in error.failures[:limit]:
        value = f.get("value")
        table.add_row(
            str(f.get("file") or ""),
            str(f.get("sheet") or ""),
            "" if f.get("row") is None else str(f["row"]),
            str(f.get("column") or ""),
            "" if value is None else repr(value) if isinstance(value, str) else str(value),
            str(f.get("rule") or ""),
        )
    if len(error.failures) > limit:
        table.caption = f"... and {len(error.failures) - limit} more (use --json to see all)"
    return table


def report_table(report: Any) -> Table:
    """Rows inserted/updated/deleted per table, as a Rich table."""
    verb = "would change" if report.dry_run else "changed"
    table = Table(title=f"review {report.review}: {verb}", title_justify="left")
    for name in ("table", "inserted", "updated", "deleted"):
        table.add_column(name, justify="left" if name == "table" else "right")
    for name, c in report.changes.items():
        if c.total:
            table.add_row(name, str(c.inserted), str(c.updated), str(c.deleted))
    return table


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    """A Rich progress bar on stderr (only on a terminal); yields the callback or None."""
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("{task.description:<14}"),
        BarColumn(),
        TextColumn("{task.completed:>8}/{task.total}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=max(total, 1))
            bar.update(tasks[stage], completed=done, total=max(total, 1))

        yield update


def _render(report: Any, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(report.to_dict()))
        return
    if report.dry_run:
        console.print("[bold]dry run[/]: the sheets are valid; nothing was written.")
    if not report.changed:
        console.print(
            f"review {report.review}: no changes (the database already holds these records)."
        )
    else:
        console.print(report_table(report))
        if report.revision is not None:
            console.print(f"revision {report.revision} written.")
    if report.simulated:
        console.print(f"[bold yellow]SIMULATED[/]: {report.simulated} of the studies are simulated "
                      "(demonstration data, not real studies).")  # fmt: skip


def _fail(error: EvidenceError, as_json: bool) -> None:
    if as_json:
        failures = error.failures if isinstance(error, ValidationError) else []
        print(json.dumps({"ok": False, "error": error.message, "failures": failures},
                         default=str, indent=2))  # fmt: skip
        raise typer.Exit(code=error.exit_code)
    if isinstance(error, ValidationError) and error.failures:
        err_console.print(failure_table(error))
    fail(error)


_Paths = Annotated[
    list[Path], typer.Argument(help="CSV sheets (studies.csv, ...), XLSX workbooks or directories.")
]
_Codebook = Annotated[Path | None, typer.Option("--codebook", "-c", help="Codebook YAML file.")]
_Review = Annotated[
    str | None,
    typer.Option(
        "--review", "-r", help="Review name: schemas/NAME.yaml, else its stored codebook."
    ),
]
_DryRun = Annotated[bool, typer.Option("--dry-run", help="Validate and count; write nothing.")]
_Json = Annotated[bool, typer.Option("--json", help="Print the report or the failures as JSON.")]
_Author = Annotated[
    str | None,
    typer.Option("--author", help="Who makes the change (default: EVIDENCE_AUTHOR, OS user)."),
]
_Message = Annotated[str | None, typer.Option("--message", "-m", help="Why (kept in history).")]
_CodebookFile = Annotated[Path, typer.Argument(help="Codebook YAML file.")]


def _command(ctx: typer.Context) -> str:
    """The command line that made a revision, as the user would type it again.

    From a shell, ``sys.argv`` is that line; when the app is invoked in-process (tests,
    notebooks) ``sys.argv`` belongs to the host program, so the line is rebuilt from the
    context: the subcommand path and every parameter given a value other than its default.
    """
    if Path(sys.argv[0]).name == "evidence":
        return shlex.join(["evidence", *sys.argv[1:]])
    words = ["evidence", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if value is None or value is False or value == param.default:
            continue
        values = [str(v) for v in (value if isinstance(value, list | tuple) else [value])]
        if param.param_type_name == "argument":
            words += values
        elif value is True:
            words.append(param.opts[0])
        else:
            for v in values:
                words += [param.opts[0], v]
    return shlex.join(words)


def register(app: typer.Typer) -> None:
    """Add ``ingest`` and the ``codebook`` group to *app*."""

    @app.command("ingest")
    def ingest_command(
        ctx: typer.Context,
        paths: _Paths,
        codebook: _Codebook = None,
        review: _Review = None,
        url: DatabaseUrl = None,
        dry_run: _DryRun = False,
        as_json: _Json = False,
        author: _Author = None,
        message: _Message = None,
    ) -> None:
        """Validate coding sheets against the codebook; write changed records (all or nothing)."""
        from evidence.ingest.loader import ingest

        try:
            with _progress(err_console.is_terminal and not as_json) as progress:
                report = ingest(
                    paths,
                    codebook=codebook,
                    review=review,
                    database=url,
                    dry_run=dry_run,
                    author=author,
                    message=message,
                    command=_command(ctx),
                    progress=progress,
                )
        except EvidenceError as error:
            _fail(error, as_json)
            return
        _render(report, as_json)

    group = typer.Typer(
        help="Check codebooks and re-apply them to stored records.", no_args_is_help=True
    )
    app.add_typer(group, name="codebook")

    @group.command("check")
    def check_command(path: _CodebookFile, as_json: _Json = False) -> None:
        """Validate a codebook file and summarise its sheets, moderators and views."""
        from evidence.ingest.codebook import load_codebook

        try:
            cb = load_codebook(path)
        except EvidenceError as error:
            _fail(error, as_json)
            return
        if as_json:
            console.print_json(json.dumps({"ok": True, "review": cb.name, "sha256": cb.sha256,
                                           "views": [v.name for v in cb.views]}))  # fmt: skip
            return
        console.print(f"codebook {path}: review [bold]{cb.name}[/] ({cb.title}) is valid.")
        console.print(f"  measure {cb.analysis.measure}, default r {cb.analysis.default_ri}, "
                      f"model {cb.analysis.model or 'default'}")  # fmt: skip
        for sheet, cols in cb.sheets.items():
            console.print(f"  sheet {sheet}: {len(cols)} columns")
        console.print(f"  moderators: {', '.join(cb.moderators) or 'none'}")
        console.print(f"  analysis plan: {len(cb.views)} views")

    @group.command("apply")
    def apply_command(
        ctx: typer.Context,
        path: _CodebookFile,
        url: DatabaseUrl = None,
        dry_run: _DryRun = False,
        as_json: _Json = False,
        author: _Author = None,
        message: _Message = None,
    ) -> None:
        """Re-apply a codebook: recompute derived moderators and effect sizes; write changes."""
        from evidence.ingest.loader import apply_codebook

        try:
            with _progress(err_console.is_terminal and not as_json) as progress:
                report = apply_codebook(
                    path,
                    database=url,
                    dry_run=dry_run,
                    author=author,
                    message=message,
                    command=_command(ctx),
                    progress=progress,
                )
        except EvidenceError as error:
            _fail(error, as_json)
            return
        _render(report, as_json)
