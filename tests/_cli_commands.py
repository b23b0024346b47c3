"""Every leaf command of the ``evidence`` app with its path (for the CLI and docs tests)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer

from evidence.cli import app


def commands(command: Any = None, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """``("view create", <click command>)`` for every command, groups walked depth first."""
    command = command or typer.main.get_command(app)
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from commands(sub, (*path, name))
    else:
        yield " ".join(path), command
