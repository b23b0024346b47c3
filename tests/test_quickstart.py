"""`evidence quickstart`: a migrated SQLite database with the SIMULATED seed, summarised."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _ingest_data import counts
from typer.testing import CliRunner

from evidence.cli import app
from evidence.ingest.quickstart import quickstart


def _row(output: str, domain: str) -> list[int]:
    line = next(x for x in output.splitlines() if re.search(rf"\b{domain}\b", x))
    return [int(n) for n in re.findall(r"\d+", line)]


def test_quickstart_creates_the_database_and_prints_what_it_holds(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["quickstart", str(tmp_path / "qs")], terminal_width=120)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "qs" / "evidence.db").is_file()
    assert "SIMULATED DATA" in result.output and "not real studies" in result.output
    assert "loaded the peer support seed (revision 1)" in result.output
    assert _row(result.output, "physical")[:1] == [47]
    assert _row(result.output, "mental")[:1] == [73]
    total = _row(result.output, "total")
    assert total[0] == 120 and total[3:5] == [194, 194]  # studies ... results, effect sizes
    url = f"sqlite:///{tmp_path / 'qs' / 'evidence.db'}"
    assert counts(url, "study", "effect_size") == {"study": 120, "effect_size": 194}


def test_quickstart_twice_changes_nothing(tmp_path: Path) -> None:
    first = quickstart(tmp_path)
    second = quickstart(tmp_path)
    assert first.report.changed and not second.report.changed
    assert second.summary.equals(first.summary)
    assert second.simulated_studies == 120


@pytest.mark.skipif(shutil.which("evidence", path=str(Path(sys.executable).parent)) is None,
                    reason="the console script is not installed in this environment")  # fmt: skip
def test_console_script_quickstart_defaults_to_quickstart_in_the_working_directory(
    tmp_path: Path,
) -> None:
    exe = str(Path(sys.executable).parent / "evidence")
    done = subprocess.run([exe, "quickstart"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "quickstart" / "evidence.db").is_file()
    assert "SIMULATED" in done.stdout
