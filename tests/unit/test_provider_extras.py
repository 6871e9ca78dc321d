"""A provider type whose client library is missing says which extra to install, in one line."""

from __future__ import annotations

import sys

import pytest

from shieldes.providers import bedrock, vertex
from shieldes.providers.base import UpstreamFailure


def test_bedrock_without_botocore_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("botocore", "botocore.auth", "botocore.awsrequest", "botocore.eventstream", "botocore.session"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(UpstreamFailure) as err:
        bedrock._botocore()
    assert err.value.message == "provider type 'bedrock' needs botocore: pip install 'shieldes[bedrock]'"
    assert not err.value.retryable and "\n" not in err.value.message


def test_vertex_without_google_auth_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("google.auth", "google.auth.transport.requests", "google.oauth2"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(UpstreamFailure) as err:
        vertex.GoogleTokens()._refresh("")
    assert err.value.message == "provider type 'vertex' needs google-auth: pip install 'shieldes[vertex]'"


async def test_azure_entra_without_azure_identity_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from shieldes.errors import ProviderMisconfigured
    from shieldes.providers.entra import EntraTokens

    monkeypatch.setitem(sys.modules, "azure.identity.aio", None)
    with pytest.raises(ProviderMisconfigured) as err:
        await EntraTokens().token("az")
    assert err.value.message == ("deployment 'az' cannot be used on this node: --auth entra needs azure-identity, "
                                 "which is not installed here; pip install 'shieldes[azure]' on every node and "
                                 "restart it")
