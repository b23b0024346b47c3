"""Fixtures shared by every test: databases on SQLite and (when reachable) PostgreSQL.

* ``sqlite_url``: a fresh SQLite file in the test's tmp_path (not migrated).
* ``postgres_url``: a fresh PostgreSQL database ``evidence_test_<hex>``, created through
  ``EVIDENCE_TEST_POSTGRES_URL`` and dropped afterwards; skips with a reason when the
  variable is unset or the server cannot be reached.
* ``db_url``: parametrized over both (``[sqlite]`` always, ``[postgres]`` marked
  ``postgres``).
* ``migrated_db_url``: ``db_url`` migrated to head.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

POSTGRES_ENV = "EVIDENCE_TEST_POSTGRES_URL"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never touch ./evidence.db or inherit the caller's database settings."""
    monkeypatch.delenv("EVIDENCE_DATABASE_URL", raising=False)
    monkeypatch.delenv("EVIDENCE_AUTHOR", raising=False)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """URL of a fresh, empty SQLite database file."""
    return f"sqlite:///{tmp_path / 'evidence.db'}"


def _postgres_admin_url() -> sa.URL:
    value = os.environ.get(POSTGRES_ENV)
    if not value:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} (e.g. set by .ci/run)")
    url = sa.make_url(value)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """URL of a fresh PostgreSQL database, dropped after the test."""
    admin_url = _postgres_admin_url()
    name = f"evidence_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as error:
        admin.dispose()
        pytest.skip(f"PostgreSQL at {admin_url.render_as_string()} is not reachable: {error.orig}")
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database: SQLite, and PostgreSQL when available."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def migrated_db_url(db_url: str) -> str:
    """``db_url`` migrated to the newest revision."""
    from evidence.db.migrate import upgrade

    upgrade(db_url)
    return db_url
