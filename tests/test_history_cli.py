"""`evidence history` lists changes; `evidence restore` brings a deleted study back."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from _history_data import populate, snapshot
from typer.testing import CliRunner

from evidence.cli import app
from evidence.db.engine import get_engine, write_transaction

runner = CliRunner()


def _run(*args: str) -> object:
    return runner.invoke(app, list(args), env={"COLUMNS": "200", "EVIDENCE_AUTHOR": "cli-user"})


@pytest.fixture
def engine(migrated_db_url: str) -> Iterator[sa.Engine]:
    engine = get_engine(migrated_db_url)
    populate(engine)
    with write_transaction(engine, author="bob", message="SD from table 2") as (connection, _):
        connection.execute(
            sa.text("UPDATE result SET sd1i = 1.4 WHERE result_key = 'SIM-001-post'")
        )
    yield engine
    engine.dispose()


def test_history_shows_the_update_with_old_and_new_value_author_and_message(
    engine: sa.Engine, migrated_db_url: str
) -> None:
    result = _run("history", "--author", "bob", "--url", migrated_db_url)
    assert result.exit_code == 0, result.output
    (line,) = [row for row in result.output.splitlines() if "update" in row]
    assert "bob" in line and "result SIM-001/SIM-001-post" in line
    assert "sd1i: 0.333333 -> 1.4" in line and "SD from table 2" in line


def test_history_json_gives_one_object_per_change_with_full_values(
    engine: sa.Engine, migrated_db_url: str
) -> None:
    result = _run(
        "history", "--table", "result", "--json", "--limit", "0", "--url", migrated_db_url
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["op"] for r in rows] == ["insert"] * 4 + ["update"]
    assert rows[-1]["old_values"]["sd1i"] == 1.0 / 3.0 and rows[-1]["new_values"]["sd1i"] == 1.4


def test_restore_brings_back_a_deleted_study_and_records_who_did_it(
    engine: sa.Engine, migrated_db_url: str
) -> None:
    before = snapshot(engine)
    with write_transaction(engine, message="duplicate") as (connection, _):
        connection.execute(sa.text("DELETE FROM study WHERE study_key = 'SIM-002'"))
    result = _run("restore", "study", "SIM-002", "-m", "not a duplicate", "--url", migrated_db_url)
    assert result.exit_code == 0, result.output
    assert "restored 1 study, 2 arm" in result.output
    assert snapshot(engine) == before
    shown = _run(
        "history", "--record", "SIM-002", "--json", "--limit", "1", "--url", migrated_db_url
    )
    (last,) = [json.loads(line) for line in shown.output.splitlines()]
    assert (last["author"], last["message"], last["op"]) == (
        "cli-user",
        "not a duplicate",
        "insert",
    )


def test_restore_of_a_study_that_exists_fails_in_one_line(
    engine: sa.Engine, migrated_db_url: str
) -> None:
    result = _run("restore", "study", "SIM-001", "--url", migrated_db_url)
    assert result.exit_code == 1
    assert result.output.strip() == "error: study 'SIM-001' exists (row 1); nothing to restore"


def test_history_on_an_unmigrated_database_says_to_run_db_upgrade(sqlite_url: str) -> None:
    get_engine(sqlite_url).connect().close()  # an empty SQLite file
    result = _run("history", "--url", sqlite_url)
    assert result.exit_code == 1
    assert "is not migrated (no tables); run `evidence db upgrade`" in result.output


def test_history_on_a_missing_sqlite_file_says_to_run_db_init(tmp_path) -> None:
    result = _run("history", "--url", f"sqlite:///{tmp_path / 'absent.db'}")
    assert result.exit_code == 1
    assert "create it with `evidence db init`" in result.output
    assert not (tmp_path / "absent.db").exists()


def test_history_rejects_an_unknown_table_and_a_bad_date(
    engine: sa.Engine, migrated_db_url: str
) -> None:
    unknown = _run("history", "--table", "studies", "--url", migrated_db_url)
    assert unknown.exit_code == 1 and "'studies' is not a data table" in unknown.output
    bad = _run("history", "--since", "last week", "--url", migrated_db_url)
    assert bad.exit_code == 1 and "since 'last week' is not a date or time" in bad.output


def test_history_names_the_study_of_every_row_and_hides_bookkeeping_columns(
    engine: sa.Engine, migrated_db_url: str
) -> None:
    with write_transaction(engine, author="eve") as (connection, _):
        connection.execute(
            sa.text(
                "UPDATE effect_size SET yi = 0.75, computed_at = CURRENT_TIMESTAMP"
                " WHERE result_id = (SELECT id FROM result WHERE result_key = 'SIM-002-post')"
            )
        )
    result = _run("history", "--author", "eve", "--url", migrated_db_url)
    assert result.exit_code == 0, result.output
    (line,) = [row for row in result.output.splitlines() if "update" in row]
    assert "(SIM-002)" in line and "yi:" in line and "computed_at" not in line
    rows = _run("history", "--author", "eve", "--json", "--url", migrated_db_url).output
    assert json.loads(rows.splitlines()[0])["study"] == "SIM-002"


def test_history_record_given_as_a_row_id_needs_its_table(
    engine: sa.Engine, migrated_db_url: str
) -> None:
    result = _run("history", "--record", "2", "--url", migrated_db_url)
    assert result.exit_code == 1
    assert "record 2 is a row id: name its table too" in result.output
    result = _run("history", "--table", "study", "--record", "2", "--url", migrated_db_url)
    assert result.exit_code == 0 and "study SIM-002" in result.output
