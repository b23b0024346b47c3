"""A write refreshes the living views whatever the entry point: the console script, or
``evidence.ingest`` from a Python process that never imported ``evidence.views``.

Each write runs in a fresh interpreter, so no test module has registered the views' commit
hook beforehand.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from evidence.config import project_root
from evidence.db.engine import get_engine
from evidence.db.migrate import upgrade
from evidence.ingest.loader import ingest
from evidence.views import create_view, stale_views, view_history

ROOT = project_root()


def _edited_seed(tmp_path: Path) -> Path:
    """The BCG seed with one trial's TB cases in the vaccinated arm changed."""
    sheets = tmp_path / "bcg"
    shutil.copytree(ROOT / "seeds" / "bcg", sheets)
    path = sheets / "results.csv"
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    rows[0]["event1i"] = str(int(float(rows[0]["event1i"])) + 2)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return sheets


def _setup(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    upgrade(url)
    engine = get_engine(url)
    ingest([ROOT / "seeds" / "bcg"], review="bcg", database=engine)
    assert create_view(engine, "overall", "").k_effects == 13
    engine.dispose()
    return url


def _entries(url: str) -> list[int]:
    engine = get_engine(url)
    try:
        assert stale_views(engine) == []
        return [e["revision"] for e in view_history(engine, "overall").entries]
    finally:
        engine.dispose()


def _run(args: list[str], url: str) -> None:
    env = {**os.environ, "EVIDENCE_DATABASE_URL": url}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_console_script_refreshes_the_views_a_write_affects(tmp_path: Path) -> None:
    url = _setup(tmp_path)
    script = Path(sys.executable).with_name("evidence")
    _run([str(script), "ingest", str(_edited_seed(tmp_path)), "--review", "bcg"], url)
    assert _entries(url) == [1, 2]


def test_ingest_from_python_refreshes_views_without_importing_them(tmp_path: Path) -> None:
    url = _setup(tmp_path)
    code = (
        "import sys\n"
        "from evidence.ingest import ingest\n"
        f"ingest([{str(_edited_seed(tmp_path))!r}], review='bcg', database={url!r})\n"
    )
    _run([sys.executable, "-c", code], url)
    assert _entries(url) == [1, 2]
    with sa.create_engine(url).connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM view_result").scalar() == 2
