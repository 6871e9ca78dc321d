"""A `shieldes config export` file -> an ImportSpec -> commands (pure): versions, strictness, prices
as set, teams, keys that cannot be created, encrypted keys."""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from shieldes.errors import CommandRejected
from shieldes.importers.apply import events_for
from shieldes.importers.entities import create_command
from shieldes.importers.export import export
from shieldes.importers.plan import Plan, plan_import
from shieldes.importers.source import parse
from shieldes.importers.spec import BudgetSpec, ImportRejected, KeySpec
from shieldes.projections.commands import Command, CreateKey, CreateTeam, RevokeKey, decide
from shieldes.projections.config import apply_config
from shieldes.projections.shared_commands import AddProvider, UpdateProvider
from shieldes.projections.state import Budget, ConfigState, Price
from shieldes.usage.catalog import shipped

OPENAI = {"name": "openai", "type": "openai", "base_url": "https://api.openai.com/v1",
          "api_key": "env:OPENAI_API_KEY", "models": ["gpt-4o"], "weight": 1.0}


def run(state: ConfigState, *commands: Command) -> ConfigState:
    for command in commands:
        for event in decide(state, command):
            state = apply_config(state, event)
    return state


def plan_of(state: ConfigState, doc: dict[str, Any], key: str | None = None) -> Plan:
    fmt, spec = parse(doc, "auto")
    assert fmt == "shieldes"
    return plan_import(state, spec, key)


def fold(state: ConfigState, plan: Plan) -> ConfigState:
    for event in events_for(state, plan):
        state = apply_config(state, event)
    return state


@pytest.mark.parametrize(("version", "says"), [
    (3, "written by a newer shieldes (export format version 3; this one reads up to 2)"),
    (0, "unknown shieldes export version 0"),
    ("1", "unknown shieldes export version '1'"),
    (True, "unknown shieldes export version True"),
])
def test_a_version_this_shieldes_does_not_read_is_refused(version: Any, says: str) -> None:
    with pytest.raises(ImportRejected, match="shieldes") as refused:
        parse({"format": "shieldes", "version": version, "providers": [OPENAI]}, "auto")
    assert says in refused.value.message


def test_version_1_and_an_export_without_version_read_alike() -> None:
    old = {"providers": [OPENAI], "aliases": [], "pricing": [], "teams": [], "keys": []}
    assert parse(old, "auto")[1].providers == parse({"format": "shieldes", "version": 1, **old}, "auto")[1].providers


@pytest.mark.parametrize(("doc", "says"), [
    ({"format": "shieldes", "providers": [OPENAI, OPENAI]},
     "providers[1] and providers[0] are both 'openai'; keep one"),
    ({"format": "shieldes", "providers": [{**OPENAI, "models": "gpt-4o"}]}, "providers[0] ('openai').models"),
    ({"format": "shieldes", "providers": [{**OPENAI, "weight": 0}]}, "providers[0] ('openai').weight"),
    ({"format": "shieldes", "pricing": [{"model": "m", "input_per_1m": -1, "output_per_1m": 1}]},
     "pricing[0] ('m').input_per_1m"),
    ({"format": "shieldes", "keys": [{"name": "k", "rpm": 0}]}, "keys[0] ('k').rpm"),
    ({"format": "shieldes", "teams": [{"name": "t", "budget": {"amount_usd": 5}}]}, "teams[0] ('t').budget"),
    ({"format": "shieldes", "aliases": [{"name": "a", "targets": []}]}, "aliases[0] ('a').targets"),
    ({"format": "litellm", "providers": []}, "\"format\" is 'litellm'"),
])
def test_a_malformed_entry_is_refused_by_name(doc: dict[str, Any], says: str) -> None:
    with pytest.raises(ImportRejected) as refused:
        parse(doc, "shieldes")
    assert says in refused.value.message
    assert "shieldes config export" in refused.value.message or "keep one of them" in refused.value.message


def test_prices_are_the_ones_set_not_compared_with_the_shipped_defaults() -> None:
    default = shipped()["gpt-4o"]
    assert default.cache_read_per_1m is not None  # the shipped price has a cache price the file leaves out
    doc = {"format": "shieldes", "pricing": [{"model": "gpt-4o", "input_per_1m": default.input_per_1m,
                                              "output_per_1m": default.output_per_1m}]}
    plan = plan_of(ConfigState(), doc)
    assert [(c.kind, c.action) for c in plan.changes] == [("pricing", "add")]
    state = fold(ConfigState(), plan)
    assert state.pricing["gpt-4o"] == Price(default.input_per_1m, default.output_per_1m)
    assert plan_of(state, doc).commands == []


def test_teams_keep_the_file_id_when_it_is_free_and_are_matched_by_name() -> None:
    state = run(ConfigState(), CreateTeam("team_00000000000000aa", "taken"))
    doc = {"format": "shieldes", "teams": [
        {"id": "team_0000000000000001", "name": "ml", "budget": {"amount_usd": 10, "period": "1d"}},
        {"id": "team_00000000000000aa", "name": "web", "budget": None},  # the id is another team's here
        {"id": "not-an-id", "name": "ops", "budget": None},
        {"id": "team_ffffffffffffffff", "name": "taken", "budget": {"amount_usd": 1, "period": "30d"}},
    ]}
    plan = plan_of(state, doc)
    assert [(c.name, c.action, c.detail) for c in plan.changes] == [
        ("ml", "add", "budget $10/1d"), ("web", "add", "no budget"), ("ops", "add", "no budget"),
        ("taken", "update", "budget $1/30d (was none)")]
    after = fold(state, plan)
    ids = {t.name: t.id for t in after.teams.values()}
    assert ids["ml"] == "team_0000000000000001" and ids["taken"] == "team_00000000000000aa"
    assert ids["web"] != "team_00000000000000aa" and ids["ops"] != "not-an-id"
    assert plan_of(after, doc).commands == []


def key_entry(**fields: Any) -> dict[str, Any]:
    return {"id": "key_staging", "name": "app", "prefix": "sk-ab", "models": None, "team": None, "rpm": None,
            "tpm": None, "budget": None, "expires_at": None, "revoked": False, **fields}


def test_keys_are_matched_by_id_then_name_and_revocation_is_never_changed() -> None:
    state = run(ConfigState(), CreateKey("key_here", "app", "h1", "sk-x1", rpm=10),
                CreateKey("key_gone", "gone", "h2", "sk-x2"), RevokeKey("gone"),
                CreateKey("key_live", "live", "h3", "sk-x3"))
    doc = {"format": "shieldes", "keys": [
        key_entry(rpm=20, budget={"amount_usd": 5.0, "period": "1d"}),  # another id, the same name
        key_entry(id="key_gone", name="gone"),  # revoked here: stays revoked
        key_entry(id="key_live", name="live", revoked=True),  # revoked in the file: import revokes nothing
        key_entry(id="key_x", name="dead", revoked=True),  # revoked and absent: not made again
        key_entry(id="key_y", name="new key", models=["claude-*"], team="ml"),
    ]}
    plan = plan_of(state, doc)
    assert [(c.name, c.action, c.detail) for c in plan.changes] == [
        ("app", "update", "rpm 10 -> 20; budget none -> $5/1d"),
        ("gone", "unchanged", "revoked"),
        ("live", "unchanged", "models=all"),
        ("new key", "missing", "create it: shieldes key create --name 'new key' --models 'claude-*' --team ml"),
    ]
    assert plan.counts() == {"add": 0, "update": 1, "unchanged": 2, "missing": 1}
    assert any("'gone' is revoked here" in n and "--name gone-2" in n for n in plan.notes)
    assert any("shieldes key revoke live" in n for n in plan.notes)
    assert any("1 revoked key(s)" in n for n in plan.notes)
    after = fold(state, plan)
    assert (after.keys["key_here"].rpm, after.keys["key_here"].budget) == (20, Budget(5.0, "1d"))
    assert after.keys["key_live"].revoked is False and after.keys["key_gone"].revoked is True
    assert plan_of(after, doc).commands == []


def test_the_create_command_says_every_setting_and_quotes_what_a_shell_would_split() -> None:
    key = KeySpec("key_1", "my app", ("gpt-4o", "claude-*"), "ml team", 600, 100000, BudgetSpec(12.5, "1mo"),
                  1924992000.0, False)
    assert shlex.split(create_command(key)) == [
        "shieldes", "key", "create", "--name", "my app", "--models", "gpt-4o,claude-*", "--rpm", "600",
        "--tpm", "100000", "--budget", "12.5", "--budget-period", "1mo", "--team", "ml team",
        "--expires-at", "2031-01-01T00:00:00Z"]


def test_an_encrypted_key_is_kept_where_it_is_and_refused_where_there_is_none() -> None:
    state = run(ConfigState(), AddProvider("vault", "openai", "https://llm.internal/v1", "enc:token", ("gpt-4o",)),
                AddProvider("plain", "openai", "https://llm.internal/v1", "env:K", ("gpt-4o",)))
    doc, warnings = export(state, "shieldes")
    assert [p["api_key"] for p in doc["providers"]] == ["env:K", "encrypted"]
    assert len(warnings) == 1 and "'vault'" in warnings[0]
    assert plan_of(state, doc).commands == []  # the key stored here stays
    with pytest.raises(ImportRejected, match="provider 'vault' had an encrypted key") as refused:
        plan_of(ConfigState(), doc)
    assert '"api_key": "env:VAR"' in refused.value.message
    swapped = {**doc, "providers": [{**doc["providers"][0], "api_key": "encrypted"}]}
    with pytest.raises(ImportRejected, match="provider 'plain' has key env:K here, but the file says") as refused:
        plan_of(state, swapped)
    assert "shieldes provider update plain --api-key KEY" in refused.value.message


AZURE = AddProvider("azure-eu", "azure", "https://eu.openai.azure.com", "env:AZ", ("prod-4o", "prod-mini"),
                    options={"api_version": "2024-10-21", "rpm": "600"})


def test_an_edited_provider_is_updated_with_the_event_provider_update_appends() -> None:
    state = run(ConfigState(), AZURE)
    doc, _ = export(state, "shieldes")
    entry = doc["providers"][0]
    entry.update(base_url="https://eu2.openai.azure.com", api_key="env:AZ2", models=["prod-4o", "prod-5"],
                 options={"api_version": "2025-01-01", "region": "eu"})  # rpm left out: no quota
    plan = plan_of(state, doc)
    assert [(c.action, c.detail) for c in plan.changes] == [(
        "update", "base_url https://eu.openai.azure.com -> https://eu2.openai.azure.com; key env:AZ -> env:AZ2; "
                  "api_version 2024-10-21 -> 2025-01-01; region (none) -> eu; rpm 600 -> (none); "
                  "models prod-4o,prod-mini + prod-5 (existing models kept)")]
    # a model the file leaves out stays served, and a note says how to stop serving it
    assert plan.notes == ["provider 'azure-eu' also serves prod-mini, which providers[0] ('azure-eu') leaves out: "
                          "kept (an import removes nothing); to stop serving them run `shieldes provider update "
                          "azure-eu --models prod-4o,prod-5`"]
    events = events_for(state, plan)
    assert [type(e).__name__ for e in events] == ["ProviderUpdated"]
    assert events[0] == decide(state, UpdateProvider(
        "azure-eu", "https://eu2.openai.azure.com", "env:AZ2", ("prod-4o", "prod-mini", "prod-5"),
        options={"api_version": "2025-01-01", "region": "eu"}, replace_options=True))[0]
    after = fold(state, plan)
    d = after.providers["azure-eu"]
    assert (d.base_url, d.secret_ref, dict(d.options), d.models) == (
        "https://eu2.openai.azure.com", "env:AZ2", {"api_version": "2025-01-01", "region": "eu"},
        ("prod-4o", "prod-mini", "prod-5"))
    again = plan_of(after, doc)
    assert again.commands == [] and [c.action for c in again.changes] == ["unchanged"]
    # without a key in the file, the reference is removed (as `provider update --no-api-key`)
    bare = {**doc, "providers": [{**entry, "api_key": None}]}
    assert fold(after, plan_of(after, bare)).providers["azure-eu"].secret_ref is None


def test_what_provider_update_refuses_the_import_refuses() -> None:
    state = run(ConfigState(), AZURE)
    doc, _ = export(state, "shieldes")
    doc["providers"][0]["options"] = {"rpm": "600"}  # azure needs an api_version
    with pytest.raises(CommandRejected, match="type 'azure' needs --api-version"):
        events_for(state, plan_of(state, doc))
    doc["providers"][0]["options"] = {"api_version": "2024-10-21", "project": "p"}
    with pytest.raises(CommandRejected, match="--project does not apply to type 'azure'"):
        events_for(state, plan_of(state, doc))


def test_a_type_change_is_refused_saying_what_to_do() -> None:
    state = run(ConfigState(), AddProvider("main", "openai", "https://llm.internal/v1", "env:K", ("gpt-4o",)))
    doc, _ = export(state, "shieldes")
    doc["providers"][0].update(type="anthropic", base_url="https://api.anthropic.com")
    with pytest.raises(ImportRejected) as refused:
        plan_of(state, doc)
    assert refused.value.message == (
        "providers[0] ('main') makes provider 'main' type anthropic, but it exists here with type openai and a "
        "provider's type cannot change in place; give the entry another name (and point aliases at it), or remove "
        "the provider first (`shieldes provider remove main`) and import again")


def test_a_settings_change_keeping_the_endpoint_they_built_is_refused_naming_the_new_one() -> None:
    state = run(ConfigState(), AddProvider("bedrock", "bedrock", None, None, ("m",), options={"region": "eu-west-1"}))
    doc, _ = export(state, "shieldes")
    entry = doc["providers"][0]
    assert entry["base_url"] == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    entry["options"] = {"region": "us-east-1"}
    with pytest.raises(ImportRejected) as refused:
        plan_of(state, doc)
    assert 'write "base_url": "https://bedrock-runtime.us-east-1.amazonaws.com"' in refused.value.message
    entry["base_url"] = "https://bedrock-runtime.us-east-1.amazonaws.com"
    after = fold(state, plan_of(state, doc))
    assert after.providers["bedrock"].base_url == entry["base_url"]
    assert plan_of(after, doc).commands == []


def test_other_formats_still_never_repoint_a_provider() -> None:
    state = run(ConfigState(), AddProvider("openai", "openai", "https://proxy.internal/v1", "env:OPENAI_API_KEY",
                                           ("gpt-4o",)))
    _, spec = parse({"providers": {"openai": {"keys": [{"name": "k", "value": "env.OPENAI_API_KEY",
                                                         "models": ["gpt-4o"], "weight": 1}]}}}, "bifrost")
    with pytest.raises(ImportRejected, match="would repoint it"):
        plan_import(state, spec, None)


ENC_KEY = "mcp-import-passphrase"


def mcp_state() -> ConfigState:
    from shieldes.projections.shared_commands import AddMcpServer, RemoveMcpServer
    from shieldes.secrets import encrypt_secret

    return run(ConfigState(),
               AddMcpServer("github", "https://mcp.example.com/mcp",
                            {"Authorization": encrypt_secret("Bearer ghp-secret", ENC_KEY), "X-Team": "env:TEAM"}),
               AddMcpServer("jira", "https://jira.example.com/mcp"),
               AddMcpServer("gone", "https://gone.example.com/mcp"),
               CreateKey("key_a", "agent", "h1", "sk-x1", mcp=("github/search_code", "jira", "gone")),
               CreateKey("key_b", "plain", "h2", "sk-x2"),
               RemoveMcpServer("gone"))  # the key's entry stays, allowing nothing


def test_mcp_servers_and_keys_mcp_access_are_exported_without_secrets_and_import_back() -> None:
    state = mcp_state()
    doc, warnings = export(state, "shieldes")
    assert doc["version"] == 2
    assert doc["mcp_servers"] == [
        {"name": "github", "url": "https://mcp.example.com/mcp",
         "headers": {"Authorization": "encrypted", "X-Team": "env:TEAM"}},
        {"name": "jira", "url": "https://jira.example.com/mcp", "headers": {}}]
    assert [(k["name"], k["mcp"]) for k in doc["keys"]] == [("agent", ["github/search_code", "jira", "gone"]),
                                                            ("plain", None)]
    assert "ghp-secret" not in str(doc) and "enc:" not in str(doc)
    assert [w for w in warnings if "MCP" in w] == [w for w in warnings if "'github' has an encrypted header" in w]
    assert len(warnings) == 1 and '"env:VAR"' in warnings[0]

    # the same database: nothing to change (the encrypted value stored here stays)
    again = plan_of(state, doc)
    assert again.commands == []
    assert {(c.kind, c.name): c.action for c in again.changes} == {
        ("mcp_server", "github"): "unchanged", ("mcp_server", "jira"): "unchanged",
        ("key", "agent"): "unchanged", ("key", "plain"): "unchanged"}

    # a fresh database: the encrypted value is not in the file, so that server is refused, saying what to write
    with pytest.raises(ImportRejected) as refused:
        plan_of(ConfigState(), doc)
    assert "mcp_servers[0] ('github') header 'Authorization' had an encrypted value" in refused.value.message
    assert '"env:VAR"' in refused.value.message and "shieldes mcp add github" in refused.value.message
    doc["mcp_servers"][0]["headers"]["Authorization"] = "env:GITHUB_MCP_TOKEN"
    plan = plan_of(ConfigState(), doc)
    assert [(c.kind, c.name, c.action, c.detail) for c in plan.changes if c.kind == "mcp_server"] == [
        ("mcp_server", "github", "add",
         "https://mcp.example.com/mcp headers=Authorization=env:GITHUB_MCP_TOKEN,X-Team=env:TEAM"),
        ("mcp_server", "jira", "add", "https://jira.example.com/mcp headers=none")]
    missing = {c.name: c.detail for c in plan.changes if c.action == "missing"}
    assert missing["agent"].endswith("--mcp github/search_code,jira")  # the entry naming no server left out
    assert "--mcp" not in missing["plain"]
    assert any("'agent': MCP entry gone names no MCP server" in n for n in plan.notes)
    fresh = fold(ConfigState(), plan)
    assert fresh.mcp_servers["github"].headers == {"Authorization": "env:GITHUB_MCP_TOKEN", "X-Team": "env:TEAM"}

    # a key of that name here takes the file's access; the entry naming a removed server is left out
    here = run(fresh, CreateKey("key_other", "agent", "h9", "sk-x9"), CreateKey("key_p", "plain", "h8", "sk-x8",
                                                                                  mcp=("jira",)))
    plan = plan_of(here, doc)
    assert [(c.name, c.detail) for c in plan.changes if c.kind == "key"] == [
        ("agent", "mcp none -> github/search_code,jira"), ("plain", "mcp jira -> none")]
    assert any("'agent': MCP entry gone names no MCP server" in n for n in plan.notes)
    after = fold(here, plan)
    assert after.mcp_access["key_other"] == ("github/search_code", "jira") and "key_p" not in after.mcp_access


def test_a_version_1_file_keeps_the_keys_mcp_access_and_a_version_2_file_says_it() -> None:
    state = mcp_state()
    entry = {"id": "key_a", "name": "agent", "models": None}
    for old in ({"format": "shieldes", "version": 1, "keys": [entry]}, {"format": "shieldes", "keys": [entry]}):
        plan = plan_of(state, old)
        assert plan.commands == [] and plan.changes[0].action == "unchanged", old
    said = {**entry, "mcp": ["github/search_code", "jira/*", "gone"]}  # SERVER/* is SERVER, as `--mcp` stores it
    assert plan_of(state, {"format": "shieldes", "version": 2, "keys": [said]}).commands == []
    plan = plan_of(state, {"format": "shieldes", "version": 2, "keys": [entry]})  # no "mcp": none
    assert [c.detail for c in plan.changes] == ["mcp github/search_code,jira,gone -> none"]
    assert "key_a" not in fold(state, plan).mcp_access


def test_an_edited_mcp_server_is_updated_in_place() -> None:
    from shieldes.events.catalog import McpServerUpdated

    state = mcp_state()
    doc, _ = export(state, "shieldes")
    doc["mcp_servers"][0].update(url="https://mcp2.example.com/mcp/", headers={"Authorization": "encrypted",
                                                                               "X-Org": "env:ORG"})
    doc["mcp_servers"][1]["headers"] = {"X-Api-Key": "env:JIRA_KEY"}
    plan = plan_of(state, doc)
    assert [(c.name, c.action, c.detail) for c in plan.changes if c.kind == "mcp_server"] == [
        ("github", "update", "url https://mcp.example.com/mcp -> https://mcp2.example.com/mcp; "
                             "header X-Org added (env:ORG); header X-Team removed"),
        ("jira", "update", "header X-Api-Key added (env:JIRA_KEY)")]
    events = events_for(state, plan)
    assert [type(e) for e in events] == [McpServerUpdated, McpServerUpdated]  # as `shieldes mcp update` writes
    after = fold(state, plan)
    assert after.mcp_servers["github"].url == "https://mcp2.example.com/mcp"
    assert after.mcp_servers["github"].headers["Authorization"] == state.mcp_servers["github"].headers["Authorization"]
    assert after.mcp_access == state.mcp_access  # keys keep their access
    assert plan_of(after, doc).commands == []

    # a value written by hand is stored encrypted (and kept on the next import), never without a key
    doc["mcp_servers"][1]["headers"] = {"X-Api-Key": "jira-plain-value"}
    with pytest.raises(ImportRejected, match="holds a plaintext value; set SHIELDES_ENCRYPTION_KEY"):
        plan_of(after, doc)
    plan = plan_of(after, doc, ENC_KEY)
    assert [c.detail for c in plan.changes if c.name == "jira"] == ["header X-Api-Key env:JIRA_KEY -> encrypted"]
    stored = fold(after, plan)
    assert stored.mcp_servers["jira"].headers["X-Api-Key"].startswith("enc:")
    assert plan_of(stored, doc, ENC_KEY).commands == []


@pytest.mark.parametrize(("entry", "says"), [
    ({"name": "m"}, "mcp_servers[0] has no url"),
    ({"name": "m", "url": "https://m.io/mcp", "header": {}}, "mcp_servers[0] has unknown field(s) header"),
    ({"name": "m", "url": "https://m.io/mcp", "headers": ["a"]}, "mcp_servers[0] ('m').headers must be an object"),
    ({"name": "m", "url": "https://m.io/mcp", "headers": {"A": 1}}, "mcp_servers[0] ('m').headers['A'] must be"),
])
def test_a_malformed_mcp_server_is_refused_by_name(entry: dict[str, Any], says: str) -> None:
    with pytest.raises(ImportRejected) as refused:
        parse({"format": "shieldes", "mcp_servers": [entry]}, "shieldes")
    assert says in refused.value.message and "shieldes config export" in refused.value.message
    with pytest.raises(ImportRejected, match=r"keys\[0\] \('k'\).mcp must be a list"):
        parse({"format": "shieldes", "keys": [{"name": "k", "mcp": "github"}]}, "shieldes")
    with pytest.raises(ImportRejected, match=r"mcp_servers\[0\] \('m'\): invalid --url"):
        plan_of(ConfigState(), {"format": "shieldes", "mcp_servers": [{"name": "m", "url": "ftp://m"}]})
