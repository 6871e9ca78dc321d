"""The models a budget refuses for want of a price, as `budget set` names them: a key's from its
own allowed models, a team's from its unrevoked keys' (an alias counting as its targets' models)."""

from __future__ import annotations

from functools import reduce

from shieldes.events.catalog import (
    BudgetSet,
    Event,
    ModelAliasSet,
    PricingSet,
    ProviderAdded,
    TeamCreated,
    VirtualKeyCreated,
    VirtualKeyRevoked,
)
from shieldes.projections.config import apply_config
from shieldes.projections.state import ConfigState
from shieldes.views import budget_unpriced


def key(key_id: str, team: str | None, models: tuple[str, ...] | None) -> VirtualKeyCreated:
    return VirtualKeyCreated(key_id, f"name-{key_id}", f"hash-{key_id}", "sk-shd-x", models, team)


def state_of(*events: Event) -> ConfigState:
    base = (ProviderAdded("p", "openai", "http://up", "env:K", ("free-a", "free-b", "priced", "claude-*")),
            PricingSet("priced", 1.0, 2.0),
            ModelAliasSet("smart", ({"provider": "p", "model": "free-b", "weight": 1.0},)),
            TeamCreated("t1", "eng"), BudgetSet("team", "t1", 5.0, "30d"))
    return reduce(apply_config, (*base, *events), ConfigState())


def test_a_team_budget_names_the_unpriced_models_its_unrevoked_keys_may_use() -> None:
    team = state_of(key("k1", "t1", ("free-a",)), key("k2", "t1", ("priced",)), key("k3", "t1", ("free-b",)),
                    VirtualKeyRevoked("k3"), key("k4", None, ("free-b",)))
    assert budget_unpriced(team, "team", "t1") == ["free-a"]  # not k3's (revoked), nor k4's (no member)
    via_alias = state_of(key("k1", "t1", ("smart",)))
    assert budget_unpriced(via_alias, "team", "t1") == ["free-b"]
    every = state_of(key("k1", "t1", ("priced",)), key("k2", "t1", None))
    assert budget_unpriced(every, "team", "t1") == ["free-a", "free-b"]  # a provider's pattern is no name
    assert budget_unpriced(state_of(key("k1", "t1", ("priced",))), "team", "t1") == []
    assert budget_unpriced(state_of(), "team", "t1") == []  # no key: nothing refused


def test_a_key_budget_names_the_unpriced_models_the_key_may_use() -> None:
    state = state_of(key("k1", None, ("free-a", "priced")), BudgetSet("key", "k1", 1.0, "1d"))
    assert budget_unpriced(state, "key", "k1") == ["free-a"]
