"""Model aliases and fallback groups: decided and routed purely."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import pytest

from shieldes.errors import CommandRejected
from shieldes.projections.commands import Command, decide
from shieldes.projections.config import apply_config
from shieldes.projections.shared_commands import (
    AddProvider,
    RemoveModelAlias,
    RemoveProvider,
    SetModelAlias,
    parse_alias_target,
)
from shieldes.projections.state import AliasTarget, ConfigState
from shieldes.routing.router import CircuitBreaker, fallback_routes, plan, resolve


def run(*commands: Command, state: ConfigState | None = None) -> ConfigState:
    state = state or ConfigState()
    for command in commands:
        for event in decide(state, command):
            state = apply_config(state, event)
    return state


BASE = run(
    AddProvider("azure", "azure", "https://r.openai.azure.com", None, ("prod-gpt4o",),
                options={"api_version": "2024-10-21"}),
    AddProvider("openai", "openai", "https://api.openai.com/v1", None, ("gpt-4o", "gpt-4o-mini")),
    AddProvider("claude", "anthropic", "https://api.anthropic.com", None, ("claude-sonnet-4-5",)),
    AddProvider("br", "bedrock", None, None, ("anthropic.claude-3-5-sonnet-20240620-v1:0",),
                options={"region": "us-east-1"}),
)


def test_target_syntax_keeps_colons_of_model_ids() -> None:
    assert parse_alias_target(BASE, "azure/prod-gpt4o:3") == AliasTarget("azure", "prod-gpt4o", 3.0)
    assert parse_alias_target(BASE, "openai/gpt-4o") == AliasTarget("openai", "gpt-4o", 1.0)
    bedrock = "anthropic.claude-3-5-sonnet-20240620-v1:0"
    assert parse_alias_target(BASE, f"br/{bedrock}") == AliasTarget("br", bedrock, 1.0)
    assert parse_alias_target(BASE, f"br/{bedrock}:2.5") == AliasTarget("br", bedrock, 2.5)
    with pytest.raises(CommandRejected, match="PROVIDER/MODEL"):
        parse_alias_target(BASE, "gpt-4o")


def test_alias_routes_weighted_across_deployments_then_falls_back() -> None:
    state = run(
        SetModelAlias("sonnet", (AliasTarget("claude", "claude-sonnet-4-5"),)),
        SetModelAlias("gpt-4o", (AliasTarget("azure", "prod-gpt4o", 3.0), AliasTarget("openai", "gpt-4o", 1.0)),
                      ("sonnet",)),
        state=BASE,
    )
    route = resolve(state, "gpt-4o")
    assert route is not None and route.fallbacks == ("sonnet",) and route.model == "prod-gpt4o"
    assert {(t.name, t.model) for t in route.targets} == {("azure", "prod-gpt4o"), ("openai", "gpt-4o")}
    rng = random.Random(5)
    firsts = Counter(plan(route, CircuitBreaker(3, 10), 2, rng)[0].name for _ in range(4000))
    assert 0.70 < firsts["azure"] / 4000 < 0.80  # weight 3 of 4
    [fallback] = fallback_routes(state, route)
    assert (fallback.requested, fallback.model, fallback.targets[0].name) == ("sonnet", "claude-sonnet-4-5", "claude")
    # the plain model name still routes as before when no alias shadows it
    plain = resolve(state, "gpt-4o-mini")
    assert plain is not None and plain.fallbacks == () and plain.model == "gpt-4o-mini"


def test_fallback_chains_are_breadth_first_and_each_group_is_tried_once() -> None:
    state = run(
        SetModelAlias("c", (AliasTarget("claude", "claude-sonnet-4-5"),)),
        SetModelAlias("b", (AliasTarget("openai", "gpt-4o-mini"),), ("c",)),
        SetModelAlias("a", (AliasTarget("openai", "gpt-4o"),), ("b", "gpt-4o-mini")),
        state=BASE,
    )
    route = resolve(state, "a")
    assert route is not None
    assert [r.requested for r in fallback_routes(state, route)] == ["b", "gpt-4o-mini", "c"]
    # a cycle is harmless: every group is tried once
    cyclic = run(SetModelAlias("c", (AliasTarget("claude", "claude-sonnet-4-5"),), ("a",)), state=state)
    assert [r.requested for r in fallback_routes(cyclic, route)] == ["b", "gpt-4o-mini", "c"]
    # a request's `disable_fallbacks`: the groups named, not their own configured fallbacks
    assert [r.requested for r in fallback_routes(state, replace(route, chained=False))] == ["b", "gpt-4o-mini"]
    with pytest.raises(CommandRejected, match="is a fallback of a"):
        run(RemoveModelAlias("b"), state=state)
    with pytest.raises(CommandRejected, match="is a target of alias a, b"):
        run(RemoveProvider("openai"), state=state)


def test_the_last_provider_serving_a_fallback_cannot_be_removed() -> None:
    """`model alias` refuses a fallback no provider serves; removing the one provider that serves a
    fallback would leave the same dangling name, so it is refused until the alias changes."""
    state = run(SetModelAlias("fast", (AliasTarget("openai", "gpt-4o"),), ("claude-sonnet-4-5",)), state=BASE)
    with pytest.raises(CommandRejected, match=r"last one serving a fallback of alias fast \(--fallback claude-sonnet"):
        run(RemoveProvider("claude"), state=state)
    served_elsewhere = run(AddProvider("claude2", "anthropic", "https://api.anthropic.com", None,
                                       ("claude-sonnet-4-5",)), state=state)
    assert "claude" not in run(RemoveProvider("claude"), state=served_elsewhere).providers
    unhooked = run(SetModelAlias("fast", (AliasTarget("openai", "gpt-4o"),)), state=state)
    assert "claude" not in run(RemoveProvider("claude"), state=unhooked).providers


def test_an_alias_named_like_a_served_model_can_be_removed_while_a_fallback_names_it() -> None:
    """`fast` falls back to the model gpt-4o; an alias gpt-4o set later takes that name over, and
    removing it gives the fallback back to the providers serving gpt-4o: nothing is left dangling,
    so nothing is refused. A fallback naming only the alias still holds the alias in place."""
    state = run(
        SetModelAlias("fast", (AliasTarget("openai", "gpt-4o-mini"),), ("gpt-4o", "sonnet")),
        state=run(SetModelAlias("sonnet", (AliasTarget("claude", "claude-sonnet-4-5"),)), state=BASE),
    )
    shadowed = run(SetModelAlias("gpt-4o", (AliasTarget("azure", "prod-gpt4o"),)), state=state)
    route = resolve(shadowed, "fast")
    assert route is not None and fallback_routes(shadowed, route)[0].model == "prod-gpt4o"
    removed = run(RemoveModelAlias("gpt-4o"), state=shadowed)
    assert "gpt-4o" not in removed.aliases
    route = resolve(removed, "fast")
    assert route is not None
    [plain, sonnet] = fallback_routes(removed, route)
    assert (plain.requested, plain.model, plain.targets[0].name) == ("gpt-4o", "gpt-4o", "openai")
    assert sonnet.requested == "sonnet"
    with pytest.raises(CommandRejected, match="is a fallback of fast"):
        run(RemoveModelAlias("sonnet"), state=removed)


@pytest.mark.parametrize(("command", "message"), [
    (SetModelAlias("x", ()), "at least one --target"),
    (SetModelAlias("x", (AliasTarget("nope", "gpt-4o"),)), "no provider named 'nope'"),
    (SetModelAlias("x", (AliasTarget("openai", "o9"),)), "does not serve 'o9'"),
    (SetModelAlias("x", (AliasTarget("openai", "gpt-4o", 0),)), "--weight"),
    (SetModelAlias("x", (AliasTarget("openai", "gpt-4o"),), ("x",)), "itself"),
    (SetModelAlias("x", (AliasTarget("openai", "gpt-4o"),), ("unknown",)), "neither an alias nor a model"),
    (RemoveModelAlias("x"), "no alias named 'x'"),
])
def test_refusals(command: Command, message: str) -> None:
    with pytest.raises(CommandRejected, match=message):
        decide(BASE, command)
