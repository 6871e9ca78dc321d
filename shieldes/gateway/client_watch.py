"""Notices a stream's client leaving while the upstream sends nothing (a model thinking, a stalled
upstream). The relay learns of a client gone only when a write to it fails, and with no frame to
write it would wait on the upstream until its next frame, SHIELDES_UPSTREAM_TIMEOUT (600 s) of
silence at worst: the upstream call, the in-flight count, the request's row and its span all held
for a client nobody serves. The node's open streams are looked at once every WATCH_INTERVAL by
one timer (armed while any is open; no timer per stream, no work per frame); a stream whose
connection is gone has its relaying task cancelled, which stops the upstream call, and the relay
notes the client as gone, with how long the upstream had been silent then (relay.stalled: a
stream that stalled is the upstream's failure, whoever gave up on it first)."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from aiohttp import web

WATCH_INTERVAL = 1.0  # seconds between looks at the open streams' connections (the MCP relay's too)


def client_gone(transport: asyncio.BaseTransport | None) -> bool:
    """Whether a request's connection is gone (aiohttp's request and the front's say None once closed)."""
    return transport is None or transport.is_closing()


class Outcome(Protocol):
    outcome: str  # relay.Tally's: "open" while frames are being relayed
    sent_bytes: int  # ... the bytes of frames written so far
    silent_for: float  # ... set here: how long nothing had been written when the client left


class Watched:
    __slots__ = ("fired", "quiet_since", "request", "seen", "tally", "task")

    def __init__(self, request: Any, tally: Outcome, task: asyncio.Task[Any] | None, now: float) -> None:
        self.request = request
        self.tally = tally
        self.task = task
        self.fired = False
        self.seen = 0  # tally.sent_bytes at the last look
        self.quiet_since = now  # the look that last found frames written (since the one before it)

    def caught(self) -> bool:
        """Called with a CancelledError in hand: whether it was the watch's alone (the relay then
        notes the client gone and carries on), or another's (the node stopping: raise it on)."""
        if not self.fired or self.task is None:
            return False
        self.fired = False
        return self.task.uncancel() == 0


class StreamWatch:
    """The node's streams being relayed (relay.pump adds and removes them)."""

    def __init__(self) -> None:
        self.open: set[Watched] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, request: Any, tally: Outcome) -> Watched:
        loop = asyncio.get_running_loop()
        watched = Watched(request, tally, asyncio.current_task(), loop.time())
        self.open.add(watched)
        if self._timer is None:
            self._timer = loop.call_later(WATCH_INTERVAL, self._look)
        return watched

    def remove(self, watched: Watched) -> None:
        self.open.discard(watched)
        if watched.fired and watched.task is not None:  # its cancellation was swallowed on the way
            watched.fired = False
            watched.task.uncancel()

    def _look(self) -> None:
        now = asyncio.get_running_loop().time()
        try:
            for watched in self.open:
                tally = watched.tally
                if watched.fired or tally.outcome != "open":  # (a failed write: the relay knows)
                    continue
                if tally.sent_bytes != watched.seen:  # (silence measured at most WATCH_INTERVAL short)
                    watched.seen, watched.quiet_since = tally.sent_bytes, now
                if client_gone(watched.request.transport) and watched.task is not None:
                    tally.silent_for = now - watched.quiet_since  # (relay.stalled: the upstream's failure?)
                    watched.fired = True
                    watched.task.cancel()
        finally:  # (re-armed whatever happened: a timer lost would leave every later stream unwatched)
            self._timer = asyncio.get_running_loop().call_later(WATCH_INTERVAL, self._look) if self.open else None


STREAM_WATCH: web.AppKey[StreamWatch] = web.AppKey("stream_watch", StreamWatch)
