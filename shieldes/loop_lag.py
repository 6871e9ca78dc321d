"""How late the event loop runs what is due. Everything a node does runs on one loop, so a loop
that is late (every core busy, a blocking call on it) serves every request and stream late by as
much: `shieldes_event_loop_lag_seconds` shows it. The probe sleeps and measures by how much its
wake-up overshot: every BUSY_INTERVAL while requests are in flight, every IDLE_INTERVAL otherwise
(an idle node stays quiet: its sleeps end on the ticks the node's other periodic loops wake on,
tasks.sleep_to_tick)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from shieldes.tasks import cancel_and_wait, sleep_to_tick

BUSY_INTERVAL = 0.1
IDLE_INTERVAL = 1.0


def lag(due: float, woke_at: float) -> float:
    """How much later than `due` a sleep ended (never below 0: timers may fire a hair early)."""
    return max(0.0, woke_at - due)


class LoopLagProbe:
    def __init__(self, observe: Callable[[float], None], in_flight: Callable[[], int]) -> None:
        self._observe, self._in_flight = observe, in_flight
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="loop-lag")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = await sleep_to_tick(BUSY_INTERVAL if self._in_flight() else IDLE_INTERVAL)
            self._observe(lag(due, loop.time()))

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
