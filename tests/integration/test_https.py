"""HTTPS on the API port (SHIELDES_TLS_CERT / SHIELDES_TLS_KEY): the official SDKs over TLS,
streamed and not, the routes aiohttp answers, the Responses WebSocket (wss://); a plain-HTTP
client gets no answer; a wrong configuration stops the node with what to fix; renewed files are
served to new connections without a restart, a broken renewal is refused."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import time
from pathlib import Path

import aiohttp
import openai
import pytest
import yaml
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families

from shieldes.errors import TLSConfigError
from shieldes.gateway.tls import certificate_expiry, server_context
from tests.both_loops import event_loop_policy  # noqa: F401 (each test on asyncio and on uvloop)
from tests.integration.gateway_harness import harness
from tests.integration.test_alerts_dashboard import HTTPS_ONLY, METRIC, RULES
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
            # the console tells the browser to use HTTPS only from now on (HSTS)
            async with s.get(base + "/ui/", ssl=trust) as resp:
                assert resp.status == 200 and resp.headers["Strict-Transport-Security"] == "max-age=31536000"
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


def tls_samples(text: str, port: str) -> tuple[float, float, float]:
    """A port's certificate expiry and its loaded and refused reloads, from a /metrics text."""
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for f in text_string_to_metric_families(text) for s in f.samples}
    return (found[("shieldes_tls_certificate_expiry_timestamp_seconds", (("port", port),))],
            *(found[("shieldes_tls_certificate_reloads_total", (("outcome", o), ("port", port)))]
              for o in ("loaded", "refused")))


class _Connection:
    """A TLS connection of its own to the node, kept open: the serial of the certificate it got,
    and a request over it."""

    def __init__(self, port: int) -> None:
        look = ssl.create_default_context()  # which certificate, not whether to trust it (both CAs: one name)
        look.check_hostname, look.verify_mode = False, ssl.CERT_NONE
        self.sock = look.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                     server_hostname="localhost")
        der = self.sock.getpeercert(binary_form=True)
        assert der is not None
        self.serial = f"{x509.load_der_x509_certificate(der).serial_number:X}"

    def health(self) -> bytes:
        self.sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        return self.sock.recv(4096)


def _replace(path: Path, data: bytes) -> None:
    """As a renewal writes a file: whole, swapped in."""
    tmp = path.with_suffix(".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _serial_of(pem: Path) -> str:
    return f"{x509.load_pem_x509_certificate(pem.read_bytes()).serial_number:X}"


async def test_a_renewed_certificate_is_served_to_new_connections_without_a_restart(
        database_url: str, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    for d in (first, second):
        d.mkdir()
        server_tls_for(d, "localhost")
    trust = ssl.create_default_context(cafile=str(second / "ca.pem"))  # the renewed one's
    cert, key = tmp_path / "srv.pem", tmp_path / "srv.key"
    cert.write_bytes((first / "srv.pem").read_bytes())
    key.write_bytes((first / "srv.key").read_bytes())
    async with harness(database_url, tls_cert=cert, tls_key=key, tls_reload_interval=0.05) as h:
        before = await asyncio.to_thread(_Connection, h.node.port)
        assert before.serial == _serial_of(first / "srv.pem")

        _replace(key, (second / "srv.key").read_bytes())  # renewed: the key first, the certificate after
        _replace(cert, (second / "srv.pem").read_bytes())

        async def served() -> str:
            return (await asyncio.to_thread(_Connection, h.node.port)).serial

        deadline = time.monotonic() + 10
        while (serial := await served()) != _serial_of(second / "srv.pem"):
            assert time.monotonic() < deadline, f"still serving {serial} after the renewal"
            await asyncio.sleep(0.05)
        assert (await asyncio.to_thread(before.health)).startswith(b"HTTP/1.1 200")  # open before: kept its own
        before.sock.close()

        async def metrics() -> str:
            async with aiohttp.ClientSession() as s, s.get(f"https://localhost:{h.node.port}/metrics",
                                                           ssl=trust) as resp:
                return await resp.text()

        text = await metrics()
        assert tls_samples(text, "api") == (certificate_expiry(second / "srv.pem"), 1, 0)
        alerts = yaml.safe_load(RULES.read_text())["groups"]
        for name in {n for g in alerts for r in g["rules"] for n in METRIC.findall(r["expr"])
                     if n.startswith(HTTPS_ONLY)}:
            assert f"\n{name}" in text, f"an alert queries {name}, which an HTTPS node does not export"

        # a renewal gone wrong (a key of another certificate) is refused; the one served stays
        _replace(key, (first / "srv.key").read_bytes())
        deadline = time.monotonic() + 10
        while tls_samples(await metrics(), "api")[2] != 1:
            assert time.monotonic() < deadline, "the broken pair was not looked at"
            await asyncio.sleep(0.05)
        assert await served() == _serial_of(second / "srv.pem")
        secret = await h.create_key("app")
        await h.sync()  # (the node sees the new key now, not at its next poll)
        reply = await openai.AsyncOpenAI(
            base_url=f"https://localhost:{h.node.port}/v1", api_key=secret, max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(verify=trust)).models.list()
        assert reply.data
