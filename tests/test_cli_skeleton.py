"""The console script starts and every command has help text."""

from typer.testing import CliRunner

from evidence.cli import app


def test_evidence_help_lists_the_program() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "living systematic reviews" in result.output
