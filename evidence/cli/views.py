"""`evidence view create|list|show|refresh|drop|history|plan|results` and `evidence diff`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.table import Table

from evidence.cli.app import DatabaseUrl, console, fail
from evidence.db.engine import get_engine
from evidence.db.migrate import ensure_migrated
from evidence.errors import EvidenceError

__all__ = ["register"]

REVIEW_HELP = "Review name (default: the database's only review)."
_REVIEW = typer.Option(None, "--review", help=REVIEW_HELP, show_default=False)
_JSON = typer.Option(False, "--json", help="Print JSON.")
_NAMES = typer.Argument(None, help="Views (default: every stale one).")


@contextmanager
def _engine(url: str | None) -> Iterator[Any]:
    ensure_migrated(url)
    engine = get_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def _num(x: Any, digits: int = 4) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def _ci(lb: Any, ub: Any) -> str:
    return "" if lb is None or ub is None else f"[{lb:.4f}, {ub:.4f}]"


def _dump(value: Any) -> None:
    console.print_json(json.dumps(value, default=str))


def register(app: typer.Typer) -> None:
    """Add the ``view`` command group and ``diff`` to *app*."""
    view = typer.Typer(help="Living analysis views: stored selections and their estimates.")
    app.add_typer(view, name="view")

    @view.command("create")
    def create_command(
        name: str = typer.Argument(..., help="View name (unique in the review)."),
        select: str = typer.Option(
            "", "--select", "-s", help="Selection, e.g. 'domain == \"mental\"'."
        ),
        model: str = typer.Option("rma", "--model", help="rma, three-level or che."),
        method: str | None = typer.Option(None, "--method", help="tau2/sigma2 estimator (REML)."),
        test: str | None = typer.Option(None, "--test", help="z or t (rma also knha)."),
        level: float | None = typer.Option(None, "--level", help="Confidence level in percent."),
        rho: float | None = typer.Option(None, "--rho", help="che: within-study correlation."),
        small_sample: str | None = typer.Option(None, "--small-sample", help="che: CR2 or CR1."),
        smooth_vi: bool | None = typer.Option(
            None, "--smooth-vi/--no-smooth-vi", help="che: average vi within study (default on)."
        ),
        mods: str | None = typer.Option(None, "--mods", help="Moderators, comma-separated."),
        subgroup: str | None = typer.Option(None, "--subgroup", help="Subgroup field."),
        measure: str | None = typer.Option(None, "--measure", help="Effect measure label."),
        title: str | None = typer.Option(None, "--title", help="Title shown in tables."),
        replace: bool = typer.Option(False, "--replace", help="Replace a view of that name."),
        author: str | None = typer.Option(None, "--author", help="Recorded with the view."),
        review: str | None = _REVIEW,
        as_json: bool = _JSON,
        url: DatabaseUrl = None,
    ) -> None:
        """Check a view against the codebook, store it, compute it and print its summary."""
        from evidence.views import create_view
        from evidence.views.spec import as_tuple

        options = {
            k: v
            for k, v in (
                ("method", method),
                ("test", test),
                ("level", level),
                ("rho", rho),
                ("small_sample", small_sample),
                ("smooth_vi", smooth_vi),
            )
            if v is not None
        }
        try:
            with _engine(url) as engine:
                status = create_view(
                    engine,
                    name,
                    select,
                    model=model,
                    options=options,
                    moderators=as_tuple(mods),
                    subgroup=subgroup,
                    measure=measure,
                    title=title,
                    review=review,
                    author=author,
                    replace=replace,
                )
        except EvidenceError as error:
            fail(error)
            return
        assert status is not None
        if as_json:
            _dump(status.to_dict())
        else:
            console.print(status.summary or "", highlight=False, markup=False)

    @view.command("list")
    def list_command(
        review: str | None = _REVIEW, as_json: bool = _JSON, url: DatabaseUrl = None
    ) -> None:
        """List the views with their current estimate and whether it is fresh."""
        from evidence.views import list_views

        try:
            with _engine(url) as engine:
                views = list_views(engine, review=review)
        except EvidenceError as error:
            fail(error)
            return
        if as_json:
            _dump([v.to_dict() for v in views])
            return
        table = Table(title_justify="left")
        for col in ("view", "source", "model", "selection", "k", "estimate", "CI", "state"):
            table.add_column(col)
        for v in views:
            state = "fresh" if v.fresh else "STALE"
            if v.status == "error":
                state += " (error)"
            table.add_row(
                v.spec.name,
                v.spec.source,
                v.spec.model,
                v.spec.selection,
                str(v.k_effects or ""),
                _num(v.headline.get("estimate")),
                _ci(v.headline.get("ci_lb"), v.headline.get("ci_ub")),
                state,
            )
        console.print(table)

    @view.command("show")
    def show_command(
        name: str = typer.Argument(..., help="View name."),
        as_of: str | None = typer.Option(
            None, "--as-of", help="Recompute on the data as of a revision number or date."
        ),
        no_refresh: bool = typer.Option(
            False, "--no-refresh", help="Do not refresh a stale view; mark it STALE."
        ),
        review: str | None = _REVIEW,
        as_json: bool = _JSON,
        url: DatabaseUrl = None,
    ) -> None:
        """Print a view's metafor-style summary (refreshing it first when stale)."""
        from evidence.views import recompute_as_of, show_view

        try:
            with _engine(url) as engine:
                if as_of is not None:
                    revision, comp = recompute_as_of(engine, name, as_of, review=review)
                    if as_json:
                        _dump(
                            {
                                "revision": revision,
                                "fingerprint": comp.fingerprint,
                                **comp.headline,
                                "result": comp.result,
                            }
                        )
                    else:
                        console.print(f"as of revision {revision}:", highlight=False)
                        console.print(comp.summary, highlight=False, markup=False)
                    return
                status = show_view(engine, name, review=review, refresh=not no_refresh)
        except EvidenceError as error:
            fail(error)
            return
        if as_json:
            _dump(status.to_dict())
            return
        if not status.fresh:
            console.print(
                f"[bold red]STALE[/]: computed at revision {status.revision}; the data changed "
                "since. Run `evidence view refresh`.",
                highlight=False,
            )
        console.print(status.summary or "", highlight=False, markup=False)

    @view.command("refresh")
    def refresh_command(
        names: list[str] | None = _NAMES,
        force: bool = typer.Option(False, "--force", help="Re-check fresh views too."),
        review: str | None = _REVIEW,
        as_json: bool = _JSON,
        url: DatabaseUrl = None,
    ) -> None:
        """Recompute the views whose data changed; confirm the others."""
        from evidence.views import refresh_views
        from evidence.views.dataset import review_row

        try:
            with _engine(url) as engine:
                with engine.connect() as conn:
                    rid = review_row(conn, review).id
                report = refresh_views(engine, names or None, review_id=rid, force=force)
        except EvidenceError as error:
            fail(error)
            return
        if as_json:
            _dump(report.to_dict())
            return
        console.print(
            f"revision {report.revision}: {len(report.recomputed)} recomputed, "
            f"{len(report.confirmed)} confirmed unchanged"
            + (f", {len(report.errors)} not estimable" if report.errors else ""),
            highlight=False,
        )
        for name in report.recomputed:
            console.print(f"  recomputed {name}", highlight=False)

    @view.command("drop")
    def drop_command(
        name: str = typer.Argument(..., help="View name."),
        review: str | None = _REVIEW,
        url: DatabaseUrl = None,
    ) -> None:
        """Delete a view and its stored results."""
        from evidence.views import drop_view

        try:
            with _engine(url) as engine:
                n = drop_view(engine, name, review=review)
        except EvidenceError as error:
            fail(error)
            return
        console.print(f"dropped view {name} ({n} stored results)", highlight=False)

    @view.command("history")
    def history_command(
        name: str = typer.Argument(..., help="View name."),
        review: str | None = _REVIEW,
        as_json: bool = _JSON,
        url: DatabaseUrl = None,
    ) -> None:
        """How a view's estimate, CI and k moved, revision by revision, and why."""
        from evidence.views import view_history

        try:
            with _engine(url) as engine:
                history = view_history(engine, name, review=review)
        except EvidenceError as error:
            fail(error)
            return
        if as_json:
            _dump(history.to_dict())
            return
        table = Table(title=f"view {name}: history", title_justify="left")
        for col in ("revision", "computed", "k studies", "k", "estimate", "CI", "changed records"):
            table.add_column(col)
        for e in history.entries:
            changed = ", ".join(
                f"{c['table']} {c['key'] or '#' + str(c['row_id'])} ({c['op']})"
                for c in e["changes"][:6]
            ) + (f" +{len(e['changes']) - 6} more" if len(e["changes"]) > 6 else "")
            table.add_row(
                str(e["revision"]),
                f"{e['computed_at']:%Y-%m-%d %H:%M:%S}",
                str(e["k_studies"] or ""),
                str(e["k_effects"] or ""),
                _num(e["estimate"]),
                _ci(e["ci_lb"], e["ci_ub"]),
                changed,
            )
        console.print(table)

    @view.command("plan")
    def plan_command(review: str | None = _REVIEW, url: DatabaseUrl = None) -> None:
        """Create the views of the review's analysis plan (from its stored codebook)."""
        from evidence.views import create_plan_views
        from evidence.views.dataset import review_codebook, review_row

        try:
            with _engine(url) as engine:
                with engine.connect() as conn:
                    row = review_row(conn, review)
                names = create_plan_views(engine, review_codebook(row.codebook, row.name))
        except EvidenceError as error:
            fail(error)
            return
        console.print(f"{len(names)} views of the analysis plan are stored and computed.")

    @view.command("results")
    def results_command(
        review: str | None = _REVIEW, as_json: bool = _JSON, url: DatabaseUrl = None
    ) -> None:
        """The review's results table: every view (and subgroup) with k, estimate, CI, PI."""
        from evidence.views import results_table
        from evidence.views.render import results_rich_table

        try:
            with _engine(url) as engine:
                frame = results_table(engine, review=review)
        except EvidenceError as error:
            fail(error)
            return
        if as_json:
            _dump(json.loads(frame.to_json(orient="records")))
            return
        console.print(results_rich_table(frame, console))

    @app.command("diff")
    def diff_command(
        rev1: str = typer.Argument(..., help="Revision number or date (the older)."),
        rev2: str = typer.Argument(..., help="Revision number or date (the newer)."),
        review: str | None = _REVIEW,
        as_json: bool = _JSON,
        url: DatabaseUrl = None,
    ) -> None:
        """Records changed between two revisions: studies added, withdrawn, renamed and
        changed, the views whose estimate moved, then the records.

        Example: evidence diff 1 2 --json
        """
        from evidence.cli.diff import print_diff
        from evidence.views.diff import diff_summary

        try:
            with _engine(url) as engine:
                summary = diff_summary(engine, rev1, rev2, review=review)
        except EvidenceError as error:
            fail(error)
            return
        if as_json:
            typer.echo(json.dumps(summary.to_dict(), default=str))  # one line: records are many
            return
        print_diff(summary, console)
