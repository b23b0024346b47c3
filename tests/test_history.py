"""History: every write is logged by triggers, plain SQL too; deleted studies come back."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from _history_data import populate, snapshot

from evidence.db.engine import current_revision, get_engine, write_transaction
from evidence.db.history import list_changes, restore, state_as_of
from evidence.errors import DatabaseError, NotFoundError


@pytest.fixture
def engine(migrated_db_url: str) -> Iterator[sa.Engine]:
    engine = get_engine(migrated_db_url)
    yield engine
    engine.dispose()


def _scalar(engine: sa.Engine, sql: str, **params: object) -> object:
    with engine.connect() as connection:
        return connection.execute(sa.text(sql), params).scalar()


def test_insert_update_delete_are_logged_with_old_new_values_author_message_revision(
    engine: sa.Engine,
) -> None:
    first = populate(engine, keys=("SIM-001",))
    with write_transaction(engine, author="bob", message="fix year") as (connection, second):
        connection.execute(sa.text("UPDATE study SET year = 2020 WHERE study_key = 'SIM-001'"))
    with write_transaction(engine, author="cy", message="drop risk of bias") as (connection, third):
        connection.execute(sa.text("DELETE FROM risk_of_bias"))

    assert (first, second, third) == (1, 2, 3)
    assert current_revision(engine) == 3
    inserts = list_changes(engine, revision=first)
    assert {c.op for c in inserts} == {"insert"}
    assert all(c.author == "ann" and c.message == "first load" for c in inserts)
    assert all(c.old_values is None and c.new_values for c in inserts)

    (update,) = list_changes(engine, revision=second)
    assert (update.table_name, update.op, update.author, update.message) == (
        "study",
        "update",
        "bob",
        "fix year",
    )
    assert update.old_values["year"] == 2019 and update.new_values["year"] == 2020
    assert update.changed_columns == ("year",)

    (delete,) = list_changes(engine, revision=third)
    assert (delete.table_name, delete.op, delete.new_values) == ("risk_of_bias", "delete", None)
    assert delete.old_values["judgement"] == "low" and delete.source == "evidence"


def test_logged_values_keep_every_bit_of_floats_dates_and_flags(engine: sa.Engine) -> None:
    populate(engine, keys=("SIM-001",))
    (result, *_) = [c for c in list_changes(engine, table="result")]
    assert result.new_values["m1i"] == 0.1 + 0.2
    assert result.new_values["sd1i"] == 1.0 / 3.0
    assert result.new_values["coded_at"].isoformat() == "2024-03-01"
    (effect, *_) = list_changes(engine, table="effect_size")
    assert effect.new_values["yi"] == -0.123456789012345678
    assert effect.new_values["flipped"] is True


def test_write_that_changes_nothing_leaves_no_revision(engine: sa.Engine) -> None:
    populate(engine, keys=("SIM-001",))
    with write_transaction(engine, message="no-op") as write:
        write.connection.execute(sa.text("UPDATE study SET year = year"))
    assert write.changed is False
    assert current_revision(engine) == 1
    assert _scalar(engine, "SELECT count(*) FROM revision") == 1


def test_failed_write_rolls_back_data_revision_and_log(engine: sa.Engine) -> None:
    populate(engine, keys=("SIM-001",))
    before = snapshot(engine)
    logged = _scalar(engine, "SELECT count(*) FROM change_log")
    with pytest.raises(RuntimeError, match="half way"):
        with write_transaction(engine, message="doomed") as (connection, _):
            connection.execute(sa.text("UPDATE result SET m1i = 99"))
            raise RuntimeError("half way")
    assert snapshot(engine) == before
    assert current_revision(engine) == 1
    assert _scalar(engine, "SELECT count(*) FROM change_log") == logged


def test_change_log_is_append_only(engine: sa.Engine) -> None:
    populate(engine, keys=("SIM-001",))
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with engine.begin() as connection:
            connection.execute(sa.text("DELETE FROM change_log"))
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE change_log SET author = 'mallory'"))


def _plain_sql(url: str, statements: list[str]) -> None:
    """Run statements with the database's own driver, outside the package."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        import sqlite3

        connection = sqlite3.connect(parsed.database, isolation_level=None)
        try:
            for statement in statements:
                connection.execute(statement)
                time.sleep(0.005)  # each statement is its own revision (millisecond stamp)
        finally:
            connection.close()
    else:
        import psycopg

        with psycopg.connect(
            host=parsed.host,
            port=parsed.port,
            user=parsed.username,
            password=parsed.password,
            dbname=parsed.database,
            autocommit=True,
        ) as connection:
            for statement in statements:
                connection.execute(statement)


def test_plain_sql_edit_is_recorded_with_its_own_revision(
    engine: sa.Engine, migrated_db_url: str
) -> None:
    populate(engine, keys=("SIM-001", "SIM-002"))
    _plain_sql(
        migrated_db_url,
        [
            "UPDATE study SET country = 'NZ'",
            "DELETE FROM risk_of_bias WHERE judgement = 'low'",
        ],
    )
    changes = list_changes(engine, since="2000-01-01")
    sql_changes = [c for c in changes if c.source == "sql"]
    assert [(c.table_name, c.op) for c in sql_changes] == [("study", "update")] * 2 + [
        ("risk_of_bias", "delete")
    ] * 2
    revisions = [c.revision_id for c in sql_changes]
    assert revisions[0] == revisions[1] and revisions[2] == revisions[3]
    assert revisions[0] > 1 and revisions[2] > revisions[0]
    assert sql_changes[0].new_values["country"] == "NZ"
    if engine.dialect.name == "postgresql":
        assert sql_changes[0].author == "evidence"  # session_user
        assert "UPDATE study" in sql_changes[0].command

    # The next write through the package gets a fresh revision, not the plain-SQL one.
    with write_transaction(engine, author="bob") as (connection, rev):
        connection.execute(sa.text("UPDATE study SET year = 2021"))
    assert rev == revisions[2] + 1
    assert {c.author for c in list_changes(engine, revision=rev)} == {"bob"}


def test_plain_sql_transaction_on_postgresql_is_one_revision(
    postgres_url: str,
) -> None:
    from evidence.db.migrate import upgrade

    upgrade(postgres_url)
    engine = get_engine(postgres_url)
    try:
        populate(engine, keys=("SIM-001",))
        import psycopg

        parsed = sa.make_url(postgres_url)
        with psycopg.connect(
            host=parsed.host,
            port=parsed.port,
            user=parsed.username,
            password=parsed.password,
            dbname=parsed.database,
        ) as connection:
            connection.execute("UPDATE study SET year = 1999")
            connection.execute("UPDATE arm SET label = 'x'")
        sql_changes = [c for c in list_changes(engine) if c.source == "sql"]
        assert len(sql_changes) == 3
        assert len({c.revision_id for c in sql_changes}) == 1
    finally:
        engine.dispose()


def test_revisions_are_numbered_in_commit_order_on_postgresql_even_for_plain_sql(
    postgres_url: str,
) -> None:
    """A plain-SQL writer that starts while an ``evidence`` write is open waits for it, so
    the revision it gets is higher and commits later (migration 0006)."""
    import threading

    import psycopg

    from evidence.db.migrate import upgrade

    upgrade(postgres_url)
    engine = get_engine(postgres_url)
    parsed = sa.make_url(postgres_url)
    order: list[str] = []
    try:
        populate(engine, keys=("SIM-001", "SIM-002"))
        with write_transaction(engine, author="evidence-writer") as (connection, first):
            connection.execute(sa.text("UPDATE study SET year = 2001 WHERE study_key = 'SIM-001'"))

            def plain_sql() -> None:
                with psycopg.connect(
                    host=parsed.host, port=parsed.port, user=parsed.username,
                    password=parsed.password, dbname=parsed.database,
                ) as raw:  # fmt: skip
                    raw.execute("UPDATE study SET year = 2002 WHERE study_key = 'SIM-002'")
                order.append("sql")

            thread = threading.Thread(target=plain_sql)
            thread.start()
            thread.join(1.0)
            assert thread.is_alive(), "the plain-SQL writer did not wait for the open write"
            order.append("evidence")
        thread.join(30)
        assert order == ["evidence", "sql"]
        (sql_change,) = [c for c in list_changes(engine) if c.source == "sql"]
        assert sql_change.revision_id > first
    finally:
        engine.dispose()


def test_deleted_study_is_restored_with_every_row_that_was_deleted_with_it(
    engine: sa.Engine,
) -> None:
    populate(engine, keys=("SIM-001", "SIM-002"))
    before = snapshot(engine)
    with write_transaction(engine, author="bob", message="remove") as (connection, deleted_in):
        connection.execute(sa.text("DELETE FROM study WHERE study_key = 'SIM-001'"))
    gone = snapshot(engine)
    assert len(gone["study"]) == 1 and len(gone["effect_size"]) == 2
    deletions = {c.table_name for c in list_changes(engine, revision=deleted_in)}
    assert deletions == {
        "study",
        "arm",
        "outcome",
        "timepoint",
        "result",
        "effect_size",
        "moderator_value",
        "risk_of_bias",
    }

    result = restore(engine, "study", "SIM-001", author="cy", message="deleted by mistake")

    assert snapshot(engine) == before
    assert result.deleted_in == deleted_in
    assert result.rows == {
        "study": 1,
        "arm": 2,
        "outcome": 1,
        "timepoint": 2,
        "result": 2,
        "effect_size": 2,
        "moderator_value": 3,
        "risk_of_bias": 1,
    }
    logged = list_changes(engine, revision=result.revision_id)
    assert len(logged) == 14 and {c.op for c in logged} == {"insert"}
    assert {(c.author, c.message) for c in logged} == {("cy", "deleted by mistake")}


def test_restore_refuses_a_study_that_exists_and_one_never_deleted(engine: sa.Engine) -> None:
    populate(engine, keys=("SIM-001",))
    with pytest.raises(NotFoundError, match="no deleted study 'SIM-404' in the history"):
        restore(engine, "study", "SIM-404")
    with write_transaction(engine) as (connection, _):
        connection.execute(sa.text("DELETE FROM study"))
    restore(engine, "study", "SIM-001")
    with pytest.raises(DatabaseError, match="study 'SIM-001' exists"):
        restore(engine, "study", "SIM-001")
    with pytest.raises(NotFoundError, match="'studies' is not a data table"):
        restore(engine, "studies", "SIM-001")


def test_list_changes_filters_by_table_record_author_and_time(engine: sa.Engine) -> None:
    populate(engine, keys=("SIM-001", "SIM-002"))
    with write_transaction(engine, author="bob") as (connection, _):
        connection.execute(sa.text("UPDATE result SET m2i = 3 WHERE result_key = 'SIM-002-post'"))

    assert len(list_changes(engine, table="study")) == 2
    assert len(list_changes(engine, author="bob")) == 1
    assert list_changes(engine, author="nobody") == []
    # A study's record holds its own rows and the rows that belong to it.
    record = list_changes(engine, record="SIM-002")
    assert len(record) == 15
    assert {c.table_name for c in record} >= {"study", "arm", "result", "effect_size"}
    result_record = list_changes(engine, table="result", record="SIM-002-post")
    assert [(c.table_name, c.op) for c in result_record] == [
        ("result", "insert"),
        ("result", "update"),
    ]
    assert [c.table_name for c in list_changes(engine, table="study", record="SIM-002")] == [
        "study"
    ]
    assert len(list_changes(engine, until="2000-01-01")) == 0
    assert len(list_changes(engine, since="2000-01-01", limit=3)) == 3
    with pytest.raises(DatabaseError, match="since 'yesterday' is not a date"):
        list_changes(engine, since="yesterday")


def test_state_as_of_rebuilds_a_table_at_each_revision(engine: sa.Engine) -> None:
    first = populate(engine, keys=("SIM-001", "SIM-002"))
    with write_transaction(engine) as (connection, second):
        connection.execute(sa.text("UPDATE study SET year = 2020 WHERE study_key = 'SIM-002'"))
    with write_transaction(engine) as (connection, third):
        connection.execute(sa.text("DELETE FROM study WHERE study_key = 'SIM-001'"))

    assert state_as_of(engine, "study", 0) == []
    assert [(s["study_key"], s["year"]) for s in state_as_of(engine, "study", first)] == [
        ("SIM-001", 2019),
        ("SIM-002", 2019),
    ]
    assert [s["year"] for s in state_as_of(engine, "study", second)] == [2019, 2020]
    assert [s["study_key"] for s in state_as_of(engine, "study", third)] == ["SIM-002"]
    now = {tuple(sorted(r.items())) for r in state_as_of(engine, "result", third)}
    with engine.connect() as connection:
        live = {
            tuple(sorted(r._mapping.items()))
            for r in connection.execute(sa.text("SELECT * FROM result"))
        }
    assert len(now) == 2 and {dict(r)["result_key"] for r in now} == {
        dict(r)["result_key"] for r in live
    }


def test_sqlite_history_triggers_log_every_column_of_every_data_table(sqlite_url: str) -> None:
    from evidence.db.migrate import upgrade
    from evidence.db.models import DATA_TABLES, metadata

    upgrade(sqlite_url)
    engine = get_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            triggers = dict(
                connection.execute(
                    sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
                ).all()
            )
    finally:
        engine.dispose()
    for table in DATA_TABLES:
        for op, row in (("insert", "NEW"), ("update", "NEW"), ("delete", "OLD")):
            sql = triggers[f"history_{table}_{op}"]
            missing = [
                c.name for c in metadata.tables[table].columns if f"{row}.{c.name}" not in sql
            ]
            assert missing == [], f"history_{table}_{op} does not log {missing}"
            assert f"history_{table}_{op}_revision" in triggers


def test_author_is_the_argument_else_evidence_author_else_the_os_user(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import getpass

    populate(engine, keys=("SIM-001",))
    authors = []
    for env, given in ((None, None), ("env-user", None), ("env-user", "dana")):
        if env is None:
            monkeypatch.delenv("EVIDENCE_AUTHOR", raising=False)
        else:
            monkeypatch.setenv("EVIDENCE_AUTHOR", env)
        with write_transaction(engine, author=given) as (connection, rev):
            connection.execute(sa.text("UPDATE study SET year = year + 1"))
        authors.append({c.author for c in list_changes(engine, revision=rev)})
    assert authors == [{getpass.getuser()}, {"env-user"}, {"dana"}]
