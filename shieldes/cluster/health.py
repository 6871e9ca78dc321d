"""Deployment health shared through gossip: every node's breaker acts on the cluster's view.

Each node keeps, per deployment, a moving error rate and the state of its own breaker, and gossips
them. A deployment counts as resting (open) when this node's breaker opened it, or when an alive
peer's breaker did: a provider that fails on one node is spared by all of them at once, instead
of each node paying `breaker_failures` failures to find out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from shieldes.cluster.view import Health
from shieldes.routing.router import CircuitBreaker

ALPHA = 0.2  # weight of the newest outcome in the moving error rate


@dataclass
class ClusterBreaker(CircuitBreaker):
    remote_open: Callable[[str], bool] = lambda _name: False
    _rates: dict[str, tuple[float, int]] = field(default_factory=dict)  # name -> (error rate, samples)
    _latency_ms: dict[str, float] = field(default_factory=dict)  # name -> moving latency of successes
    _ttft_ms: dict[str, float] = field(default_factory=dict)  # name -> moving time to first token of streams

    def _observe(self, name: str, failed: bool) -> None:
        rate, n = self._rates.get(name, (0.0, 0))
        self._rates[name] = (rate + ALPHA * ((1.0 if failed else 0.0) - rate), n + 1)

    def success(self, name: str, seconds: float | None = None) -> None:
        super().success(name, seconds)
        self._observe(name, False)
        if seconds is not None:
            self.opened(name, seconds)

    def opened(self, name: str, seconds: float) -> None:
        """A call's answer (a stream's head) arrived: the moving latency of the deployment."""
        ms = seconds * 1000.0
        old = self._latency_ms.get(name)
        self._latency_ms[name] = ms if old is None else old + ALPHA * (ms - old)

    def first_token(self, name: str, seconds: float) -> None:
        """A stream relayed its first content: the time from the request to it."""
        old, ms = self._ttft_ms.get(name), seconds * 1000.0
        self._ttft_ms[name] = ms if old is None else old + ALPHA * (ms - old)

    def failure(self, name: str) -> None:
        super().failure(name)
        self._observe(name, True)

    def locally_open(self, name: str) -> bool:
        return super().is_open(name)

    def is_open(self, name: str) -> bool:
        return super().is_open(name) or self.remote_open(name)

    def health(self) -> dict[str, Health]:
        return {
            name: Health(latency_ms=round(self._latency_ms.get(name, 0.0), 3), error_rate=round(rate, 4),
                         requests=n, open=self.locally_open(name), ttft_ms=round(self._ttft_ms.get(name, 0.0), 3))
            for name, (rate, n) in self._rates.items()
        }


def adopt(breaker: CircuitBreaker, remote_open: Callable[[str], bool]) -> ClusterBreaker:
    """A ClusterBreaker with the same settings (and clock) as the gateway's breaker."""
    return ClusterBreaker(breaker.failures, breaker.cooldown, breaker.clock, remote_open=remote_open)
