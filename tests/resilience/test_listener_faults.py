"""The LISTEN connection is dropped (pg_terminate_backend) again and again while config events are
appended: with the position poll made slow, reconnect + catch-up alone bring every change in."""

from __future__ import annotations

import openai
import psycopg

from tests.integration.gateway_harness import wait_until
from tests.resilience.support import MESSAGES, node_via


def kill_listen(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND query ILIKE 'LISTEN%%' AND pid <> pg_backend_pid()").fetchall()
    return len(rows)


async def test_dropped_listen_connection_under_appends_misses_nothing(database_url: str) -> None:
    async with node_via(database_url, database_url, poll_interval=30.0) as h:
        listener = h.node.cluster.listener if h.node.cluster else None
        assert listener is not None
        await wait_until(lambda: listener.state == "listening", 5)
        secrets: list[str] = []
        for round_ in range(4):
            for i in range(5):
                secrets.append(await h.create_key(f"k{round_}-{i}"))
            await wait_until(lambda: listener.state == "listening", 10)
            assert kill_listen(database_url) == 1
            for i in range(5, 8):  # appended while the listener is down or reconnecting
                secrets.append(await h.create_key(f"k{round_}-{i}"))
        head = await h.store.head()
        await wait_until(lambda: h.node.projector is not None and h.node.projector.position >= head, 10)
        assert listener.connects >= 5
        for secret in secrets:  # every key works on the node, none missed
            client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
            await client.close()
