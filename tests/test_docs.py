"""The README documents every command and keeps its two opening commands."""

from __future__ import annotations

import re

from _cli_commands import commands

from evidence.config import project_root

README = (project_root() / "README.md").read_text(encoding="utf-8")


def test_every_command_has_help_and_appears_in_the_readme() -> None:
    missing = []
    for name, command in commands():
        assert (command.help or "").strip(), f"`evidence {name}` has no help text"
        if not re.search(rf"evidence {re.escape(name)}\b", README):
            missing.append(name)
    assert not missing, f"commands not in the README: {missing}"


def test_readme_opens_with_the_two_commands() -> None:
    blocks = re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)
    assert blocks[0].strip() == (
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && evidence quickstart"
    )
    assert blocks[1].strip() == (
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && pytest"
    )
