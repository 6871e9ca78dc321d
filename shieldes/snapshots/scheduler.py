"""Leader duties as owned tasks with start()/stop(): periodic snapshots and compaction.

A snapshot is written when `every_events` positions have passed since the last one, or when
`every_seconds` have passed and the position moved. The projection is read through a callable so
the scheduler always sees the node's current live state. It looks at most once per check interval,
and not at all while nothing can fall due: given `moved` (the projector's wait_for), it sleeps
until the position moves when the newest snapshot holds everything, or until `every_seconds` when
only time can make one due (an idle leader's scheduler has no timer).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from psycopg_pool import AsyncConnectionPool

from shieldes.projections.projector import Projection, Projector
from shieldes.settings import Settings
from shieldes.snapshots.codec import mac_key
from shieldes.snapshots.compaction import CompactionReport, compact
from shieldes.snapshots.fencing import Fenced
from shieldes.snapshots.partition_replace import PrepareReport, prepare
from shieldes.snapshots.rollups import MAX_ROLLUP_DELTAS
from shieldes.snapshots.store import SnapshotInfo, SnapshotRefused, list_snapshots, save_snapshot
from shieldes.tasks import Wake, cancel_and_wait

log = logging.getLogger(__name__)
PREPARE_EVERY = 60.0  # seconds between looks for partitions that filled (one fills in ~1 h at 20 flushes/s)


def snapshot_due(
    position: int, last_position: int, elapsed: float, *, every_events: int, every_seconds: float
) -> bool:
    """Pure trigger rule (unit-tested)."""
    if position <= last_position:
        return False
    return position - last_position >= every_events or elapsed >= every_seconds


class SnapshotScheduler:
    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        projection: Callable[[], Projection | Projector],
        *,
        settings: Settings,
        node_id: str,
        leader_epoch: int,
        check_interval: float = 1.0,
        moved: Callable[[int, float | None], Awaitable[bool]] | None = None,
    ) -> None:
        self._pool = pool
        self._projection = projection
        self._moved = moved  # (position, timeout): until the projection reaches `position`
        self._every_events = settings.snapshot_every_events
        self._every_seconds = settings.snapshot_every_seconds
        self._keep = settings.snapshots_kept
        self._node_id = node_id
        self._epoch = leader_epoch
        self._key = mac_key(settings.cluster_secret)
        self._check = min(check_interval, settings.snapshot_every_seconds)
        self._task: asyncio.Task[None] | None = None
        self._wake = Wake()
        self.last: SnapshotInfo | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="snapshot-scheduler")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def poke(self) -> None:
        """Check now instead of at the next tick (e.g. after a burst of events)."""
        self._wake.set()

    async def snapshot_now(self) -> SnapshotInfo:
        info = await save_snapshot(
            self._pool, self._projection(), node_id=self._node_id, keep=self._keep, leader_epoch=self._epoch,
            key=self._key,
        )
        self.last = info
        return info

    async def run(self) -> None:
        """The loop itself, until cancelled or fenced: usable directly as a leader task."""
        existing = await list_snapshots(self._pool)
        last_position = existing[0].position if existing else 0
        last_time = time.monotonic()
        while True:
            await self._pause(last_position, last_time)
            position = self._projection().position
            if not snapshot_due(position, last_position, time.monotonic() - last_time,
                                every_events=self._every_events, every_seconds=self._every_seconds):
                continue
            try:
                info = await self.snapshot_now()
            except Fenced as exc:
                log.warning("snapshot scheduler stops: %s", exc.message)
                return
            except SnapshotRefused as exc:
                log.info("snapshot deferred: %s", exc.message)
            except Exception:  # a DB hiccup must not kill the scheduler; the next tick retries
                log.exception("snapshot failed; retrying at the next tick")
            else:
                last_position = info.position
            last_time = time.monotonic()


    async def _pause(self, last_position: int, last_time: float) -> None:
        """Until the next look: a check interval (a poke ends it), then, while nothing can fall due
        without the position moving, until it moves (or the time rule falls due)."""
        await self._wake.wait(self._check)
        self._wake.clear()
        if self._moved is None:
            return
        position = self._projection().position
        wait = quiet_wait(position, last_position, time.monotonic() - last_time,
                          every_events=self._every_events, every_seconds=self._every_seconds)
        if wait is not None:
            await self._moved(position + 1, wait if wait != math.inf else None)


def quiet_wait(position: int, last_position: int, elapsed: float, *, every_events: int,
               every_seconds: float) -> float | None:
    """How long the scheduler may sleep unless the position moves: inf while the newest snapshot
    holds everything (only a move can make one due), the time left to `every_seconds` while the
    events since it are too few; None when one is due now (look at once)."""
    if position <= last_position:
        return math.inf
    if snapshot_due(position, last_position, elapsed, every_events=every_events, every_seconds=every_seconds):
        return None
    return every_seconds - elapsed


class CompactionScheduler:
    """Runs `compaction.compact` every `compact_interval` seconds while this node is leader, and
    prepares sealed partitions' replacements in between (partition_replace.prepare)."""

    def __init__(
        self,
        pool: AsyncConnectionPool[Any],
        *,
        settings: Settings,
        node_id: str,
        leader_epoch: int,
        first_delay: float | None = None,
    ) -> None:
        self._pool = pool
        self._interval = settings.compact_interval
        self._retain = settings.compact_retain_seconds
        self._node_timeout = settings.node_timeout
        self._node_id = node_id
        self._epoch = leader_epoch
        self._first_delay = settings.compact_interval if first_delay is None else first_delay
        self._task: asyncio.Task[None] | None = None
        self.last: CompactionReport | None = None
        self.prepared: PrepareReport | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="compaction-scheduler")

    async def stop(self) -> None:
        """Cancels a running compaction too: each batch is its own transaction, so a cancelled
        run leaves the log consistent (folded batches stay folded, the rest stays raw)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def run_now(self) -> CompactionReport:
        self.last = await compact(
            self._pool, leader_epoch=self._epoch, retain_seconds=self._retain,
            node_timeout=self._node_timeout, node_id=self._node_id,
        )
        return self.last

    async def prepare_now(self) -> PrepareReport:
        self.prepared = await prepare(self._pool, leader_epoch=self._epoch, node_id=self._node_id,
                                      max_deltas=MAX_ROLLUP_DELTAS)
        return self.prepared

    async def run(self) -> None:
        """The loop itself, until cancelled or fenced: usable directly as a leader task. Between
        compactions it prepares the replacements of partitions that filled (every PREPARE_EVERY
        seconds), so a compaction mostly swaps them in."""
        due = time.monotonic() + self._first_delay
        while True:
            await asyncio.sleep(max(0.0, min(PREPARE_EVERY, due - time.monotonic())))
            compacting = time.monotonic() >= due
            if compacting:
                due = time.monotonic() + self._interval
            try:
                await (self.run_now() if compacting else self.prepare_now())
            except Fenced as exc:
                log.warning("compaction scheduler stops: %s", exc.message)
                return
            except Exception:  # the next interval retries; a half-done run is consistent
                log.exception("%s failed; retrying later", "compaction" if compacting else "preparing partitions")
