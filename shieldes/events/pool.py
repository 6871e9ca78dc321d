"""A node's connection pool: psycopg_pool's, which checks a connection only when it is used. After
Postgres comes back from a cut or a restart every idle connection in it is dead, and each would
fail the next caller that takes it (an admin read, a stored response read, a sign-in: a 503 each,
one by one). So the first connection returned broken has every idle one checked, in the background
and once at a time (psycopg_pool's `check()`): the dead are replaced before anyone takes them. No
getconn pays a round trip for it. Imported only where a pool is opened (a CLI command's store has
one connection and no psycopg_pool import)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)


class CheckedPool(AsyncConnectionPool[AsyncConnection[Any]]):
    """An AsyncConnectionPool that checks its idle connections once one is returned broken."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._checking: asyncio.Task[None] | None = None
        self.checks = 0  # whole-pool checks started (read by tests)

    async def putconn(self, conn: AsyncConnection[Any]) -> None:
        if conn.broken and not self.closed and (self._checking is None or self._checking.done()):
            self.checks += 1
            self._checking = asyncio.get_running_loop().create_task(self._check_idle(), name=f"{self.name}-check")
            # one turn of the loop: the check takes the idle connections out before this caller (or the
            # next) asks for one again; it never waits here for their round trips
            await asyncio.sleep(0)
        await super().putconn(conn)

    async def _check_idle(self) -> None:
        try:
            await self.check()
        except Exception as exc:  # a pool closed meanwhile; psycopg_pool counts and replaces the broken
            log.info("checking the idle connections of %s stopped: %s", self.name, exc)

    async def close(self, timeout: float = 5.0) -> None:
        # a check holds the connections it is testing: let it hand them back, unless the database
        # does not answer it (stalled), then stop it
        task, self._checking = self._checking, None
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=timeout)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await super().close(timeout)
