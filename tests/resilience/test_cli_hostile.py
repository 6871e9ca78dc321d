"""SQL-like text and control characters in every CLI field: refused with one clean line (nothing
appended) or stored verbatim as data, never executed; tables print them safely."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg

from tests.cli import invoke, ok

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SQLISH = "x'); DROP TABLE events; --"
CONTROL = "a\x1b[31mred\x07\x00b\r\nc"
HOSTILE = (SQLISH, CONTROL, "\u202eevil", "'" * 300, "$(rm -rf /)", "%s%s%n", "\\x00", "")


def strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def events(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM events").fetchone()
        return int(row[0]) if row else 0


def attempt(url: str, *args: str) -> bool:
    """Run a command: True if it succeeded; if refused, exactly one clean `error:` line, nothing appended."""
    before = events(url)
    result = invoke(url, *args)
    if result.exit_code == 0:
        return True
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert "\x1b" not in result.stderr and "\x00" not in result.stderr  # echoed input is escaped
    assert events(url) == before, args
    return False


def test_hostile_text_in_every_cli_field(database_url: str) -> None:
    ok(database_url, "provider", "add", "openai", "--type", "openai", "--base-url", "http://127.0.0.1:9/v1",
       "--api-key-env", "K", "--models", "gpt-4o")
    ok(database_url, "key", "create", "--name", "app")
    ok(database_url, "team", "create", "research")
    stored = []
    for s in HOSTILE:
        commands = [
            ("key", "create", "--name", s), ("key", "create", "--name", "n1", "--models", s),
            ("key", "create", "--name", "n2", "--team", s), ("key", "create", "--name", "n3", "--budget-period", s),
            ("key", "update", s, "--rpm", "5"), ("key", "revoke", s), ("key", "show", s),
            ("team", "create", s), ("budget", "set", s, "--amount", "1"), ("budget", "show", s),
            ("budget", "set", "app", "--amount", "1", "--period", s),
            ("provider", "add", s, "--type", "openai", "--base-url", "http://h/v1", "--models", "m"),
            ("provider", "add", "p2", "--type", "openai", "--base-url", s, "--models", "m"),
            ("provider", "add", "p3", "--type", "openai", "--base-url", "http://h/v1", "--models", s),
            ("provider", "add", "p4", "--type", "openai", "--base-url", "http://h/v1", "--models", "m",
             "--api-key-env", s),
            ("provider", "remove", s), ("pricing", "set", s, "--input", "1", "--output", "1"),
            ("audit", "log", "--type", s), ("key", "rotate", s),
        ]
        for args in commands:
            if attempt(database_url, *args):
                stored.append((args, s))
                if args[:2] == ("provider", "add"):
                    invoke(database_url, "provider", "remove", args[2])
    # SQL-like text where the field allows it is plain data, stored and shown verbatim
    url = "http://h/v1?q=" + SQLISH
    ok(database_url, "provider", "add", "p9", "--type", "openai", "--base-url", url, "--models", "m")
    assert [p["base_url"] for p in ok(database_url, "provider", "list") if p["name"] == "p9"] == [url]
    # the schema is intact and the log still verifies
    assert ok(database_url, "audit", "verify")
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT to_regclass('events')").fetchone() == ("events",)
        data = [r[0] for r in conn.execute("SELECT data FROM events WHERE stream = 'config'")]
    values = {v for d in data for v in strings(d)}
    for args, s in stored:  # what was accepted is stored as data, verbatim
        if args[1] in ("create", "add", "set"):
            assert s in values or any(s in v for v in values), args
    # a process printing the tables: control characters never reach the terminal raw
    env = {**os.environ, "PYTHONPATH": ROOT, "SHIELDES_DATABASE_URL": database_url}
    for table in (("key", "list"), ("provider", "list"), ("audit", "log"), ("team", "list")):
        out = subprocess.run([sys.executable, "-m", "shieldes", *table], cwd=ROOT, env=env, capture_output=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert b"\x1b" not in out.stdout and b"\x07" not in out.stdout and b"\x00" not in out.stdout
