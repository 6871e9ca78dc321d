"""The background responses a node runs: their bound, and the one loop that keeps their rows in
step with them while there are any (nothing while there are none).

Every TICK the loop writes each run that changed (its response and its new events) and reads which
of its runs another node was asked to cancel, two statements in all; a run ended is written at
once. So another node sees a run's events and status at most TICK plus a write after they
happened, and a cancel asked on another node reaches the run within TICK plus a read."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

import psycopg

from shieldes.dbwait import DbWait
from shieldes.errors import BackgroundFull, DatabaseStalled
from shieldes.responses.background import Run
from shieldes.responses.store import ResponseTable, RunRow
from shieldes.tasks import Wake, stop_task

log = logging.getLogger(__name__)
TICK = 0.2  # seconds between the owner's writes of its runs and reads of cancels, while it has runs
RETRY_AFTER = 1  # seconds a create refused for the bound is told to wait


class BackgroundRuns:
    def __init__(self, table: ResponseTable, node_id: str, limit: int, db_timeout: float) -> None:
        self.table, self.node_id, self.limit = table, node_id, limit
        self.epoch = 0  # the node's boot epoch, set at start
        self.runs: dict[str, Run] = {}
        self.draining = False
        self._writes = DbWait(db_timeout)
        self._wake = Wake()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def check_room(self) -> None:
        """Refuse a create this node cannot run, before anything is admitted or sent upstream."""
        if self.draining:
            raise BackgroundFull(f"node {self.node_id} is shutting down and takes no new background responses; "
                                 "retry (another node takes it)", retry_after=RETRY_AFTER)
        running = self.running()
        if running >= self.limit:
            raise BackgroundFull(
                f"node {self.node_id} runs {running} background responses, its bound "
                f"(SHIELDES_RESPONSES_BACKGROUND_MAX={self.limit}); retry in a second or on another node, or "
                "send the request without background", retry_after=RETRY_AFTER)

    def running(self) -> int:
        """Runs under way (those ended but not yet written do not count)."""
        return sum(1 for run in self.runs.values() if not run.ended)

    def start_run(self, run: Run, work: Coroutine[Any, Any, None]) -> None:
        run.task = asyncio.create_task(work, name=f"background-{run.id}")
        self.runs[run.id] = run
        run.task.add_done_callback(lambda _t: self._wake.set())  # its end is written at once
        self._wake.set()

    def get(self, response_id: str) -> Run | None:
        return self.runs.get(response_id)

    def cancel(self, run: Run) -> None:
        """A client's cancel: the run stops (its upstream call closed) and ends `cancelled`."""
        if run.ended or run.task is None:
            return
        run.cancel_asked = True
        run.task.cancel()

    # --- the loop ------------------------------------------------------------------------------

    async def start(self, epoch: int) -> None:
        self.epoch = epoch
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="background-responses")

    async def _run(self) -> None:
        while not self._stopping:
            await self._wake.wait(None if not self.runs else TICK)
            self._wake.clear()
            if self.runs:
                try:
                    await self.tick()
                except Exception:  # a bug must not end the loop every run's row depends on
                    log.exception("background responses: a sync with Postgres failed")

    async def tick(self) -> None:
        try:
            await self._write()
            await self._read_cancels()
        except (DatabaseStalled, psycopg.Error, OSError) as exc:  # the rows catch up at a later tick
            log.warning("background responses: could not sync %d runs with Postgres (%s); retried in %g s",
                        len(self.runs), str(exc).splitlines()[0][:200], TICK)
            for run in self.runs.values():
                run.dirty = True

    async def _write(self) -> None:
        due = [run for run in self.runs.values() if run.dirty or (run.deleted and run.ended)]
        rows = []
        for run in due:
            run.dirty = False  # (a change during the write sets it again)
            info = run.info
            rows.append(RunRow(run.id, info.created_at, info.key_id, info.previous_response_id, info.model,
                               info.input, run.response, self.node_id, self.epoch, run.written,
                               run.events[run.written:], run.landed))
        held = await self._writes.within(self.table.write_runs(rows), "background responses: a write was cancelled")
        for run in due:
            if run.id not in held:  # deleted on some node while it ran: stopped, and not written again
                run.deleted = True
                self.cancel(run)
            else:
                run.landed, run.written = True, held[run.id]
                run.dirty = run.written < len(run.events)
            if run.ended and (run.deleted or not run.dirty) and run.task is not None and run.task.done():
                self.runs.pop(run.id, None)

    async def _read_cancels(self) -> None:
        running = [run for run in self.runs.values() if not run.ended]
        if not running:
            return
        since = min(run.info.created_at for run in running) - 1
        asked = await self._writes.within(self.table.cancels_asked([r.id for r in running], since),
                                          "background responses: a read of cancels was cancelled")
        for response_id in asked:
            run = self.runs.get(response_id)
            if run is not None:
                self.cancel(run)

    # --- shutdown ------------------------------------------------------------------------------

    async def drain(self, grace: float) -> None:
        """Take no new runs; let those under way finish within `grace` seconds, then stop the rest
        (each ends `failed`, saying to create it again) and write every run's end."""
        self.draining = True
        running = [run.task for run in self.runs.values() if run.task is not None and not run.task.done()]
        if running:
            await asyncio.wait(running, timeout=grace)
        for run in list(self.runs.values()):
            if run.task is not None and not run.task.done():
                run.task.cancel()  # (not cancel_asked: the runner ends it as stopped, not cancelled)
        left = [run.task for run in self.runs.values() if run.task is not None]
        if left:
            await asyncio.wait(left, timeout=5.0)
        await self._stop_loop()  # the last writes are this one's, not raced by the loop's
        deadline = time.monotonic() + max(5.0, grace)
        while self.runs and time.monotonic() < deadline:
            await self.tick()
            if self.runs:
                await asyncio.sleep(TICK)
        if self.runs:
            log.warning("background responses: %d runs' ends not written at shutdown", len(self.runs))

    async def _stop_loop(self) -> None:
        if self._task is not None:
            await stop_task(self._task, self)
            self._task = None

    async def stop(self) -> None:
        await self._stop_loop()
        for run in self.runs.values():
            if run.task is not None:
                run.task.cancel()
                with contextlib.suppress(BaseException):
                    await run.task
        await self._writes.stop()
