"""`shieldes doctor` gets every credential a node gets for itself, as the node would, before any
traffic: an Entra ID token for an `azure --auth entra` deployment (from a fake App Service managed
identity endpoint), a Google access token for a `vertex` one (from the fake's OAuth token
endpoint, which refuses a key it does not know), AWS credentials for a `bedrock` one (none here).
Each finding names the deployment and, when it fails, what to do. No model is called."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from shieldes.config_writer import execute
from shieldes.events.pg_store import PostgresEventStore, open_pool
from shieldes.projections.shared_commands import AddProvider
from tests import cli
from tests.fake_google import FakeGoogle, service_account
from tests.integration.test_azure_entra import FakeManagedIdentity

AWS_NONE = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "", "AWS_PROFILE": "",
            "AWS_EC2_METADATA_DISABLED": "true"}


def _key_file(path: Path, private: rsa.RSAPrivateKey, token_uri: str) -> str:
    path.write_text(json.dumps(service_account(private, token_uri)))
    return str(path)


def _credentials(database_url: str, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    result = cli.invoke(database_url, "doctor", "--json", env=env)
    return {c["subject"]: c for c in json.loads(result.stdout)["checks"] if c["check"] == "credentials"}


async def test_doctor_gets_each_node_credential_and_says_what_to_do_without_it(
        database_url: str, tmp_path: Path) -> None:
    known = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with FakeGoogle(public_key=known.public_key()) as google, \
            FakeManagedIdentity(lifetime=3600).running() as identity:
        vertex = {"project": "proj-1", "location": "us-central1"}
        pool = open_pool(database_url, size=1, name="test-admin")
        await pool.open(wait=True)
        store = PostgresEventStore(pool)
        for command in (
            AddProvider("az", "azure", google.url, None, ("gpt-4o",),
                        options={"api_version": "2024-10-21", "auth": "entra"}),
            AddProvider("vx-good", "vertex", google.url, None, ("gemini-2.5-flash",), options={
                **vertex, "credentials_file": _key_file(tmp_path / "good.json", known, google.url + "/token")}),
            AddProvider("vx-refused", "vertex", google.url, None, ("gemini-2.5-pro",), options={
                **vertex, "credentials_file": _key_file(tmp_path / "bad.json", other, google.url + "/token")}),
            AddProvider("br", "bedrock", google.url, None, ("amazon.nova-pro-v1:0",), options={"region": "us-east-1"}),
        ):
            await execute(store, command, actor="test")
        await pool.close()
        env = {**AWS_NONE, "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
               "AWS_CONFIG_FILE": str(tmp_path / "none"), "IDENTITY_ENDPOINT": identity.url,
               "IDENTITY_HEADER": identity.secret, "NO_PROXY": "127.0.0.1", "SHIELDES_ALLOW_UNPRICED": "true"}

        found = await asyncio.to_thread(_credentials, database_url, env)
        assert found["az"]["ok"] and found["az"]["detail"].startswith("Entra ID token obtained"), found["az"]
        assert len(identity.issued) == 1 and identity.asked[0].query["resource"] == "https://cognitiveservices.azure.com"
        assert found["vx-good"]["ok"] and "access token obtained" in found["vx-good"]["detail"], found["vx-good"]
        refused = found["vx-refused"]
        assert not refused["ok"] and "no access token" in refused["detail"] and "invalid_grant" in refused["detail"]
        assert "--credentials-file" in refused["fix"] and "vx-refused" in refused["fix"], refused
        assert not found["br"]["ok"] and "no AWS credentials" in found["br"]["detail"], found["br"]
        assert "AWS_ACCESS_KEY_ID" in found["br"]["fix"] and "provider update br" in found["br"]["fix"]
        assert not [r for r in google.requests if r.path != "/token"]  # no model called

        identity.failing = True  # the identity endpoint refuses: named, with what to check
        failing = (await asyncio.to_thread(_credentials, database_url, env))["az"]
        assert not failing["ok"] and failing["detail"].startswith("no Entra ID token: "), failing
        assert "No managed identity is assigned" in failing["detail"] and "\n" not in failing["detail"]
        assert "Cognitive Services OpenAI User" in failing["fix"] and "shieldes doctor" in failing["fix"]
