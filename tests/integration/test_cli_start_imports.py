"""What a command's start imports when it does not run its work: `shieldes --help` and each
command's `--help` print click's text and must not load the database driver, asyncio, pydantic or
the node's frameworks (each costs more than printing the help; docs/benchmarks.md, "CLI key writes
at a million keys"). `serve` is left out: its module is the node's start."""

from __future__ import annotations

from pathlib import Path

import pytest

from shieldes.cli.main import COMMANDS
from tests.integration.test_cli_imports import imported

NO_DATABASE = "postgresql://nobody@127.0.0.1:9/none"  # --help never connects
# Top-level packages a command's --help must not import (with their submodules).
DRIVER_AND_FRAMEWORKS = ("psycopg", "psycopg_binary", "psycopg_pool", "asyncio", "pydantic", "pydantic_settings",
                         "aiohttp", "grpc", "shieldes.db", "shieldes.embedded", "shieldes.node", "shieldes.gateway")


def loaded(modules: set[str], banned: tuple[str, ...] = DRIVER_AND_FRAMEWORKS) -> list[str]:
    return sorted(m for m in modules if any(m == b or m.startswith(b + ".") for b in banned))


@pytest.mark.parametrize("command", [(), *((name,) for name in sorted(COMMANDS) if name != "serve"),
                                     ("audit", "verify"), ("db", "status"), ("snapshot", "create")],
                         ids=lambda c: " ".join(c) or "shieldes")
def test_help_imports_no_driver_or_framework(command: tuple[str, ...], tmp_path: Path) -> None:
    modules = imported(NO_DATABASE, *command, "--help", tmp=tmp_path)
    assert "shieldes.cli.main" in modules
    if command:
        module = COMMANDS[command[0]][0]
        assert f"shieldes.cli.{module}" in modules  # the command's own module printed its help
    assert loaded(modules) == []


def test_the_guard_sees_the_driver(tmp_path: Path) -> None:
    """The same wrapper reports a command that imports the driver at start: `serve`'s help does."""
    assert "psycopg" in loaded(imported(NO_DATABASE, "serve", "--help", tmp=tmp_path))
