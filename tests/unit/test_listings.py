"""How providers and routing strategies are listed: a provider's settings print in one order
(`provider add` applies the event it wrote, `provider list` reads the config back through jsonb,
which orders keys its own way; docs/cli.md says `add` and `update` print the provider as `list`
does), and `routing list` names models and aliases, never a pattern (`routing set` refuses one)."""

from __future__ import annotations

from shieldes.projections.state import Deployment
from shieldes.views import provider_row


def test_options_print_in_one_order_however_they_were_stored() -> None:
    written = {"credentials_file": "/sa.json", "location": "us-central1", "project": "P"}
    read_back = {"project": "P", "location": "us-central1", "credentials_file": "/sa.json"}  # jsonb's order
    rows = [provider_row(Deployment("v", "vertex", "https://x", None, ("m",), 1.0, options=o))
            for o in (written, read_back)]
    assert list(rows[0]["options"]) == list(rows[1]["options"]) == ["credentials_file", "location", "project"]


def test_routing_rows_list_models_and_aliases_not_patterns() -> None:
    from dataclasses import replace

    from shieldes.projections.state import ConfigState
    from shieldes.views import routing_rows

    state = replace(ConfigState(), providers={
        "a": Deployment("a", "anthropic", "https://x", None, ("claude-*", "claude-x"), 1.0),
        "o": Deployment("o", "openai", "https://y", None, ("*", "gpt-4o"), 1.0)}, routing={"gpt-4o": "cost"})
    assert routing_rows(state, "adaptive") == [
        {"model": "claude-x", "strategy": "adaptive", "source": "default"},
        {"model": "gpt-4o", "strategy": "cost", "source": "set"}]


def test_budget_pages_walk_keys_then_teams_and_meet_every_budget_once() -> None:
    from dataclasses import replace

    import pytest

    from shieldes.errors import InvalidRequest
    from shieldes.gateway.admin.config_routes import budget_cursor
    from shieldes.projections.state import Budget, ConfigState, Team, VirtualKey
    from shieldes.views import budgeted

    b = Budget(5.0, "30d")
    keys = {f"k{i}": VirtualKey(f"k{i}", n, "h", "p", None, None, None, revoked=n == "gone", budget=budget)
            for i, (n, budget) in enumerate([("b", b), ("a", b), ("same", b), ("none", None), ("gone", b)])}
    teams = {"t1": Team("t1", "same", b), "t2": Team("t2", "alpha", b), "t3": Team("t3", "nobudget")}
    state = replace(ConfigState(), keys=keys, teams=teams)
    everything = [(type(s).__name__, s.name) for s in budgeted(state)[0]]
    assert everything == [("VirtualKey", "a"), ("VirtualKey", "b"), ("VirtualKey", "same"),
                          ("Team", "alpha"), ("Team", "same")]
    walked, after, pages = [], None, 0
    while True:  # pages of two: a page crosses from the keys to the teams; same-named ones both show
        subjects, more = budgeted(state, after, 2)
        walked += [(type(s).__name__, s.name) for s in subjects]
        pages += 1
        if not more:
            break
        last = subjects[-1]
        after = budget_cursor(f"{'key' if isinstance(last, VirtualKey) else 'team'}:{last.name}")
    assert walked == everything and pages == 3
    assert budgeted(state, ("team", ""), 10) == ([teams["t2"], teams["t1"]], False)  # `team:` starts at teams
    assert budgeted(state, ("team", "zzz"), 10) == ([], False)  # past the end: an empty last page
    assert budgeted(state, None, 5) == (budgeted(state)[0], False)
    for bad in ("same", "org:x", ""):
        with pytest.raises(InvalidRequest, match="next_after"):
            budget_cursor(bad)
