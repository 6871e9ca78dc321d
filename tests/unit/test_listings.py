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
