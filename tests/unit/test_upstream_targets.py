"""The Target of a deployment and model is built once and reused while the deployment's parts and
its key stay the same objects; a changed URL, key or options gets a new one."""

from __future__ import annotations

from dataclasses import replace

from shieldes.gateway.upstream_calls import UpstreamCalls
from shieldes.projections.state import Deployment


def _calls() -> UpstreamCalls:
    calls = UpstreamCalls.__new__(UpstreamCalls)
    calls._secrets = {"env:A": "sk-one"}
    calls._targets = {}
    return calls


def test_a_target_is_reused_until_its_deployment_or_key_changes() -> None:
    calls = _calls()
    dep = Deployment("a", "openai", "http://up.example/v1", "env:A", ("gpt-4o",), 1.0)
    first = calls._target(dep, "gpt-4o")
    assert (first.deployment, first.base_url, first.model, first.api_key) == ("a", "http://up.example/v1", "gpt-4o",
                                                                               "sk-one")
    assert calls._target(dep, "gpt-4o") is first
    assert calls._target(dep, "gpt-4o-mini").model == "gpt-4o-mini"  # another model: its own

    moved = replace(dep, base_url="http://other.example/v1")
    assert calls._target(moved, "gpt-4o").base_url == "http://other.example/v1"
    calls._secrets["env:A"] = "sk-two"  # a key read anew
    assert calls._target(moved, "gpt-4o").api_key == "sk-two"
    tuned = replace(moved, options={"api_version": "2024-10-21"})
    assert calls._target(tuned, "gpt-4o").options == {"api_version": "2024-10-21"}
    assert calls._target(tuned, "gpt-4o") is calls._target(tuned, "gpt-4o")
