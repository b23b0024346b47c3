"""`evidence report -o report.html`: the review's living report as one HTML file."""

from __future__ import annotations

from pathlib import Path

import typer

from evidence.cli.app import DatabaseUrl, console, fail
from evidence.errors import EvidenceError

__all__ = ["register"]

_OUTPUT = typer.Option(Path("report.html"), "--output", "-o", help="The HTML file to write.")


def register(app: typer.Typer) -> None:
    """Add ``report`` to *app*."""

    @app.command("report")
    def report_command(
        output: Path = _OUTPUT,
        previous: str | None = typer.Option(
            None,
            "--previous",
            help="Previous report file or data revision to compare with "
            "(default: the file being replaced).",
            show_default=False,
        ),
        review: str | None = typer.Option(
            None, "--review", help="Review name (default: the database's only review).",
            show_default=False,
        ),
        url: DatabaseUrl = None,
    ) -> None:  # fmt: skip
        """Write the living report: estimates, forest and funnel plots, bias tests, what
        changed since the previous report, provenance (self-contained, no network)."""
        from evidence.db.engine import get_engine
        from evidence.db.migrate import ensure_migrated
        from evidence.report.build import build_report

        prev: str | int | None = previous
        if previous is not None and previous.strip().isdigit():
            prev = int(previous)
        try:
            ensure_migrated(url)
            engine = get_engine(url)
            try:
                built = build_report(engine, output, review=review, previous=prev)
            finally:
                engine.dispose()
        except EvidenceError as error:
            fail(error)
            return
        console.print(
            f"report: {built.path} ({built.views} views, {built.figures} figures, "
            f"{built.size / 1e6:.1f} MB, data revision {built.revision})",
            highlight=False,
            soft_wrap=True,
        )
        if built.simulated:
            console.print("[bold yellow]SIMULATED DATA[/]: the report carries a banner saying so.")
        if built.previous_revision is None:
            console.print("first report: nothing to compare with.")
        else:
            n = sum(built.changes.values())
            moved = [m for m in built.moved if m["shift"] is not None]
            console.print(
                f"since the previous report (revision {built.previous_revision}): {n} record "
                f"changes, {len(moved)} estimates moved.",
                highlight=False,
            )
            for m in moved:
                console.print(
                    f"  {m['view']}: {m['before']:.3f} -> {m['after']:.3f} ({m['shift']:+.3f})",
                    highlight=False,
                )
