"""`evidence db init | upgrade | status | downgrade` drive the migrations."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from evidence.cli import app
from evidence.db import migrate
from evidence.db.engine import get_engine, write_transaction

runner = CliRunner()


def _run(*args: str) -> object:
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def test_db_init_creates_a_migrated_database_and_status_says_so(sqlite_url: str) -> None:
    result = _run("db", "init", "--url", sqlite_url)
    assert result.exit_code == 0, result.output
    assert f"at {migrate.head()}, head {migrate.head()} (up to date)" in result.output
    status = _run("db", "status", "--url", sqlite_url)
    assert status.exit_code == 0 and "up to date" in status.output


def test_db_status_of_a_missing_database_lists_pending_migrations_and_creates_nothing(
    sqlite_url: str,
) -> None:
    result = _run("db", "status", "--url", sqlite_url)
    assert result.exit_code == 0
    pending = ", ".join(migrate.status(sqlite_url).pending)
    assert pending.startswith("0001, 0002")
    assert f"pending: {pending}; run `evidence db upgrade`" in result.output
    assert not os.path.exists(sa.make_url(sqlite_url).database)


def test_db_upgrade_and_downgrade_move_between_revisions(db_url: str) -> None:
    assert _run("db", "upgrade", "0001", "--url", db_url).exit_code == 0
    assert migrate.status(db_url).current == "0001"
    assert _run("db", "upgrade", "--url", db_url).exit_code == 0
    result = _run("db", "downgrade", "0001", "--yes", "--url", db_url)
    assert result.exit_code == 0, result.output
    assert migrate.status(db_url).current == "0001"


def test_db_downgrade_without_yes_is_refused_and_changes_nothing(sqlite_url: str) -> None:
    migrate.upgrade(sqlite_url)
    result = _run("db", "downgrade", "base", "--url", sqlite_url)
    assert result.exit_code == 1
    assert "confirm with --yes" in result.output
    assert migrate.status(sqlite_url).up_to_date


def _seed_reported_effect(url: str) -> None:
    """One result with a reported effect size (yi_reported, vi_reported)."""
    migrate.upgrade(url)
    engine = get_engine(url)
    try:
        with write_transaction(engine, message="seed") as (connection, _):
            review = connection.execute(
                sa.text("INSERT INTO review (name) VALUES ('r') RETURNING id")
            ).scalar_one()
            study = connection.execute(
                sa.text("INSERT INTO study (review_id, study_key) VALUES (:r, 'S') RETURNING id"),
                {"r": review},
            ).scalar_one()
            outcome = connection.execute(
                sa.text(
                    "INSERT INTO outcome (study_id, outcome_key, direction)"
                    " VALUES (:s, 'o', 'higher') RETURNING id"
                ),
                {"s": study},
            ).scalar_one()
            connection.execute(
                sa.text(
                    "INSERT INTO result (study_id, result_key, outcome_id, yi_reported,"
                    " vi_reported) VALUES (:s, 'r', :o, 0.25, 0.04)"
                ),
                {"s": study, "o": outcome},
            )
    finally:
        engine.dispose()


def test_db_downgrade_that_would_drop_reported_effects_fails_naming_them(db_url: str) -> None:
    _seed_reported_effect(db_url)
    result = _run("db", "downgrade", "0004", "--yes", "--url", db_url)
    assert result.exit_code == 1
    assert (
        "error: refusing to downgrade to 0004: it would drop data in revision 0005: column"
        " result.yi_reported (1 value), column result.vi_reported (1 value); nothing was"
        " changed; export what you need, then downgrade with --drop-data"
    ) in result.output
    assert "Traceback" not in result.output
    assert migrate.status(db_url).up_to_date


def test_db_downgrade_with_drop_data_says_what_it_dropped(db_url: str) -> None:
    _seed_reported_effect(db_url)
    result = _run("db", "downgrade", "0004", "--yes", "--drop-data", "--url", db_url)
    assert result.exit_code == 0, result.output
    assert (
        "dropped in revision 0005: column result.yi_reported (1 value; kept in change_log,"
        " data revision 2), column result.vi_reported (1 value; kept in change_log, data"
        " revision 2)"
    ) in result.output
    assert migrate.status(db_url).current == "0004"


def test_db_upgrade_to_an_unknown_revision_fails_in_one_line(sqlite_url: str) -> None:
    result = _run("db", "upgrade", "9999", "--url", sqlite_url)
    assert result.exit_code == 1
    assert "error: migration of" in result.output and "9999" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["init", "upgrade", "status", "downgrade"])
def test_every_db_command_has_help_text(command: str) -> None:
    result = _run("db", command, "--help")
    assert result.exit_code == 0 and "--url" in result.output
