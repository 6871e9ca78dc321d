"""config_view: the config as lists per kind, and with keys_limit the first keys by name and a
count of them all (a pure function over a ConfigState)."""

from __future__ import annotations

from shieldes.events.catalog import McpServerAdded, TeamCreated, VirtualKeyCreated
from shieldes.projections.config import apply_config
from shieldes.projections.state import ConfigState
from shieldes.snapshots.history import config_view


def _state() -> ConfigState:
    state = ConfigState()
    events = [TeamCreated("team_a", "a"),
              McpServerAdded("git", "https://mcp.example/git", {}),
              *(VirtualKeyCreated(f"key_{n}", n, f"h{n}", "sk-shd-x", None, "team_a" if n == "b" else None,
                                  mcp=("git",) if n == "c" else None)
                for n in ("d", "b", "e", "a", "c"))]
    for e in events:
        state = apply_config(state, e)
    return state


def test_keys_limit_keeps_the_first_keys_by_name_and_counts_them_all() -> None:
    state = _state()
    whole = config_view(state)
    first = config_view(state, keys_limit=3)
    assert "keys_total" not in whole and len(whole["keys"]) == 5
    assert [k["name"] for k in first["keys"]] == ["a", "b", "c"] and first["keys_total"] == 5
    by_name = {k["name"]: k for k in whole["keys"]}
    assert first["keys"] == [by_name["a"], by_name["b"], by_name["c"]]  # the same entities, team and mcp too
    assert first["keys"][1]["team"] == "a" and first["keys"][2]["mcp"] == ["git"]
    assert {k: v for k, v in first.items() if k not in ("keys", "keys_total")} == \
        {k: v for k, v in whole.items() if k != "keys"}
    assert config_view(state, keys_limit=10)["keys"] == sorted(whole["keys"], key=lambda k: k["name"])
