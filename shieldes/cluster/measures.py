"""Measured cluster figures for operators: gossip traffic per second and state convergence time.

Convergence time: how long after this node sent a gossip message every peer it splits limits with
had acknowledged holding it (a peer's next message says which of our messages it has seen). It is
what it takes for a change here (a counter, a reservation, a deployment's health) to be known to
the whole cluster, plus the way back: an upper bound on the one-way spread, about one gossip
interval plus two network hops when all is well. Both figures cover the last WINDOW seconds. Pure
apart from the injected clock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

WINDOW = 10.0  # seconds both figures look back
MAX_PENDING = 4096  # sent messages awaiting acknowledgement (a silent peer cannot grow it further)


@dataclass
class Rates:
    """Per-second rates of cumulative counters, from samples taken over the last WINDOW seconds."""

    window: float = WINDOW
    clock: Callable[[], float] = time.monotonic
    _samples: deque[tuple[float, tuple[int, ...]]] = field(default_factory=deque)

    def sample(self, counters: Sequence[int]) -> None:
        now = self.clock()
        self._samples.append((now, tuple(counters)))
        while len(self._samples) > 2 and self._samples[1][0] <= now - self.window:
            self._samples.popleft()  # keep one sample at or before the window's start

    def per_second(self) -> tuple[float, ...] | None:
        """Each counter's rate between the oldest and newest sample (None before two samples)."""
        if len(self._samples) < 2:
            return None
        (t0, a), (t1, b) = self._samples[0], self._samples[-1]
        span = t1 - t0
        if span <= 0:
            return None
        return tuple(max(0, y - x) / span for x, y in zip(a, b, strict=True))


@dataclass
class Convergence:
    """Time from sending a message to every peer having acknowledged it (see the module doc)."""

    window: float = WINDOW
    clock: Callable[[], float] = time.monotonic
    _pending: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=MAX_PENDING))
    _acked: dict[str, int] = field(default_factory=dict)  # peer -> our newest seq it has seen
    _samples: deque[tuple[float, float]] = field(default_factory=deque)  # (when settled, seconds)

    def sent(self, seq: int) -> None:
        self._pending.append((seq, self.clock()))

    def acked(self, peer: str, seq: int) -> None:
        if seq > self._acked.get(peer, -1):
            self._acked[peer] = seq

    def settle(self, peers: Iterable[str]) -> None:
        """Record every sent message all of `peers` have now acknowledged."""
        now = self.clock()
        wanted = list(peers)
        if not wanted:  # alone: nothing to converge with
            self._pending.clear()
        else:
            covered = min(self._acked.get(p, -1) for p in wanted)
            while self._pending and self._pending[0][0] <= covered:
                self._samples.append((now, now - self._pending.popleft()[1]))
        while self._samples and self._samples[0][0] < now - self.window:
            self._samples.popleft()
        for gone in set(self._acked) - set(wanted):
            del self._acked[gone]

    def seconds(self) -> float | None:
        """The longest convergence measured in the last WINDOW seconds (None: nothing measured)."""
        horizon = self.clock() - self.window
        recent = [s for when, s in self._samples if when >= horizon]
        return max(recent) if recent else None
