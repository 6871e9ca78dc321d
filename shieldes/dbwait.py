"""A request's wait on Postgres, bounded: the one place that says how long a client or an admin
request may wait for the database before it is told to retry.

Most requests never wait on Postgres (the hot path reads memory only); the few that must
(conversations, a stored response this node does not hold, admin config writes) wait here. A
database that refuses fails fast on its own; one that stalls (a paused server, a table lock held,
a full disk, a black-holed network) would hold the request until TCP gives up, which for a paused
server is never. Past `seconds` the request gets a 503 `database_unavailable` at once. The
operation itself is cancelled apart from the request: psycopg's cancellation of a query that a
stalled server does not answer takes up to 10 s more (a cancel request, then a wait for the
query's end), which no client should wait for. Those cancellations are owned here and awaited by
`stop()`.

A node has three: requests (`db_request_timeout`), admin reads (`db_admin_read_timeout`: a usage
or audit read may scan much more than a request's query) and the stored-response writer (its
write's bound grows with what it writes; a stalled write is cancelled and retried).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import psycopg

from shieldes.errors import DatabaseStalled, DatabaseUnavailable, ShieldesError

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY = "retry shortly"
# After a read's wait ran out (the admin API's, the CLI's): nothing was changed, a retry is safe.
READ_ADVICE = ("retry shortly; if it persists, run `shieldes doctor` and check the database (is it up and answering, "
               "a session holding locks in pg_stat_activity, free disk space)")
# The wait for the cancellations still running at shutdown: psycopg gives up on one after 10 s.
STOP_WAIT = 12.0


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _release(waiter: asyncio.Future[None], _: object = None) -> None:
    if not waiter.done():
        waiter.set_result(None)


class DbWait:
    """`run(op, what)`: `op`'s result, or a DatabaseUnavailable naming `what` and what to do."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._cancelling: set[asyncio.Task[Any]] = set()

    async def run(self, op: Awaitable[T], what: str, *, advice: str = RETRY,
                  refused: Callable[[psycopg.Error], ShieldesError | None] | None = None) -> T:
        """`what`: the subject of the 503's message ("stored responses cannot be read right
        now"); `advice`: what the caller should do after a timeout. A psycopg error becomes
        `refused(exc)` if that gives an error (a statement refused for its content), else a 503."""
        try:
            return await self.within(op, what, advice=advice)
        except psycopg.Error as exc:
            mapped = refused(exc) if refused is not None else None
            if mapped is not None:
                raise mapped from None
            raise DatabaseUnavailable(f"{what} ({first_line(exc)}); {RETRY}") from None
        except OSError as exc:
            raise DatabaseUnavailable(f"{what} ({first_line(exc)}); {RETRY}") from None

    async def within(self, op: Awaitable[T], what: str, *, advice: str = RETRY, seconds: float | None = None) -> T:
        """`op`'s result or its own error as raised; past `seconds` (default: this wait's) a
        DatabaseStalled, `op` being cancelled apart from the caller."""
        limit = self.seconds if seconds is None else seconds
        task = asyncio.ensure_future(op)
        # one future, released by the operation's end or the timer: asyncio.wait's sets and
        # callbacks cost as much again as this (every stored-response write and waited read passes here)
        loop = task.get_loop()
        waiter = loop.create_future()
        timer = loop.call_later(limit, _release, waiter)
        task.add_done_callback(partial(_release, waiter))
        try:
            await waiter
        except BaseException:  # the caller itself was cancelled: so is its operation
            timer.cancel()
            self._cancel(task)
            raise
        timer.cancel()
        if not task.done():
            self._cancel(task)
            raise DatabaseStalled(f"{what}: Postgres did not answer within {limit:g} s (a stalled "
                                  f"server, a lock held or a full disk); {advice}")
        return task.result()

    def _cancel(self, task: asyncio.Task[Any]) -> None:
        task.cancel()
        self._cancelling.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._cancelling.discard(task)
        error = None if task.cancelled() else task.exception()  # read, so asyncio does not log it
        if error is not None:
            log.debug("a database operation past its wait ended with %s", first_line(error))

    @property
    def cancelling(self) -> int:
        """Operations past their wait whose cancellation is still running."""
        return len(self._cancelling)

    async def settled(self) -> None:
        """Until the cancellations running now have ended (what they did is done, or never will be)."""
        if self._cancelling:
            await asyncio.wait(set(self._cancelling))

    async def stop(self) -> None:
        """Wait for the cancellations still running (before the pool closes under them)."""
        if not self._cancelling:
            return
        _, left = await asyncio.wait(set(self._cancelling), timeout=STOP_WAIT)
        if left:
            log.warning("%d database operations past their wait were still being cancelled at shutdown", len(left))
