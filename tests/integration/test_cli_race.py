"""Admins racing each other: concurrent creates of one key name (the CLI's write path: decide +
optimistic append) against one database; exactly one wins, the others are refused, the log holds
one key and its hash chain verifies."""

from __future__ import annotations

import asyncio

from shieldes import secrets
from shieldes.config_writer import execute
from shieldes.errors import CommandRejected
from shieldes.events.pg_store import PostgresEventStore
from shieldes.projections.commands import CreateKey
from tests.cli import ok, refused, sql


async def test_concurrent_creates_of_one_name_append_one_key(
    pg_store: PostgresEventStore, database_url: str
) -> None:
    async def create(i: int) -> str:
        secret = secrets.new_virtual_key()
        command = CreateKey(f"key_{i}", "dup", secrets.hash_key(secret), secrets.display_prefix(secret))
        try:
            await execute(pg_store, command, actor=f"admin{i}")
        except CommandRejected as exc:
            return exc.message
        return "created"

    outcomes = await asyncio.gather(*(create(i) for i in range(6)))
    assert outcomes.count("created") == 1, outcomes
    assert all("already exists" in o for o in outcomes if o != "created")
    assert sql(database_url, "SELECT count(*) FROM events") == [(1,)]
    # the CLI runs its own event loop: call it from a thread
    assert (await asyncio.to_thread(ok, database_url, "audit", "verify"))["ok"]
    line = await asyncio.to_thread(refused, database_url, "key", "create", "--name", "dup")
    assert "already exists" in line
