"""Every command of the CLI tree: an unknown option is one `error:` line (exit 2, no usage block)
and `--json` is accepted."""

from __future__ import annotations

from collections.abc import Iterator

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
