"""The importers on configs as teams write them (tests/data/migrate/, sources in its README): what
each maps, and what it names in a note instead of dropping."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shieldes.importers.bifrost_governance import with_secrets
from shieldes.importers.export import export
from shieldes.importers.plan import plan_import
from shieldes.importers.source import load_document, parse
from shieldes.importers.spec import ImportRejected, ImportSpec, SecretSpec
from shieldes.projections.commands import CreateKey, decide
from shieldes.projections.config import apply_config
from shieldes.projections.shared_commands import AddProvider
from shieldes.projections.state import ConfigState

MIGRATE = Path(__file__).parent.parent / "data" / "migrate"


def spec_of(name: str) -> ImportSpec:
    return parse(load_document(MIGRATE / name), "auto")[1]


def fold(state: ConfigState, spec: ImportSpec) -> ConfigState:
    for command in plan_import(state, spec, "passphrase").commands:
        for event in decide(state, command):
            state = apply_config(state, event)
    return state


def test_litellm_deployment_rpm_tpm_become_that_deployments_quota() -> None:
    # litellm_params.tpm on Azure deployments (written 80_000), rpm/tpm beside litellm_params
    azure = {p.name: p for p in spec_of("litellm_azure_tpm.yaml").providers}
    assert {n: dict(p.options) for n, p in azure.items()} == {
        "azure-gpt-35-1": {"api_version": "2024-02-15-preview", "tpm": "80000"},
        "azure-gpt-35-2": {"api_version": "2024-02-15-preview", "tpm": "80000"}}
    balanced = spec_of("litellm_load_balancer.yaml")
    quotas = {p.name: (p.models, dict(p.options), p.secret.env_var) for p in balanced.providers}
    assert quotas == {"openai-gpt-3.5-turbo": (("gpt-3.5-turbo",), {"rpm": "3", "tpm": "20000"}, "OPENAI_KEY_A"),
                      "openai-gpt-3.5-turbo-2": (("gpt-3.5-turbo",), {"rpm": "3", "tpm": "20000"}, "OPENAI_KEY_B"),
                      "openrouter": (("openai/gpt-3.5-turbo",), {}, "OPENROUTER_API_KEY")}
    assert not any("rpm" in n or "tpm" in n for n in balanced.notes)
    # entries of one endpoint stay one provider unless one has a quota: that one is a deployment of its own
    doc: dict[str, Any] = {"model_list": [
        {"model_name": m, "litellm_params": {"model": f"anthropic/{m}", "api_key": "os.environ/K", **extra}}
        for m, extra in (("claude-a", {"rpm": 50}), ("claude-b", {}), ("claude-c", {}))]}
    providers = {p.name: (p.models, dict(p.options)) for p in parse(doc, "litellm")[1].providers}
    assert providers == {"anthropic-claude-a": (("claude-a",), {"rpm": "50"}),
                         "anthropic": (("claude-b", "claude-c"), {})}
    state = fold(ConfigState(), parse(doc, "litellm")[1])
    assert state.providers["anthropic-claude-a"].options == {"rpm": "50"}
    # the LiteLLM export writes the quota back on the entry, and that imports back unchanged
    again = parse(yaml.safe_load(yaml.safe_dump(export(state, "litellm")[0])), "litellm")[1]
    assert plan_import(state, again, None).commands == []


def test_a_changed_quota_updates_an_existing_provider_and_one_the_file_leaves_out_is_kept() -> None:
    doc: dict[str, Any] = {"model_list": [{"model_name": "gpt-4o", "litellm_params": {
        "model": "openai/gpt-4o", "api_key": "os.environ/OPENAI_API_KEY", "rpm": 100}}]}
    state = fold(ConfigState(), parse(doc, "litellm")[1])
    doc["model_list"][0]["litellm_params"]["rpm"] = 200
    plan = plan_import(state, parse(doc, "litellm")[1], None)
    assert [(c.name, c.action, c.detail) for c in plan.changes] == [("openai-gpt-4o", "update", "rpm 100 -> 200")]
    state = ConfigState()
    for e in decide(state, AddProvider("openai", "openai", "https://api.openai.com/v1", "env:OPENAI_API_KEY",
                                       ("gpt-4o",), options={"rpm": "900"})):
        state = apply_config(state, e)
    del doc["model_list"][0]["litellm_params"]["rpm"]
    plan = plan_import(state, parse(doc, "litellm")[1], None)
    assert [c.action for c in plan.changes] == ["unchanged"] and plan.commands == []


@pytest.mark.parametrize(("value", "message"), [
    (0, r"model_list\[0\]\.litellm_params\.rpm must be a whole number .* got 0"),
    ("lots", r"model_list\[0\]\.litellm_params\.rpm must be a whole number .* got 'lots'"),
    (1.5, r"got 1\.5"),
])
def test_a_bad_quota_is_refused_naming_the_entry(value: object, message: str) -> None:
    doc = {"model_list": [{"model_name": "m", "litellm_params": {"model": "openai/m", "rpm": value}}]}
    with pytest.raises(ImportRejected, match=message):
        parse(doc, "litellm")


def test_litellm_vertex_takes_both_spellings_and_defaults_are_said() -> None:
    spec = spec_of("litellm_vertex.yaml")
    vertex = {p.models[0]: dict(p.options) for p in spec.providers}
    # vertex_ai_project / vertex_ai_location are LiteLLM's other spelling of vertex_project / vertex_location
    assert vertex["claude-3-5-sonnet@20240620"] == {"project": "adroit-crow-413218", "location": "us-east5"}
    assert vertex["gemini-2.5-pro"]["credentials_file"] == "/secrets/vertex_sa.json"
    assert any("model_list[1]: vertex_credentials not imported" in n for n in spec.notes)
    # a setting the file leaves to LiteLLM's environment gets shieldes' default, and a note saying so
    doc = {"model_list": [
        {"model_name": "g", "litellm_params": {"model": "vertex_ai/gemini-2.0-flash", "vertex_project": "p"}},
        {"model_name": "c", "litellm_params": {"model": "bedrock/anthropic.claude-3-haiku-20240307-v1:0"}},
        {"model_name": "a", "litellm_params": {"model": "azure/prod", "api_base": "https://r.openai.azure.com"}}]}
    notes = parse(doc, "litellm")[1].notes
    assert [n.split(":")[0] for n in notes if "is used" in n] == [
        "model_list[0] gives no vertex_location (VERTEXAI_LOCATION)",
        "model_list[1] gives no aws_region_name (AWS_REGION_NAME, AWS_REGION)",
        "model_list[2] gives no api_version (AZURE_API_VERSION)"]


@pytest.mark.parametrize(("params", "message"), [
    ({"model": "bedrock/anthropic.claude-3-haiku-20240307-v1:0", "aws_region_name": "os.environ/AWS_REGION_NAME"},
     r"model_list\[0\]\.litellm_params\.aws_region_name is 'os\.environ/AWS_REGION_NAME'; write the value itself"),
    ({"model": "vertex_ai/gemini-2.0-flash", "vertex_ai_project": "os.environ/GCP_PROJECT"},
     r"litellm_params\.vertex_ai_project is 'os\.environ/GCP_PROJECT'; write the value itself"),
    ({"model": "vertex_ai/gemini-2.0-flash"}, r"without litellm_params\.vertex_project \(LiteLLM then reads "),
])
def test_cloud_settings_left_to_litellms_environment_are_refused_saying_what_to_write(
        params: dict[str, Any], message: str) -> None:
    with pytest.raises(ImportRejected, match=message):
        parse({"model_list": [{"model_name": "m", "litellm_params": params}]}, "litellm")


def note_with(spec: ImportSpec, text: str) -> str:
    [note] = [n for n in spec.notes if text in n]
    return note


def test_litellm_timeouts_retries_and_other_settings_are_named_with_what_to_set_instead() -> None:
    spec = spec_of("litellm_openai_compatible_fallbacks.yaml")
    assert "set SHIELDES_UPSTREAM_RETRIES=3 " in note_with(spec, "router_settings.num_retries 3 not imported")
    assert "set SHIELDES_UPSTREAM_TIMEOUT=60 " in note_with(spec, "router_settings.timeout 60 not imported")
    note_with(spec, "litellm_settings cache, drop_params not imported: shieldes has no such setting")
    note_with(spec, "general_settings port not imported")
    # usage-based routing has no twin: the note says what shieldes does instead (and sets nothing)
    assert "adaptive" in note_with(spec, "routing_strategy 'usage-based-routing-v2' has no shieldes equivalent")
    assert spec.routing == []
    spec = spec_of("litellm_gemini_anthropic.yaml")  # litellm_settings were dropped without a word
    assert "SHIELDES_UPSTREAM_RETRIES=3" in note_with(spec, "litellm_settings.num_retries")
    assert "SHIELDES_UPSTREAM_TIMEOUT=30" in note_with(spec, "litellm_settings.request_timeout")
    # an entry's request defaults (LiteLLM adds them to each call) are named, with why
    spec = spec_of("litellm_ollama_aliases.yaml")
    assert "sends requests as clients write them" in note_with(
        spec, "model_list[2].litellm_params max_tokens, temperature not imported")
    spec = spec_of("litellm_load_balancer.yaml")
    note_with(spec, "environment_variables REDIS_HOST not imported")
    spec = spec_of("litellm_openai_proxy.yaml")
    note_with(spec, "general_settings.master_key: clients use shieldes virtual keys")
    note_with(spec, "router_settings redis_host not imported")


@pytest.mark.parametrize(("litellm", "shieldes"), [
    ("simple-shuffle", "weighted"), ("latency-based-routing", "least-latency"), ("cost-based-routing", "cost")])
def test_litellm_routing_strategy_is_each_model_groups_strategy(litellm: str, shieldes: str) -> None:
    doc = load_document(MIGRATE / "litellm_openai_proxy.yaml")
    doc["router_settings"]["routing_strategy"] = litellm
    spec = parse(doc, "litellm")[1]
    assert spec.routing == [("gpt-4o", shieldes)]  # the one name several deployments serve
    state = fold(ConfigState(), spec)
    assert state.routing == {"gpt-4o": shieldes}
    assert plan_import(state, spec, "passphrase").commands == []


def test_bifrost_network_proxy_and_other_sections_are_named_with_what_to_set_instead() -> None:
    spec = spec_of("bifrost_network_custom.json")
    at = "providers.openai.network_config"
    assert "SHIELDES_UPSTREAM_TIMEOUT=60" in note_with(spec, f"{at}.default_request_timeout_in_seconds 60")
    assert "SHIELDES_UPSTREAM_RETRIES=3" in note_with(spec, f"{at}.max_retries 3")
    assert "SHIELDES_RETRY_BACKOFF=0.5" in note_with(spec, f"{at}.retry_backoff_initial_ms 500")
    note_with(spec, f"{at} retry_backoff_max_ms not imported")
    note_with(spec, f"{at}.extra_headers not imported")
    note_with(spec, "providers.openai concurrency_and_buffer_size not imported")
    assert "HTTPS_PROXY" in note_with(spec, "providers.mistral.proxy_config not imported")
    note_with(spec, "providers.my-vllm.custom_provider_config allowed_requests not imported")
    spec = spec_of("bifrost_e2e.json")
    assert "shieldes mcp add" in note_with(spec, "mcp.client_configs[0] ('sse_mcp', connection_type sse) not imported")
    note_with(spec, "'client', 'config_store' not imported")
    spec = spec_of("bifrost_virtualkeys.json")
    assert "no plugins" in note_with(spec, "'plugins' section not imported")
    doc = {"providers": {"vertex": {"keys": [{"name": "v", "models": ["*"], "blacklisted_models": ["claude-opus-4"],
                                              "vertex_key_config": {"project_id": "p", "region": "global"}}]}}}
    assert "--models" in note_with(parse(doc, "bifrost")[1], "providers.vertex.keys[0].blacklisted_models")


def test_one_node_setting_given_per_provider_is_one_note_with_the_largest_value() -> None:
    spec = parse(load_document(Path(__file__).parent.parent / "data" / "bifrost_config.json"), "bifrost")[1]
    note = note_with(spec, "SHIELDES_UPSTREAM_TIMEOUT")
    assert note.startswith("providers.openai.network_config.default_request_timeout_in_seconds 30, "
                           "providers.vllm-local.network_config.default_request_timeout_in_seconds 60 not imported")
    assert "set SHIELDES_UPSTREAM_TIMEOUT=60 (seconds an upstream call may take; the largest the file gives)" in note


def test_litellm_ollama_entries_reach_ollamas_openai_api_under_the_servers_root() -> None:
    # LiteLLM calls Ollama's own API (/api/chat) at api_base, the server's root; its OpenAI API is /v1
    # (shieldes called http://localhost:11434/chat/completions); ollama_chat/ was skipped as unsupported
    spec = spec_of("litellm_oss_crs.yaml")
    ollama = {p.name: (p.base_url, p.models) for p in spec.providers if p.name.startswith("ollama")}
    assert ollama == {"ollama": ("http://localhost:11434/v1", ("codellama",)),
                      "ollama_chat": ("http://localhost:11434/v1", ("llama3.1",))}
    assert spec.skipped == []
    # an OpenAI-compatible api_base is still used as written (the openai SDK's base_url)
    assert {p.base_url for p in spec.providers if p.name.startswith("openai")} == {
        "https://api.openai.com/v1", "https://my-azure-endpoint/openai/v1", "http://localhost:8000/v1"}


def test_litellm_entra_deployments_get_no_key_and_model_group_aliases_become_aliases() -> None:
    spec = spec_of("litellm_entra_prices.yaml")
    entra = {p.name: p for p in spec.providers}["azure"]
    # Entra ID tokens, not a key: it was given env:AZURE_API_KEY "as LiteLLM does", a key LiteLLM never reads
    assert dict(entra.options)["auth"] == "entra" and entra.secret.describe() == "no key"
    assert not any("AZURE_API_KEY" in n and "model_list[0]" in n for n in spec.notes)
    # model_group_alias: the names clients use for a model group (it was a note, and they got 404)
    aliases = {a.name: (a.targets, a.fallbacks) for a in spec.aliases}
    assert aliases["gpt-4"] == aliases["gpt-4-turbo"] == aliases["gpt-4o"] == (
        (("azure", "gpt-4o-prod", 1.0),), ())
    note_with(spec, "model_group_alias['gpt-4-turbo'].hidden not imported")
    state = fold(ConfigState(), spec)
    assert state.aliases["gpt-4"].targets == state.aliases["gpt-4o"].targets
    prices = {m: (p.input_per_1m, p.output_per_1m, p.cache_read_per_1m) for m, p in state.pricing.items()}
    assert prices["gpt-4o-prod"] == (2.5, 10.0, 1.25)  # o3-mini's equals the shipped price: nothing to set


@pytest.mark.parametrize(("groups", "message"), [
    ({"gpt-4": "gpt-5"}, r"model_group_alias\['gpt-4'\] names 'gpt-5', which no model_list entry has"),
    ({"o3-mini": "gpt-4o"}, r"'o3-mini' is also a model_name of model_list"),
    (["gpt-4"], r"model_group_alias must map a name to a model_name"),
])
def test_a_model_group_alias_naming_no_group_is_refused(groups: object, message: str) -> None:
    doc = load_document(MIGRATE / "litellm_entra_prices.yaml")
    doc["router_settings"]["model_group_alias"] = groups
    with pytest.raises(ImportRejected, match=message):
        parse(doc, "litellm")


def test_bifrost_http_mcp_servers_are_registered_and_the_others_named() -> None:
    spec = spec_of("bifrost_mcp_governance.json")
    [github] = spec.mcp_servers  # it was a note saying to create virtual keys
    assert (github.name, github.url, dict(github.headers)["Authorization"].env_var) == (
        "github", "https://api.githubcopilot.com/mcp/", "GITHUB_MCP_TOKEN")
    assert "connection_type stdio" in note_with(spec, "mcp.client_configs[1] ('filesystem'")
    state = fold(ConfigState(), spec)
    assert (state.mcp_servers["github"].url, dict(state.mcp_servers["github"].headers)) == (
        "https://api.githubcopilot.com/mcp", {"Authorization": "env:GITHUB_MCP_TOKEN"})
    assert plan_import(state, spec, None).commands == []  # again: unchanged
    # another gateway's file never repoints a server registered here
    doc = load_document(MIGRATE / "bifrost_mcp_governance.json")
    doc["mcp"]["client_configs"][0]["connection_string"] = "https://mcp.example.com/mcp"
    with pytest.raises(ImportRejected, match=r"MCP server 'github' already exists here .* would repoint it"):
        plan_import(state, parse(doc, "bifrost")[1], None)


def test_bare_names_shared_by_pinned_wildcard_routes_are_said() -> None:
    # LiteLLM: anthropic/* and groq/* serve only names asked with their prefix, * goes to openai; the
    # shieldes patterns all serve bare names, so openai's share them: said, with what to do instead
    spec = spec_of("litellm_wildcards.yaml")
    note = note_with(spec, "bare names matching '*' (provider 'openai') are shared with anthropic, groq")
    assert "shieldes provider update anthropic --models 'FAMILY-*'" in note
    doc = load_document(MIGRATE / "litellm_wildcards.yaml")
    del doc["model_list"][2]  # no bare route: nothing is shared
    assert not any("are shared with" in n for n in parse(doc, "litellm")[1].notes)


def test_bifrost_governance_teams_are_created_and_virtual_keys_listed_with_their_create_commands() -> None:
    spec = spec_of("bifrost_mcp_governance.json")
    plan = plan_import(ConfigState(), spec, None)
    rows = {(c.kind, c.name): (c.action, c.detail) for c in plan.changes if c.kind in ("team", "key")}
    # the whole section was a note: the team (and its budget) is made, the key's command is printed
    assert rows == {("team", "engineering"): ("add", "budget $500/1mo"),
                    ("key", "eng-app"): ("missing", "create it: shieldes key create --name eng-app --models "
                                                    "gpt-4o-mini --rpm 600 --team engineering")}
    with_secrets(spec, {})  # its value is env.BIFROST_VK_ENG, not set here: a new secret, and the note says so
    note_with(spec, "virtual keys eng-app (BIFROST_VK_ENG): the variable holding the key is not set here")
    state = fold(ConfigState(), spec)
    assert [(t.name, t.budget) for t in state.teams.values()] == [
        ("engineering", state.teams[state.team_ids_by_name["engineering"]].budget)]
    budget = state.teams[state.team_ids_by_name["engineering"]].budget
    assert budget is not None and (budget.amount_usd, budget.period) == (500.0, "1mo")
    # a key that reached only some providers' every model is said to widen, with what to write
    spec = spec_of("bifrost_virtualkeys.json")
    assert "--models" in note_with(spec, "governance.virtual_keys[0]: the key may use every model of azure")
    doc = load_document(MIGRATE / "bifrost_mcp_governance.json")
    doc["governance"]["budgets"][0]["reset_duration"] = "1h"
    doc["governance"]["rate_limits"][0]["request_reset_duration"] = "1h"
    spec = parse(doc, "bifrost")[1]
    assert spec.teams[0].budget is None and spec.keys[0].rpm is None
    note_with(spec, "budget 'budget-eng' ($500 per 1h) not imported")
    note_with(spec, "rate limit 'rl-eng' request_max_limit 600 per 1h not imported")
    doc["governance"]["virtual_keys"][0]["team_id"] = "team-x"
    with pytest.raises(ImportRejected, match=r"governance\.virtual_keys\[0\]\.team_id 'team-x' names no team"):
        parse(doc, "bifrost")


def _paths(node: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if at:
        yield at
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield from _paths(value, (*at, key))


@pytest.mark.parametrize("name", sorted(p.name for p in MIGRATE.iterdir() if p.suffix in (".yaml", ".json")))
def test_any_value_of_a_collected_config_gone_wrong_is_refused_in_a_sentence_never_a_traceback(name: str) -> None:
    """Every value of the file replaced, in turn, by one of the wrong type: the import either takes
    it or refuses it with an ImportRejected (one line naming the entry), never another exception."""
    from shieldes.errors import ShieldesError

    doc = load_document(MIGRATE / name)
    for at in list(_paths(doc)):
        for wrong in (None, 7, True, 1.5, "x", [], {}, [1], {"a": 1}):
            changed = copy.deepcopy(doc)
            node = changed
            for key in at[:-1]:
                node = node[key]
            node[at[-1]] = wrong
            with contextlib.suppress(ShieldesError):  # no key: a plaintext one is refused (encrypting is slow)
                plan_import(ConfigState(), parse(changed, "auto")[1], None)


def test_two_entries_pricing_one_model_differently_keep_the_later_price_and_say_so() -> None:
    """LiteLLM prices each deployment; shieldes prices a model once: the later price is imported
    and a note names both (the earlier one was dropped without a word)."""
    doc: dict[str, Any] = {"model_list": [
        {"model_name": "fast", "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/K",
                                                 "api_base": base, "input_cost_per_token": cost,
                                                 "output_cost_per_token": cost * 4}}
        for base, cost in (("http://a.test/v1", 0.000002), ("http://b.test/v1", 0.000003))]}
    spec = parse(doc, "litellm")[1]
    assert [(p.model, p.input_per_1m, p.output_per_1m) for p in spec.prices] == [("gpt-4o", 3.0, 12.0)]
    [note] = [n for n in spec.notes if "priced" in n]
    assert "$3/$12" in note and "$2/$8" in note and "shieldes pricing set gpt-4o" in note
    same = {"model_list": doc["model_list"][:1] * 2}  # the same price twice: one price, no note
    assert [n for n in parse(same, "litellm")[1].notes if "priced" in n] == []


def test_an_azure_deployment_is_priced_as_its_model_info_base_model() -> None:
    """LiteLLM costs an Azure deployment (named as its owner likes) as `model_info.base_model`; without
    that price here, a key with a budget was refused (403 model_not_priced) on every call to it."""
    from shieldes.usage.catalog import shipped
    from shieldes.usage.pricing import price_for

    doc: dict[str, Any] = {"model_list": [
        {"model_name": name, "litellm_params": {"model": f"azure/{deployment}", "api_base": "https://r.openai.azure.com",
                                                "api_key": "os.environ/AZURE_API_KEY", "api_version": "2024-10-21"},
         "model_info": {"mode": "chat", "base_model": base}}
        for name, deployment, base in (("gpt-4o", "gpt-4o-prod", "azure/gpt-4o-2024-08-06"),
                                       ("chat", "gpt35-east", "azure/gpt-35-turbo"),
                                       ("mini", "gpt-4o-mini", "azure/gpt-4o-mini"),
                                       ("custom", "ft-model-7", "azure/ft:gpt-4o:acme"))]}
    spec = parse(doc, "litellm")[1]
    state = fold(ConfigState(), spec)
    assert price_for(state.pricing, "gpt-4o-prod") == ("gpt-4o-prod", shipped()["gpt-4o-2024-08-06"].price())
    assert price_for(state.pricing, "gpt35-east") == ("gpt35-east", shipped()["gpt-3.5-turbo"].price())
    assert "gpt-4o-mini" not in state.pricing  # the catalog prices the deployment's own name
    assert price_for(state.pricing, "ft-model-7") is None
    [note] = [n for n in spec.notes if "base_model" in n]
    assert "model_list[3].model_info.base_model 'azure/ft:gpt-4o:acme'" in note
    assert "shieldes pricing set ft-model-7 --input" in note
    # a price the entry gives wins over its base model's
    doc["model_list"][0]["model_info"]["input_cost_per_token"] = 0.000001
    doc["model_list"][0]["model_info"]["output_cost_per_token"] = 0.000002
    state = fold(ConfigState(), parse(doc, "litellm")[1])
    assert (state.pricing["gpt-4o-prod"].input_per_1m, state.pricing["gpt-4o-prod"].output_per_1m) == (1.0, 2.0)


def test_custom_llm_provider_names_the_entrys_provider_over_the_models_prefix() -> None:
    """LiteLLM docs' Bedrock entry names its provider in `custom_llm_provider` and the model by its
    Bedrock id: it was imported as an OpenAI model at api.openai.com (and a vLLM model named
    `org/name` was skipped as provider `org`)."""
    doc: dict[str, Any] = {"model_list": [
        {"model_name": "my-bedrock-model", "litellm_params": {
            "model": "anthropic.claude-3-haiku-20240307-v1:0", "aws_region_name": "us-west-2",
            "custom_llm_provider": "bedrock"}},
        {"model_name": "llama", "litellm_params": {
            "model": "meta-llama/Llama-3.1-8B-Instruct", "api_base": "http://vllm:8000/v1",
            "custom_llm_provider": "hosted_vllm"}},
        {"model_name": "az", "litellm_params": {
            "model": "azure/gpt-4o-dep", "custom_llm_provider": "azure", "api_base": "https://r.openai.azure.com",
            "api_key": "os.environ/AZ", "api_version": "2024-10-21"}}]}
    spec = parse(doc, "litellm")[1]
    assert [(p.kind, p.base_url, p.models, dict(p.options)) for p in spec.providers] == [
        ("bedrock", "https://bedrock-runtime.us-west-2.amazonaws.com", ("anthropic.claude-3-haiku-20240307-v1:0",),
         {"region": "us-west-2"}),
        ("openai", "http://vllm:8000/v1", ("meta-llama/Llama-3.1-8B-Instruct",), {}),
        ("azure", "https://r.openai.azure.com", ("gpt-4o-dep",), {"api_version": "2024-10-21"})]
    assert not spec.skipped and not any("custom_llm_provider" in n for n in spec.notes)
    doc["model_list"][0]["litellm_params"]["custom_llm_provider"] = ["bedrock"]
    with pytest.raises(ImportRejected, match=r"model_list\[0\].litellm_params.custom_llm_provider must be"):
        parse(doc, "litellm")


def test_litellm_bedrock_role_and_runtime_endpoint_are_carried_or_said_as_what_they_are() -> None:
    """aws_role_name (with aws_session_name) was named as a per-request default "shieldes sends as
    clients write them", and aws_bedrock_runtime_endpoint (a VPC endpoint) was dropped, so calls went
    to the public endpoint instead."""
    doc: dict[str, Any] = {"model_list": [
        {"model_name": "claude", "litellm_params": {
            "model": "bedrock/us.anthropic.claude-3-7-sonnet-20250219-v1:0", "aws_region_name": "us-west-2",
            "aws_role_name": "arn:aws:iam::123456789012:role/litellm", "aws_session_name": "litellm"}},
        {"model_name": "haiku-vpc", "litellm_params": {
            "model": "bedrock/anthropic.claude-3-haiku-20240307-v1:0", "aws_region_name": "us-east-1",
            "aws_bedrock_runtime_endpoint": "https://vpce-0a1b.bedrock-runtime.us-east-1.vpce.amazonaws.com/"}}]}
    spec = parse(doc, "litellm")[1]
    assert [(p.base_url, dict(p.options)) for p in spec.providers] == [
        ("https://bedrock-runtime.us-west-2.amazonaws.com", {"region": "us-west-2"}),
        ("https://vpce-0a1b.bedrock-runtime.us-east-1.vpce.amazonaws.com", {"region": "us-east-1"})]
    assert not any("request defaults" in n for n in spec.notes), spec.notes
    [note] = [n for n in spec.notes if "aws_role_name" in n]
    assert note.startswith("model_list[0]: AWS credentials (aws_role_name, aws_session_name) are not imported")
    assert "'arn:aws:iam::123456789012:role/litellm'" in note and "AWS_ROLE_ARN" in note
    doc["model_list"][1]["litellm_params"]["aws_bedrock_runtime_endpoint"] = "os.environ/BEDROCK_ENDPOINT"
    with pytest.raises(ImportRejected, match=r"model_list\[1\].litellm_params.aws_bedrock_runtime_endpoint is "):
        parse(doc, "litellm")


def test_a_litellm_bedrock_api_key_is_the_providers_bedrock_api_key() -> None:
    """LiteLLM sends a Bedrock entry's api_key as a Bedrock API key (bearer); it was dropped without a
    word, so the node signed with whatever AWS credentials it had, or failed."""
    doc: dict[str, Any] = {"model_list": [
        {"model_name": "claude", "litellm_params": {"model": "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
                                                   "aws_region_name": "us-east-1",
                                                   "api_key": "os.environ/AWS_BEARER_TOKEN_BEDROCK"}},
        {"model_name": "nova", "litellm_params": {"model": "bedrock/amazon.nova-lite-v1:0",
                                                 "aws_region_name": "us-east-1"}}]}
    spec = parse(doc, "litellm")[1]
    assert [(p.models, p.secret) for p in spec.providers] == [
        (("anthropic.claude-3-haiku-20240307-v1:0",), SecretSpec(env_var="AWS_BEARER_TOKEN_BEDROCK")),
        (("amazon.nova-lite-v1:0",), SecretSpec())]
    state = fold(ConfigState(), spec)
    assert state.providers["bedrock"].secret_ref == "env:AWS_BEARER_TOKEN_BEDROCK"


def test_litellm_azure_ai_serverless_endpoints_are_openai_compatible_and_foundry_ones_said() -> None:
    """`azure_ai/` (Azure AI serverless models: Mistral, Llama, ...) was skipped as unsupported; LiteLLM
    calls those endpoints as an OpenAI-compatible API at api_base with a bearer key."""
    doc: dict[str, Any] = {"model_list": [
        {"model_name": "mistral-large", "litellm_params": {
            "model": "azure_ai/mistral-large-2407", "api_base": "https://Mistral-large-xyz.eastus2.models.ai.azure.com/",
            "api_key": "os.environ/AZURE_MISTRAL_API_KEY"}},
        {"model_name": "llama", "litellm_params": {
            "model": "azure_ai/Meta-Llama-3.1-70B-Instruct",
            "api_base": "https://Meta-Llama-3-1-70B-abc.eastus2.models.ai.azure.com"}},
        {"model_name": "deepseek", "litellm_params": {
            "model": "azure_ai/DeepSeek-R1", "api_base": "https://res.services.ai.azure.com",
            "api_key": "os.environ/AZURE_AI_API_KEY"}}]}
    spec = parse(doc, "litellm")[1]
    assert [(p.kind, p.base_url, p.secret.env_var, p.models) for p in spec.providers] == [
        ("openai", "https://Mistral-large-xyz.eastus2.models.ai.azure.com", "AZURE_MISTRAL_API_KEY",
         ("mistral-large-2407",)),
        ("openai", "https://Meta-Llama-3-1-70B-abc.eastus2.models.ai.azure.com", "AZURE_AI_API_KEY",
         ("Meta-Llama-3.1-70B-Instruct",))]
    [skipped] = spec.skipped
    assert skipped.startswith("model_list[2] (azure_ai/DeepSeek-R1): an Azure AI Foundry resource endpoint")
    assert "azure/DEPLOYMENT" in skipped
    del doc["model_list"][0]["litellm_params"]["api_base"]
    with pytest.raises(ImportRejected, match=r"model_list\[0\] is an Azure AI model without litellm_params.api_base"):
        parse(doc, "litellm")


def test_one_deployment_with_a_quota_under_two_model_names_is_one_provider_with_one_quota() -> None:
    """An entry with rpm/tpm was a provider of its own per entry, so one Azure deployment listed under
    its own name and a group name (as the LiteLLM export writes it) became two providers, each
    with the whole quota: twice the deployment's capacity, and an export imported back changed."""
    entry = {"model": "azure/gpt-35-1", "api_base": "https://ca.openai.azure.com", "api_key": "os.environ/AZ_CA",
             "api_version": "2024-02-15-preview", "tpm": 80_000}
    doc: dict[str, Any] = {"model_list": [{"model_name": "gpt-3.5-turbo", "litellm_params": entry},
                                          {"model_name": "gpt-35-1", "litellm_params": dict(entry)}]}
    state = fold(ConfigState(), parse(doc, "litellm")[1])
    assert {n: (d.models, d.options["tpm"]) for n, d in state.providers.items()} == {
        "azure-gpt-35-1": (("gpt-35-1",), "80000")}
    assert [t.provider for t in state.aliases["gpt-3.5-turbo"].targets] == ["azure-gpt-35-1"]
    for name in ("litellm_azure_tpm.yaml", "litellm_gemini_anthropic.yaml", "litellm_load_balancer.yaml"):
        state = fold(ConfigState(), spec_of(name))
        exported = export(state, "litellm")[0]
        again = fold(ConfigState(), parse(yaml.safe_load(yaml.safe_dump(exported)), "litellm")[1])
        entries = sorted(map(repr, exported["model_list"]))  # the same entries (their order follows provider names)
        assert sorted(map(repr, export(again, "litellm")[0]["model_list"])) == entries, name
        quotas = sorted((d.base_url, d.secret_ref, d.models, d.options.get("tpm"), d.options.get("rpm"))
                        for d in state.providers.values())
        assert sorted((d.base_url, d.secret_ref, d.models, d.options.get("tpm"), d.options.get("rpm"))
                      for d in again.providers.values()) == quotas, name


LITELLM_KEYS = Path(__file__).parent.parent / "data" / "litellm_keys.json"


def test_litellm_keys_are_created_with_their_stored_hash_and_their_limits() -> None:
    """LiteLLM's /key/list and /team/list answers: each key is created with the hash LiteLLM stores
    (clients keep their key), with its models, limits, budget, team and expiry; the rest is said."""
    fmt, spec = parse(load_document(LITELLM_KEYS), "auto")
    assert fmt == "litellm"
    plan = plan_import(ConfigState(), spec, None)
    assert [(c.kind, c.name, c.action) for c in plan.changes] == [
        ("team", "search", "add"), ("key", "search-app", "add"), ("key", "litellm-6f0c1ab0e5d7", "add"),
        ("key", "hourly", "add")]
    state = fold(ConfigState(), spec)
    keys = {k.name: k for k in state.keys.values()}
    app = keys["search-app"]
    assert (app.key_hash, app.prefix, app.models, app.rpm, app.tpm) == (
        "5f0c1ab0e5d7a0b3e2c4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c6d8e0f2a4b6c8", "sk-...x1Yz", ("gpt-4o", "claude-sonnet"),
        600, 100000)
    assert app.budget is not None and (app.budget.amount_usd, app.budget.period) == (100.0, "30d")
    assert state.teams[app.team_id or ""].name == "search"
    unnamed = keys["litellm-6f0c1ab0e5d7"]
    assert unnamed.models is None and unnamed.budget is not None and unnamed.budget.period == "366d"
    assert keys["hourly"].budget is None
    notes = "\n".join(spec.notes)
    for said in ("teams[0] (search) models, rpm_limit not imported", "keys[0] (search-app) max_parallel_requests "
                 "not imported", "blocked key(s) old not created", "spend so far (search-app $12.5)",
                 "budget $1 per 1h not imported", "all-team-models", "never resets (keys[1]"):
        assert said in notes, said
    assert plan_import(state, spec, None).commands == []  # imported again: nothing to do
    # the answer without return_full_object lists hashes only: said, with the call to make
    with pytest.raises(ImportRejected, match=r"return_full_object=true"):
        parse({"keys": ["5f0c1ab0e5d7a0b3e2c4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c6d8e0f2a4b6c8"]}, "auto")


def test_any_value_of_litellms_keys_gone_wrong_is_refused_in_a_sentence_never_a_traceback() -> None:
    from shieldes.errors import ShieldesError

    doc = load_document(LITELLM_KEYS)
    for at in list(_paths(doc)):
        for wrong in (None, 7, True, 1.5, "x", [], {}, [1], {"a": 1}):
            changed = copy.deepcopy(doc)
            node = changed
            for key in at[:-1]:
                node = node[key]
            node[at[-1]] = wrong
            with contextlib.suppress(ShieldesError):
                state = ConfigState()
                for command in plan_import(state, parse(changed, "auto")[1], None).commands:
                    for event in decide(state, command):
                        state = apply_config(state, event)


def test_a_litellm_key_never_changes_another_key_of_its_name_and_shared_aliases_stay_apart() -> None:
    doc = load_document(LITELLM_KEYS)
    state = ConfigState()
    for e in decide(state, CreateKey("key_1", "search-app", "0" * 64, "sk-shd-abcd")):
        state = apply_config(state, e)
    with pytest.raises(ImportRejected, match=r"keys\[0\] \('search-app'\) has another secret than the key named so"):
        plan_import(state, parse(doc, "litellm")[1], None)
    doc["keys"][2]["key_alias"] = "search-app"  # LiteLLM lets two keys share an alias
    names = [k.name for k in parse(doc, "litellm")[1].keys]
    assert names == ["search-app", "litellm-6f0c1ab0e5d7", "search-app-7f0c1ab0"]


def test_bifrost_virtual_keys_keep_their_values_as_their_secrets() -> None:
    """A Bifrost virtual key's `value` (the key, or env.VAR) is its secret: the key is created with
    its hash, so clients keep it (they were all given new keys)."""
    from shieldes.secrets import hash_key

    doc = load_document(MIGRATE / "bifrost_mcp_governance.json")
    doc["governance"]["virtual_keys"].append({"id": "vk-2", "name": "batch", "value": "sk-bf-0d5e2c1a-77aa"})
    doc["governance"]["virtual_keys"].append({"id": "vk-3", "name": "fresh"})
    spec = parse(doc, "bifrost")[1]
    with_secrets(spec, {"BIFROST_VK_ENG": "sk-bf-9f8e7d6c-11bb"})
    plan = plan_import(ConfigState(), spec, None)
    rows = {c.name: (c.action, c.detail) for c in plan.changes if c.kind == "key"}
    assert rows["eng-app"][0] == "add" and rows["eng-app"][1].endswith("(its secret kept: sk-bf-9f8e)")
    assert rows["batch"] == ("add", "models=all (its secret kept: sk-bf-0d5e)")
    assert rows["fresh"] == ("missing", "create it: shieldes key create --name fresh")
    # x-bf-vk is read as a key header (tests/integration/test_migrated_apps.py): nothing to change
    note_with(spec, "`x-goog-api-key` or Bifrost's own `x-bf-vk` keep working")
    state = fold(ConfigState(), spec)
    hashes = {k.name: (k.key_hash, k.rpm, k.models) for k in state.keys.values()}
    assert hashes == {"eng-app": (hash_key("sk-bf-9f8e7d6c-11bb"), 600, ("gpt-4o-mini",)),
                      "batch": (hash_key("sk-bf-0d5e2c1a-77aa"), None, None)}
    assert plan_import(state, spec, None).commands == []  # imported again: nothing to do


def test_litellm_default_fallbacks_are_each_model_groups_fallbacks_unless_it_has_its_own() -> None:
    """litellm_settings.default_fallbacks was named as a setting shieldes has not; it is the fallback
    list of every model group without one of its own, which shieldes keeps per alias."""
    doc: dict[str, Any] = {"model_list": [
        {"model_name": name, "litellm_params": {"model": f"openai/{model}", "api_key": "os.environ/OPENAI_API_KEY"}}
        for name, model in (("gpt-4o", "gpt-4o"), ("fast", "gpt-4o-mini"), ("gpt-4.1", "gpt-4.1"))],
        "litellm_settings": {"default_fallbacks": ["gpt-4.1"]},
        "router_settings": {"fallbacks": [{"fast": ["gpt-4o"]}]}}
    spec = parse(doc, "litellm")[1]
    # the fallback itself needs none (and, served under its own name, no alias)
    assert {a.name: a.fallbacks for a in spec.aliases} == {"gpt-4o": ("gpt-4.1",), "fast": ("gpt-4o",)}
    assert not any("default_fallbacks" in n for n in spec.notes)
    state = fold(ConfigState(), spec)
    assert state.aliases["gpt-4o"].fallbacks == ("gpt-4.1",) and "gpt-4.1" not in state.aliases
    doc["litellm_settings"]["default_fallbacks"] = {"a": 1}
    with pytest.raises(ImportRejected, match=r"litellm_settings.default_fallbacks must be a list of model_names"):
        parse(doc, "litellm")


def test_the_bifrost_export_warns_of_an_openai_endpoint_without_v1() -> None:
    """Bifrost adds /v1 to an OpenAI-style base URL: an endpoint served without it (Perplexity, an
    Azure AI serverless model) was written without a word, and came back with /v1."""
    state = fold(ConfigState(), spec_of("litellm_enterprise.yaml"))
    exported, warnings = export(state, "bifrost")
    assert exported["providers"]["azure_ai"]["network_config"] == {
        "base_url": "https://Mistral-large-acme.eastus2.models.ai.azure.com"}
    [said] = [w for w in warnings if "does not end in /v1" in w]
    assert said.startswith("provider 'azure_ai': its base URL https://Mistral-large-acme.eastus2.models.ai.azure.com")
    assert "/v1/chat/completions" in said
    assert not [w for w in export(fold(ConfigState(), spec_of("litellm_load_balancer.yaml")), "bifrost")[1]
                if "does not end in /v1" in w]


def test_litellm_access_groups_are_said_with_the_model_names_keys_should_list() -> None:
    """model_info.access_groups (keys reach a group's models by naming the group) was dropped unseen."""
    doc: dict[str, Any] = {"model_list": [
        {"model_name": name, "litellm_params": {"model": f"openai/{name}", "api_key": "os.environ/OPENAI_API_KEY"},
         "model_info": {"access_groups": groups}}
        for name, groups in (("gpt-4o", ["beta-models", "all"]), ("o3", ["beta-models"]), ("gpt-4o-mini", ["all"]))]}
    notes = [n for n in parse(doc, "litellm")[1].notes if "access_groups" in n]
    assert notes == [
        "model_info.access_groups 'beta-models' not imported: a shieldes key lists model names, so give keys that "
        "name 'beta-models' in their models these instead: --models gpt-4o,o3",
        "model_info.access_groups 'all' not imported: a shieldes key lists model names, so give keys that name 'all' "
        "in their models these instead: --models gpt-4o,gpt-4o-mini"]
