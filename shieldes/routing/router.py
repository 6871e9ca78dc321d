"""Routing decisions, pure apart from an injected clock and random source: which deployments may
serve a model (aliases, `provider/model` pinning), in which order to try them (weighted), which
groups to fall back to, how long to back off between attempts, and a per-deployment circuit breaker."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from shieldes.projections.state import ConfigState, Deployment, ModelAlias, is_model_pattern, longest_pattern


@dataclass(frozen=True, slots=True)
class RouteTarget:
    """One way to serve a request: a deployment, the model name it knows, and a traffic weight."""

    deployment: Deployment
    model: str
    weight: float

    @property
    def name(self) -> str:
        return self.deployment.name


@dataclass(frozen=True, slots=True)
class Route:
    """`model` is the name the upstream and pricing know (of the first target, for an alias whose
    targets differ); `targets` may serve it; `fallbacks` are model or alias names to try, in
    order, once every target failed or the prompt does not fit (a request's own `fallbacks` first,
    then the alias's). `chained`: the fallbacks' own configured fallbacks are tried too (not when
    the request sent `disable_fallbacks`)."""

    requested: str
    model: str
    targets: tuple[RouteTarget, ...]
    pinned: bool
    fallbacks: tuple[str, ...] = ()
    chained: bool = True

    @property
    def deployments(self) -> tuple[Deployment, ...]:
        return tuple(t.deployment for t in self.targets)


def _plain(requested: str, model: str, deps: Sequence[Deployment], pinned: bool) -> Route:
    return Route(requested, model, tuple(RouteTarget(d, model, d.weight) for d in deps), pinned)


def pattern_length(dep: Deployment, model: str) -> int:
    """The length of `dep`'s longest pattern matching `model` (`*` alone: 0), or -1 for none."""
    found = longest_pattern(dep.models, model)
    return -1 if found is None else len(found) - 1


def pattern_deployments(deps: Sequence[Deployment], model: str) -> tuple[Deployment, ...]:
    """The deployments whose patterns match `model` with the longest prefix (a more specific
    pattern is the operator's more specific intent); several at that length share the traffic."""
    lengths = [(pattern_length(d, model), d) for d in deps]
    best = max((n for n, _ in lengths), default=-1)
    return tuple(d for n, d in lengths if n == best) if best >= 0 else ()


def _pinned_alias(config: ConfigState, requested: str, alias: ModelAlias, pins: Sequence[Deployment]) -> Route | None:
    """`PROVIDER/ALIAS`: the alias's targets on that provider (or those of that type), each under
    its own upstream name, as a Bifrost client naming `azure/gpt-4o` reaches every Azure key
    serving gpt-4o, whichever deployment each maps it to. None when the alias has none there."""
    allowed = {d.name for d in pins}
    targets = tuple(RouteTarget(dep, t.model, t.weight) for t in alias.targets
                    if t.provider in allowed and (dep := config.providers.get(t.provider)) is not None
                    and dep.serves(t.model))
    return Route(requested, targets[0].model, targets, True) if targets else None


def resolve(config: ConfigState, requested: str) -> Route | None:
    """What serves `requested`. An alias maps to its targets (those still served) and fallbacks.
    `name/model` pins deployment (or provider kind) `name` when it serves `model` (listed exactly
    by the deployment named so, else an alias's targets there, else listed by a deployment of that
    kind); otherwise the
    whole string is a model name (models may contain '/'). A name listed exactly (pinned or not)
    wins over every pattern; only then do patterns (`claude-*`, `*`) serve it, pinned first, and
    the name goes upstream as the client sent it."""
    alias = config.aliases.get(requested)
    if alias is not None:
        targets = []
        for t in alias.targets:
            dep = config.providers.get(t.provider)
            if dep is not None and dep.serves(t.model):
                targets.append(RouteTarget(dep, t.model, t.weight))
        if targets or alias.fallbacks:
            model = targets[0].model if targets else requested
            return Route(requested, model, tuple(targets), False, alias.fallbacks)
    if is_model_pattern(requested):  # `claude-*` stands for names; asked for as one, it is none
        return None
    prefix, sep, rest = requested.partition("/")
    pinnable = bool(sep and rest)
    named = config.providers.get(prefix) if pinnable else None
    kind = tuple(d for d in config.providers.values() if d.kind == prefix) if pinnable else ()
    if named is not None and rest in named.models:
        return _plain(requested, rest, (named,), True)
    if pinnable and rest in config.aliases:
        found = _pinned_alias(config, requested, config.aliases[rest], (named,) if named is not None else kind)
        if found is not None:
            return found
    by_kind = tuple(d for d in kind if rest in d.models)
    if by_kind:
        return _plain(requested, rest, by_kind, True)
    deps = tuple(d for d in config.providers.values() if requested in d.models)
    if deps:
        return _plain(requested, requested, deps, False)
    if named is not None and pattern_length(named, rest) >= 0:
        return _plain(requested, rest, (named,), True)
    by_kind = pattern_deployments(kind, rest)
    if by_kind:
        return _plain(requested, rest, by_kind, True)
    deps = pattern_deployments(tuple(config.providers.values()), requested)
    return _plain(requested, requested, deps, False) if deps else None


def fallback_routes(config: ConfigState, route: Route) -> list[Route]:
    """The fallback groups of `route`, in order, each once: its fallbacks, then theirs (breadth
    first; not when the route is not `chained`). Names that no longer resolve are skipped."""
    out: list[Route] = []
    seen = {route.requested}
    queue = list(route.fallbacks)
    while queue:
        name = queue.pop(0)
        if name in seen:
            continue
        seen.add(name)
        found = resolve(config, name)
        if found is not None:
            if found.targets:
                out.append(found)
            if route.chained:
                queue.extend(found.fallbacks)
    return out


def weighted_order(targets: Sequence[RouteTarget], rng: random.Random) -> list[RouteTarget]:
    """A weighted shuffle: the first pick follows the weights, later picks are the fallbacks."""
    keyed = [(rng.random() ** (1.0 / t.weight), t) for t in targets]
    keyed.sort(key=lambda kt: kt[0], reverse=True)
    return [t for _, t in keyed]


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

    def success(self, name: str, seconds: float | None = None) -> None:
        """A call succeeded; `seconds` (time to the answer or first chunk) feeds health views."""
        if name in self._states:
            del self._states[name]

    def opened(self, name: str, seconds: float) -> None:
        """A stream's head arrived `seconds` after the request (feeds health views). Whether the
        attempt succeeded is known only when the stream ends (`stream_ended`)."""

    def stream_ended(self, name: str, broke: bool) -> None:
        """A stream ended: one the upstream broke is a failed attempt, as an answered 500 is (a
        deployment that opens streams and cuts them is rested and loses weight); one that completed,
        or whose client left, a success."""
        if broke:
            self.failure(name)
        else:
            self.success(name)

    def first_token(self, name: str, seconds: float) -> None:
        """A stream's first content arrived `seconds` after the request (feeds health views)."""

    def failure(self, name: str) -> None:
        st = self._states.setdefault(name, _BreakerState())
        st.failures += 1
        if st.failures >= self.failures:
            st.open_until = self.clock() + self.cooldown

    def is_open(self, name: str) -> bool:
        st = self._states.get(name)
        return st is not None and st.failures >= self.failures and self.clock() < st.open_until


def plan(route: Route, breaker: CircuitBreaker, attempts: int, rng: random.Random,
         order_by: Callable[[Sequence[RouteTarget]], list[RouteTarget]] | None = None) -> list[RouteTarget]:
    """The targets to try, in order, for up to `attempts` attempts: the strategy's order
    (`order_by`, see strategies.py; weighted by default) among those whose circuit is closed,
    cycling for retries. If every circuit is open, still try them (in that order) rather than
    refusing outright: an open circuit is a guess, not a fact."""
    if not route.targets:
        return []
    if len(route.targets) == 1:
        return list(route.targets) * (attempts if attempts > 1 else 1)  # (max() parses its keywords: per request)
    order = order_by(route.targets) if order_by is not None else weighted_order(route.targets, rng)
    ready = [t for t in order if not breaker.is_open(t.name)] or order
    return [ready[i % len(ready)] for i in range(max(1, attempts))]
