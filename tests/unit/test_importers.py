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
    assert set(by_name) == {"openai", "openai-2", "anthropic", "hosted_vllm"}
    assert by_name["openai"].models == ("gpt-4o", "gpt-4o-mini")
    assert (by_name["openai-2"].base_url, by_name["openai-2"].secret.env_var, by_name["openai-2"].weight) == (
        "https://eu.example-openai-proxy.com/v1", "OPENAI_EU_KEY", 2.0)
    assert by_name["hosted_vllm"].models == ("meta-llama/Llama-3.1-8B-Instruct",)
    assert by_name["hosted_vllm"].secret.env_var is None
    prices = {p.model: (p.input_per_1m, p.output_per_1m) for p in spec.prices}
    assert prices == {"gpt-4o": (2.5, 10.0), "claude-3-5-sonnet-20241022": (3.0, 15.0)}
    # the alias a client used with LiteLLM cannot be kept: the user is told
    assert any("claude-sonnet" in n and "claude-3-5-sonnet-20241022" in n for n in spec.notes)


def test_second_import_changes_nothing() -> None:
    for name in ("bifrost_config.json", "litellm_config.yaml"):
        _, spec = parse(load_document(DATA / name), "auto")
        state = fold(ConfigState(), spec)
        again = plan_import(state, spec, None)
        assert again.commands == [] and {c.action for c in again.changes} == {"unchanged"}


def test_changed_file_updates_only_what_changed() -> None:
    doc = json.loads((DATA / "bifrost_config.json").read_text())
    state = fold(ConfigState(), parse(doc, "bifrost")[1])
    doc["providers"]["anthropic"]["keys"][0]["weight"] = 3
    plan = plan_import(state, parse(doc, "bifrost")[1], None)
    changed = [(c.name, c.action, c.detail) for c in plan.changes if c.action != "unchanged"]
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
        ({"providers": {"openai": {"keys": [{"value": "env.K", "models": ["*"]}]}}}, "every model"),
        ({"providers": {"openai": {"keys": [{"value": "env.K", "models": []}]}}}, "every model"),
        ({"providers": {"openai": {"keys": [{"value": "env.K", "models": "gpt-4o"}]}}}, "list of model"),
        ({"providers": {"openai": {"keys": [{"value": "env.K", "models": ["m"], "weight": 0}]}}}, "> 0"),
        ({"providers": {"ollama": {"keys": [{"value": "", "models": ["m"], "weight": 1}]}}}, "base_url"),
        ({"model_list": [{"model_name": "x", "litellm_params": {"model": "openai/*"}}]}, "wildcard"),
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
    doc = {"model_list": [{"model_name": "g", "litellm_params": {"model": "azure/gpt-4o", "api_key": "x"}}]}
    spec = parse(doc, "litellm")[1]
    assert spec.providers == [] and "azure" in spec.skipped[0]
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
    doc, _ = export(state, "shieldes")
    assert doc["providers"][0]["api_key"] == "encrypted"
    assert set(doc) == {"providers", "pricing", "teams", "keys"}
