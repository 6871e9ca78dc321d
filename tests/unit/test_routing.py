from __future__ import annotations

import random
from collections import Counter

from shieldes.projections.state import ConfigState, Deployment
from shieldes.routing.router import CircuitBreaker, backoff, plan, resolve, weighted_order


def dep(
    name: str, kind: str = "openai", models: tuple[str, ...] = ("gpt-4o",), weight: float = 1.0
) -> Deployment:
    return Deployment(name, kind, "http://x", None, models, weight)


CONFIG = ConfigState(
    providers={
        "a": dep("a", weight=3.0),
        "b": dep("b", weight=1.0),
        "claude": dep("claude", "anthropic", ("claude-3-5-haiku-latest",)),
        "hf": dep("hf", models=("meta/llama-3",)),
    }
)


def test_resolve_weighted_pinned_and_unknown() -> None:
    r = resolve(CONFIG, "gpt-4o")
    assert r is not None and {d.name for d in r.deployments} == {"a", "b"} and not r.pinned
    pinned = resolve(CONFIG, "b/gpt-4o")
    assert pinned is not None and [d.name for d in pinned.deployments] == ["b"] and pinned.model == "gpt-4o"
    by_kind = resolve(CONFIG, "openai/gpt-4o")
    assert by_kind is not None and {d.name for d in by_kind.deployments} == {"a", "b"}
    slashed = resolve(CONFIG, "meta/llama-3")  # a model name containing '/'
    assert slashed is not None and slashed.model == "meta/llama-3"
    assert resolve(CONFIG, "nope") is None
    assert resolve(CONFIG, "claude/gpt-4o") is None


def test_weighted_order_follows_weights() -> None:
    rng = random.Random(7)
    route = resolve(CONFIG, "gpt-4o")
    assert route is not None
    firsts = Counter(weighted_order(route.targets, rng)[0].name for _ in range(4000))
    assert 0.70 < firsts["a"] / 4000 < 0.80  # weight 3 of 4


def test_breaker_rests_a_failing_deployment_then_half_opens() -> None:
    now = [100.0]
    breaker = CircuitBreaker(failures=2, cooldown=10.0, clock=lambda: now[0])
    breaker.failure("a")
    assert not breaker.is_open("a")
    breaker.failure("a")
    assert breaker.is_open("a")
    route = resolve(CONFIG, "gpt-4o")
    assert route is not None
    assert {d.name for d in plan(route, breaker, 3, random.Random(1))} == {"b"}
    now[0] += 10.5
    assert not breaker.is_open("a")  # half-open: a trial may go
    breaker.success("a")
    assert not breaker.is_open("a")


def test_plan_cycles_for_retries_and_tries_open_circuits_as_last_resort() -> None:
    route = resolve(CONFIG, "b/gpt-4o")
    assert route is not None
    breaker = CircuitBreaker(failures=1, cooldown=60.0)
    breaker.failure("b")
    assert [d.name for d in plan(route, breaker, 3, random.Random(1))] == ["b", "b", "b"]


def test_backoff_grows() -> None:
    rng = random.Random(3)
    assert backoff(1, 0.0, rng) == 0.0
    assert 0.05 <= backoff(1, 0.1, rng) <= 0.1
    assert 0.2 <= backoff(3, 0.1, rng) <= 0.4
