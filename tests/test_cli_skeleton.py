"""The console script starts, every command has help text, and every command that opens a
database takes the same URL option."""

import pytest
from _cli_commands import commands
from typer.testing import CliRunner

from evidence.cli import app
from evidence.cli.app import URL_HELP


def test_evidence_help_lists_the_program() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "living systematic reviews" in result.output


# --------------------------------------------------------------------------- database URL


def _url_params():  # noqa: ANN202
    for name, command in commands():
        for param in command.params:
            if param.name in ("url", "database") or {"--url", "--database"} & set(param.opts):
                yield name, command, param


def test_every_command_that_opens_a_database_spells_the_url_option_the_same_way() -> None:
    seen = set()
    for name, _command, param in _url_params():
        seen.add(name)
        assert param.opts == ["--url", "--database", "-d"], name
        assert param.help == URL_HELP, name
    expected = {"ingest", "codebook apply", "history", "restore", "diff", "db init",
                "db upgrade", "db status", "db downgrade", "view create", "view list",
                "view show", "view refresh", "view drop", "view history", "view plan",
                "view results", "import metapsy", "export metapsy", "plot", "bias",
                "sensitivity", "report"}  # fmt: skip
    assert expected <= seen


@pytest.mark.parametrize("spelling", ["--url", "--database", "-d"])
def test_url_database_and_d_are_the_same_option(spelling: str, tmp_path) -> None:  # noqa: ANN001
    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    runner = CliRunner()
    result = runner.invoke(app, ["db", "init", spelling, url])
    assert result.exit_code == 0, result.output
    for args in (["db", "status"], ["history"]):
        result = runner.invoke(app, [*args, spelling, url])
        assert result.exit_code == 0, (args, result.output)
    result = runner.invoke(app, ["view", "list", spelling, url])  # reaches this database
    assert result.exit_code == 1 and "holds no review" in result.output
    assert (tmp_path / "evidence.db").exists()
    assert not (tmp_path.parent / "evidence.db").exists()
