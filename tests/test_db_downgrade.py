"""Downgrades never lose data quietly (SQLite and PostgreSQL).

What each downgrade step drops: 0006 nothing (a PostgreSQL function), 0005 the columns
``result.yi_reported`` and ``result.vi_reported``, 0004 the two SQL views (queries, no
data), 0003 the tables ``analysis_view`` and ``view_result``, 0002 triggers (and SQLite's
transient ``open_revision``), 0001 every table. A downgrade through a step that would drop
values or rows is refused unless ``drop_data``; one that drops nothing keeps every value.

The tests start from one database per kind with the bcg and peer_support seeds and their
plan views loaded, built once per module and copied for each test (SQLite: the backup API;
PostgreSQL: ``CREATE DATABASE ... TEMPLATE``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from evidence.config import project_root
from evidence.db import migrate
from evidence.db.engine import get_engine, write_transaction
from evidence.db.migrate import DataLoss, DowngradeRefused
from evidence.db.models import DATA_TABLES, HISTORY_TABLES

VIEW_TABLES = ("analysis_view", "view_result")
ALL_TABLES = (*DATA_TABLES, *HISTORY_TABLES, *VIEW_TABLES)
POSTGRES_ENV = "EVIDENCE_TEST_POSTGRES_URL"


# ------------------------------------------------------------------ loaded databases


def _load_seeds(url: str) -> None:
    from evidence.ingest.codebook import load_codebook
    from evidence.ingest.loader import ingest
    from evidence.views import create_plan_views

    migrate.upgrade(url)
    root = project_root()
    for name in ("bcg", "peer_support"):
        codebook = load_codebook(root / "schemas" / f"{name}.yaml")
        ingest([root / "seeds" / name], codebook=codebook, database=url)
        engine = get_engine(url)
        try:
            create_plan_views(engine, codebook)
        finally:
            engine.dispose()


class _Databases:
    """Test databases of one kind: empty ones, and copies of one another."""

    def __init__(self, kind: str, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.kind = kind
        self.made: list[str] = []
        if kind == "sqlite":
            self.folder = tmp_path_factory.mktemp("downgrade")
            return
        value = os.environ.get(POSTGRES_ENV)
        if not value:
            pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} (e.g. set by .ci/run)")
        url = sa.make_url(value)
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        self.admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        try:
            self.admin.connect().close()
        except sa.exc.OperationalError as error:
            pytest.skip(f"PostgreSQL at {url.render_as_string()} is not reachable: {error.orig}")

    def new(self, template: str | None = None) -> str:
        """An empty database, or a copy of *template* (made by this object)."""
        name = f"evidence_test_{uuid.uuid4().hex[:12]}"
        if self.kind == "sqlite":
            path = self.folder / f"{name}.db"
            if template is not None:
                source, target = (
                    sqlite3.connect(sa.make_url(template).database),
                    sqlite3.connect(path),
                )
                try:
                    source.backup(target)
                finally:
                    source.close()
                    target.close()
            return f"sqlite:///{path}"
        with self.admin.connect() as connection:
            if template is None:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
            else:
                source = sa.make_url(template).database
                connection.execute(  # a template must have no connection
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": source},
                )
                connection.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
        self.made.append(name)
        return self.admin.url.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        if self.kind == "sqlite":
            return
        with self.admin.connect() as connection:
            for name in self.made:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.admin.dispose()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def databases(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[_Databases]:
    made = _Databases(request.param, tmp_path_factory)
    try:
        yield made
    finally:
        made.drop_all()


@pytest.fixture(scope="module")
def loaded_template(databases: _Databases) -> str:
    """A database at head with both seeds and their plan views (fresh)."""
    url = databases.new()
    _load_seeds(url)
    return url


@pytest.fixture(scope="module")
def reported_template(databases: _Databases, loaded_template: str) -> str:
    """The loaded database where some results carry a reported effect size (views fresh)."""
    url = databases.new(loaded_template)
    _report_effects(url)
    return url


@pytest.fixture
def loaded_url(databases: _Databases, loaded_template: str) -> str:
    """A copy of the loaded database: no reported effect sizes."""
    return databases.new(loaded_template)


@pytest.fixture
def reported_url(databases: _Databases, reported_template: str) -> str:
    """A copy of the loaded database with reported effect sizes."""
    return databases.new(reported_template)


# ----------------------------------------------------------------------------- helpers


def _query(url: str, sql: str, **params: Any) -> list[tuple]:
    engine = get_engine(url)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


def _rows(url: str, tables: tuple[str, ...] = ALL_TABLES) -> dict[str, list[tuple]]:
    return {table: _query(url, f"SELECT * FROM {table} ORDER BY id") for table in tables}


def _dataset(url: str) -> tuple[list[str], list[tuple]]:
    engine = get_engine(url)
    try:
        with engine.connect() as connection:
            result = connection.execute(sa.text("SELECT * FROM analysis_dataset ORDER BY es_id"))
            return list(result.keys()), [tuple(row) for row in result]
    finally:
        engine.dispose()


def _result_columns(url: str) -> list[str]:
    engine = get_engine(url)
    try:
        return [column["name"] for column in sa.inspect(engine).get_columns("result")]
    finally:
        engine.dispose()


def _report_effects(url: str) -> None:
    """Give every other BCG result a reported effect size (full double precision), through
    ``evidence`` (one data revision; the views are refreshed and stay fresh)."""
    engine = get_engine(url)
    try:
        with write_transaction(engine, message="reported effects") as (connection, _):
            connection.execute(
                sa.text(
                    "UPDATE result SET yi_reported = 1.0 / (id + 2.0), vi_reported = id / 7.0"
                    " WHERE id % 2 = 0 AND study_id IN (SELECT s.id FROM study s"
                    " JOIN review v ON v.id = s.review_id WHERE v.name = 'bcg')"
                )
            )
    finally:
        engine.dispose()


def _reported(url: str) -> dict[int, tuple[float, float]]:
    rows = _query(
        url, "SELECT id, yi_reported, vi_reported FROM result WHERE yi_reported IS NOT NULL"
    )
    assert len(rows) > 1
    return {rid: (yi, vi) for rid, yi, vi in rows}


def _stale(url: str) -> set[int]:
    return {stale for (stale,) in _query(url, "SELECT stale FROM pooled_estimate")}


# ------------------------------------------------------------------------------- tests


def test_down_to_0003_and_up_keeps_every_row_the_dataset_moderator_columns_and_fresh_views(
    loaded_url: str,
) -> None:
    from evidence.views import refresh_all

    url = loaded_url
    before, dataset = _rows(url), _dataset(url)
    pooled = _query(url, "SELECT * FROM pooled_estimate ORDER BY view_id")
    assert {"ablat", "alloc", "age_group", "dosage", "uptake"} <= set(dataset[0])
    assert _stale(url) == {0}

    state = migrate.downgrade(url, "0003")  # drops the two SQL views only
    assert state.current == "0003" and state.dropped == ()
    migrate.upgrade(url)
    migrate.check(url)

    assert _rows(url) == before
    assert _dataset(url) == dataset  # same columns (moderators too), same values
    assert _query(url, "SELECT * FROM pooled_estimate ORDER BY view_id") == pooled
    engine = get_engine(url)
    try:  # fresh, and truly so: every input is as it was
        report = refresh_all(engine, force=True)
    finally:
        engine.dispose()
    assert report.recomputed == () and len(report.confirmed) == len(pooled)


def test_down_to_0005_and_up_keeps_every_reported_effect(reported_url: str) -> None:
    url = reported_url
    before, dataset = _rows(url), _dataset(url)

    assert migrate.downgrade(url, "0005").dropped == ()  # 0006 drops no table or column
    migrate.upgrade(url)
    migrate.check(url)
    assert _rows(url) == before and _dataset(url) == dataset


def test_downgrade_to_0004_with_reported_effects_refuses_and_changes_nothing(
    reported_url: str,
) -> None:
    url = reported_url
    n = len(_reported(url))
    before, dataset, columns = _rows(url), _dataset(url), _result_columns(url)

    with pytest.raises(DowngradeRefused) as refused:
        migrate.downgrade(url, "0004")
    assert str(refused.value) == (
        f"refusing to downgrade to 0004: it would drop data in revision 0005: column"
        f" result.yi_reported ({n} values), column result.vi_reported ({n} values); nothing"
        " was changed; export what you need, then downgrade with --drop-data"
    )
    assert migrate.status(url).current == migrate.head()
    assert _result_columns(url) == columns
    assert _rows(url) == before and _dataset(url) == dataset
    assert _stale(url) == {0}
    migrate.check(url)


def test_downgrade_to_base_refusal_names_every_revision_table_and_column_it_would_drop(
    reported_url: str,
) -> None:
    url = reported_url
    n = len(_reported(url))
    counts = {t: _query(url, f"SELECT count(*) FROM {t}")[0][0] for t in ALL_TABLES}

    with pytest.raises(DowngradeRefused) as refused:
        migrate.downgrade(url, "base")
    expected = [
        DataLoss("0005", "result", "yi_reported", n),
        DataLoss("0005", "result", "vi_reported", n),
        *(DataLoss("0003", t, None, counts[t]) for t in VIEW_TABLES),
        *(DataLoss("0001", t, None, counts[t]) for t in (*DATA_TABLES, *HISTORY_TABLES)),
    ]
    expected = [loss for loss in expected if loss.count]  # risk_of_bias is empty
    assert sorted(refused.value.losses, key=repr) == sorted(expected, key=repr)
    message = str(refused.value)
    assert message.startswith("refusing to downgrade to base: it would drop data in revision")
    assert f"in revision 0003: table analysis_view ({counts['analysis_view']} rows)" in message
    assert f"table effect_size ({counts['effect_size']} rows)" in message
    assert migrate.status(url).current == migrate.head()
    assert {t: _query(url, f"SELECT count(*) FROM {t}")[0][0] for t in ALL_TABLES} == counts


def test_downgrade_with_drop_data_says_what_it_dropped_and_change_log_keeps_every_value(
    reported_url: str,
) -> None:
    url = reported_url
    reported = _reported(url)
    n = len(reported)
    data_before = _rows(url, DATA_TABLES)
    history_before, dataset = _rows(url, HISTORY_TABLES), _dataset(url)
    assert _stale(url) == {0}

    state = migrate.downgrade(url, "0004", drop_data=True)
    assert state.current == "0004"
    kept = state.dropped[0].kept_in
    assert kept == history_before["revision"][-1][0] + 1
    assert state.dropped == (
        DataLoss("0005", "result", "yi_reported", n, kept_in=kept),
        DataLoss("0005", "result", "vi_reported", n, kept_in=kept),
    )
    assert migrate.describe_losses(state.dropped) == (
        f"in revision 0005: column result.yi_reported ({n} values; kept in change_log, data"
        f" revision {kept}), column result.vi_reported ({n} values; kept in change_log, data"
        f" revision {kept})"
    )
    ((message, source),) = _query(url, "SELECT message, source FROM revision WHERE id = :r", r=kept)
    assert message.startswith("downgrade 0005 drops result.yi_reported, result.vi_reported")
    assert source == "evidence"
    logged = _query(
        url,
        "SELECT row_id, op, old_values, new_values FROM change_log"
        " WHERE revision_id = :r AND table_name = 'result'",
        r=kept,
    )
    old = {row_id: json.loads(o) for row_id, op, o, _ in logged if op == "update"}
    assert {rid: (v["yi_reported"], v["vi_reported"]) for rid, v in old.items()} == reported
    assert all(json.loads(new)["yi_reported"] is None for *_, new in logged)

    migrate.upgrade(url)
    migrate.check(url)
    columns = _result_columns(url)
    dropped = [columns.index("yi_reported"), columns.index("vi_reported")]
    data_before["result"] = [
        tuple(None if i in dropped else v for i, v in enumerate(row))
        for row in data_before["result"]
    ]
    assert _rows(url, DATA_TABLES) == data_before  # every other value kept
    history = _rows(url, HISTORY_TABLES)
    assert (
        history["change_log"][: len(history_before["change_log"])] == history_before["change_log"]
    )
    assert _dataset(url) == dataset  # yi_reported is not a dataset column
    assert _stale(url) == {1}  # the data changed after the views were computed
