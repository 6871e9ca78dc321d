"""decide() is pure: the same state and command give the same events, bad commands are refused."""

from __future__ import annotations

import pytest

from shieldes.errors import CommandRejected
from shieldes.events.catalog import (
    BudgetSet,
    RateLimitSet,
    VirtualKeyCreated,
    VirtualKeyRevoked,
    VirtualKeyRotated,
)
from shieldes.projections.commands import (
    CreateKey,
    CreateTeam,
    RevokeKey,
    RotateKey,
    SetBudget,
    UpdateKey,
    decide,
)
from shieldes.projections.config import apply_config
from shieldes.projections.shared_commands import AddProvider, RemoveProvider, SetPricing
from shieldes.projections.state import ConfigState


def run(state: ConfigState, *commands: object) -> ConfigState:
    for c in commands:
        for e in decide(state, c):  # type: ignore[arg-type]
            state = apply_config(state, e)
    return state


def key(name: str = "app", **kw: object) -> CreateKey:
    return CreateKey(id=f"key_{name}", name=name, key_hash=f"h_{name}", prefix="sk-shd-xxxx", **kw)  # type: ignore[arg-type]


def test_create_key_with_limits_and_budget_emits_all_events() -> None:
    events = decide(ConfigState(), key(rpm=10, tpm=1000, budget_usd=5.0, budget_period="1d"))
    assert [type(e) for e in events] == [VirtualKeyCreated, RateLimitSet, BudgetSet]
    state = run(ConfigState(), key(rpm=10, tpm=1000, budget_usd=5.0, budget_period="1d"))
    k = state.find_key("app")
    assert k is not None and (k.rpm, k.tpm, k.budget.amount_usd, k.budget.period) == (10, 1000, 5.0, "1d")  # type: ignore[union-attr]
    assert state.key_by_hash("h_app") == k


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (key(), "already exists"),
        (key("other", budget_usd=-1.0), "between 0 and"),
        (key("other", budget_usd=1.0, budget_period="2w"), "malformed budget period"),
        (key("other", rpm=0), "positive whole number"),
        (key("bad name"), "invalid key name"),
        (key("x\x00y"), "invalid key name"),
        (key("other", team="nope"), "no team"),
        (RevokeKey("missing"), "no virtual key"),
        (SetBudget("key", "missing", 1.0), "no virtual key"),
        (SetBudget("key", "app", float("nan")), "between 0 and"),
        (AddProvider("p", "mystery", "http://x", None, ("m",)), "unknown provider type"),
        (AddProvider("p", "openai", "ftp://x", None, ("m",)), "base-url"),
        (AddProvider("p", "openai", "http://x", None, ()), "no models"),
        (AddProvider("p", "openai", "http://x", None, ("m",), weight=0), "weight"),
        (RemoveProvider("nope"), "no provider"),
        (SetPricing("gpt-4o", -1, 1), "between 0 and"),
        (UpdateKey("app"), "nothing to change"),
    ],
)
def test_bad_commands_are_refused_with_a_reason(command: object, message: str) -> None:
    state = run(ConfigState(), key())
    with pytest.raises(CommandRejected, match=message):
        decide(state, command)  # type: ignore[arg-type]


def test_revoked_key_is_gone_from_the_hash_index_and_cannot_be_changed() -> None:
    state = run(ConfigState(), key(), RevokeKey("app"))
    assert state.key_by_hash("h_app") is None
    assert state.keys["key_app"].revoked
    for command in (RevokeKey("app"), RotateKey("app", "h2", "p"), UpdateKey("app", rpm=5)):
        with pytest.raises(CommandRejected):
            decide(state, command)


def test_rotation_replaces_the_hash() -> None:
    state = run(ConfigState(), key(), RotateKey("key_app", "h_new", "sk-shd-new"))
    assert state.key_by_hash("h_app") is None
    assert state.key_by_hash("h_new") is not None


def test_a_rotation_onto_a_secret_in_use_is_refused() -> None:
    state = run(ConfigState(), key("a"), key("b"))
    with pytest.raises(CommandRejected, match="collision"):
        decide(state, RotateKey("b", "h_a", "sk-shd-new"))


def test_a_key_revoked_after_its_hash_moved_to_another_leaves_that_key_findable() -> None:
    """A log written before such rotations were refused: the hash index folds as a snapshot
    rebuilds it from the live keys."""
    state = run(ConfigState(), key("a"), key("b"))
    state = apply_config(state, VirtualKeyRotated("key_b", "h_a", "sk-shd-new"))
    state = run(state, RevokeKey("a"))
    found = state.key_by_hash("h_a")
    assert found is not None and found.id == "key_b"


def test_team_budget_and_key_membership() -> None:
    state = run(ConfigState(), CreateTeam("team_a", "alpha", budget_usd=100.0, budget_period="1mo"), key(team="alpha"))
    assert state.keys["key_app"].team_id == "team_a"
    assert state.teams["team_a"].budget is not None
    assert decide(state, RevokeKey("app")) == [VirtualKeyRevoked("key_app")]


def test_update_key_clears_a_limit() -> None:
    state = run(ConfigState(), key(rpm=5), UpdateKey("app", rpm=None))
    assert state.keys["key_app"].rpm is None
