"""The `--baseline DIR` node's own database (bench/bench_gateway.py): a fresh database in the bench's
Postgres server, migrated, given the bench's two providers and a key by the baseline tree's own CLI
(`python -m shieldes ...` with PYTHONPATH=DIR, cwd DIR). A tree older than the current one cannot
serve from a database the current tree migrated (its node refuses a newer schema), so the two nodes
never share one: each runs on the schema and the config its own code writes.

Only commands and flags every tree with `serve`, `provider add` and `key create` has are used; what
a tree lacks ends the run with one line naming it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


class BaselineUnfit(Exception):
    """The baseline tree cannot set up its database; the message is one line saying why."""


@dataclass(frozen=True)
class KeyLimits:
    """The bench key's limits and budget: the same for the node and the baseline, so both run every check."""

    rpm: int
    tpm: int
    budget_usd: float
    budget_period: str


@dataclass(frozen=True)
class BaselineDatabase:
    url: str
    secret: str
    revision: str | None


def create_database(server: str) -> str:
    """A fresh, empty database in `server`; its URL."""
    from tests.pg import fresh_database

    return fresh_database(server, migrated=False)


def database_name(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).path.lstrip("/")


def setup_commands(upstream: str, limits: KeyLimits, responses: bool) -> list[list[str]]:
    """The CLI commands (after `python -m shieldes`) that give a database the bench's config: the
    same providers and key as the node's (bench_gateway.prepare_database and add_provider).
    `responses`: the run has a Responses mode, so the openai deployment relays /v1/responses
    natively (`--responses native`; chat is not affected by it, so a run without a Responses mode
    leaves the flag out and a tree older than it still runs)."""
    native = ["--responses", "native"] if responses else []
    return [
        ["db", "upgrade"],
        ["provider", "add", "fake", "--type", "openai", "--base-url", upstream, "--models", "gpt-4o", *native],
        ["provider", "add", "fake-claude", "--type", "anthropic", "--base-url", upstream,
         "--models", "claude-sonnet-4-5"],
        # --json before the command: every tree's CLI takes it there and prints the secret as "key"
        ["--json", "key", "create", "--name", "bench", "--rpm", str(limits.rpm), "--tpm", str(limits.tpm),
         "--budget", str(limits.budget_usd), "--budget-period", limits.budget_period],
    ]


def refusal(tree: Path, args: list[str], output: str) -> str:
    """One line: which command of the baseline tree failed and what it said (its last line)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    said = lines[-1] if lines else "no output"
    said = said.removeprefix("error: ").removeprefix("Error: ")
    return (f"--baseline {tree}: that tree cannot set up its own database: `shieldes {' '.join(args)}` failed: "
            f"{said}; use a tree that has it (or leave out the modes that need it)")


def secret_of(output: str) -> str:
    """The secret `--json key create` printed (every tree prints the created key's row with it as "key")."""
    start = output.find("{")
    row = json.loads(output[start:]) if start >= 0 else {}
    secret = row.get("key") if isinstance(row, dict) else None
    if not isinstance(secret, str) or not secret:
        raise ValueError("no key secret in its output")
    return secret


def tree_env(tree: Path, url: str) -> dict[str, str]:
    """The baseline's environment: its own code and its own database. Without SHIELDES_ADMIN_URL, so
    its admin commands write to that database and not through some node's admin API."""
    env = {k: v for k, v in os.environ.items() if k != "SHIELDES_ADMIN_URL"}
    return {**env, "PYTHONPATH": str(tree), "SHIELDES_DATABASE_URL": url}


def prepare(tree: Path, server: str, upstream: str, limits: KeyLimits, responses: bool) -> BaselineDatabase:
    """A fresh database in `server` set up by `tree`'s own CLI (dropped again if that fails)."""
    from shieldes import db

    if not (tree / "shieldes" / "__init__.py").is_file():
        raise BaselineUnfit(f"--baseline {tree}: no shieldes package there; extract a source tree into it "
                            "(git archive <commit> | tar -x -C DIR)")
    url = create_database(server)
    try:
        secret = ""
        for args in setup_commands(upstream, limits, responses):
            done = subprocess.run([sys.executable, "-m", "shieldes", *args], cwd=tree, env=tree_env(tree, url),
                                  capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                raise BaselineUnfit(refusal(tree, args, done.stderr or done.stdout))
            if args[1:3] == ["key", "create"]:
                try:
                    secret = secret_of(done.stdout)
                except ValueError as exc:
                    raise BaselineUnfit(refusal(tree, args, str(exc))) from None
        with db.sync_connection(url) as conn:
            revision = db.schema_revision(conn)
    except BaseException:
        drop(url)
        raise
    return BaselineDatabase(url, secret, revision)


def drop(url: str) -> None:
    """Drop a database create_database made (its server stays up for the next run)."""
    from tests.pg import drop_database, with_database

    drop_database(with_database(url, "postgres"), url)
