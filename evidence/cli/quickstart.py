"""`evidence quickstart [DIR]`: a ready SQLite database with the SIMULATED peer support seed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from evidence.cli.app import console, fail
from evidence.errors import EvidenceError

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``quickstart`` to *app*."""

    @app.command("quickstart")
    def quickstart_command(
        directory: Annotated[
            Path, typer.Argument(help="Directory for evidence.db (created if needed).")
        ] = Path("quickstart"),
        author: Annotated[
            str | None, typer.Option("--author", help="Recorded with the seed's revision.")
        ] = None,
    ) -> None:
        """Create DIR/evidence.db, load the SIMULATED peer support seed, compute its views."""
        from evidence.report.quickstart import quickstart
        from evidence.views.render import results_rich_table

        try:
            built = quickstart(directory, author=author)
        except EvidenceError as error:
            fail(error)
            return
        result = built.seed
        report = result.report
        console.print(f"database: {result.directory / 'evidence.db'} ({result.database_url})")
        if report.changed:
            console.print(f"loaded the peer support seed (revision {report.revision}).")
        else:
            console.print("the peer support seed is already loaded; nothing changed.")
        console.print(
            f"[bold yellow]SIMULATED DATA[/]: {result.simulated_studies} studies "
            "(SIM-001 .. SIM-120) are simulated for demonstration; they are not real studies."
        )
        table = Table(title=f"review {report.review} (SIMULATED)", title_justify="left")
        for name in ("domain", "studies", "arms", "outcomes", "results", "effect sizes",
                     "imputed r"):  # fmt: skip
            table.add_column(name, justify="left" if name == "domain" else "right")
        for row in result.summary.itertuples(index=False):
            table.add_row(str(row.domain), *(str(int(x)) for x in (
                row.studies, row.arms, row.outcomes, row.results, row.effect_sizes,
                row.imputed_r)))  # fmt: skip
        console.print(table)
        console.print(
            f"{len(built.views)} analysis views of the review's plan are stored and fresh "
            "(standardized mean differences, positive = improvement):"
        )
        console.print(results_rich_table(built.results, console))
        if built.report is not None:
            console.print(
                f"report: {built.report.path} (open it in a browser; self-contained, "
                f"{built.report.views} views, SIMULATED banner)"
            )
        console.print(f"next: export EVIDENCE_DATABASE_URL={result.database_url}")
