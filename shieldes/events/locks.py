"""Session advisory locks on dedicated connections.

A session lock taken on a pooled connection outlives a `finally` that is cancelled before its
unlock runs: the connection goes back to the pool still holding the lock, and every later
maintenance job waits forever. Here the lock lives on its own connection, which is closed on the
way out however the block is left; closing the session releases its locks in the server. The lock
is also let go explicitly before the close, so the next taker finds it free at once (a closed
session's locks go only when its server process exits).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from shieldes.events.pg_store import configure_connection


class LockBusy(Exception):
    """`try_only` and another session holds the lock."""


UNLOCK_TIMEOUT = 2.0  # seconds: the explicit unlock before the close


@asynccontextmanager
async def session_lock(
    pool: AsyncConnectionPool[Any], key: int, *, try_only: bool = False, connect_timeout: int = 10
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """Hold advisory lock `key` for the block, on a connection of its own to `pool`'s database
    (yielded, for work that must happen under the lock on the same session, e.g. a fencing-epoch
    bump)."""
    conninfo = pool.conninfo
    if not isinstance(conninfo, str):
        raise TypeError("session_lock needs a pool opened with a conninfo string")
    conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True, connect_timeout=connect_timeout)
    held = False
    try:
        if try_only:
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))
            row = await cur.fetchone()
            if not row or not row[0]:
                raise LockBusy(f"advisory lock {key:#x} is held by another session")
        else:
            await conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        held = True
        yield conn
    finally:
        try:
            if held and not conn.broken:
                # released before the close: a closed session's locks go only once its server process
                # has exited, so the next taker could still find this one held (bounded: a stalled
                # database must not hold the way out; the close releases it then)
                with contextlib.suppress(psycopg.Error, TimeoutError):
                    await asyncio.wait_for(conn.execute("SELECT pg_advisory_unlock(%s)", (key,)), UNLOCK_TIMEOUT)
        finally:  # closed however the unlock ends (cancelled too): the session's locks go with it
            await conn.close()


@asynccontextmanager
async def dedicated_connection(
    pool: AsyncConnectionPool[Any], *, connect_timeout: int = 10
) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A connection of its own to `pool`'s database (autocommit, JSON via orjson), closed on the way
    out: for long maintenance work that must not take a pooled connection from the requests."""
    conninfo = pool.conninfo
    if not isinstance(conninfo, str):
        raise TypeError("dedicated_connection needs a pool opened with a conninfo string")
    conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True, connect_timeout=connect_timeout)
    try:
        await configure_connection(conn)
        yield conn
    finally:
        await conn.close()
