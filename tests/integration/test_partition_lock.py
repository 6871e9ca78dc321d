"""Daily partitions (the request log's, the stored responses') are made under an advisory lock that
serialises their DDL across nodes. A node whose partitions exist already takes no lock: another
node stopped inside its upkeep's transaction (SIGSTOP, a frozen loop) holds the lock, and a node
that waited on it would start 10 s late and write no row of its request log or stored responses
until that node moved on. A missing partition is still made under the lock."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from shieldes.db import missing_tables
from shieldes.requestlog import store as log_store
from shieldes.requestlog.partitions import TABLES, days_to_prepare, partition_name
from shieldes.responses import store as responses_store
from shieldes.responses.store import ResponseTable


@asynccontextmanager
async def lock_held(database_url: str, lock: int) -> AsyncIterator[None]:
    """The partition lock held in an open transaction, as a node stopped inside its upkeep holds it."""
    async with await psycopg.AsyncConnection.connect(database_url) as other:
        await other.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
        yield
        await other.rollback()


async def waits_for_the_lock(database_url: str, making: Awaitable[None]) -> asyncio.Task[None]:
    """`making` started, and seen waiting on an advisory lock in Postgres (not done meanwhile)."""
    task = asyncio.ensure_future(making)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as watch:
        for _ in range(500):
            cur = await watch.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            row = await cur.fetchone()
            if row and row[0]:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("no one waited for the partition lock")
    assert not task.done()
    return task


async def test_request_log_partitions_that_exist_need_no_lock(database_url: str) -> None:
    days = days_to_prepare(dt.datetime.now(dt.UTC).date())
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await log_store.ensure_partitions(conn, days)  # (made once, as a node's start makes them)
        missing = dt.date(2031, 1, 1)
        async with lock_held(database_url, log_store.PARTITION_LOCK):
            await asyncio.wait_for(log_store.ensure_partitions(conn, days), 5)  # before: waited for the lock
            making = await waits_for_the_lock(database_url, log_store.ensure_partitions(conn, [missing]))
        await asyncio.wait_for(making, 10)
        assert not await missing_tables(conn, [partition_name(t, missing) for t in TABLES])


async def test_stored_response_partitions_that_exist_need_no_lock(database_url: str,
                                                                  pool: AsyncConnectionPool[Any]) -> None:
    today = dt.datetime.now(dt.UTC).date()
    await ResponseTable(pool).ensure_partitions({today})  # another node made it
    table = ResponseTable(pool)  # a node started since: it knows of no partition
    later = today + dt.timedelta(days=400)
    async with lock_held(database_url, responses_store.PARTITION_LOCK):
        await asyncio.wait_for(table.ensure_partitions({today}), 5)  # before: waited for the lock
        making = await waits_for_the_lock(database_url, table.ensure_partitions({later}))
    await asyncio.wait_for(making, 10)
    async with pool.connection() as conn:
        assert not await missing_tables(conn, [responses_store.partition_name(later)])
