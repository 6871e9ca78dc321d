"""A bad SHIELDES_* value is one `error:` line naming the variable and what to write, before any
command runs (the node's `serve` reads its settings the same way), never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from shieldes.cli.main import cli

DEAD_DB = "postgresql://nobody@127.0.0.1:9/none"


@pytest.mark.parametrize(("value", "says"), [
    ("notjson", "SHIELDES_CAPTURE_REDACT: not valid JSON (write a JSON list"),
    ('["("]', "bad SHIELDES_CAPTURE_REDACT entry '('"),
])
@pytest.mark.parametrize("as_json", [False, True])
def test_bad_capture_redact_is_one_error_line(value: str, says: str, as_json: bool,
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env file
    args = ["--json"] if as_json else []
    result = CliRunner().invoke(cli, [*args, "key", "list"],
                                env={"SHIELDES_DATABASE_URL": DEAD_DB, "SHIELDES_CAPTURE_REDACT": value})
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert says in lines[0] and "fix the environment variable or .env entry" in lines[0]
    assert ('"code": "invalid_setting"' in lines[0]) if as_json else lines[0].startswith("error: invalid setting ")
    assert result.stdout == ""


def test_good_capture_redact_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["db", "url"],
                                env={"SHIELDES_DATABASE_URL": DEAD_DB, "SHIELDES_CAPTURE_REDACT": '["\\\\d{16}"]'})
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == DEAD_DB


@pytest.mark.parametrize("argv", [["key", "list", "--json"], ["serve", "--json"], ["--json", "key", "list"]],
                         ids=" ".join)
def test_a_bad_setting_is_json_with_json_on_the_command(argv: list[str], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The settings are read before the command parses its options: its `--json` counts too."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, argv, env={"SHIELDES_DATABASE_URL": DEAD_DB, "SHIELDES_PORT": "abc"})
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    error = json.loads(result.stderr)["error"]
    assert error["code"] == "invalid_setting" and error["message"].startswith("invalid setting SHIELDES_PORT: ")
