"""Where the event store gets its connections: a node's pool (psycopg_pool), or the one connection
a short CLI command opens. The store asks for `connection()` either way; a command that writes one
event needs neither a pool (its import and its background connection tasks) nor a second
connection to probe the server first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import orjson
import psycopg
from psycopg.pq import TransactionStatus
from psycopg.types.json import set_json_dumps, set_json_loads


class Connections(Protocol):
    """What the store needs of a pool: a connection lent for the length of an `async with`."""

    def connection(self) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]: ...


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


# lz4 for the values Postgres compresses (TOAST) where the server has it and no one configured
# default_toast_compression (the server, the database or the role): pglz spends more than half of
# the INSERT of a stored 2 MB screenshot turn failing to compress its base64 (docs/deploy.md).
LZ4_UNLESS_CONFIGURED = (
    "SELECT set_config('default_toast_compression', 'lz4', false) FROM pg_settings"
    " WHERE name = 'default_toast_compression' AND source = 'default' AND 'lz4' = ANY (enumvals)")


async def prefer_lz4(conn: psycopg.AsyncConnection[Any]) -> None:
    """This session compresses large values with lz4 where the server can (LZ4_UNLESS_CONFIGURED)."""
    await conn.execute(LZ4_UNLESS_CONFIGURED)


def use_orjson(conn: psycopg.AsyncConnection[Any]) -> None:
    """JSON through orjson, per connection (no global adapter state)."""
    set_json_dumps(_dumps, conn)
    set_json_loads(orjson.loads, conn)


class OneConnection:
    """One autocommit connection lent to one caller at a time (a CLI command's store). A caller that
    leaves a transaction open gets it rolled back on return, as a pool does."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn
        self._lent = False

    @classmethod
    async def connect(cls, url: str, *, timeout: int = 5) -> OneConnection:
        """Raises psycopg.OperationalError if the server cannot be reached (callers translate it)."""
        conn = await psycopg.AsyncConnection.connect(url, connect_timeout=timeout, autocommit=True)
        use_orjson(conn)
        return cls(conn)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        # nested use would run the inner caller inside the outer one's transaction: a bug, said so
        if self._lent:
            raise RuntimeError("the command's one connection is already in use")
        self._lent = True
        try:
            yield self._conn
        finally:
            self._lent = False
            if self._conn.pgconn.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
                await self._conn.rollback()

    async def close(self) -> None:
        await self._conn.close()
