"""`evidence import metapsy` and `evidence export metapsy`: the Metapsy interchange."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from evidence.cli.app import DatabaseUrl, console
from evidence.cli.ingest import _command, _fail, report_table
from evidence.errors import EvidenceError

__all__ = ["register"]

_Review = Annotated[
    str | None,
    typer.Option("--review", "-r", help="Review name (default: metapsy_ + the file's database "
                 "name on import; the database's only review on export)."),
]  # fmt: skip
_Json = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]


def register(app: typer.Typer) -> None:
    """Add the ``import`` and ``export`` groups to *app*."""
    import_app = typer.Typer(help="Load data in an interchange format.", no_args_is_help=True)
    export_app = typer.Typer(help="Write data in an interchange format.", no_args_is_help=True)
    app.add_typer(import_app, name="import")
    app.add_typer(export_app, name="export")

    @import_app.command("metapsy")
    def import_command(
        ctx: typer.Context,
        path: Annotated[Path, typer.Argument(help="Metapsy file (;-separated, decimal commas).")],
        direction: Annotated[str, typer.Option(
            "--direction", help="Which sign of Metapsy's g is an improvement: lower (lower "
            "scores are better), higher, or file (.g is already oriented so that positive is "
            "an improvement, read per outcome).", show_default=False)],
        sign: Annotated[str, typer.Option(
            "--sign", help="Sign convention of the file's .g for the comparison: auto, "
            "metapsy or reversed.")] = "auto",
        review: _Review = None,
        url: DatabaseUrl = None,
        skip_invalid: Annotated[bool, typer.Option(
            "--skip-invalid", help="Leave invalid rows out (listed), and rows that repeat "
            "another row's identity, instead of refusing the file.")] = False,
        repair_text: Annotated[bool, typer.Option(
            "--repair-text", help="Decode text cells that were encoded twice (mojibake) "
            "instead of refusing them.")] = False,
        events: Annotated[str | None, typer.Option(
            "--events", help="For outcomes with event counts: more (more events are better: "
            "response) or fewer (suicide attempts, relapse); overrides --direction for them.",
            show_default=False)] = None,
        measure: Annotated[str, typer.Option(
            "--measure", help="SMD (Hedges' g; events as Metapsy's g), or RR / OR: pool the "
            "log risk (odds) ratios of the rows with event counts (RR: also rows with "
            "precalc_log_rr and its SE).")] = "SMD",
        ignore_column: Annotated[list[str] | None, typer.Option(
            "--ignore-column", help="A moderator column not to import (damaged throughout, "
            "e.g. gambling-psyctr 25.0.0's mean_age); repeat for several.",
            show_default=False)] = None,
        dry_run: Annotated[bool, typer.Option(
            "--dry-run", help="Validate and count; write nothing.")] = False,
        as_json: _Json = False,
        author: Annotated[str | None, typer.Option(
            "--author", help="Who makes the change (default: EVIDENCE_AUTHOR, OS user).")] = None,
        message: Annotated[str | None, typer.Option(
            "--message", "-m", help="Why (kept in history).")] = None,
        effect_source: Annotated[str, typer.Option(
            "--effect-source", help="What views pool: computed (the store computes g from "
            "each row's statistics) or file (the file's .g and .g_se, oriented by "
            "--direction).")] = "computed",
    ) -> None:  # fmt: skip
        """Load a Metapsy database file (.csv or .xlsx) into a review, every column kept;
        compare the store's g with its .g.

        Example: evidence import metapsy peer-support__v23.0.3.csv --direction file
        """
        from evidence.ingest.metapsy_store import import_metapsy

        try:
            result = import_metapsy(
                path, direction=direction, database=url, review=review, sign=sign,
                skip_invalid=skip_invalid, repair_text=repair_text, dry_run=dry_run,
                author=author, message=message, command=_command(ctx), events=events,
                measure=measure, effect_source=effect_source,
                ignore_columns=tuple(ignore_column or ()),
            )  # fmt: skip
        except EvidenceError as error:
            _fail(error, as_json)
            return
        if as_json:
            console.print_json(json.dumps(result.to_dict(), default=_json_value))
            return
        report = result.ingest
        if report.dry_run:
            console.print("[bold]dry run[/]: the file is valid; nothing was written.")
        if report.changed:
            console.print(report_table(report))
        else:
            console.print(f"review {report.review}: no changes (the database already holds "
                          "these records).")  # fmt: skip
        console.print(str(result), highlight=False, soft_wrap=True)
        if report.revision is not None and not report.dry_run:
            console.print(f"revision {report.revision} written.")

    @export_app.command("metapsy")
    def export_command(
        output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
        review: _Review = None,
        url: DatabaseUrl = None,
        sign: Annotated[str, typer.Option(
            "--sign", help="Orientation of .g and precalc_g: improvement (positive = "
            "improvement, the store's), metapsy (means: arm 1 minus arm 2) or reversed.")]
        = "improvement",
        effects: Annotated[str, typer.Option(
            "--effects", help="For a review imported from a Metapsy file: file (default; "
            ".g, .g_se, precalc_g as the file had them: the file back, cell by cell) or "
            "store (the stored effect sizes, in the --sign convention).")] = "file",
        as_json: _Json = False,
    ) -> None:  # fmt: skip
        """Write a review's two-arm results in the Metapsy standard (a review imported from
        a Metapsy file: that file's columns, rows and values).

        Example: evidence export metapsy -o peer-support.csv --review metapsy_peer_support
        """
        from evidence.ingest.metapsy_export import export_metapsy

        try:
            result = export_metapsy(output, database=url, review=review, sign=sign,
                                    effects=effects)  # fmt: skip
        except EvidenceError as error:
            _fail(error, as_json)
            return
        if as_json:
            console.print_json(json.dumps(result.to_dict()))
        else:
            console.print(str(result), highlight=False, soft_wrap=True)


def _json_value(value: object) -> object:
    """numpy scalars and other non-JSON values in failure records."""
    if hasattr(value, "item"):
        return value.item()  # type: ignore[no-any-return]
    return str(value)
