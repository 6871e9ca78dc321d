"""`--auth entra` end to end: a real `shieldes serve` process whose azure-identity credential chain
gets its tokens from a fake App Service managed identity endpoint (IDENTITY_ENDPOINT and
IDENTITY_HEADER, plain HTTP on 127.0.0.1: the one identity source that needs no TLS), calling the
fake upstream's Azure routes, with the official openai SDK as the client."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp import web

from shieldes.config_writer import execute
from shieldes.events.pg_store import PostgresEventStore, open_pool
from shieldes.projections.commands import CreateKey
from shieldes.projections.shared_commands import AddProvider
from shieldes.secrets import display_prefix, hash_key, new_id, new_virtual_key
from tests.fake_upstream import FakeUpstream
from tests.fake_wire import serve
from tests.integration import serve_process
from tests.integration.gateway_harness import harness

HELLO: Any = [{"role": "user", "content": "say hello"}]
RESOURCE = "https://cognitiveservices.azure.com"
CHAT = "/openai/deployments/prod-gpt4o/chat/completions"
# What could lead azure-identity's chain to another identity than the fake's (a service principal,
# workload identity, another managed identity endpoint, a developer's Azure CLI login) or send its
# calls through a proxy: none of it reaches the node.
FOREIGN = ("AZURE_", "IDENTITY_", "MSI_", "IMDS_", "IDENTITY_SERVER_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


class FakeManagedIdentity:
    """App Service's managed identity endpoint as azure-identity calls it: GET
    `?api-version=2019-08-01&resource=R` with the `X-IDENTITY-HEADER` secret, answered
    `{access_token, expires_on, resource, token_type}`. Every token it issues is new and lives
    `lifetime` seconds; `failing` answers 400 as an endpoint without the identity does."""

    def __init__(self, lifetime: int) -> None:
        self.lifetime = lifetime
        self.secret = secrets.token_hex(8)
        self.issued: list[str] = []
        self.asked: list[web.Request] = []
        self.failing = False
        self.held = asyncio.Event()  # cleared: answers wait until it is set (requests pile up meanwhile)
        self.held.set()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _token(self, request: web.Request) -> web.Response:
        self.asked.append(request)
        await self.held.wait()
        if self.failing or request.headers.get("X-IDENTITY-HEADER") != self.secret:
            return web.json_response({"statusCode": 400, "message": "No managed identity is assigned"}, status=400)
        token = f"entra-{len(self.issued) + 1}-{secrets.token_hex(6)}"
        self.issued.append(token)
        return web.json_response({"access_token": token, "expires_on": str(int(time.time()) + self.lifetime),
                                  "resource": request.query.get("resource"), "token_type": "Bearer"})

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeManagedIdentity]:
        app = web.Application()
        app.router.add_get("/msi/token", self._token)
        self._runner, base = await serve(app)
        self.url = base + "/msi/token"
        try:
            yield self
        finally:
            await self._runner.cleanup()


@asynccontextmanager
async def entra_node(database_url: str, identity: FakeManagedIdentity, up: FakeUpstream,
                     home: Path) -> AsyncIterator[tuple[openai.AsyncOpenAI, list[str]]]:
    """A node serving deployment `az` (model prod-gpt4o) with `--auth entra` and no key, the fake
    identity endpoint the only identity in its environment; an openai client of it and the node's log."""
    pool = open_pool(database_url, size=1, name="test-admin")
    await pool.open(wait=True)
    store = PostgresEventStore(pool)
    await execute(store, AddProvider("az", "azure", up.url, None, ("prod-gpt4o",),
                                     options={"api_version": "2024-10-21", "auth": "entra"}), actor="test")
    secret = new_virtual_key()
    await execute(store, CreateKey(new_id("key"), "app", hash_key(secret), display_prefix(secret)), actor="test")
    await pool.close()
    env = {"IDENTITY_ENDPOINT": identity.url, "IDENTITY_HEADER": identity.secret, "HOME": str(home),
           "NO_PROXY": "127.0.0.1", "SHIELDES_UPSTREAM_RETRIES": "0"}
    node = serve_process.serving(database_url, "entra", env=env,
                                 inherit=lambda name: not name.upper().startswith(FOREIGN))
    _proc, lines, port = await asyncio.to_thread(node.__enter__)
    try:
        yield openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=secret, max_retries=0), lines
    finally:
        await asyncio.to_thread(node.__exit__, None, None, None)


async def in_flight(client: openai.AsyncOpenAI, n: int) -> bool:
    """The node has `n` requests in hand (its /metrics says so, counting its own request too)."""
    async with aiohttp.ClientSession() as s, s.get(str(client.base_url).removesuffix("/v1/") + "/metrics") as r:
        text = await r.text()
    return f"shieldes_requests_in_flight {float(n + 1)}" in text


async def until(predicate: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"


async def test_entra_tokens_from_a_managed_identity_shared_renewed_and_recovered(
        database_url: str, tmp_path: Path) -> None:
    up = FakeUpstream(completion_tokens=4)
    async with up, FakeManagedIdentity(lifetime=3).running() as identity, \
            entra_node(database_url, identity, up, tmp_path) as (client, log):
        # Requests that arrive together while the node has no token wait for one fetch, shared
        identity.held.clear()
        calls = [asyncio.ensure_future(client.chat.completions.create(model="prod-gpt4o", messages=HELLO))
                 for _ in range(6)]
        await until(lambda: in_flight(client, 6), "the six requests in the node")
        await until(lambda: asyncio.sleep(0.01, bool(identity.asked)), "the node to ask for a token")
        identity.held.set()
        answers = await asyncio.gather(*calls)
        assert [a.choices[0].message.content for a in answers] == ["Hello from the fake"] * 6
        assert len(identity.asked) == 1 and len(identity.issued) == 1
        asked = identity.asked[0]
        assert asked.query["resource"] == RESOURCE and asked.query["api-version"] == "2019-08-01"
        first = identity.issued[0]
        for sent in up.requests_to(CHAT):
            assert sent.headers["authorization"] == "Bearer " + first and "api-key" not in sent.headers

        stream = await client.chat.completions.create(model="prod-gpt4o", messages=HELLO, stream=True)
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "Hello from the fake"
        assert up.last(CHAT).headers["authorization"] in {"Bearer " + t for t in identity.issued}  # (or the next)

        # The token lives three seconds: the node goes on with it, then sends a new one; every request
        # is served meanwhile, and the endpoint is asked once per token, not once per request
        async def renewed() -> bool:
            await client.chat.completions.create(model="prod-gpt4o", messages=HELLO)
            return up.last(CHAT).headers["authorization"] != "Bearer " + first
        await until(renewed, "a renewed token")
        assert len(identity.issued) == 2 and len(identity.asked) == 2
        assert up.last(CHAT).headers["authorization"] == "Bearer " + identity.issued[1]

        # The endpoint fails: once the token held has expired, the client is told which deployment
        # cannot be used and what to check, in OpenAI's shape (a 502, never a 500)
        identity.failing = True
        refused: list[openai.APIStatusError] = []

        async def refused_now() -> bool:
            try:
                await client.chat.completions.create(model="prod-gpt4o", messages=HELLO)
            except openai.APIStatusError as exc:
                refused.append(exc)
                return True
            return False
        await until(refused_now, "a request refused for want of a token")
        error = refused[0]
        assert error.status_code == 502, error
        body: Any = error.body
        assert body["code"] == "provider_misconfigured" and body["type"] == "upstream_error"
        message = body["message"]
        assert message.startswith("deployment 'az' cannot be used on this node: no Entra ID token (")
        assert "No managed identity is assigned" in message and "\n" not in message
        assert "check this node's Azure identity" in message
        # (a Messages client is told the same in Anthropic's shape)
        claude = anthropic.AsyncAnthropic(base_url=str(client.base_url).removesuffix("/v1/"),
                                          api_key=client.api_key, max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as in_anthropic_shape:
            await claude.messages.create(model="prod-gpt4o", max_tokens=20, messages=HELLO)
        assert in_anthropic_shape.value.status_code == 502
        assert in_anthropic_shape.value.body["type"] == "error"  # type: ignore[index]
        assert in_anthropic_shape.value.body["error"]["message"].startswith(  # type: ignore[index]
            "deployment 'az' cannot be used on this node: no Entra ID token (")
        # the node's log says so, once for the outage
        await until(lambda: asyncio.sleep(0.01, any("no Entra ID token" in x for x in log)), "the node's log line")

        # The endpoint recovers: the next request gets a new token and is served
        identity.failing = False
        chat = await client.chat.completions.create(model="prod-gpt4o", messages=HELLO)
        assert chat.choices[0].message.content == "Hello from the fake"
        assert up.last(CHAT).headers["authorization"] == "Bearer " + identity.issued[-1]
        assert len(identity.issued) == 3
    assert sum("no Entra ID token" in x for x in log) == 1, log
    assert "IDENTITY_ENDPOINT" not in os.environ  # (the identity was the node process's only)
    assert not [x for x in log if "Traceback" in x or "Unclosed" in x], log


async def test_entra_without_azure_identity_says_which_extra_to_install(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "azure.identity.aio", None)  # (an import of it fails, as where it is missing)
    up = FakeUpstream(completion_tokens=4)
    async with harness(database_url, upstream=up, providers=False, upstream_retries=0) as h:
        await h.admin(AddProvider("az", "azure", up.url, None, ("prod-gpt4o",),
                                  options={"api_version": "2024-10-21", "auth": "entra"}))
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        for _ in range(2):  # (the second answered the same, without trying the import again)
            with pytest.raises(openai.APIStatusError) as missing:
                await client.chat.completions.create(model="prod-gpt4o", messages=HELLO)
            assert missing.value.status_code == 502
            assert missing.value.body["message"] == (  # type: ignore[index]
                "deployment 'az' cannot be used on this node: --auth entra needs azure-identity, which is not "
                "installed here; pip install 'shieldes[azure]' on every node and restart it")
        assert not up.requests_to(CHAT)
