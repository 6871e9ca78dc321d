"""Postgres goes away under a running node: it keeps serving from memory, /ready says degraded,
and once the database is back every usage delta reaches the log exactly once."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import aiohttp
import openai
import psycopg

from tests.integration.gateway_harness import harness, wait_until

MSGS = [{"role": "user", "content": "hello there"}]


def set_reachable(server_url: str, database_url: str, reachable: bool) -> None:
    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {str(reachable).lower()}")
        if not reachable:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


async def ready_status(base: str) -> tuple[int, str, bool]:
    async with aiohttp.ClientSession() as s, s.get(base + "/ready") as r:
        body = await r.json()
        return r.status, body["status"], body["degraded"]


async def test_serves_from_memory_while_postgres_is_down(pg_server: str, database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("steady")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        await client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        set_reachable(pg_server, database_url, False)
        try:
            for _ in range(3):
                await client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
            status: tuple[int, str, bool] = (0, "", False)
            for _ in range(200):  # the poller notices within a few intervals
                status = await ready_status(h.base)
                assert status[0] == 200, "a database outage must not make a serving node unready"
                if status[2]:
                    break
                await asyncio.sleep(0.05)
            assert status == (200, "degraded", True)
            assert h.node.meter is not None and h.node.meter.buffered() > 0
        finally:
            set_reachable(pg_server, database_url, True)
        await wait_until(lambda: h.usage_totals().get("steady", (0,))[0] == 4, timeout=30)
        assert h.usage_totals()["steady"] == (4, 8, 20, 4 * (2 * 2500 + 5 * 10000))
