"""Routing decisions, pure apart from an injected clock and random source: which deployments may
serve a model (with `provider/model` pinning), in which order to try them (weighted), how long to
back off between attempts, and a per-deployment circuit breaker."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from shieldes.projections.state import ConfigState, Deployment


@dataclass(frozen=True, slots=True)
class Route:
    """`model` is the name the upstream and pricing know; `deployments` may serve it."""

    requested: str
    model: str
    deployments: tuple[Deployment, ...]
    pinned: bool


def resolve(config: ConfigState, requested: str) -> Route | None:
    """Deployments serving `requested`. `name/model` pins deployment (or provider kind) `name` when
    it serves `model`; otherwise the whole string is a model name (models may contain '/')."""
    prefix, sep, rest = requested.partition("/")
    if sep and rest:
        dep = config.providers.get(prefix)
        if dep is not None and rest in dep.models:
            return Route(requested, rest, (dep,), True)
        by_kind = tuple(d for d in config.providers.values() if d.kind == prefix and rest in d.models)
        if by_kind:
            return Route(requested, rest, by_kind, True)
    deps = tuple(d for d in config.providers.values() if requested in d.models)
    return Route(requested, requested, deps, False) if deps else None


def weighted_order(deployments: Sequence[Deployment], rng: random.Random) -> list[Deployment]:
    """A weighted shuffle: the first pick follows the weights, later picks are the fallbacks."""
    keyed = [(rng.random() ** (1.0 / d.weight), d) for d in deployments]
    keyed.sort(key=lambda kd: kd[0], reverse=True)
    return [d for _, d in keyed]


def backoff(attempt: int, base: float, rng: random.Random) -> float:
    """Exponential backoff with jitter before attempt `attempt` (1 = the first retry)."""
    if base <= 0:
        return 0.0
    return float(base * (2 ** (attempt - 1)) * (0.5 + rng.random() / 2))


@dataclass(slots=True)
class _BreakerState:
    failures: int = 0
    open_until: float = 0.0


@dataclass
class CircuitBreaker:
    """Rests a deployment for `cooldown` seconds after `failures` consecutive failures. After the
    rest it is tried again (half-open): a success closes the circuit, the first failure rests it
    again at once (the failure count is only reset by a success)."""

    failures: int
    cooldown: float
    clock: Callable[[], float] = time.monotonic
    _states: dict[str, _BreakerState] = field(default_factory=dict)

    def success(self, name: str) -> None:
        if name in self._states:
            del self._states[name]

    def failure(self, name: str) -> None:
        st = self._states.setdefault(name, _BreakerState())
        st.failures += 1
        if st.failures >= self.failures:
            st.open_until = self.clock() + self.cooldown

    def is_open(self, name: str) -> bool:
        st = self._states.get(name)
        return st is not None and st.failures >= self.failures and self.clock() < st.open_until


def plan(route: Route, breaker: CircuitBreaker, attempts: int, rng: random.Random) -> list[Deployment]:
    """The deployments to try, in order, for up to `attempts` attempts: weighted order among those
    whose circuit is closed, cycling for retries. If every circuit is open, still try them (in
    weighted order) rather than refusing outright: an open circuit is a guess, not a fact."""
    if len(route.deployments) == 1:
        return list(route.deployments) * max(1, attempts)
    order = weighted_order(route.deployments, rng)
    ready = [d for d in order if not breaker.is_open(d.name)] or order
    return [ready[i % len(ready)] for i in range(max(1, attempts))]
