"""Every command of the CLI tree: an unknown option is one `error:` line (exit 2, no usage block)
and `--json` is accepted."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from shieldes.cli.main import cli


def leaves(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield (*path, name), command
            yield from leaves(command, (*path, name))
        else:
            yield (*path, name), command


COMMANDS = list(leaves(cli))


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=" ".join)
def test_unknown_option_is_one_error_line(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--no-such-option"],
                                env={"SHIELDES_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"})
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--help" in lines[0], result.stderr


def test_every_command_takes_json() -> None:
    missing = [" ".join(p) for p, c in COMMANDS
               if not isinstance(c, click.Group)
               and not any(o.name == "as_json" for o in c.params)]
    assert not missing, f"commands without --json: {missing}"


def _remote_mode_lists() -> dict[str, set[str]]:
    """docs/cli.md's remote mode bullets, each a set of commands: `key create|list` is `key create`
    and `key list`, `db ...` every command of `db`."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    section = text.split("## Remote mode", 1)[1].split("\n## ", 1)[0]
    bullets = {"api": "- Through the API:", "local": "- On this machine whatever the variable says:",
               "refused": "- Refused, with one `error:` line"}
    groups = {p[0] for p, c in COMMANDS if isinstance(c, click.Group)}
    out: dict[str, set[str]] = {}
    for kind, start in bullets.items():
        bullet = section.split(start, 1)[1].split("\n- ", 1)[0]
        if kind == "refused":
            bullet = bullet.split("the other admin commands", 1)[1]
        named: set[str] = set()
        for span in re.findall(r"`([a-z][a-z -]*(?:\|[a-z-]+)*(?: \.\.\.)?)`", bullet):
            words = span.split(" ")
            if words[0] not in groups and words[0] not in {p[0] for p, _ in COMMANDS}:
                continue
            if words[-1] == "...":
                named |= {" ".join(p) for p, c in COMMANDS if p[0] == words[0] and not isinstance(c, click.Group)}
            elif len(words) == 2 and words[0] in groups:
                named |= {f"{words[0]} {sub}" for sub in words[1].split("|")}
            else:
                named.add(words[0])  # `logs`, `usage`, `serve`; `logs --follow` is logs too
        out[kind] = named
    return out


def test_the_remote_mode_lists_in_the_docs_are_the_commands_that_go_through_the_api() -> None:
    """A command goes through the admin API when SHIELDES_ADMIN_URL is set iff docs/cli.md lists it
    so; every command is in one of the three lists (through the API, on this machine, refused)."""
    lists = _remote_mode_lists()
    through_api = set()
    for path, command in COMMANDS:
        if isinstance(command, click.Group):
            continue
        names = set(inspect.unwrap(command.callback).__code__.co_names)  # type: ignore[arg-type]
        if names & {"remote", "remove_named", "list_named"}:
            through_api.add(" ".join(path))
    assert lists["api"] == through_api
    every = {" ".join(p) for p, c in COMMANDS if not isinstance(c, click.Group)}
    assert lists["api"] | lists["local"] | lists["refused"] == every
    assert (lists["local"] | lists["refused"]) & lists["api"] == {"logs"}  # `logs --follow` is refused
