"""`evidence plot KIND VIEW -o FILE`, `evidence bias VIEW`, `evidence sensitivity VIEW`."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.table import Table

from evidence.cli.app import DatabaseUrl, console, fail
from evidence.errors import EvidenceError

__all__ = ["register"]

PLOTS = ("forest", "funnel", "cumulative", "bubble", "living")
_REVIEW = typer.Option(
    None, "--review", help="Review name (default: the database's only review).", show_default=False
)
_VIEW = typer.Argument(..., help="The analysis view (see `evidence view list`).")
_JSON = typer.Option(False, "--json", help="Print JSON.")
_OUTPUT = typer.Option(..., "--output", "-o", help="Figure file (.png or .svg).")


@contextmanager
def _engine(url: str | None) -> Iterator[Any]:
    from evidence.db.engine import get_engine
    from evidence.db.migrate import ensure_migrated

    ensure_migrated(url)
    engine = get_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def _figure(engine: Any, kind: str, view: str, review: str | None) -> Any:
    if kind == "living":
        from evidence.plots import living
        from evidence.views import view_history

        frame = view_history(engine, view, review=review).to_frame()
        frame = frame[frame["status"] == "ok"].rename(columns={"k_effects": "k"})
        return living(frame, title=f"{view}: estimate across data revisions")
    from evidence.report.figures import view_figure
    from evidence.views.fit import fit_view

    return view_figure(fit_view(engine, view, review=review), kind)


def _n(x: float, digits: int = 4) -> str:
    return "NA" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _sensitivity_table(view: str, found: Any, simulated: bool) -> Table:
    """The suite as a Rich table: numbers never wrap (the labels do on narrow terminals)."""
    title = (
        f"Sensitivity analyses of {view} (tau2: {found.method}, rho = {found.rho:g}, "
        f"{found.level:g}% CI)" + (" — SIMULATED data" if simulated else "")
    )
    lev = f"{found.level:g}%"
    cells = []
    for r in found.rows:
        ok = math.isfinite(r.g)
        p = "NA" if not math.isfinite(r.pval) else (
            "<.0001" if r.pval < 1e-4 else f"{r.pval:.4f}")  # fmt: skip
        cells.append([
            r.label, str(r.k), str(r.studies), _n(r.g, 3),
            f"[{_n(r.ci_lb, 3)}, {_n(r.ci_ub, 3)}]" if ok else "NA", p, _n(r.I2, 1),
            f"[{_n(r.pi_lb, 3)}, {_n(r.pi_ub, 3)}]" if ok else "NA",
        ])  # fmt: skip
    heads = ["analysis", "k", "studies", "g", f"{lev} CI", "p", "I2 %", f"{lev} PI"]
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  collapse_padding=True)  # fmt: skip
    for j, head in enumerate(heads):
        if j == 0:
            table.add_column(head, ratio=1, min_width=12, overflow="fold")
            continue
        width = max(len(head), *(len(c[j]) for c in cells))
        table.add_column(head, justify="right", no_wrap=True, min_width=width)
    for c in cells:
        table.add_row(*c)
    return table


def register(app: typer.Typer) -> None:
    """Add ``plot``, ``bias`` and ``sensitivity`` to *app*."""

    @app.command("plot")
    def plot_command(
        kind: str = typer.Argument(..., help="forest, funnel, cumulative, bubble or living."),
        view: str = _VIEW,
        output: Path = _OUTPUT,
        review: str | None = _REVIEW,
        url: DatabaseUrl = None,
    ) -> None:
        """Draw a figure of a view (PNG or SVG, chosen by the file suffix)."""
        from evidence.plots import save

        try:
            if kind not in PLOTS:
                raise EvidenceError(f"unknown plot {kind!r}; use one of {', '.join(PLOTS)}")
            if output.suffix.lower() not in (".png", ".svg"):
                raise EvidenceError(f"--output '{output}' must end in .png or .svg")
            with _engine(url) as engine:
                path = save(_figure(engine, kind, view, review), output)
        except EvidenceError as error:
            fail(error)
            return
        console.print(f"{kind} plot of {view}: {path}")

    @app.command("bias")
    def bias_command(
        view: str = _VIEW,
        review: str | None = _REVIEW,
        as_json: bool = _JSON,
        url: DatabaseUrl = None,
    ) -> None:
        """Egger's test (three-level for multilevel views), Begg's rank test, trim and fill,
        PET-PEESE and fail-safe N of a view."""
        from evidence.views.diagnostics import bias_tests
        from evidence.views.fit import fit_view

        try:
            with _engine(url) as engine:
                vf = fit_view(engine, view, review=review)
            found = bias_tests(vf)
        except EvidenceError as error:
            fail(error)
            return
        if as_json:
            console.print_json(json.dumps(found.to_dict(), default=str))
            return
        head = f"View {view!r}: {vf.spec.model}, {vf.k_studies} studies, {vf.k_effects} effects"
        console.print(head + (" (SIMULATED data)" if vf.simulated else ""), highlight=False)
        console.print(str(found), highlight=False, markup=False)

    @app.command("sensitivity")
    def sensitivity_command(
        view: str = _VIEW,
        rho: float | None = typer.Option(
            None, "--rho", help="Within-study correlation (default: the view's, else 0.6)."
        ),
        review: str | None = _REVIEW,
        as_json: bool = _JSON,
        url: DatabaseUrl = None,
    ) -> None:
        """The sensitivity analyses of a view in one table: the view's own model, overall,
        one effect per study, lowest/highest, outliers and influential cases removed, low
        risk of bias, three-level, CHE with robust variance."""
        from evidence.views.diagnostics import view_sensitivity
        from evidence.views.fit import fit_view

        try:
            with _engine(url) as engine:
                vf = fit_view(engine, view, review=review)
            found = view_sensitivity(vf, rho=rho)
        except EvidenceError as error:
            fail(error)
            return
        if as_json:
            console.print_json(json.dumps({"view": view, **found.to_dict()}, default=str))
            return
        console.print(_sensitivity_table(view, found, vf.simulated))
        for r in found.rows:
            if r.note:
                console.print(f"{r.label}: {r.note}", highlight=False, markup=False)
