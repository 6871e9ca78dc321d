"""Helpers for CLI tests: run `shieldes` in-process with click's CliRunner against a test database."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from click.testing import CliRunner, Result

from shieldes.cli.main import cli


def invoke(database_url: str, *args: str, env: dict[str, str] | None = None) -> Result:
    full_env = {
        "SHIELDES_DATABASE_URL": database_url,
        "SHIELDES_ACTOR": "tester",
        "SHIELDES_ENCRYPTION_KEY": "",
    }
    full_env.update(env or {})
    return CliRunner().invoke(cli, list(args), env=full_env, catch_exceptions=False)


def completed(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m shieldes ARGS` run in this process, as a process would see ENV: no other SHIELDES_
    variable set, the result in subprocess.run's shape. For tests whose subject is the command, not
    the process; tests/integration/test_cli_process.py keeps the real processes' entry point, exit
    codes and streams."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("SHIELDES_")}

    def run() -> Result:
        return CliRunner().invoke(cli, list(args), env={**unset, **env}, catch_exceptions=False, prog_name="shieldes")

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        result = run()
    else:  # an async test: the command runs a loop of its own; the test's waits, as it waited on a process
        with ThreadPoolExecutor(1) as one:
            result = one.submit(run).result()
    return subprocess.CompletedProcess(["shieldes", *args], result.exit_code, result.stdout, result.stderr)


def ok(database_url: str, *args: str, env: dict[str, str] | None = None) -> Any:
    """Run a command with --json, assert success, return the parsed output."""
    result = invoke(database_url, "--json", *args, env=env)
    assert result.exit_code == 0, (args, result.stdout, result.stderr)
    return json.loads(result.stdout)


def refused(database_url: str, *args: str, env: dict[str, str] | None = None, code: int | None = None) -> str:
    """Run a command that must fail: non-zero exit, exactly one `error: ...` line, returns it."""
    result = invoke(database_url, *args, env=env)
    assert result.exit_code != 0, (args, result.stdout)
    if code is not None:
        assert result.exit_code == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def count_events(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT count(*) FROM events").fetchone()
        assert row is not None
        return int(row[0])


def sql(database_url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def populate(database_url: str) -> dict[str, Any]:
    """A provider, a price, a team and two keys (one revoked); returns what was created."""
    ok(
        database_url,
        "provider",
        "add",
        "openai",
        "--type",
        "openai",
        "--base-url",
        "https://api.openai.com/v1",
        "--api-key-env",
        "OPENAI_API_KEY",
        "--models",
        "gpt-4o,gpt-4o-mini",
    )
    ok(database_url, "pricing", "set", "gpt-4o", "--input", "2.5", "--output", "10")
    team = ok(database_url, "team", "create", "eng", "--budget", "100")
    app = ok(database_url, "key", "create", "--name", "app", "--team", "eng", "--budget", "5", "--rpm", "60")
    old = ok(database_url, "key", "create", "--name", "old")
    ok(database_url, "key", "revoke", "old")
    return {"team": team, "app": app, "old": old}
