"""CLI details a newcomer trips over: refused arguments append nothing, warnings are one line,
budget removal is its own event naming its subject, times and money print for humans."""

from __future__ import annotations

import json

from shieldes.events.catalog import BudgetSet
from shieldes.projections.config import apply_config
from shieldes.projections.state import Budget, ConfigState, Team
from tests import cli


def test_refused_lists_and_periods_append_nothing(database_url: str) -> None:
    before = cli.count_events(database_url)
    assert "empty entry" in cli.refused(database_url, "key", "create", "--name", "a", "--models", "gpt-4o,,x")
    assert "twice" in cli.refused(database_url, "key", "create", "--name", "a", "--models", "x,x")
    assert "needs --budget" in cli.refused(database_url, "key", "create", "--name", "a", "--budget-period", "1d")
    assert "needs --budget" in cli.refused(database_url, "team", "create", "t", "--budget-period", "1mo")
    assert "empty entry" in cli.refused(
        database_url, "provider", "add", "p", "--type", "openai", "--base-url", "http://127.0.0.1:1/v1",
        "--api-key-env", "X", "--models", "a,")
    assert cli.count_events(database_url) == before


def test_a_model_no_provider_serves_is_a_warning(database_url: str) -> None:
    result = cli.invoke(database_url, "key", "create", "--name", "early", "--models", "gpt-4o")
    assert result.exit_code == 0
    assert result.stderr.strip().splitlines() == [
        line for line in result.stderr.strip().splitlines() if line.startswith("warning: ")
    ] and "no provider serves model 'gpt-4o'" in result.stderr
    created = cli.ok(database_url, "key", "create", "--name", "early2", "--models", "gpt-4o")
    assert created["warnings"] and "gpt-4o" in created["warnings"][0]
    cli.populate(database_url)  # a provider serving gpt-4o: no warning any more
    assert "warnings" not in cli.ok(database_url, "key", "update", "early", "--models", "gpt-4o,gpt-4o-mini")
    # a model alias is served by its targets (a key's --models may name aliases): no warning either
    cli.ok(database_url, "model", "alias", "smart", "--target", "openai/gpt-4o")
    aliased = cli.invoke(database_url, "key", "create", "--name", "early3", "--models", "smart,sm*")
    assert aliased.exit_code == 0 and "warning" not in aliased.stderr, aliased.stderr
    assert "warnings" not in cli.ok(database_url, "key", "update", "early", "--models", "smart")


def test_budget_removal_is_its_own_event_and_names_the_team(database_url: str) -> None:
    cli.ok(database_url, "team", "create", "research", "--budget", "50")
    cli.ok(database_url, "key", "create", "--name", "bot", "--budget", "3")
    cli.ok(database_url, "budget", "remove", "--team", "research")
    cli.ok(database_url, "budget", "remove", "bot")
    assert "no budget" in cli.refused(database_url, "budget", "remove", "bot")
    rows = cli.sql(database_url, "SELECT type, subject FROM audit_log WHERE type LIKE 'budget.%' ORDER BY position")
    assert rows == [("budget.set", "research"), ("budget.set", "bot"),
                    ("budget.removed", "research"), ("budget.removed", "bot")]
    teams = cli.ok(database_url, "team", "list")
    assert teams[0]["budget_usd"] is None


def test_an_old_budget_set_with_no_amount_still_removes() -> None:
    state = ConfigState(teams={"t1": Team("t1", "t", Budget(5.0, "30d"))})
    assert apply_config(state, BudgetSet("team", "t1", None, "30d")).teams["t1"].budget is None


def test_config_show_refuses_points_past_the_log_and_prints_times(database_url: str) -> None:
    cli.ok(database_url, "key", "create", "--name", "k", "--expires-at", "2031-02-03T04:05:06Z", "--budget", "0.5")
    assert "past the end of the log" in cli.refused(database_url, "config", "show", "--at", "999")
    assert "in the future" in cli.refused(database_url, "config", "show", "--at", "2999-01-01")
    assert "past the end of the log" in cli.refused(database_url, "config", "diff", "1", "999")
    table = cli.invoke(database_url, "config", "show").stdout
    assert "2031-02-03 04:05:06Z" in table and "0.5 USD/30d" in table
    assert "e+" not in table and "1927" not in table  # no epoch seconds


def test_costs_print_as_decimals(database_url: str) -> None:
    cli.ok(database_url, "pricing", "set", "tiny-model", "--input", "0.000018", "--output", "0.00002")
    text = cli.invoke(database_url, "pricing", "list").stdout + cli.invoke(database_url, "--json", "pricing",
                                                                           "list").stdout
    assert "e-05" not in text and "0.000018" in text
    listed = json.loads(cli.invoke(database_url, "--json", "pricing", "list").stdout)
    assert any(isinstance(r.get("input_per_1m"), float) for r in listed)  # still numbers in JSON
