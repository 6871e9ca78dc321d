"""Happy paths of the admin CLI against a real Postgres: each command appends the expected events
and prints what the contract says (table by default, JSON with --json at the root or per command)."""

from __future__ import annotations

import json

from tests.cli import count_events, invoke, ok, populate, sql


def test_provider_add_list_update_remove(database_url: str) -> None:
    added = ok(
        database_url,
        "provider",
        "add",
        "openai",
        "--type",
        "openai",
        "--base-url",
        "https://api.openai.com/v1/",
        "--api-key-env",
        "OPENAI_API_KEY",
        "--models",
        "gpt-4o, gpt-4o-mini",
        "--weight",
        "2",
    )
    assert added["base_url"] == "https://api.openai.com/v1" and added["models"] == ["gpt-4o", "gpt-4o-mini"]
    ok(
        database_url,
        "provider",
        "add",
        "claude",
        "--type",
        "anthropic",
        "--base-url",
        "https://api.anthropic.com",
        "--api-key",
        "sk-ant-plaintext",
        "--models",
        "claude-3-5-sonnet",
        env={"SHIELDES_ENCRYPTION_KEY": "k1"},
    )
    listed = {p["name"]: p for p in ok(database_url, "provider", "list")}
    assert listed["openai"]["api_key"] == "env:OPENAI_API_KEY" and listed["openai"]["weight"] == 2.0
    assert listed["claude"]["api_key"] == "encrypted" and listed["claude"]["type"] == "anthropic"

    updated = ok(database_url, "provider", "update", "openai", "--models", "gpt-4o", "--weight", "3")
    ok(database_url, "provider", "update", "claude", "--api-key-env", "ANTHROPIC_API_KEY")
    listed = {p["name"]: p for p in ok(database_url, "provider", "list")}
    # add and update print the provider as `provider list` does (every field, not only those
    # changed), then the position
    assert updated == {**listed["openai"], "position": updated["position"]}
    assert list(updated) == [*listed["openai"], "position"]
    table = invoke(database_url, "provider", "update", "claude", "--weight", "2")
    assert table.exit_code == 0 and table.stdout.splitlines()[0].split() == [
        "NAME", "TYPE", "BASE_URL", "MODELS", "WEIGHT", "API_KEY", "RESPONSES", "OPTIONS", "POSITION"]
    ok(database_url, "provider", "update", "claude", "--weight", "1")
    assert listed["openai"]["models"] == ["gpt-4o"] and listed["openai"]["weight"] == 3.0
    assert listed["openai"]["base_url"] == "https://api.openai.com/v1"  # untouched fields keep their value
    assert listed["claude"]["api_key"] == "env:ANTHROPIC_API_KEY"
    assert listed["openai"]["responses"] == listed["claude"]["responses"] == "translate"  # the default
    ok(database_url, "provider", "update", "openai", "--responses", "native")
    refused = invoke(database_url, "provider", "update", "claude", "--responses", "native")
    assert refused.exit_code != 0 and "use --responses translate" in refused.stderr
    assert {p["name"]: p["responses"] for p in ok(database_url, "provider", "list")} == {
        "openai": "native", "claude": "translate"}

    ok(database_url, "provider", "remove", "claude")
    assert [p["name"] for p in ok(database_url, "provider", "list")] == ["openai"]
    table = invoke(database_url, "provider", "list")
    assert table.exit_code == 0
    header, row = table.stdout.splitlines()
    assert header.split() == ["NAME", "TYPE", "BASE_URL", "MODELS", "WEIGHT", "API_KEY", "RESPONSES",
                              "OPTIONS"]
    assert row.split()[0] == "openai" and "env:OPENAI_API_KEY" in row
    assert count_events(database_url) == 8  # two of them the weight changes above


def test_pricing_and_team(database_url: str) -> None:
    ok(database_url, "pricing", "set", "gpt-4o", "--input", "2.5", "--output", "10")
    ok(database_url, "pricing", "set", "gpt-4o", "--input", "2", "--output", "8")
    assert [(r["model"], r["input_per_1m"], r["output_per_1m"]) for r in
            ok(database_url, "pricing", "list", "--source", "override")] == [("gpt-4o", 2.0, 8.0)]
    ok(database_url, "pricing", "set", "claude-x", "--input", "3", "--output", "15", "--cache-read", "0.3",
       "--cache-write", "3.75")
    assert [(r["model"], r["cache_read_per_1m"], r["cache_write_per_1m"]) for r in
            ok(database_url, "pricing", "list", "--source", "override")] == [("claude-x", 0.3, 3.75),
                                                                            ("gpt-4o", None, None)]
    refused = invoke(database_url, "pricing", "set", "m", "--input", "1", "--output", "1", "--cache-read", "-1")
    assert refused.exit_code != 0 and "--cache-read price" in refused.output
    team = ok(database_url, "team", "create", "eng", "--budget", "100", "--budget-period", "1mo")
    assert team["id"].startswith("team_") and team["budget_period"] == "1mo"
    ok(database_url, "team", "create", "ops")
    teams = ok(database_url, "team", "list")
    assert [(t["name"], t["budget_usd"], t["budget_period"]) for t in teams] == [
        ("eng", 100.0, "1mo"),
        ("ops", None, None),
    ]


def test_key_lifecycle(database_url: str) -> None:
    ok(database_url, "team", "create", "eng")
    ok(database_url, "team", "create", "ops")
    created = ok(
        database_url,
        "key",
        "create",
        "--name",
        "app",
        "--models",
        "gpt-4o,gpt-4o-mini",
        "--rpm",
        "60",
        "--tpm",
        "10000",
        "--budget",
        "5",
        "--budget-period",
        "1d",
        "--team",
        "eng",
        "--expires-in",
        "30d",
    )
    assert (
        created["key"].startswith("sk-shd-") and created["id"].startswith("key_") and created["name"] == "app"
    )
    assert created["prefix"] == created["key"][: len(created["prefix"])]
    shown = ok(database_url, "key", "show", created["id"])  # by id
    assert shown == ok(database_url, "key", "show", "app")  # and by name
    assert "key" not in shown
    assert (shown["rpm"], shown["tpm"], shown["budget_usd"], shown["budget_period"], shown["team"]) == (
        60,
        10000,
        5.0,
        "1d",
        "eng",
    )
    assert shown["models"] == ["gpt-4o", "gpt-4o-mini"] and shown["expires_at"].endswith("Z")

    updated = ok(
        database_url,
        "key",
        "update",
        "app",
        "--no-rpm",
        "--tpm",
        "500",
        "--team",
        "ops",
        "--all-models",
        "--no-expiry",
    )
    assert (updated["rpm"], updated["tpm"], updated["team"], updated["models"], updated["expires_at"]) == (
        None,
        500,
        "ops",
        None,
        None,
    )
    ok(database_url, "key", "update", "app", "--models", "gpt-4o", "--no-team", "--expires-at", "2999-01-01")
    shown = ok(database_url, "key", "show", "app")
    assert (
        shown["models"] == ["gpt-4o"]
        and shown["team"] is None
        and shown["expires_at"].startswith("2999-01-01")
    )

    rotated = ok(database_url, "key", "rotate", "app")
    assert rotated["key"] != created["key"] and rotated["id"] == created["id"]
    assert ok(database_url, "key", "show", "app")["prefix"] == rotated["prefix"]
    # for scripts, as `key create --secret-only`: export SHIELDES_KEY=$(shieldes key rotate app --secret-only)
    bare = invoke(database_url, "key", "rotate", "app", "--secret-only")
    assert bare.exit_code == 0 and bare.stdout.startswith("sk-shd-") and bare.stdout.count("\n") == 1, bare.stdout
    assert ok(database_url, "key", "show", "app")["prefix"] == bare.stdout.strip()[:len(rotated["prefix"])]

    revoked = ok(database_url, "key", "revoke", "app")
    assert revoked["revoked"] is True and revoked["name"] == "app"
    assert ok(database_url, "key", "list") == []
    assert [k["status"] for k in ok(database_url, "key", "list", "--all")] == ["revoked"]


def test_key_create_table_mode_prints_secret_once(database_url: str) -> None:
    result = invoke(database_url, "key", "create", "--name", "app")
    assert result.exit_code == 0, result.stderr
    secret_lines = [ln for ln in result.stdout.splitlines() if ln.startswith("key: sk-shd-")]
    assert len(secret_lines) == 1
    assert "will not be shown again" in result.stdout
    secret = secret_lines[0].split()[1]
    for args in (["key", "list"], ["key", "show", "app"], ["--json", "key", "list"], ["audit", "log"]):
        assert secret not in invoke(database_url, *args).stdout


def test_per_command_json_flag_equals_root_flag(database_url: str) -> None:
    ok(database_url, "pricing", "set", "m1", "--input", "1", "--output", "2")
    per_command = invoke(database_url, "pricing", "list", "--json")
    assert json.loads(per_command.stdout) == ok(database_url, "pricing", "list")


def test_budget_set_show_remove(database_url: str) -> None:
    populate(database_url)
    ok(database_url, "budget", "set", "app", "--amount", "7.5", "--period", "1mo")
    shown = ok(database_url, "budget", "show", "app")
    assert (shown["amount_usd"], shown["period"], shown["spent_usd"], shown["remaining_usd"]) == (
        7.5,
        "1mo",
        0,
        7.5,
    )
    assert shown["period_start"].endswith("-01T00:00:00Z")
    ok(database_url, "budget", "set", "--team", "eng", "--amount", "50", "--period", "1d")
    team = ok(database_url, "budget", "show", "--team", "eng")
    assert (team["subject"], team["amount_usd"], team["period"]) == ("eng", 50.0, "1d")
    ok(database_url, "budget", "remove", "app")
    shown = ok(database_url, "budget", "show", "app")
    assert shown["amount_usd"] is None and shown["remaining_usd"] is None
    actors = sql(database_url, "SELECT DISTINCT metadata->>'actor' FROM events")
    assert actors == [("tester",)]


def test_show_commands_print_one_field_per_line(database_url: str) -> None:
    populate(database_url)
    shown = invoke(database_url, "budget", "show", "app")
    lines = dict(line.split(None, 1) for line in shown.stdout.splitlines())
    assert lines["AMOUNT_USD"] == "5.0" and lines["PERIOD"] == "30d" and lines["SUBJECT"] == "app"
    key = invoke(database_url, "key", "show", "app").stdout.splitlines()
    assert key[1].split() == ["NAME", "app"] and any(ln.split() == ["TEAM", "eng"] for ln in key)
