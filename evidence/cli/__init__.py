"""Command line: ``evidence``. Each command is a thin wrapper over one public function."""

from __future__ import annotations

import importlib

from evidence.cli.app import app, run

__all__ = ["app", "main"]

# Each module defines ``register(app)`` adding its commands or command groups.
_COMMAND_MODULES = (
    "evidence.cli.db",
    "evidence.cli.ingest",
    "evidence.cli.history",
    "evidence.cli.escalc",
    "evidence.cli.metapsy",
    "evidence.cli.meta",
    "evidence.cli.quickstart",
    "evidence.cli.views",
    "evidence.cli.analysis",
    "evidence.cli.report",
)

for _name in _COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    """Console script entry point."""
    run()
