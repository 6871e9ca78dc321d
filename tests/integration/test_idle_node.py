"""What an idle node does on its own: one position poll per interval, no probe queries on its LISTEN
and leader connections, no flusher wake-ups with nothing to append; and the bounds still hold when
work arrives (usage appended within a flush interval, a config change seen within a poll interval)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import psycopg

from shieldes.projections.shared_commands import SetPricing
from tests.integration.gateway_harness import harness, wait_until

POLL = 0.2
FLUSH = 0.1


async def query_starts(database_url: str, pids: list[int]) -> dict[int, Any]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT pid, query_start FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,))
        return dict(await cur.fetchall())


async def test_an_idle_node_polls_once_an_interval_and_its_other_loops_sleep(database_url: str) -> None:
    async with harness(database_url, poll_interval=POLL, flush_interval=FLUSH, heartbeat_interval=POLL) as h:
        node = h.node
        assert node.poller is not None and node.flusher is not None and node.cluster is not None
        cluster = node.cluster
        await wait_until(lambda: cluster.leader.is_leader and cluster.listener.connected, timeout=10)
        await asyncio.sleep(4 * POLL)  # start-up's own reads are over
        pids = [cluster.listener.backend_pid, cluster.leader.backend_pid]
        assert None not in pids
        started = await query_starts(database_url, pids)  # type: ignore[arg-type]
        polls, waits, began = node.poller.polls, node.flusher.waits, time.monotonic()
        await asyncio.sleep(10 * POLL)
        seconds = time.monotonic() - began
        # one poll per interval (on the tick the heartbeat shares), not a timer's and a wake-up's
        assert node.poller.polls - polls <= seconds / POLL + 1
        assert node.poller.polls - polls >= seconds / POLL / 2  # (and the poll still runs)
        assert node.flusher.waits == waits  # asleep with nothing to append, no timer
        # the LISTEN and leader connections ran no query: they wait on their sockets
        assert await query_starts(database_url, pids) == started  # type: ignore[arg-type]

        # the bounds hold once work arrives: usage is appended within a flush interval of the request ...
        key = await h.create_key("idle")
        await h.sync()
        async with aiohttp.ClientSession() as s, s.post(
                h.base + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}) as r:
            assert r.status == 200, await r.text()
            answered = time.monotonic()
        before = node.flusher.appends
        await wait_until(lambda: node.flusher.appends > before, timeout=5)
        assert time.monotonic() - answered < FLUSH + 1.0  # (the machine may be loaded)
        # ... and a config change another writer appends is applied within a poll interval
        await h.admin(SetPricing("idle-model", 1.0, 2.0))
        appended = time.monotonic()
        await wait_until(lambda: "idle-model" in node.projector.config.pricing, timeout=5)  # type: ignore[union-attr]
        assert time.monotonic() - appended < POLL + 1.0
