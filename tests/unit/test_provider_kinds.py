"""Provider types and their own settings, decided purely."""

from __future__ import annotations

import pytest

from shieldes.errors import CommandRejected
from shieldes.events.catalog import ProviderAdded, ProviderUpdated
from shieldes.projections.commands import decide
from shieldes.projections.config import apply_config
from shieldes.projections.shared_commands import AddProvider, UpdateProvider
from shieldes.projections.state import ConfigState
from shieldes.providers.azure import deployment_url


def added(command: AddProvider) -> ProviderAdded:
    [event] = decide(ConfigState(), command)
    assert isinstance(event, ProviderAdded)
    return event


def test_default_endpoints_and_options() -> None:
    vertex = added(AddProvider("v", "vertex", None, None, ("gemini-2.5-pro",),
                               options={"project": "p", "location": "europe-west4"}))
    assert vertex.base_url == "https://europe-west4-aiplatform.googleapis.com"
    assert vertex.options == {"location": "europe-west4", "project": "p"}
    gemini = added(AddProvider("g", "gemini", None, "env:K", ("gemini-2.5-flash",)))
    assert gemini.base_url == "https://generativelanguage.googleapis.com/v1beta"


@pytest.mark.parametrize(("command", "message"), [
    (AddProvider("a", "azure", "https://r.openai.azure.com", None, ("d",)), "needs --api-version"),
    (AddProvider("a", "azure", "https://r.openai.azure.com", None, ("d",),
                 options={"api_version": "v", "project": "x"}), "--project does not apply to type 'azure'"),
    (AddProvider("a", "azure", "https://r.openai.azure.com", None, ("d",),
                 options={"api_version": "v", "auth": "magic"}), "--auth must be one of"),
    (AddProvider("a", "azure", None, None, ("d",), options={"api_version": "v"}), "needs --base-url"),
    (AddProvider("v", "vertex", None, None, ("m",), options={"project": "p"}), "needs --location"),
    (AddProvider("o", "openai", "https://x", None, ("m",), options={"project": "p"}),
     "(its options: --region, --rpm, --tpm)"),
    (AddProvider("o", "cohere", "https://x", None, ("m",)), "unknown provider type 'cohere'"),
])
def test_refusals_say_what_to_do(command: AddProvider, message: str) -> None:
    with pytest.raises(CommandRejected) as err:
        decide(ConfigState(), command)
    assert message in err.value.message


def test_update_merges_options_and_old_events_keep_them() -> None:
    state = apply_config(ConfigState(), added(AddProvider(
        "a", "azure", "https://r.openai.azure.com", None, ("d",), options={"api_version": "2024-06-01"})))
    [event] = decide(state, UpdateProvider("a", options={"auth": "bearer"}))
    assert isinstance(event, ProviderUpdated)
    assert event.options == {"api_version": "2024-06-01", "auth": "bearer"}
    # An update written before options existed carries none: the current ones stay.
    old = ProviderUpdated("a", "https://r2", None, ("d",), 1.0)
    assert apply_config(state, old).providers["a"].options == {"api_version": "2024-06-01"}


def test_azure_deployment_url() -> None:
    assert deployment_url("https://r.openai.azure.com/", "prod gpt", "embeddings", "2024-10-21") == (
        "https://r.openai.azure.com/openai/deployments/prod%20gpt/embeddings?api-version=2024-10-21")
    assert deployment_url("https://r.openai.azure.com/openai", "d", "chat", "v").endswith(
        "/openai/deployments/d/chat/completions?api-version=v")
