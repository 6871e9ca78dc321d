"""`shieldes doctor`'s credentials check for deployments that sign in with the cloud's own
credentials: loaded as a node loads them (google-auth, botocore's chain)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from shieldes.cloud_credentials import cloud_credential_finding, node_credential_finding
from shieldes.projections.state import Deployment


def _dep(kind: str, secret_ref: str | None = None, **options: str) -> Deployment:
    return Deployment("d", kind, "https://example.invalid", secret_ref, ("m",), 1.0, options=options)


def test_a_missing_vertex_key_file_says_how_to_give_one(tmp_path: Path) -> None:
    missing = cloud_credential_finding(_dep("vertex", credentials_file=str(tmp_path / "gone.json")))
    assert missing is not None and not missing.ok and "gone.json" in missing.detail
    assert missing.fix is not None and "--credentials-file" in missing.fix


def test_bedrock_reads_the_aws_chain_and_says_what_to_set_without_it(monkeypatch: pytest.MonkeyPatch,
                                                                     tmp_path: Path) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    missing = cloud_credential_finding(_dep("bedrock", region="us-east-1"))
    assert missing is not None and not missing.ok
    assert missing.fix is not None and "AWS_ACCESS_KEY_ID" in missing.fix and "--api-key-env" in missing.fix
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    found = cloud_credential_finding(_dep("bedrock", region="us-east-1"))
    assert found is not None and found.ok and "env" in found.detail
    # a Bedrock API key is a provider key: the usual check reads it
    assert cloud_credential_finding(_dep("bedrock", "env:BEDROCK_KEY", region="us-east-1")) is None
    assert cloud_credential_finding(_dep("openai")) is None


class _ClosingBadly:
    """An Entra ID credential whose token fetch answers `token` (or raises it) and whose close raises."""

    def __init__(self, token: AccessToken | Exception) -> None:
        self.token = token

    async def get_token(self, *scopes: str) -> AccessToken:
        if isinstance(self.token, Exception):
            raise self.token
        return self.token

    async def close(self) -> None:
        raise RuntimeError("the transport's session was already closed")


@pytest.mark.parametrize("token", [AccessToken("t", int(time.time()) + 3600),
                                   ClientAuthenticationError("No managed identity is assigned")])
async def test_the_entra_check_reports_its_finding_when_closing_the_credential_fails(
        monkeypatch: pytest.MonkeyPatch, token: AccessToken | Exception) -> None:
    credential = _ClosingBadly(token)
    monkeypatch.setattr("shieldes.providers.entra.default_credential", lambda: credential)
    dep: Any = _dep("azure", auth="entra")
    finding = await node_credential_finding(dep)
    assert finding is not None and finding.subject == "d"
    if isinstance(token, AccessToken):
        assert finding.ok and finding.detail.startswith("Entra ID token obtained"), finding
    else:
        assert not finding.ok, finding
        assert finding.detail == "no Entra ID token: ClientAuthenticationError: No managed identity is assigned"
