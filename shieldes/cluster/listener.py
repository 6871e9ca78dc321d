"""Live updates: LISTEN wakes the projector, a poll and a catch-up after every reconnect make it correct.

NOTIFY is only a hint (principle 4): a notification, a gossip "log head" hint, a poll tick and a
(re)connect all end in the same thing, `projector.catch_up()` from the projector's own cursor. A lost
notification or a dropped LISTEN connection therefore delays an update by at most `poll_interval`,
and never loses one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg.abc import PQGen

from shieldes.events.pg_store import NOTIFY_CHANNEL
from shieldes.projections.projector import Projector
from shieldes.tasks import cancel_and_wait

log = logging.getLogger(__name__)
RV = TypeVar("RV")


class QuietConnection(psycopg.AsyncConnection[Any]):
    """A connection whose waits do not wake up every 0.1 s. psycopg's default interval lets blocking
    code notice Ctrl-C; under asyncio a cancellation reaches the wait anyway, and a wait's own
    timeout still ends it on time. The LISTEN and leader connections wait on an idle socket nearly
    all the time: ten wake-ups a second that found nothing were most of their CPU."""

    async def wait(self, gen: PQGen[RV], interval: float = 3600.0, timeout: float | None = None) -> RV:
        return await super().wait(gen, interval, timeout)


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with jitter in [delay/2, delay]: reconnect storms spread out."""
    delay = min(cap, base * (2 ** min(attempt, 30)))
    return rng.uniform(delay / 2, delay)


class Listener:
    """Owns one autocommit connection doing `LISTEN shieldes_events` and the catch-up loop.

    `state` is one of: stopped, connecting, listening, backoff.
    """

    def __init__(
        self,
        url: str,
        projector: Projector,
        *,
        poll_interval: float = 1.0,
        backoff_base: float = 0.05,
        backoff_cap: float = 5.0,
        connect_timeout: float = 5.0,
        rng: random.Random | None = None,
        on_wake: Callable[[], None] | None = None,
    ) -> None:
        """With `on_wake`, catching up is someone else's loop (the node's log poller, which also polls
        by position): the listener only wakes it. Without, the listener runs its own catch-up loop."""
        self._url = url
        self.projector = projector
        self.poll_interval = poll_interval
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._connect_timeout = connect_timeout
        self._rng = rng or random.Random()
        self._on_wake = on_wake
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self.state = "stopped"
        self.backend_pid: int | None = None
        self.connects = 0  # successful LISTEN (re)connects; > 1 means it reconnected
        self.notifications = 0
        self.catch_ups = 0
        self.last_error: str | None = None
        self.last_caught_up: float = 0.0  # monotonic time of the last successful catch-up

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks:
            return
        self.state = "connecting"
        self._tasks = [asyncio.create_task(self._listen_loop(), name="shieldes-listen")]
        if self._on_wake is None:
            self._tasks.append(asyncio.create_task(self._catch_up_loop(), name="shieldes-catch-up"))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(*tasks)
        await self._close_conn()
        self.state = "stopped"

    # --- hints -------------------------------------------------------------------------------

    def wake(self, head: int | None = None) -> None:
        """Something says the log moved (NOTIFY payload, gossip head): catch up soon."""
        if head is not None:
            self.projector.note_head(head)
            if head <= self.projector.position:
                return
        if self._on_wake is not None:
            self._on_wake()
        self._wake.set()

    @property
    def lag(self) -> int:
        return self.projector.lag

    @property
    def connected(self) -> bool:
        return self.state == "listening"

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "position": self.projector.position,
            "lag": self.lag,
            "connects": self.connects,
            "notifications": self.notifications,
            "last_error": self.last_error,
        }

    # --- loops -------------------------------------------------------------------------------

    async def _listen_loop(self) -> None:
        attempt = 0
        while True:
            try:
                self.state = "connecting"
                conn = await QuietConnection.connect(
                    self._url,
                    autocommit=True,
                    connect_timeout=max(1, int(self._connect_timeout)),
                    # a silent network partition must still end in an error we can act on
                    keepalives=1,
                    keepalives_idle=5,
                    keepalives_interval=2,
                    keepalives_count=3,
                )
                self._conn = conn
                await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                self.backend_pid = conn.info.backend_pid
                self.connects += 1
                self.state = "listening"
                attempt = 0
                # anything committed while we were not listening is picked up here
                self.wake()
                await self._receive(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # psycopg.Error, OSError: reconnect whatever the cause
                self.last_error = _one_line(exc)
                log.warning("LISTEN connection lost (%s); reconnecting", self.last_error)
            await self._close_conn()
            self.state = "backoff"
            await asyncio.sleep(
                backoff_delay(attempt, base=self._backoff_base, cap=self._backoff_cap, rng=self._rng)
            )
            attempt += 1

    async def _receive(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Until the connection fails. No timer and no probe query: a terminated backend or a closed
        connection wakes the wait with an error at once, and a silent network is found by the TCP
        keepalives (about 11 s; a probe query sent into it would wait for TCP's retransmissions
        instead, many minutes). Meanwhile the position poll delivers what NOTIFY would have."""
        async for note in conn.notifies():
            self.notifications += 1
            head = _parse_position(note.payload)
            self.wake(head)
        raise psycopg.OperationalError("the LISTEN connection stopped receiving")

    async def _catch_up_loop(self) -> None:
        """Coalesces wake-ups; a timeout on the wait is the poll by position."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            self._wake.clear()
            try:
                await self._poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is unreachable: keep serving, try again next tick
                self.last_error = _one_line(exc)
                log.warning("catch-up failed (%s); retrying in %.1fs", self.last_error, self.poll_interval)

    async def _poll_once(self) -> None:
        await self.projector.catch_up()  # notes the head it read
        self.catch_ups += 1
        self.last_caught_up = time.monotonic()

    async def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


def _parse_position(payload: str) -> int | None:
    try:
        return int(payload)
    except ValueError:
        return None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
