"""The replay == live property against real Postgres (few examples: each gets a fresh database),
which also covers the jsonb round trip of every value the commands can produce."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings

from shieldes.events.pg_store import PostgresEventStore, open_pool
from tests import pg
from tests.strategies import assert_replay_equals_live, steps


async def _check(url: str, sequence: list[Any]) -> None:
    pool = open_pool(url, size=2)
    await pool.open(wait=True)
    try:
        await assert_replay_equals_live(PostgresEventStore(pool), sequence)
    finally:
        await pool.close()


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps)
def test_replay_equals_live_in_postgres(pg_server: str, sequence: list[Any]) -> None:
    url = pg.fresh_database(pg_server)
    try:
        asyncio.run(_check(url, sequence))
    finally:
        pg.drop_database(pg_server, url)
