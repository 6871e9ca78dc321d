"""A provider type whose client library is missing says which extra to install, in one line."""

from __future__ import annotations

import sys

import pytest

from shieldes.errors import ProviderMisconfigured
from shieldes.providers import bedrock, vertex
from shieldes.providers.base import Target


def test_bedrock_without_botocore_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("botocore", "botocore.auth", "botocore.awsrequest", "botocore.eventstream", "botocore.session"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ProviderMisconfigured) as err:
        bedrock._botocore("br")
    assert err.value.message == ("deployment 'br' cannot be used on this node: provider type 'bedrock' needs "
                                 "botocore, which is not installed here; pip install 'shieldes[bedrock]' on every "
                                 "node and restart it")


async def test_vertex_without_google_auth_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("google.auth", "google.auth.transport.requests", "google.oauth2"):
        monkeypatch.setitem(sys.modules, name, None)
    target = Target("vx", "https://example.invalid", "gemini-2.5-flash", None, {})
    with pytest.raises(ProviderMisconfigured) as err:
        await vertex.GoogleTokens().token(target)
    assert err.value.message == ("deployment 'vx' cannot be used on this node: provider type 'vertex' needs "
                                 "google-auth, which is not installed here; pip install 'shieldes[vertex]' on every "
                                 "node and restart it")


async def test_azure_entra_without_azure_identity_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from shieldes.providers.entra import EntraTokens

    monkeypatch.setitem(sys.modules, "azure.identity.aio", None)
    with pytest.raises(ProviderMisconfigured) as err:
        await EntraTokens().token("az")
    assert err.value.message == ("deployment 'az' cannot be used on this node: --auth entra needs azure-identity, "
                                 "which is not installed here; pip install 'shieldes[azure]' on every node and "
                                 "restart it")
