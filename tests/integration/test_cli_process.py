"""A few real `python -m shieldes` processes: entry point, exit codes and streams as a shell sees them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def shieldes(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SHIELDES_DATABASE_URL": database_url,
        "SHIELDES_ACTOR": "ci",
    }
    return subprocess.run(
        [sys.executable, "-m", "shieldes", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_key_create_and_usage_as_processes(database_url: str) -> None:
    created = shieldes(database_url, "key", "create", "--name", "proc", "--json")
    assert created.returncode == 0, created.stderr
    body = json.loads(created.stdout)
    assert {"id", "name", "key", "prefix"} <= body.keys() and body["name"] == "proc"
    usage = shieldes(database_url, "--json", "usage")
    assert usage.returncode == 0 and json.loads(usage.stdout)[0]["key"] == "proc"
    verify = shieldes(database_url, "audit", "verify")
    assert verify.returncode == 0 and verify.stdout.startswith("ok: 1 config events verified")


def test_refusal_as_a_process_is_one_line(database_url: str) -> None:
    bad = shieldes(database_url, "budget", "set", "nobody", "--amount", "-1")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("error: ")
    usage_error = shieldes(database_url, "key", "create", "--name", "x", "--tpm", "many")
    assert usage_error.returncode == 2 and usage_error.stderr.count("\n") == 1
