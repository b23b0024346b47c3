"""`evidence db`: create, migrate and inspect the database."""

from __future__ import annotations

import typer

from evidence.cli.app import DatabaseUrl, console, fail
from evidence.db import migrate
from evidence.errors import DatabaseError, EvidenceError

db_app = typer.Typer(
    help="Create, migrate and inspect the database (Alembic migrations).",
    no_args_is_help=True,
)


def _show(state: migrate.MigrationStatus) -> None:
    console.print(str(state), highlight=False, soft_wrap=True)


@db_app.command("init")
def init_command(url: DatabaseUrl = None) -> None:
    """Create the database and migrate it to the newest revision."""
    try:
        state = migrate.init(url)
    except EvidenceError as error:
        fail(error)
    _show(state)


@db_app.command("upgrade")
def upgrade_command(
    revision: str = typer.Argument("head", help="Target migration revision."),
    url: DatabaseUrl = None,
) -> None:
    """Apply pending migrations (up to REVISION, default the newest)."""
    try:
        state = migrate.upgrade(url, revision)
    except EvidenceError as error:
        fail(error)
    _show(state)


@db_app.command("status")
def status_command(url: DatabaseUrl = None) -> None:
    """Show the database's migration revision against the newest one."""
    try:
        state = migrate.status(url)
    except EvidenceError as error:
        fail(error)
    _show(state)
    if state.pending:
        console.print(f"pending: {', '.join(state.pending)}; run `evidence db upgrade`")


@db_app.command("downgrade")
def downgrade_command(
    revision: str = typer.Argument(..., help="Target migration revision (`base`: no tables)."),
    yes: bool = typer.Option(False, "--yes", help="Confirm: migrations are undone."),
    drop_data: bool = typer.Option(
        False,
        "--drop-data",
        help="Allow dropping tables that hold rows and columns that hold values (data are lost;"
        " dropped values of a data table's column stay in change_log).",
    ),
    url: DatabaseUrl = None,
) -> None:
    """Undo migrations down to REVISION (refuses to drop tables or columns holding data)."""
    try:
        if not yes:
            raise DatabaseError(f"downgrade to {revision!r} undoes migrations; confirm with --yes")
        state = migrate.downgrade(url, revision, drop_data=drop_data)
    except EvidenceError as error:
        fail(error)
    if state.dropped:
        text = f"dropped {migrate.describe_losses(state.dropped)}"
        console.print(text, markup=False, highlight=False, soft_wrap=True)
    _show(state)


def register(app: typer.Typer) -> None:
    """Add the ``db`` command group to *app*."""
    app.add_typer(db_app, name="db")
