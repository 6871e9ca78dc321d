"""The node's connection pool after Postgres comes back: its idle connections all died in the cut,
and only the first caller that takes one sees the failure (the pool then checks the rest in the
background), not one caller per pooled connection. Real Postgres; the cut is pg_terminate_backend
from another connection, or a TCP proxy dropping every connection (as a restart of the server
does: the session's server is shared by the tests running beside, so it is not restarted here)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from shieldes.events.pg_store import open_pool
from shieldes.events.pool import CheckedPool
from tests.resilience.support import TcpProxy, node_via, terminate_backends

SIZE = 4
TOKEN = "pool-check-admin-token-0123456789abcdef"


async def fill(pool: AsyncConnectionPool[Any]) -> None:
    """Every one of the pool's connections open (idle in it but for what a node's background holds)."""
    conns = [await pool.getconn() for _ in range(SIZE)]
    for conn in conns:
        await pool.putconn(conn)
    assert pool.get_stats()["pool_size"] == SIZE


async def failures(call: Callable[[], Awaitable[bool]], n: int = 2 * SIZE) -> int:
    """How many of `n` calls one after another fail."""
    return sum([not await call() for _ in range(n)])


async def select_one(pool: AsyncConnectionPool[Any]) -> bool:
    try:
        async with pool.connection() as conn:
            await conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


@pytest.mark.parametrize("cut", ["terminate", "proxy"])
async def test_after_a_cut_one_caller_sees_a_dead_connection_not_one_per_pooled(database_url: str, cut: str) -> None:
    proxy = await TcpProxy(database_url).start()
    pool = open_pool(proxy.url_for(database_url), size=SIZE, name="test-cut")
    await pool.open(wait=True)
    try:
        await fill(pool)
        if cut == "terminate":
            assert terminate_backends(database_url) >= SIZE
        else:
            proxy.cut()
            proxy.restore()  # back: new connections go through
        assert await failures(lambda: select_one(pool)) == 1  # was SIZE: each idle one failed its next caller
        assert await failures(lambda: select_one(pool)) == 0
        assert isinstance(pool, CheckedPool) and pool.checks == 1  # the one broken connection started one check
    finally:
        await pool.close()
        await proxy.stop()


async def test_admin_reads_after_the_backends_are_terminated(database_url: str) -> None:
    """Through HTTP: a burst of admin reads (each takes a pooled connection) after a cut of an idle
    node sees one 503 at most. The node's own background reads (the position poll, the LISTEN
    reconnect's catch-up) may meet the first dead connection instead: then the burst sees none."""
    async with node_via(database_url, database_url, admin_token=TOKEN, db_pool_size=SIZE) as h:
        assert h.node.pool is not None
        await fill(h.node.pool)
        terminate_backends(database_url)

        async def read() -> bool:
            async with aiohttp.ClientSession() as s, s.get(
                    h.base + "/admin/v1/requests", headers={"Authorization": f"Bearer {TOKEN}"}) as r:
                assert r.status in (200, 503), await r.text()
                return r.status == 200

        assert await failures(read) <= 1  # was up to SIZE
        assert await failures(read) == 0
