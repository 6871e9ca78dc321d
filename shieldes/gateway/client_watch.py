"""Notices a stream's client leaving while the upstream sends nothing (a model thinking, a stalled
upstream). The relay learns of a client gone only when a write to it fails, and with no frame to
write it would wait on the upstream until its next frame, SHIELDES_UPSTREAM_TIMEOUT (600 s) of
silence at worst: the upstream call, the in-flight count, the request's row and its span all held
for a client nobody serves. A timer per stream (re-armed every WATCH_INTERVAL, no work per frame)
looks at the connection instead, and once it is gone cancels the relaying task, which stops the
upstream call and notes the client as gone."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

WATCH_INTERVAL = 1.0  # seconds between looks at the client's connection


class Outcome(Protocol):
    outcome: str  # relay.Tally's: "open" while frames are being relayed


class ClientWatch:
    __slots__ = ("fired", "handle", "loop", "request", "tally", "task")

    def __init__(self, request: Any, tally: Outcome) -> None:
        self.request = request
        self.tally = tally
        self.task = asyncio.current_task()
        self.fired = False
        self.loop = asyncio.get_running_loop()
        self.handle = self.loop.call_later(WATCH_INTERVAL, self._look)

    def _look(self) -> None:
        if self.tally.outcome != "open":  # the relay knows how it ended (a failed write: the client left)
            return
        transport = self.request.transport
        if (transport is None or transport.is_closing()) and self.task is not None:
            self.fired = True
            self.task.cancel()
            return
        self.handle = self.loop.call_later(WATCH_INTERVAL, self._look)

    def stop(self) -> None:
        self.handle.cancel()
        if self.fired and self.task is not None:  # its cancellation was swallowed on the way: none left behind
            self.fired = False
            self.task.uncancel()

    def caught(self) -> bool:
        """Called with a CancelledError in hand: whether it was this watch's alone (the relay then
        notes the client gone and carries on), or another's (the node stopping: raise it on)."""
        if not self.fired or self.task is None:
            return False
        self.fired = False
        return self.task.uncancel() == 0
