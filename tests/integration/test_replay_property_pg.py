"""The replay == live property against real Postgres (few examples: each gets a fresh database),
which also covers the jsonb round trip of every value the commands can produce."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings

from shieldes.events.catalog import CONFIG_STREAM
from shieldes.events.pg_store import PostgresEventStore, open_pool
from shieldes.events.verify import verify_chain
from tests import pg
from tests.strategies import assert_replay_equals_live, steps


async def _check(url: str, sequence: list[Any]) -> None:
    pool = open_pool(url, size=2)
    await pool.open(wait=True)
    try:
        store = PostgresEventStore(pool)
        await assert_replay_equals_live(store, sequence)
        # every value the commands produced survives jsonb so that the hash chain still verifies
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT config_position, config_hash FROM log_head")
            head = await cur.fetchone()
        assert head is not None
        report = verify_chain(await store.read(0, 100_000, stream=CONFIG_STREAM), head[0], head[1])
        assert report.ok, report
    finally:
        await pool.close()


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps)
def test_replay_equals_live_in_postgres(pg_server: str, sequence: list[Any]) -> None:
    url = pg.fresh_database(pg_server)
    try:
        asyncio.run(_check(url, sequence))
    finally:
        pg.drop_database(pg_server, url)
