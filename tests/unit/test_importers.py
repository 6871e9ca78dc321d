"""Bifrost and LiteLLM files -> shieldes commands: mapping, refusals, idempotence, export round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from shieldes.importers.apply import events_for
from shieldes.importers.export import export
from shieldes.importers.plan import plan_import
from shieldes.importers.source import detect_format, load_document, parse
from shieldes.importers.spec import ImportRejected, ImportSpec
from shieldes.projections.config import apply_config
from shieldes.projections.state import ConfigState
from shieldes.secrets import resolve_secret

DATA = Path(__file__).resolve().parent.parent / "data"


def fold(state: ConfigState, spec: ImportSpec, key: str | None = None) -> ConfigState:
    for event in events_for(state, plan_import(state, spec, key)):
        state = apply_config(state, event)
    return state


def test_bifrost_sample_maps_keys_to_providers() -> None:
    fmt, spec = parse(load_document(DATA / "bifrost_config.json"), "auto")
    assert fmt == "bifrost"
    by_name = {p.name: p for p in spec.providers}
    assert set(by_name) == {"openai-primary", "openai-backup", "anthropic", "vllm-local"}
    primary = by_name["openai-primary"]
    assert (primary.kind, primary.base_url, primary.secret.env_var) == ("openai", "https://api.openai.com/v1",
                                                                         "OPENAI_API_KEY")
    assert (primary.models, primary.weight) == (("gpt-4o", "gpt-4o-mini"), 0.7)
    assert by_name["anthropic"].base_url == "https://api.anthropic.com"
    assert (by_name["vllm-local"].kind, by_name["vllm-local"].base_url) == ("openai", "http://vllm-endpoint:8000/v1")
    assert any("governance" in n for n in spec.notes)


def test_litellm_sample_groups_entries_and_converts_prices() -> None:
    fmt, spec = parse(load_document(DATA / "litellm_config.yaml"), "auto")
    assert fmt == "litellm"
    by_name = {p.name: p for p in spec.providers}
    assert set(by_name) == {"openai-gpt-4o", "openai", "openai-2", "anthropic", "hosted_vllm"}
    # the gpt-4o deployment with `rpm: 480` keeps its own quota, so it is a provider of its own
    assert (by_name["openai-gpt-4o"].models, dict(by_name["openai-gpt-4o"].options)) == (("gpt-4o",), {"rpm": "480"})
    assert (by_name["openai"].models, dict(by_name["openai"].options)) == (("gpt-4o-mini",), {})
    assert (by_name["openai-2"].base_url, by_name["openai-2"].secret.env_var, by_name["openai-2"].weight) == (
        "https://eu.example-openai-proxy.com/v1", "OPENAI_EU_KEY", 2.0)
    assert by_name["hosted_vllm"].models == ("meta-llama/Llama-3.1-8B-Instruct",)
    assert by_name["hosted_vllm"].secret.env_var is None
    prices = {p.model: (p.input_per_1m, p.output_per_1m) for p in spec.prices}
    assert prices == {"gpt-4o": (2.5, 10.0), "claude-3-5-sonnet-20241022": (3.0, 15.0)}
    # the names clients used with LiteLLM are kept as aliases (model groups keep every deployment)
    aliases = {a.name: (a.targets, a.fallbacks) for a in spec.aliases}
    assert aliases == {
        "claude-sonnet": ((("anthropic", "claude-3-5-sonnet-20241022", 1.0),), ("gpt-4o",)),
        "llama": ((("hosted_vllm", "meta-llama/Llama-3.1-8B-Instruct", 1.0),), ()),
        "gpt-4o": ((("openai-gpt-4o", "gpt-4o", 1.0), ("openai-2", "gpt-4o", 2.0)), ("claude-sonnet",)),
    }


def test_second_import_changes_nothing() -> None:
    for name in ("bifrost_config.json", "litellm_config.yaml"):
        _, spec = parse(load_document(DATA / name), "auto")
        state = fold(ConfigState(), spec)
        again = plan_import(state, spec, None)
        # a Bifrost virtual key with its value is created with it: the key here is left as it is
        assert again.commands == [] and {c.action for c in again.changes} == {"unchanged"}


def test_changed_file_updates_only_what_changed() -> None:
    doc = json.loads((DATA / "bifrost_config.json").read_text())
    state = fold(ConfigState(), parse(doc, "bifrost")[1])
    doc["providers"]["anthropic"]["keys"][0]["weight"] = 3
    plan = plan_import(state, parse(doc, "bifrost")[1], None)
    changed = [(c.name, c.action, c.detail) for c in plan.changes if c.action not in ("unchanged", "missing")]
    assert changed == [("anthropic", "update", "weight 1 -> 3")]


def test_plaintext_key_needs_encryption_key_and_is_stored_encrypted() -> None:
    _, spec = parse(load_document(DATA / "litellm_plaintext.yaml"), "auto")
    with pytest.raises(ImportRejected, match="SHIELDES_ENCRYPTION_KEY"):
        plan_import(ConfigState(), spec, None)
    state = fold(ConfigState(), spec, "passphrase")
    ref = state.providers["openai"].secret_ref
    assert ref is not None and ref.startswith("enc:") and "sk-plaintext" not in ref
    assert resolve_secret(ref, "passphrase") == "sk-plaintext-do-not-store"
    # encryption is randomized, yet a re-import keeps the stored token
    assert plan_import(state, spec, "passphrase").commands == []


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"providers": {"openai": {"keys": [{"value": "env.K", "models": ["gpt-*"]}]}}},
         "Bifrost matches a key's models exactly"),
        ({"providers": {"openai": {"keys": [{"value": "env.K", "models": "gpt-4o"}]}}}, "list of model"),
        ({"providers": {"openai": {"keys": [{"value": "env.K", "models": ["m"], "weight": 0}]}}}, "> 0"),
        ({"providers": {"ollama": {"keys": [{"value": "", "models": ["m"], "weight": 1}]}}}, "base_url"),
        ({"model_list": [{"model_name": "x", "litellm_params": {"model": "openai/*"}}]}, "renames what it matches"),
        ({"model_list": [{"model_name": "my-*", "litellm_params": {"model": "anthropic/claude-*"}}]},
         "give both the same pattern"),
        ({"model_list": [{"model_name": "*", "litellm_params": {"model": "*"}}]}, "naming no provider"),
        ({"model_list": [{"model_name": "fo::*:static::*", "litellm_params": {"model": "openai/fo::*:static::*"}}]},
         "a shieldes pattern has one '\\*', at the end"),
        ({"model_list": [{"model_name": "x"}]}, "litellm_params"),
        ({"something": 1}, "--format"),
        ({"providers": {"openai": {"keys": [{"value": "env.BAD-NAME", "models": ["m"], "weight": 1}]}}},
         "environment variable name"),
    ],
)
def test_bad_files_are_refused_with_a_reason(doc: object, message: str) -> None:
    with pytest.raises(ImportRejected, match=message):
        _, spec = parse(doc, "auto")
        plan_import(ConfigState(), spec, None)


def test_unsupported_provider_types_are_listed_as_skipped() -> None:
    doc = {"model_list": [{"model_name": "g", "litellm_params": {"model": "cohere/command-r", "api_key": "x"}}]}
    spec = parse(doc, "litellm")[1]
    assert spec.providers == [] and "cohere" in spec.skipped[0]
    assert detect_format(doc) == "litellm"


@pytest.mark.parametrize("fmt", ["bifrost", "litellm"])
def test_export_reimports_unchanged_and_has_no_plaintext(fmt: str) -> None:
    _, spec = parse(load_document(DATA / "litellm_config.yaml"), "auto")
    _, plain = parse(load_document(DATA / "litellm_plaintext.yaml"), "auto")
    plain.providers[0] = type(plain.providers[0])(**{**plain.providers[0].__dict__, "name": "secret-one"})
    state = fold(fold(ConfigState(), spec), plain, "passphrase")
    doc, warnings = export(state, fmt)
    text = json.dumps(doc) if fmt == "bifrost" else yaml.safe_dump(doc)
    assert "sk-plaintext" not in text and "enc:" not in text
    assert any("secret-one" in w for w in warnings)
    again = parse(yaml.safe_load(text), fmt)[1]
    secret_url = state.providers["secret-one"].base_url
    again.providers = [p for p in again.providers if p.base_url != secret_url]
    kept = {(d.base_url, d.models) for d in state.providers.values() if d.name != "secret-one"}
    assert {(p.base_url, p.models) for p in again.providers} == kept
    if fmt == "bifrost":  # Bifrost keeps provider names, so a re-import changes nothing
        assert plan_import(state, again, None).commands == []
    else:  # LiteLLM carries prices too (Bifrost's config.json has none)
        assert {p.model for p in again.prices} == set(state.pricing)


def test_shieldes_export_lists_everything_without_secrets() -> None:
    _, plain = parse(load_document(DATA / "litellm_plaintext.yaml"), "auto")
    state = fold(ConfigState(), plain, "passphrase")
    doc, warnings = export(state, "shieldes")
    assert doc["providers"][0]["api_key"] == "encrypted"
    assert "sk-plaintext" not in json.dumps(doc) and "enc:" not in json.dumps(doc)
    assert list(doc) == ["format", "version", "providers", "aliases", "pricing", "routing", "teams", "keys",
                         "mcp_servers"]
    assert (doc["format"], doc["version"]) == ("shieldes", 2)
    # what to do with the key left out is said where the file is written
    assert len(warnings) == 1 and '"api_key": "env:VAR"' in warnings[0]


def test_litellm_aliases_keep_public_names_and_fallback_cycles_import() -> None:
    _, spec = parse(load_document(DATA / "litellm_config.yaml"), "auto")
    state = fold(ConfigState(), spec)
    assert state.aliases["gpt-4o"].fallbacks == ("claude-sonnet",)
    assert state.aliases["claude-sonnet"].fallbacks == ("gpt-4o",)
    targets = [(t.provider, t.weight) for t in state.aliases["gpt-4o"].targets]
    assert targets == [("openai-gpt-4o", 1.0), ("openai-2", 2.0)]


def test_an_existing_provider_is_never_repointed_and_keeps_its_models() -> None:
    from shieldes.projections.commands import decide
    from shieldes.projections.shared_commands import AddProvider

    state = ConfigState()
    for e in decide(state, AddProvider("openai", "openai", "https://api.openai.com/v1", "env:OPENAI_API_KEY",
                                       ("o3", "gpt-4o"))):
        state = apply_config(state, e)
    doc = load_document(DATA / "litellm_config.yaml")
    del doc["model_list"][0]["litellm_params"]["rpm"]  # one provider for both openai entries
    _, spec = parse(doc, "litellm")
    plan = plan_import(state, spec, None)
    [change] = [c for c in plan.changes if c.kind == "provider" and c.name == "openai"]
    assert (change.action, change.detail) == ("update", "models o3,gpt-4o + gpt-4o-mini (existing models kept)")
    after = fold(state, spec)
    assert after.providers["openai"].models == ("o3", "gpt-4o", "gpt-4o-mini")
    assert after.providers["openai"].base_url == "https://api.openai.com/v1"

    moved = ConfigState()
    for e in decide(moved, AddProvider("openai", "openai", "https://proxy.internal/v1", "env:OPENAI_API_KEY",
                                       ("gpt-4o",))):
        moved = apply_config(moved, e)
    with pytest.raises(ImportRejected, match=r"already exists at https://proxy\.internal/v1 .* would repoint it"):
        plan_import(moved, spec, None)


def test_litellm_cloud_entries_become_azure_bedrock_gemini_vertex_providers() -> None:
    doc = {"model_list": [
        {"model_name": "gpt-4o", "litellm_params": {"model": "azure/prod-gpt4o", "api_base": "https://r.openai.azure.com",
                                                    "api_version": "2024-10-21", "api_key": "os.environ/AZ_KEY"}},
        {"model_name": "sonnet", "litellm_params": {"model": "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0",
                                                    "aws_region_name": "eu-west-1"}},
        {"model_name": "gemini-2.5-flash", "litellm_params": {"model": "gemini/gemini-2.5-flash"}},
        {"model_name": "pro", "litellm_params": {"model": "vertex_ai/gemini-2.5-pro", "vertex_project": "p1",
                                                 "vertex_location": "europe-west4",
                                                 "vertex_credentials": "/etc/sa.json"}},
    ]}
    spec = parse(doc, "litellm")[1]
    state = fold(ConfigState(), spec)
    az, br, gm, vx = (state.providers[n] for n in ("azure", "bedrock", "gemini", "vertex_ai"))
    assert (az.kind, az.base_url, dict(az.options), az.secret_ref) == (
        "azure", "https://r.openai.azure.com", {"api_version": "2024-10-21"}, "env:AZ_KEY")
    assert (br.kind, br.base_url, br.models) == ("bedrock", "https://bedrock-runtime.eu-west-1.amazonaws.com",
                                                 ("anthropic.claude-3-5-sonnet-20240620-v1:0",))
    assert (gm.kind, gm.secret_ref) == ("gemini", "env:GEMINI_API_KEY")
    assert dict(vx.options) == {"credentials_file": "/etc/sa.json", "location": "europe-west4", "project": "p1"}
    assert vx.base_url == "https://europe-west4-aiplatform.googleapis.com"
    assert set(state.aliases) == {"gpt-4o", "sonnet", "pro"}
    assert plan_import(state, spec, None).commands == []  # idempotent


def test_litellm_config_prices_carry_cache_costs_and_keep_prices_in_force() -> None:
    doc = {"model_list": [
        {"model_name": "house", "litellm_params": {"model": "openai/house", "api_key": "os.environ/K"},
         "model_info": {"input_cost_per_token": 2e-06, "output_cost_per_token": 8e-06,
                        "cache_read_input_token_cost": 5e-07, "cache_creation_input_token_cost": 2.5e-06}},
        # equal to the shipped default, cache prices not given: nothing to write
        {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/K",
                                                    "input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05}},
    ]}
    spec = parse(doc, "litellm")[1]
    plan = plan_import(ConfigState(), spec, None)
    assert {c.name: c.action for c in plan.changes if c.kind == "pricing"} == {"house": "add", "gpt-4o": "unchanged"}
    state = fold(ConfigState(), spec)
    assert state.pricing["house"].fields() == {"input_per_1m": 2.0, "output_per_1m": 8.0, "cache_read_per_1m": 0.5,
                                               "cache_write_per_1m": 2.5}
    assert "gpt-4o" not in state.pricing


def test_bifrost_cloud_keys_become_azure_bedrock_vertex_gemini_providers_and_model_groups() -> None:
    fmt, spec = parse(load_document(DATA / "bifrost_cloud.json"), "auto")
    assert fmt == "bifrost"
    state = fold(ConfigState(), spec)
    p = state.providers
    assert (p["azure-eu"].kind, p["azure-eu"].base_url, dict(p["azure-eu"].options), p["azure-eu"].secret_ref) == (
        "azure", "https://eu-resource.openai.azure.com", {"api_version": "2024-10-21"}, "env:AZURE_EU_KEY")
    assert p["azure-eu"].models == ("prod-gpt4o", "embed-small")  # aliases and the older `deployments`
    # "*" with aliases: the aliased models and the pattern *; Entra ID settings: tokens from azure-identity's chain
    assert (p["azure-us"].models, dict(p["azure-us"].options)) == (("gpt4o-us", "*"), {"api_version": "2024-10-21",
                                                                                      "auth": "entra"})
    assert p["azure-us"].secret_ref == "env:AZURE_US_KEY"
    assert (p["bedrock"].base_url, dict(p["bedrock"].options), p["bedrock"].secret_ref) == (
        "https://bedrock-runtime.eu-central-1.amazonaws.com", {"region": "eu-central-1"}, None)
    assert (p["vertex"].base_url, dict(p["vertex"].options)) == (
        "https://europe-west4-aiplatform.googleapis.com", {"location": "europe-west4", "project": "acme-ai"})
    assert (p["gemini"].base_url, p["gemini"].secret_ref) == ("https://generativelanguage.googleapis.com/v1beta",
                                                              "env:GEMINI_API_KEY")
    # the names clients use: gpt-4o is a model group over OpenAI and both Azure deployments, by key weight
    gpt4o = state.aliases["gpt-4o"]
    assert [(t.provider, t.model, t.weight) for t in gpt4o.targets] == [
        ("openai", "gpt-4o", 1.0), ("azure-eu", "prod-gpt4o", 3.0), ("azure-us", "gpt4o-us", 1.0)]
    assert [(t.provider, t.model) for t in state.aliases["text-embedding-3-small"].targets] == [
        ("azure-eu", "embed-small")]
    assert [(t.provider, t.model) for t in state.aliases["claude-sonnet"].targets] == [
        ("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0")]
    assert set(state.aliases) == {"gpt-4o", "text-embedding-3-small", "claude-sonnet"}
    notes = " ".join(spec.notes)
    assert "AWS credentials are not imported" in notes and "auth_credentials not imported" in notes
    assert "Entra ID credentials are not imported" in notes
    assert plan_import(state, spec, None).commands == []  # idempotent


def test_bifrost_cloud_settings_must_be_written_in_the_file() -> None:
    doc = {"providers": {"azure": {"keys": [{"value": "env.K", "models": ["m"],
                                             "azure_key_config": {"endpoint": "env.AZURE_ENDPOINT"}}]}}}
    with pytest.raises(ImportRejected, match=r"endpoint is 'env.AZURE_ENDPOINT'; write the value itself"):
        parse(doc, "bifrost")
    doc = {"providers": {"vertex": {"keys": [{"models": ["gemini-2.5-pro"], "vertex_key_config": {}}]}}}
    with pytest.raises(ImportRejected, match="project_id is missing"):
        parse(doc, "bifrost")


def test_import_never_takes_a_model_from_an_existing_provider_and_says_what_an_alias_was() -> None:
    from shieldes.projections.commands import decide
    from shieldes.projections.shared_commands import AddProvider, SetModelAlias
    from shieldes.projections.state import AliasTarget

    legacy = ConfigState()
    for e in decide(legacy, AddProvider("legacy", "openai", "https://proxy.internal/v1", "env:K", ("gpt-4o",))):
        legacy = apply_config(legacy, e)
    _, spec = parse(load_document(DATA / "bifrost_cloud.json"), "auto")
    # the file makes gpt-4o an alias over its own deployments: legacy's gpt-4o traffic would move
    with pytest.raises(ImportRejected, match=r"take that model's requests away from existing provider\(s\) legacy"):
        plan_import(legacy, spec, None)

    state = fold(ConfigState(), spec)
    for e in decide(state, SetModelAlias("claude-sonnet", (AliasTarget("bedrock", "amazon.nova-pro-v1:0", 1.0),))):
        state = apply_config(state, e)
    [change] = [c for c in plan_import(state, spec, None).changes if c.action != "unchanged"]
    assert (change.kind, change.name, change.action) == ("alias", "claude-sonnet", "update")
    assert change.detail == ("bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0:1 "
                             "(was bedrock/amazon.nova-pro-v1:0:1)")


def test_cloud_providers_and_aliases_export_and_import_back() -> None:
    _, spec = parse(load_document(DATA / "bifrost_cloud.json"), "auto")
    state = fold(ConfigState(), spec)

    doc, warnings = export(state, "bifrost")  # names, settings, key aliases: back to the same config
    assert doc["providers"]["azure-us"]["keys"][0]["azure_key_config"]["client_id"] == "env.AZURE_CLIENT_ID"
    assert plan_import(state, parse(json.loads(json.dumps(doc)), "bifrost")[1], None).commands == []
    assert warnings == []

    doc, warnings = export(state, "litellm")  # LiteLLM names providers by kind: same endpoints, models, aliases
    again = fold(ConfigState(), parse(yaml.safe_load(yaml.safe_dump(doc)), "litellm")[1])

    def shape(s: ConfigState) -> set[tuple[object, ...]]:
        return {(d.kind, d.base_url, d.models, tuple(sorted(d.options.items())), d.weight)
                for d in s.providers.values()}

    assert shape(again) == shape(state)
    served = {n: sorted((t.model, t.weight) for t in a.targets) for n, a in state.aliases.items()}
    assert {n: sorted((t.model, t.weight) for t in a.targets) for n, a in again.aliases.items()} == served

    doc, _ = export(state, "shieldes")
    assert [a["name"] for a in doc["aliases"]] == ["claude-sonnet", "gpt-4o", "text-embedding-3-small"]
    assert {p["name"]: p["options"] for p in doc["providers"]}["vertex"] == {"location": "europe-west4",
                                                                             "project": "acme-ai"}


def test_litellm_wildcard_routes_import_as_provider_patterns_and_export_back() -> None:
    doc = {"model_list": [
        {"model_name": "anthropic/*",
         "litellm_params": {"model": "anthropic/*", "api_key": "os.environ/ANTHROPIC_KEY"}},
        {"model_name": "claude-opus-*", "litellm_params": {
            "model": "anthropic/claude-opus-*", "api_key": "os.environ/ANTHROPIC_KEY",
            "input_cost_per_token": 5e-06, "output_cost_per_token": 2.5e-05}},
        {"model_name": "*", "litellm_params": {"model": "openai/*", "api_key": "os.environ/OPENAI_KEY"}},
        {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/OPENAI_KEY"}},
    ]}
    spec = parse(doc, "litellm")[1]
    state = fold(ConfigState(), spec)
    assert state.providers["anthropic"].models == ("*", "claude-opus-*")
    assert state.providers["openai"].models == ("*", "gpt-4o")
    assert state.aliases == {}  # a pattern is no name: no alias
    assert state.pricing["claude-opus-*"].fields() == {"input_per_1m": 5.0, "output_per_1m": 25.0}
    assert any("anthropic/NAME reach provider 'anthropic'" in n for n in spec.notes), spec.notes

    out, warnings = export(state, "litellm")
    assert {(e["model_name"], e["litellm_params"]["model"]) for e in out["model_list"]} == {
        ("*", "anthropic/*"), ("claude-opus-*", "anthropic/claude-opus-*"), ("*", "openai/*"),
        ("gpt-4o", "openai/gpt-4o")}
    assert warnings == []
    again = parse(yaml.safe_load(yaml.safe_dump(out)), "litellm")[1]
    assert plan_import(state, again, None).commands == []  # the same providers, patterns and prices


def test_a_litellm_route_named_by_provider_must_land_on_a_provider_of_that_name_or_kind() -> None:
    groq = {"model_name": "groq/*", "litellm_params": {"model": "groq/*", "api_key": "os.environ/C"}}
    openai = {"model_name": "openai/*", "litellm_params": {"model": "openai/*", "api_key": "os.environ/B"}}
    first = {"model_name": "gpt-4o", "litellm_params": {"model": "openai/gpt-4o", "api_key": "os.environ/A"}}
    # groq is of kind openai, named groq: groq/NAME pins it; openai/* on a second key: openai/NAME pins by kind
    state = fold(ConfigState(), parse({"model_list": [first, groq, openai]}, "litellm")[1])
    assert (state.providers["groq"].models, state.providers["openai-2"].models) == (("*",), ("*",))
    llama = {"model_name": "llama-3", "litellm_params": {"model": "groq/llama-3", "api_key": "os.environ/D"}}
    with pytest.raises(ImportRejected, match="its provider is named 'groq-2'"):
        parse({"model_list": [llama, groq]}, "litellm")


def test_bifrost_every_model_key_imports_as_the_pattern_star_and_patterns_export_as_bifrost_says_them() -> None:
    doc = {"providers": {
        "openai": {"keys": [{"name": "main", "value": "env.OPENAI_KEY", "models": ["*"], "weight": 1}]},
        "anthropic": {"keys": [{"name": "k", "value": "env.ANTHROPIC_KEY", "weight": 1}]},  # no list: every model
    }}
    spec = parse(doc, "bifrost")[1]
    state = fold(ConfigState(), spec)
    assert state.providers["openai"].models == ("*",) and state.providers["anthropic"].models == ("*",)
    assert any("openai/NAME reach it as in Bifrost" in n for n in spec.notes), spec.notes
    out, warnings = export(state, "bifrost")
    assert out["providers"]["openai"]["keys"][0]["models"] == ["*"] and warnings == []
    assert plan_import(state, parse(json.loads(json.dumps(out)), "bifrost")[1], None).commands == []

    # a narrower pattern: Bifrost has "*" alone, so the key serves every model of its provider, said in a warning
    from shieldes.projections.commands import decide
    from shieldes.projections.shared_commands import UpdateProvider
    for event in decide(state, UpdateProvider("anthropic", None, models=("claude-*", "claude-3-5-haiku"))):
        state = apply_config(state, event)
    out, warnings = export(state, "bifrost")
    assert out["providers"]["anthropic"]["keys"][0]["models"] == ["*", "claude-3-5-haiku"]
    assert warnings == ["provider 'anthropic': pattern 'claude-*' is exported as \"*\" (every model of the key): "
                        "Bifrost matches a key's models exactly or with \"*\" alone"]


def test_a_price_pattern_no_provider_serves_is_named_in_the_litellm_export_warnings() -> None:
    from shieldes.events.catalog import PricingSet
    state = apply_config(ConfigState(), PricingSet("claude-opus-*", 5.0, 25.0))
    _, warnings = export(state, "litellm")
    assert warnings == ["price pattern 'claude-opus-*' not exported: LiteLLM prices a model_list entry, and no "
                        "provider serves that pattern (set it again after import: `shieldes pricing set`)"]


def test_litellm_export_and_import_carry_tier_multipliers_and_hosted_tool_prices() -> None:
    from shieldes.events.catalog import PricingSet

    state = fold(ConfigState(), parse({"model_list": [
        {"model_name": "house", "litellm_params": {"model": "openai/house", "api_key": "os.environ/K"}},
        {"model_name": "claude-x", "litellm_params": {"model": "vertex_ai/claude-x", "vertex_project": "p",
                                                      "vertex_location": "europe-west1"}}]}, "litellm")[1])
    state = apply_config(state, PricingSet("house", 2.0, 8.0, 0.5, multipliers={"flex": 0.5, "priority": 1.75},
                                           per_web_search=0.01, per_use={"file_search": 0.0025, "container": 0.03}))
    state = apply_config(state, PricingSet("claude-x", 3.0, 15.0, multipliers={"regional": 1.1}))
    free = apply_config(state, PricingSet("house", 0.0, 1.0, multipliers={"flex": 0.5}))
    params = next(e["litellm_params"] for e in export(free, "litellm")[0]["model_list"] if e["model_name"] == "house")
    assert "input_cost_per_token_flex" not in params  # no input price to read a factor over: left out
    parse(yaml.safe_load(yaml.safe_dump(export(free, "litellm")[0])), "litellm")  # and it imports back
    out, warnings = export(state, "litellm")
    params = next(e["litellm_params"] for e in out["model_list"] if e["model_name"] == "house")
    assert params["input_cost_per_token_flex"] == pytest.approx(1e-06)
    assert params["output_cost_per_token_priority"] == pytest.approx(1.4e-05)
    assert params["cache_read_input_token_cost_flex"] == pytest.approx(2.5e-07)
    assert params["search_context_cost_per_query"]["search_context_size_medium"] == 0.01
    assert (params["file_search_cost_per_1k_calls"], params["code_interpreter_cost_per_session"]) == (2.5, 0.03)
    assert any("claude-x: its regional multiplier is not exported" in w for w in warnings), warnings

    again = parse(yaml.safe_load(yaml.safe_dump(out)), "litellm")[1]
    assert not any("house" in n and "not imported" in n for n in again.notes), again.notes
    fresh = fold(ConfigState(), again)
    assert fresh.pricing["house"] == state.pricing["house"]  # every price, multiplier and per-use price back
    assert plan_import(state, again, None).commands == []


def test_litellm_price_file_hosted_tool_prices_import_as_per_use_prices() -> None:
    from shieldes.importers.prices import parse_litellm_prices

    doc = {"gpt-5": {"mode": "responses", "litellm_provider": "openai", "input_cost_per_token": 1.25e-06,
                     "output_cost_per_token": 1e-05, "file_search_cost_per_1k_calls": 2.5,
                     "code_interpreter_cost_per_session": 0.03,
                     "search_context_cost_per_query": {"search_context_size_low": 0.01,
                                                       "search_context_size_medium": 0.01}},
           "gemini-2.5-pro": {"mode": "chat", "litellm_provider": "vertex_ai-language-models",
                              "input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05,
                              "search_context_cost_per_query": {"search_context_size_medium": 0.035}},
           "mistral-large": {"mode": "chat", "litellm_provider": "mistral", "input_cost_per_token": 2e-06,
                             "output_cost_per_token": 6e-06,
                             "search_context_cost_per_query": {"search_context_size_medium": 0.05}}}
    prices = {p.model: p for p in parse_litellm_prices(doc)[0]}
    assert prices["gpt-5"].per_use == (("container", 0.03), ("file_search", 0.0025))
    assert prices["gpt-5"].per_web_search == 0.01
    assert prices["gemini-2.5-pro"].per_web_search == 0.035  # grounding is billed per search too
    assert prices["mistral-large"].per_web_search is None  # no searches counted there
