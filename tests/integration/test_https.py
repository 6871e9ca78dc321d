"""HTTPS on the API port (SHIELDES_TLS_CERT / SHIELDES_TLS_KEY): the official SDKs over TLS,
streamed and not, the routes aiohttp answers, the Responses WebSocket (wss://); a plain-HTTP
client gets no answer; a wrong configuration stops the node with what to fix."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import aiohttp
import openai
import pytest

from shieldes.errors import TLSConfigError
from shieldes.gateway.tls import server_context
from tests.integration.gateway_harness import harness
from tests.integration.test_upstream_transport import server_tls_for

MSGS = [{"role": "user", "content": "hi"}]


async def test_the_sdks_reach_the_node_over_https(database_url: str, tmp_path: Path) -> None:
    _ctx, ca_file = server_tls_for(tmp_path, "localhost")
    trust = ssl.create_default_context(cafile=str(ca_file))
    async with harness(database_url, tls_cert=tmp_path / "srv.pem", tls_key=tmp_path / "srv.key") as h:
        secret = await h.create_key("app")
        await h.sync()
        base = f"https://localhost:{h.node.port}"
        client = openai.AsyncOpenAI(base_url=base + "/v1", api_key=secret, max_retries=0,
                                    http_client=openai.DefaultAsyncHttpxClient(verify=trust))
        reply = await client.chat.completions.create(model="gpt-4o", messages=MSGS)  # type: ignore[arg-type]
        assert reply.choices[0].message.content
        stream = await client.chat.completions.create(model="gpt-4o", messages=MSGS, stream=True)  # type: ignore[arg-type]
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert [m.id async for m in client.models.list()]  # a route aiohttp answers, over the same TLS
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(base.replace("https://", "wss://") + "/v1/responses", ssl=trust,
                                    headers={"Authorization": f"Bearer {secret}"}) as ws:
                await ws.send_json({"type": "response.create", "model": "gpt-4o", "input": "hi"})
                while (event := json.loads(await ws.receive_str(timeout=10)))["type"] != "response.completed":
                    assert event["type"] != "error", event
            # a client speaking plain HTTP to the HTTPS port is not answered in clear
            with pytest.raises(aiohttp.ClientError):
                async with s.get(f"http://localhost:{h.node.port}/health") as resp:
                    await resp.read()


def test_a_wrong_tls_configuration_says_what_to_fix(tmp_path: Path) -> None:
    server_tls_for(tmp_path, "localhost")
    assert server_context(None, None) is None
    with pytest.raises(TLSConfigError, match="set SHIELDES_TLS_KEY"):
        server_context(tmp_path / "srv.pem", None)
    with pytest.raises(TLSConfigError, match="cannot read SHIELDES_TLS_CERT"):
        server_context(tmp_path / "missing.pem", tmp_path / "srv.key")
    (tmp_path / "notes.txt").write_text("not a certificate")
    with pytest.raises(TLSConfigError, match="is not a PEM file"):
        server_context(tmp_path / "notes.txt", tmp_path / "srv.key")
    other = tmp_path / "other"
    other.mkdir()
    server_tls_for(other, "localhost")
    with pytest.raises(TLSConfigError, match="give the key that matches the certificate"):
        server_context(tmp_path / "srv.pem", other / "srv.key")
    assert server_context(tmp_path / "srv.pem", tmp_path / "srv.key") is not None
