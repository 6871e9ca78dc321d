"""The event-log poller: catches a node's projection up every poll interval (and on a wake-up), the
backstop that keeps a node correct whatever wake-up mechanism fails, and the evidence /ready reads
of whether the database answers (database_answers)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from shieldes.dbwait import first_line
from shieldes.gateway.config_check import ConfigWatch
from shieldes.projections.projector import LogDiverged, Projection, Projector
from shieldes.tasks import Wake, next_tick, stop_task
from shieldes.usage.meter import Meter

log = logging.getLogger(__name__)
DB_CALL_TIMEOUT = 10.0


def database_answers(polled_ok: bool, failed_at: float, polling_since: float | None, answered_at: float,
                     now: float, bound: float) -> bool:
    """/ready's verdict on the database, the newest evidence winning. `answered_at`: the last answer
    (a page read, a flush); `failed_at`: the last failed poll; `polling_since`: the start of the poll
    under way. A poll with no answer for `bound` s means a silent database (a paused server, a black
    hole) at once: its read ends only when the driver gives up cancelling it, up to 10 s later."""
    if polling_since is not None and answered_at < polling_since and now - polling_since > bound:
        return False
    return polled_ok or answered_at > failed_at


def next_poll(began: float, interval: float, woken: bool) -> float:
    """When the poller polls next if nothing wakes it, after a poll begun at `began` (loop clock):
    never more than an interval later. After a poll on the timer, the next tick of the interval
    (the node's other periodic loops wake on the same ticks: one wake-up of the loop for all);
    after one on a wake-up (NOTIFY, a flush), an interval later, so wake-ups (a flush every
    SHIELDES_FLUSH_INTERVAL under load) replace the timer's polls instead of adding to them."""
    return began + interval if woken else next_tick(began, interval)


class LogPoller:
    """Catches the projector up every `interval` (and on `kick()`); the backstop that makes
    correctness independent of any wake-up mechanism. Tracks whether the database answers."""

    def __init__(self, projector: Projector, meter: Meter, interval: float,
                 reload: Callable[[], Awaitable[Projection]] | None = None,
                 config_watch: ConfigWatch | None = None) -> None:
        self.projector = projector
        self.reload = reload
        self.reloads = 0
        self.config_watch = config_watch
        self.flush_now: Callable[[], None] | None = None  # the flusher's wake-up (Meter.seq_taken)
        self.meter = meter
        self.interval = interval
        self.db_ok = True
        self.last_ok = time.time()
        self.failed_at = 0.0  # monotonic time of the last failed poll
        self.polling_since: float | None = None  # monotonic start of the poll under way
        # A stuck database must show in /ready within a few poll intervals: a catch-up that has not
        # read its first page by then fails (and /ready says so then, see database_answers).
        self.first_read_timeout = min(DB_CALL_TIMEOUT, max(1.0, interval * 5))
        self._wake = Wake()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._warned = False  # the log says the database is silent or unreadable
        self.polls = 0  # position polls begun (ticks and wake-ups)

    def kick(self) -> None:
        self._wake.set()

    def _silent(self) -> None:
        """The poll has had no answer for its bound: said in the log when /ready says it, not once
        the driver gives up cancelling the read (up to 10 s later). A poll that waited while another
        catch-up read pages (the database answering) is no silence."""
        since = self.polling_since
        if not self._warned and since is not None and self.projector.read_at < since:
            self._warned = True
            log.warning("the database has not answered the event-log poll for %g s: serving from memory, "
                        "/ready says degraded; check that Postgres is up and reachable (shieldes doctor)",
                        self.first_read_timeout)

    async def poll_once(self) -> bool:
        self.polls += 1
        self.polling_since = time.monotonic()
        silence = asyncio.get_running_loop().call_later(self.first_read_timeout, self._silent)
        try:
            # One read: the head, the check that the log still holds what was applied, and what
            # follows (a NOTIFY's wake-up ends here). (asyncio.timeout: no task per poll)
            try:
                async with asyncio.timeout(DB_CALL_TIMEOUT * 3):
                    await self.projector.catch_up(first_read_timeout=self.first_read_timeout)
            except LogDiverged as exc:
                if self.reload is None:
                    raise
                await self._reload(str(exc))
                async with asyncio.timeout(DB_CALL_TIMEOUT * 3):
                    await self.projector.catch_up()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self._warned:
                self._warned = True
                log.warning("cannot read the event log, serving from memory: %s", first_line(exc))
            self.db_ok = False
            self.failed_at = time.monotonic()
            return False
        finally:
            silence.cancel()
            self.polling_since = None
        if self._warned:
            self._warned = False
            log.info("the database answers the event-log poll again")
        self.db_ok = True
        self.last_ok = time.time()
        if self.config_watch is not None:
            self.config_watch.check(self.projector.config)
        self.meter.drop_durable(self.projector.usage)
        if self.flush_now is not None and self.meter.seq_taken(self.projector.usage):
            self.flush_now()
        return True

    async def _reload(self, reason: str) -> None:
        """The database failed over to a replica that lacks (or replaced) events this node applied:
        continuing from the cursor would skip the new primary's events at those positions."""
        log.error("the event log no longer matches this node (%s): the database failed over to a replica "
                  "that had not received everything; reloading the state from the new primary", reason)
        assert self.reload is not None
        projection = await asyncio.wait_for(self.reload(), DB_CALL_TIMEOUT * 6)
        await self.projector.replace(projection)
        self.reloads += 1

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = next_tick(loop.time(), self.interval)
        while not self._stopping:
            woken = await self._wake.wait(due - loop.time())
            self._wake.clear()
            if self._stopping:
                return
            began = loop.time()
            await self.poll_once()
            due = next_poll(began, self.interval, woken)

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="log-poller")

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task, self)
            self._task = None
