"""A real node on an ephemeral port, a real Postgres database, fake upstreams, admin commands."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psycopg

from shieldes.config_writer import execute
from shieldes.events.pg_store import PostgresEventStore, open_pool
from shieldes.node import Node
from shieldes.projections.commands import Command, CreateKey
from shieldes.projections.shared_commands import AddProvider
from shieldes.secrets import display_prefix, hash_key, new_id, new_virtual_key
from shieldes.settings import Settings
from tests.fake_upstream import FakeUpstream

UPSTREAM_KEY_ENV = "SHIELDES_TEST_UPSTREAM_KEY"
UPSTREAM_KEY = "sk-upstream-test"


@dataclass
class Harness:
    database_url: str
    store: PostgresEventStore
    upstream: FakeUpstream
    settings: Settings
    node: Node = field(init=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.node.port}"

    async def admin(self, command: Command) -> None:
        await execute(self.store, command, actor="test")

    async def create_key(self, name: str, **kw: Any) -> str:
        secret = new_virtual_key()
        await self.admin(CreateKey(new_id("key"), name, hash_key(secret), display_prefix(secret), **kw))
        return secret

    async def sync(self) -> None:
        """Make the node see the log now (instead of at its next poll)."""
        assert self.node.poller is not None
        assert await self.node.poller.poll_once()

    async def flush(self) -> None:
        assert self.node.flusher is not None
        assert await self.node.flusher.flush_all(10)

    async def chat_logged(self, key: str, models: tuple[str, ...]) -> None:
        """One small chat request per model with `key`, then their rows written to the request log."""
        async with aiohttp.ClientSession() as s:
            for model in models:
                async with s.post(self.base + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                  json={"model": model, "messages": [{"role": "user", "content": "hi"}]}) as r:
                    await r.read()
        writer = self.node.request_log
        assert writer is not None
        await wait_until(lambda: writer.buffer.added >= len(models), timeout=10)
        assert await writer.flush_all(10)

    def sql(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            return conn.execute(query, args).fetchall()

    def usage_totals(self) -> dict[str, tuple[int, int, int, int]]:
        """key name -> (requests, prompt, completion, cost nUSD) from the usage_daily view."""
        rows = self.sql("SELECT key_name, sum(requests), sum(prompt_tokens), sum(completion_tokens),"
                        " sum(cost_usd) * 1000000000 FROM usage_daily GROUP BY key_name")
        return {r[0]: (int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows}

    def delta_rows(self) -> list[tuple[Any, ...]]:
        return self.sql(
            "SELECT key_id, provider, model, requests, prompt_tokens, completion_tokens, cost_nusd"
            " FROM usage_deltas ORDER BY position"
        )


async def snapshot_and_load(base: str, admin_token: str, database_url: str) -> tuple[Any, Any]:
    """Have the node at `base` write a snapshot (POST /admin/v1/snapshots), then load the
    projection from the database as a starting node would: (projection, load report)."""
    from shieldes.events.pg_store import open_pool
    from shieldes.snapshots.loader import load_projection_report

    async with aiohttp.ClientSession() as s, s.post(base + "/admin/v1/snapshots",
                                                     headers={"Authorization": f"Bearer {admin_token}"}) as r:
        assert r.status in (200, 201), await r.text()
    pool = open_pool(database_url, size=1, name="test-load")
    await pool.open(wait=True)
    try:
        return await load_projection_report(pool)
    finally:
        await pool.close()


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def harness(database_url: str, *, upstream: FakeUpstream | None = None, providers: bool = True,
                  **settings: Any) -> AsyncIterator[Harness]:
    import os

    os.environ[UPSTREAM_KEY_ENV] = UPSTREAM_KEY
    up = upstream or FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY,
                                  models=("gpt-4o", "gpt-4o-mini", "text-embedding-3-small"))
    pool = open_pool(database_url, size=2, name="test-admin")
    await pool.open(wait=True)
    await up.start()
    store = PostgresEventStore(pool)
    opts: dict[str, Any] = dict(database_url=database_url, node_id=f"t-{secrets.token_hex(3)}", host="127.0.0.1",
                                port=0, flush_interval=0.05, poll_interval=0.05, retry_backoff=0.0,
                                shutdown_grace=5.0)
    opts.update(settings)
    h = Harness(database_url, store, up, Settings(**opts))
    if providers:
        ref = "env:" + UPSTREAM_KEY_ENV
        await h.admin(AddProvider("openai", "openai", up.url, ref,
                                  ("gpt-4o", "gpt-4o-mini", "text-embedding-3-small")))
        await h.admin(AddProvider("claude", "anthropic", up.url, ref, ("claude-3-5-haiku-latest",)))
    h.node = Node(h.settings)
    try:
        await h.node.start()
        yield h
    finally:
        await h.node.stop()
        await up.stop()
        await pool.close()
