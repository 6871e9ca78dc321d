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
