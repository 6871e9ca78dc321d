"""A loading node's heartbeat ends when the load does, by an event (a cancellation landing in the
heartbeat's query could be absorbed by the driver and leave the node waiting forever)."""

from __future__ import annotations

import asyncio
from typing import Any

from psycopg_pool import AsyncConnectionPool

from shieldes.events.codec import Codec
from shieldes.snapshots import loader


async def _beat_at(pool: AsyncConnectionPool[Any]) -> Any:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT heartbeat_at FROM cluster_nodes WHERE node_id = 'n1'")
        row = await cur.fetchone()
        return row[0] if row else None


async def test_the_heartbeat_while_loading_beats_then_stops_when_told(pool: AsyncConnectionPool[Any]) -> None:
    await loader._register(pool, "n1", 0, Codec())
    first = await _beat_at(pool)
    stop = asyncio.Event()
    beat = asyncio.create_task(loader._keep_alive(pool, "n1", 0.01, stop))
    while await _beat_at(pool) == first:  # it beats
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(beat, 5)  # and ends by itself, without a cancellation
    assert beat.done() and not beat.cancelled() and beat.exception() is None
