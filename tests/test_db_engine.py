"""Engines: SQLite pragmas, PostgreSQL driver, constraints, and write transactions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from _history_data import populate
from sqlmodel import Session, select

from evidence.db.engine import current_revision, get_engine, write_transaction
from evidence.db.history import list_changes
from evidence.db.models import Arm, Study
from evidence.errors import DatabaseError


@pytest.fixture
def engine(migrated_db_url: str) -> Iterator[sa.Engine]:
    engine = get_engine(migrated_db_url)
    yield engine
    engine.dispose()


def test_sqlite_connections_enforce_foreign_keys_and_use_wal(sqlite_url: str) -> None:
    engine = get_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
            # statement journals of triggered bulk writes stay in memory (2 = MEMORY)
            assert connection.exec_driver_sql("PRAGMA temp_store").scalar() == 2
    finally:
        engine.dispose()


def test_postgresql_urls_are_served_by_psycopg_3() -> None:
    engine = get_engine("postgresql://user:secret@localhost/reviews")
    assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")


def test_a_bad_url_is_a_database_error() -> None:
    with pytest.raises(DatabaseError, match="cannot use database URL 'nosuchdb://x'"):
        get_engine("nosuchdb://x")


def test_write_to_an_unmigrated_database_says_to_run_db_upgrade(db_url: str) -> None:
    engine = get_engine(db_url)
    try:
        with pytest.raises(DatabaseError, match=r"is not migrated .*run `evidence db upgrade`"):
            with write_transaction(engine):
                pass  # pragma: no cover - the revision insert fails first
    finally:
        engine.dispose()


def test_fresh_database_is_at_revision_zero(engine: sa.Engine) -> None:
    assert current_revision(engine) == 0


def test_foreign_keys_and_check_constraints_refuse_bad_rows(engine: sa.Engine) -> None:
    populate(engine, keys=("SIM-001",))
    bad = {
        "arm of a missing study": "INSERT INTO arm (study_id, arm_key, role)"
        " VALUES (999, 'X', 'intervention')",
        "unknown arm role": "INSERT INTO arm (study_id, arm_key, role) VALUES (1, 'X', 'placebo')",
        "unknown direction": "UPDATE outcome SET direction = 'up'",
        "duplicate study key": "INSERT INTO study (review_id, study_key) VALUES (1, 'SIM-001')",
        "two moderator targets": "INSERT INTO moderator_value (moderator_id, study_id, arm_id)"
        " VALUES (1, 1, 1)",
        "no moderator target": "INSERT INTO moderator_value (moderator_id) VALUES (1)",
        "duplicate moderator value": "INSERT INTO moderator_value (moderator_id, study_id)"
        " VALUES (1, 1)",
    }
    for reason, statement in bad.items():
        with pytest.raises(sa.exc.IntegrityError):
            with write_transaction(engine, message=reason) as (connection, _):
                connection.execute(sa.text(statement))
    assert current_revision(engine) == 1


def test_orm_session_on_the_write_connection_is_logged_and_cascades(engine: sa.Engine) -> None:
    populate(engine, keys=("SIM-001",))
    with write_transaction(engine, author="orm", message="via session") as (connection, rev):
        with Session(bind=connection) as session:
            study = session.exec(select(Study).where(Study.study_key == "SIM-001")).one()
            study.arms.append(Arm(arm_key="C2", role="comparator", label="waitlist"))
            session.flush()
            session.delete(study)
            session.flush()
    tables = [(c.table_name, c.op) for c in list_changes(engine, revision=rev)]
    assert ("arm", "insert") in tables and ("study", "delete") in tables
    assert tables.count(("arm", "delete")) == 3
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM result")).scalar() == 0
