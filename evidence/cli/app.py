"""The Typer application and the one place user errors become one line on stderr."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.console import Console

from evidence.errors import EvidenceError

__all__ = ["DatabaseUrl", "URL_HELP", "app", "console", "err_console", "fail", "run"]

URL_HELP = "Database URL (default: EVIDENCE_DATABASE_URL, else sqlite:///evidence.db)."

#: The one database-URL option of every command that opens the database:
#: ``--url`` (with ``--database`` and ``-d`` as aliases). Use as ``url: DatabaseUrl = None``.
DatabaseUrl = Annotated[
    str | None,
    typer.Option("--url", "--database", "-d", help=URL_HELP, show_default=False),
]

app = typer.Typer(
    name="evidence",
    help="evidence: the database and engine for living systematic reviews.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

console = Console()
err_console = Console(stderr=True)

_state = {"debug": False}


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    """evidence: the database and engine for living systematic reviews."""
    _state["debug"] = debug


def fail(error: EvidenceError) -> None:
    """Print an EvidenceError as one line (plus its failure table) and exit non-zero."""
    err_console.print(f"[bold red]error:[/] {error.message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=error.exit_code)


def run() -> None:
    """Entry point: run the app, turning EvidenceError into a clean exit."""
    try:
        app()
    except EvidenceError as error:  # raised outside a command's own handling
        if _state["debug"] or "--debug" in sys.argv:
            raise
        err_console.print(f"[bold red]error:[/] {error.message}", highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
