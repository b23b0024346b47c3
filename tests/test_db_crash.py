"""A process killed in the middle of a write leaves the database exactly as it was."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from _history_data import populate, snapshot

from evidence.db.engine import current_revision, get_engine

WRITER = r"""
import sys
import sqlalchemy as sa
from evidence.db.engine import get_engine, write_transaction

engine = get_engine(sys.argv[1])
with write_transaction(engine, author="doomed", message="never committed") as (c, rev):
    c.execute(sa.text("UPDATE study SET year = 1900"))
    c.execute(sa.text("DELETE FROM effect_size"))
    rows = [
        {"study_id": 1, "result_key": f"X{i}", "outcome_id": 1, "m1i": i * 0.5}
        for i in range(2000)
    ]
    c.execute(sa.text(
        "INSERT INTO result (study_id, result_key, outcome_id, m1i)"
        " VALUES (:study_id, :result_key, :outcome_id, :m1i)"), rows)
    print("writing", flush=True)
    i = 0
    while True:  # keep writing until killed
        i += 1
        c.execute(sa.text("UPDATE result SET m2i = :i WHERE result_key LIKE 'X%'"), {"i": i})
"""


def _checkpointed_bytes(url: str) -> bytes:
    engine = get_engine(url)
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    return Path(sa.make_url(url).database).read_bytes()


def _content_hash(url: str) -> str:
    engine = get_engine(url)
    try:
        state = snapshot(engine)
        with engine.connect() as connection:
            for table in ("revision", "change_log"):
                state[table] = [
                    tuple(r)
                    for r in connection.execute(sa.text(f"SELECT * FROM {table} ORDER BY id"))
                ]
    finally:
        engine.dispose()
    return hashlib.sha256(repr(state).encode()).hexdigest()


def _kill_mid_write(url: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        line = process.stdout.readline()
        assert line.strip() == "writing", process.stderr.read()
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
        process.stdout.close()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL


def test_killed_writer_leaves_the_database_exactly_as_it_was(migrated_db_url: str) -> None:
    engine = get_engine(migrated_db_url)
    try:
        populate(engine)
    finally:
        engine.dispose()
    is_sqlite = migrated_db_url.startswith("sqlite")
    before_bytes = _checkpointed_bytes(migrated_db_url) if is_sqlite else b""
    before_hash = _content_hash(migrated_db_url)

    _kill_mid_write(migrated_db_url)

    assert _content_hash(migrated_db_url) == before_hash
    if is_sqlite:
        assert _checkpointed_bytes(migrated_db_url) == before_bytes
    engine = get_engine(migrated_db_url)
    try:
        assert current_revision(engine) == 1
    finally:
        engine.dispose()
