"""The importers on configs as teams write them (tests/data/migrate/, sources in its README): what
each maps, and what it names in a note instead of dropping."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shieldes.importers.export import export
from shieldes.importers.plan import plan_import
from shieldes.importers.source import load_document, parse
from shieldes.importers.spec import ImportRejected, ImportSpec
from shieldes.projections.commands import decide
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
