"""Migrations create every table, go down and up again, and match the models."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from evidence.db import migrate
from evidence.db.engine import get_engine, write_transaction
from evidence.db.models import DATA_TABLES, HISTORY_TABLES, metadata
from evidence.errors import DatabaseError


def _tables(url: str) -> set[str]:
    engine = get_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _seed(url: str) -> None:
    engine = get_engine(url)
    try:
        with write_transaction(engine, message="seed") as (connection, _):
            review_id = connection.execute(
                sa.text("INSERT INTO review (name) VALUES ('r') RETURNING id")
            ).scalar_one()
            connection.execute(
                sa.text("INSERT INTO study (review_id, study_key) VALUES (:r, 'S-1')"),
                {"r": review_id},
            )
    finally:
        engine.dispose()


def _count(url: str, table: str) -> int:
    engine = get_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
    finally:
        engine.dispose()


def test_empty_database_upgrades_to_head_with_every_model_table(db_url: str) -> None:
    assert migrate.status(db_url).current is None
    state = migrate.upgrade(db_url)
    assert state.up_to_date and state.current == migrate.head()
    assert set(metadata.tables) <= _tables(db_url)
    assert set(DATA_TABLES) | set(HISTORY_TABLES) <= set(metadata.tables)


def test_alembic_check_reports_no_drift_at_head(migrated_db_url: str) -> None:
    migrate.check(migrated_db_url)  # raises DatabaseError on any difference


def test_head_to_base_to_head_on_an_empty_database_restores_every_table(
    migrated_db_url: str,
) -> None:
    migrate.downgrade(migrated_db_url, "base")
    assert not set(metadata.tables) & _tables(migrated_db_url)
    migrate.upgrade(migrated_db_url)
    migrate.check(migrated_db_url)


def test_downgrade_to_base_refuses_while_tables_hold_data_and_keeps_them(
    migrated_db_url: str,
) -> None:
    _seed(migrated_db_url)
    with pytest.raises(
        DatabaseError,
        match=r"refusing to downgrade to base: it would drop data in revision 0001: table review"
        r" \(1 row\), table revision \(1 row\), table change_log \(2 rows\), table study"
        r" \(1 row\); nothing was changed; .* --drop-data$",
    ):
        migrate.downgrade(migrated_db_url, "base")
    assert migrate.status(migrated_db_url).current == migrate.head()
    assert _count(migrated_db_url, "study") == 1
    assert _count(migrated_db_url, "change_log") == 2


def test_downgrade_below_history_keeps_data_and_upgrade_resumes_logging(
    migrated_db_url: str,
) -> None:
    _seed(migrated_db_url)
    migrate.downgrade(migrated_db_url, "0001")
    assert _count(migrated_db_url, "study") == 1
    migrate.upgrade(migrated_db_url)
    migrate.check(migrated_db_url)
    _seed_more = get_engine(migrated_db_url)
    try:
        with write_transaction(_seed_more) as (connection, _):
            connection.execute(sa.text("UPDATE study SET year = 2001"))
    finally:
        _seed_more.dispose()
    assert _count(migrated_db_url, "change_log") == 3


def test_downgrade_with_drop_data_removes_every_table(migrated_db_url: str) -> None:
    _seed(migrated_db_url)
    migrate.downgrade(migrated_db_url, "base", drop_data=True)
    assert not set(metadata.tables) & _tables(migrated_db_url)
    assert migrate.upgrade(migrated_db_url).up_to_date


def test_status_lists_pending_migrations_of_an_empty_database(sqlite_url: str) -> None:
    state = migrate.status(sqlite_url)
    assert state.current is None
    assert state.pending[:2] == ("0001", "0002") and state.pending[-1] == migrate.head()
    assert not state.up_to_date
    with pytest.raises(
        DatabaseError, match=r"no database at .*; create it with `evidence db init`"
    ):
        migrate.ensure_migrated(sqlite_url)
    get_engine(sqlite_url).connect().close()  # now an empty file
    with pytest.raises(DatabaseError, match=r"not migrated .*run `evidence db upgrade`"):
        migrate.ensure_migrated(sqlite_url)


def test_upgrade_works_from_any_working_directory(
    sqlite_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert migrate.init(sqlite_url).up_to_date
    assert migrate.init(sqlite_url).up_to_date  # a second init changes nothing


def _rows(url: str, tables: tuple[str, ...]) -> dict[str, list[tuple]]:
    engine = get_engine(url)
    try:
        with engine.connect() as connection:
            return {
                t: [tuple(r) for r in connection.execute(sa.text(f"SELECT * FROM {t} ORDER BY id"))]
                for t in tables
            }
    finally:
        engine.dispose()


def test_head_down_and_up_again_with_a_loaded_review_keeps_every_row(
    migrated_db_url: str,
) -> None:
    """BCG loaded and its plan views stored: going down to 0001 refuses while views exist,
    goes with --drop-data (views only), and back at head every record and its history is
    as it was, nothing drifts, and the store works (writes logged, views computed)."""
    from evidence.config import project_root
    from evidence.ingest.codebook import load_codebook
    from evidence.ingest.loader import ingest
    from evidence.views import create_plan_views, list_views

    url = migrated_db_url
    root = project_root()
    codebook = load_codebook(root / "schemas" / "bcg.yaml")
    ingest([root / "seeds" / "bcg"], codebook=codebook, database=url)
    engine = get_engine(url)
    try:
        create_plan_views(engine, codebook)
        n_views = len(list_views(engine))
    finally:
        engine.dispose()
    tables = (*DATA_TABLES, *HISTORY_TABLES)
    before = _rows(url, tables)
    assert all(before[t] for t in ("study", "result", "effect_size", "change_log"))

    with pytest.raises(
        DatabaseError,
        match=rf"in revision 0003: table analysis_view \({n_views} rows\), table view_result",
    ):
        migrate.downgrade(url, "0001")
    assert migrate.status(url).current == migrate.head()  # one transaction: nothing undone
    assert _count(url, "analysis_view") == n_views

    migrate.downgrade(url, "0001", drop_data=True)
    assert migrate.status(url).current == "0001"
    migrate.upgrade(url)
    migrate.check(url)
    assert _rows(url, tables) == before

    engine = get_engine(url)
    try:
        with write_transaction(engine, message="after the round trip") as (connection, rev):
            connection.execute(sa.text("UPDATE study SET year = 1949 WHERE study_key = 'BCG-01'"))
        assert _count(url, "change_log") == len(before["change_log"]) + 1
        create_plan_views(engine, codebook)
        assert len(list_views(engine)) == n_views
        with engine.connect() as connection:
            k = connection.execute(sa.text("SELECT count(*) FROM analysis_dataset")).scalar()
        assert k == 13 and rev == len(before["revision"]) + 1
    finally:
        engine.dispose()
