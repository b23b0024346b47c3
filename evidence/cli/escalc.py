"""`evidence escalc`: effect sizes for every row of a CSV file (metafor's escalc)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from evidence.cli.app import fail
from evidence.errors import EvidenceError, NotFoundError, ValidationError

_ARGS = ("m1i", "sd1i", "n1i", "m2i", "sd2i", "n2i", "m1i_pre", "sd1i_pre", "m2i_pre",
         "sd2i_pre", "ti", "pi", "di", "ri", "ni", "ai", "bi", "ci")  # fmt: skip


def run_escalc(
    path: Path,
    measure: str,
    columns: dict[str, str],
    *,
    vtype: str | None = None,
    add: float = 0.5,
    to: str = "only0",
    drop00: bool = False,
):
    """Read a CSV, compute escalc with ``columns`` naming its columns, return the frame.

    A value that is not a column name but a number is used as a constant for every row.
    Failures name the file and its rows as a spreadsheet shows them (header = row 1).
    """
    import pandas as pd

    from evidence.stats.escalc import escalc

    if not path.is_file():
        raise NotFoundError(f"File {str(path)!r} does not exist.")
    data = pd.read_csv(path)
    args: dict[str, object] = {}
    for name, value in columns.items():
        if value in data.columns:
            args[name] = value
            continue
        try:
            args[name] = float(value)
        except ValueError:
            raise ValidationError(
                f"{path.name}: --{name.replace('_', '-')} names no column {value!r} "
                f"(columns: {', '.join(map(str, data.columns))}).",
                [
                    {
                        "file": path.name,
                        "sheet": None,
                        "row": None,
                        "column": value,
                        "value": None,
                        "rule": "an existing column or a number",
                    }
                ],
            ) from None
    try:
        res = escalc(measure, data=data, vtype=vtype, add=add, to=to, drop00=drop00, **args)
    except ValidationError as err:
        failures = [
            {**f, "file": path.name, "row": None if f["row"] is None else f["row"] + 1}
            for f in err.failures
        ]
        first = failures[0]
        where = f"row {first['row']}, " if first["row"] is not None else ""
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        shown = f" = {first['value']:g}" if isinstance(first["value"], float) else ""
        raise ValidationError(
            f"{path.name}: {where}{first['column']}{shown} breaks the rule "
            f"'{first['rule']}'{more}.",
            failures,
        ) from None
    return res.to_frame()


def register(app: typer.Typer) -> None:
    """Add the ``escalc`` command to *app*."""

    @app.command("escalc")
    def escalc_command(
        file: Annotated[Path, typer.Argument(help="CSV file with one row per study or result.")],
        measure: Annotated[
            str,
            typer.Option(
                "--measure",
                help="SMD, SMDH, MD, SMCR, SMCC, SMCRD, OR, RR, RD, OR2DL, OR2DN, COR or ZCOR.",
            ),
        ],
        m1i: Annotated[
            str | None, typer.Option(help="Column of group 1 means (post means for SMCR).")
        ] = None,
        sd1i: Annotated[str | None, typer.Option(help="Column of group 1 SDs.")] = None,
        n1i: Annotated[str | None, typer.Option(help="Column of group 1 sizes.")] = None,
        m2i: Annotated[
            str | None, typer.Option(help="Column of group 2 means (pre means for SMCR).")
        ] = None,
        sd2i: Annotated[str | None, typer.Option(help="Column of group 2 SDs.")] = None,
        n2i: Annotated[str | None, typer.Option(help="Column of group 2 sizes.")] = None,
        m1i_pre: Annotated[
            str | None, typer.Option(help="Column of arm 1 baseline means (SMCRD).")
        ] = None,
        sd1i_pre: Annotated[
            str | None, typer.Option(help="Column of arm 1 baseline SDs (SMCRD).")
        ] = None,
        m2i_pre: Annotated[
            str | None, typer.Option(help="Column of arm 2 baseline means (SMCRD).")
        ] = None,
        sd2i_pre: Annotated[
            str | None, typer.Option(help="Column of arm 2 baseline SDs (SMCRD).")
        ] = None,
        ti: Annotated[str | None, typer.Option(help="Column of t statistics (SMD).")] = None,
        pi: Annotated[
            str | None, typer.Option(help="Column of signed two-sided p values (SMD).")
        ] = None,
        di: Annotated[
            str | None, typer.Option(help="Column of reported d (SMD) or 2x2 cell d.")
        ] = None,
        ri: Annotated[
            str | None, typer.Option(help="Column of correlations (COR, ZCOR, pre-post r).")
        ] = None,
        ni: Annotated[
            str | None, typer.Option(help="Column of sample sizes (COR, ZCOR, SMCR, SMCC).")
        ] = None,
        ai: Annotated[
            str | None, typer.Option(help="Column of 2x2 cell a (events, group 1).")
        ] = None,
        bi: Annotated[
            str | None, typer.Option(help="Column of 2x2 cell b (non-events, group 1).")
        ] = None,
        ci: Annotated[
            str | None, typer.Option(help="Column of 2x2 cell c (events, group 2).")
        ] = None,
        vtype: Annotated[
            str | None, typer.Option("--vtype", help="Variance type (default LS).")
        ] = None,
        add: Annotated[
            float, typer.Option("--add", help="Added to zero cells of 2x2 tables.")
        ] = 0.5,
        to: Annotated[str, typer.Option("--to", help="only0, all, if0all or none.")] = "only0",
        drop00: Annotated[
            bool,
            typer.Option(
                "--drop00", help="Drop tables with no events or no non-events in both groups."
            ),
        ] = False,
        output: Annotated[
            Path | None, typer.Option("-o", "--output", help="Write CSV here (else stdout).")
        ] = None,
    ) -> None:
        """Compute yi and vi for every row of FILE and write FILE's columns plus yi, vi."""
        given = dict(
            zip(
                _ARGS,
                (
                    m1i,
                    sd1i,
                    n1i,
                    m2i,
                    sd2i,
                    n2i,
                    m1i_pre,
                    sd1i_pre,
                    m2i_pre,
                    sd2i_pre,
                    ti,
                    pi,
                    di,
                    ri,
                    ni,
                    ai,
                    bi,
                    ci,
                ),
                strict=True,
            )
        )
        columns = {k: v for k, v in given.items() if v is not None}
        try:
            frame = run_escalc(file, measure, columns, vtype=vtype, add=add, to=to, drop00=drop00)
        except EvidenceError as err:
            fail(err)
        if output is None:
            frame.to_csv(sys.stdout, index=False)
        else:
            frame.to_csv(output, index=False)
