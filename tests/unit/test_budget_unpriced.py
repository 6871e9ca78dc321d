"""The models a budget refuses for want of a price, as `budget set` names them: a key's from its
own allowed models, a team's from its unrevoked keys' (an alias counting as its targets' models)."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping
from dataclasses import replace
from functools import reduce
from inspect import signature

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
from shieldes.projections.state import ConfigState, VirtualKey
from shieldes.views import TEAM_KEYS_READ, budget_unpriced, unpriced_for_team


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


class CountedKeys(Mapping[str, VirtualKey]):
    """A team's keys that count each key read (materialised), as a key table would."""

    def __init__(self, keys: Mapping[str, VirtualKey]) -> None:
        self.keys, self.reads = keys, 0

    def __getitem__(self, key_id: str) -> VirtualKey:
        self.reads += 1
        return self.keys[key_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)

    def items(self) -> ItemsView[str, VirtualKey]:  # (the team column's scan, no key counted as read)
        return self.keys.items()


def members(count: int, *, revoked: bool = False) -> list[Event]:
    """`count` keys of team t1, each allowed its own model of the provider's, none priced."""
    made: list[Event] = [key(f"k{i}", "t1", (f"own-{i}",)) for i in range(count)]
    return [*made, *(VirtualKeyRevoked(f"k{i}") for i in range(count))] if revoked else made


def test_a_team_budget_reads_no_more_keys_than_the_cap() -> None:
    """`budget set` on a team reads its keys for the models they may use: at most TEAM_KEYS_READ
    (10,000) of them, revoked ones counted (a team of many revoked keys read them all), so a team of
    any size answers after that many reads, naming what those keys allow."""
    assert signature(unpriced_for_team).parameters["most"].default == TEAM_KEYS_READ == 10_000
    models = tuple(f"own-{i}" for i in range(12))
    provider = ProviderAdded("own", "openai", "http://up", "env:K", models)
    state = state_of(provider, *members(12))
    team = state.teams["t1"]
    assert len(unpriced_for_team(state, team)) == 12  # under the cap: every key's model
    assert len(unpriced_for_team(state, team, most=3)) == 3  # past it: the keys read, no more
    revoked = state_of(provider, *members(10, revoked=True), key("live", "t1", ("own-11",)))
    counted = CountedKeys(revoked.keys)
    found = unpriced_for_team(replace(revoked, keys=counted), team, most=3)
    assert counted.reads == 3 and found in ([], ["own-11"])
