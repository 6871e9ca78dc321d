from __future__ import annotations

import random
from collections import Counter

import pytest

from shieldes.errors import CommandRejected
from shieldes.projections.commands import check_models
from shieldes.projections.state import ConfigState, Deployment, VirtualKey, is_model_pattern, pattern_matches
from shieldes.routing.router import CircuitBreaker, backoff, pattern_length, plan, resolve, weighted_order


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


# --- model-name patterns -----------------------------------------------------------------------

PATTERNS = ConfigState(
    providers={
        "openai": dep("openai", models=("gpt-4o", "gpt-5*")),
        "claude": dep("claude", "anthropic", ("claude-3-5-haiku-latest", "claude-*")),
        "opus1": dep("opus1", "anthropic", ("claude-opus-*",), weight=2.0),
        "opus2": dep("opus2", "anthropic", ("claude-opus-*", "claude-*")),
        "any": dep("any", models=("*",)),
    }
)


def test_pattern_matching_is_a_prefix_and_star_alone_matches_anything() -> None:
    assert is_model_pattern("claude-*") and is_model_pattern("*") and not is_model_pattern("claude-3")
    assert pattern_matches("claude-*", "claude-opus-5-5") and pattern_matches("*", "anything/at-all")
    assert not pattern_matches("claude-*", "claude") and not pattern_matches("gpt-5*", "gpt-4o")
    assert pattern_length(PATTERNS.providers["opus2"], "claude-opus-5") == len("claude-opus-")
    assert pattern_length(PATTERNS.providers["any"], "x") == 0
    assert pattern_length(PATTERNS.providers["openai"], "gpt-4o") == -1  # exact names are no pattern
    assert PATTERNS.providers["claude"].serves("claude-9") and not PATTERNS.providers["openai"].serves("gpt-4")


def test_a_pattern_serves_a_new_name_as_asked_and_the_longest_prefix_wins() -> None:
    r = resolve(PATTERNS, "claude-sonnet-9")
    assert r is not None and r.model == "claude-sonnet-9" and not r.pinned
    assert {d.name for d in r.deployments} == {"claude", "opus2"}  # claude-* on both, longer than *
    opus = resolve(PATTERNS, "claude-opus-5-5")
    assert opus is not None and {(t.name, t.model, t.weight) for t in opus.targets} == {
        ("opus1", "claude-opus-5-5", 2.0), ("opus2", "claude-opus-5-5", 1.0)}
    gpt5 = resolve(PATTERNS, "gpt-5.5")
    assert gpt5 is not None and [d.name for d in gpt5.deployments] == ["openai"]
    other = resolve(PATTERNS, "mistral-large")
    assert other is not None and [d.name for d in other.deployments] == ["any"]
    assert resolve(ConfigState(providers={"a": dep("a", models=("claude-*",))}), "gpt-4o") is None
    assert resolve(PATTERNS, "claude-*") is None and resolve(PATTERNS, "claude/claude-opus-*") is None


def test_exact_names_beat_patterns_and_pinning_takes_patterns() -> None:
    exact = resolve(PATTERNS, "claude-3-5-haiku-latest")
    assert exact is not None and [d.name for d in exact.deployments] == ["claude"]
    assert [d.name for d in (resolve(PATTERNS, "gpt-4o") or exact).deployments] == ["openai"]
    pinned = resolve(PATTERNS, "opus1/claude-opus-9")
    assert pinned is not None and pinned.pinned and pinned.model == "claude-opus-9"
    assert [d.name for d in pinned.deployments] == ["opus1"]
    by_kind = resolve(PATTERNS, "anthropic/claude-opus-9")  # the kind's longest prefix
    assert by_kind is not None and {d.name for d in by_kind.deployments} == {"opus1", "opus2"}
    assert by_kind.model == "claude-opus-9"
    # a pinned deployment that serves the rest by no pattern: the whole name goes to the patterns
    unpinned = resolve(PATTERNS, "opus1/gpt-4o")
    assert unpinned is not None and not unpinned.pinned and unpinned.model == "opus1/gpt-4o"
    assert [d.name for d in unpinned.deployments] == ["any"]
    # an exact name listed elsewhere beats a pin by pattern
    slashed = ConfigState(providers={"hf": dep("hf", models=("meta/llama-3",)), "meta": dep("meta", models=("*",))})
    route = resolve(slashed, "meta/llama-3")
    assert route is not None and [d.name for d in route.deployments] == ["hf"] and route.model == "meta/llama-3"


def test_a_keys_patterns_allow_what_they_match() -> None:
    key = VirtualKey("k", "k", "h", "p", ("claude-*", "gpt-4o"), None, None)
    assert key.allows_model("gpt-4o") and key.allows_model("claude-opus-5-5")
    assert not key.allows_model("gpt-4o-mini") and not key.allows_model("claude")
    assert VirtualKey("k", "k", "h", "p", ("*",), None, None).allows_model("anything")


def test_patterns_are_valid_model_entries_only_with_a_trailing_star() -> None:
    assert check_models(("claude-*", "*", "gpt-4o"), patterns=True) == ("claude-*", "*", "gpt-4o")
    for bad in ("gpt-*-mini", "**", "*claude", "-*"):
        with pytest.raises(CommandRejected, match="invalid model name"):
            check_models((bad,), patterns=True)
    with pytest.raises(CommandRejected, match="a pattern is not a model here"):
        check_models(("claude-*",))  # prices and routing strategies are per exact name


def test_a_provider_pinned_alias_takes_the_aliases_targets_on_that_provider() -> None:
    """Bifrost clients send PROVIDER/NAME; a key serving NAME under its own deployment name is an alias
    target after the import, and the pinned request reaches it (it got 404, or only the sibling key)."""
    from shieldes.projections.state import AliasTarget, ModelAlias

    config = ConfigState(
        providers={"az-us": dep("az-us", "azure", ("gpt-4o-prod",)), "az-eu": dep("az-eu", "azure", ("gpt-4o",)),
                   "openai": dep("openai", "openai", ("gpt-4o",)), "solo": dep("solo", "azure", ("dep-1",))},
        aliases={"gpt-4o": ModelAlias("gpt-4o", (AliasTarget("az-us", "gpt-4o-prod"), AliasTarget("az-eu", "gpt-4o"),
                                                 AliasTarget("openai", "gpt-4o"))),
                 "mini": ModelAlias("mini", (AliasTarget("solo", "dep-1"),), ("gpt-4o",))})
    by_kind = resolve(config, "azure/gpt-4o")
    assert by_kind is not None and by_kind.pinned and by_kind.fallbacks == ()
    assert {(t.name, t.model) for t in by_kind.targets} == {("az-us", "gpt-4o-prod"), ("az-eu", "gpt-4o")}
    renamed = resolve(config, "azure/mini")  # was 404: no azure deployment lists "mini"
    assert renamed is not None and [(t.name, t.model) for t in renamed.targets] == [("solo", "dep-1")]
    named = resolve(config, "az-us/gpt-4o")
    assert named is not None and [(t.name, t.model) for t in named.targets] == [("az-us", "gpt-4o-prod")]
    # a deployment of that name listing the name exactly is what the client named most precisely
    exact = resolve(config, "az-eu/gpt-4o")
    assert exact is not None and [(t.name, t.model) for t in exact.targets] == [("az-eu", "gpt-4o")]
    assert resolve(config, "anthropic/mini") is None  # the alias has no target there
