"""A request whose client leaves while it waits before any upstream call is in flight (a retry's
backoff, a Vertex token being fetched) is given up at once: no further attempt reaches the
upstream, the key's budget hold is released, nothing is billed, and its request-log row says the
client left (499 `client_disconnected`). A shared credential fetch goes on and serves the next
request. Through a real node, the fake upstreams (an OpenAI one, Google's token endpoint) and the
official openai SDK with a client timeout shorter than the wait."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from shieldes.projections.shared_commands import AddProvider
from tests.fake_google import FakeGoogle, service_account
from tests.integration.admin_client import AdminClient
from tests.integration.gateway_harness import Harness, harness, wait_until

ADMIN = "boot-" + "client-left-admin-token-" * 2
HELLO: Any = [{"role": "user", "content": "say hello"}]
# far longer than any test waits: a request still in it when its client left would hold on
BACKOFF = 30.0


@pytest.fixture
async def node(database_url: str) -> AsyncIterator[tuple[Harness, str]]:
    async with harness(database_url, upstream_retries=1, retry_backoff=BACKOFF, admin_token=ADMIN) as h:
        secret = await h.create_key("app", budget_usd=100.0, budget_period="1d")
        await h.sync()
        yield h, secret


def _idle(h: Harness) -> bool:
    """The node has no request in hand."""
    assert h.node.gateway is not None
    return bool(h.node.gateway.metrics.in_flight.collect()[0].samples[0].value == 0)


async def _reserved(h: Harness) -> dict[str, float]:
    """The budget holds of the node's requests in flight (GET /admin/v1/node), by subject."""
    status, body = await AdminClient(h.base, ADMIN).get("/admin/v1/node")
    assert status == 200, body
    held: dict[str, float] = body["reserved_usd"]
    return held


async def _rows(h: Harness, model: str) -> list[tuple[Any, ...]]:
    writer = h.node.request_log
    assert writer is not None
    await wait_until(lambda: writer.buffer.added >= 1, timeout=5)
    assert await writer.flush_all(10)
    return h.sql("SELECT status, error_code, error_message FROM request_log WHERE model = %s", model)


def _call(h: Harness, secret: str, api: str) -> tuple[str, Awaitable[Any]]:
    """(the model, the call) of a request in client API `api`, by its official SDK with a 1 s
    timeout."""
    if api == "messages":
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0, timeout=1.0)
        model = "claude-3-5-haiku-latest"
        return model, claude.messages.create(model=model, max_tokens=50, messages=HELLO)
    client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0, timeout=1.0)
    if api == "responses":
        return "gpt-4o", client.responses.create(model="gpt-4o", input="say hello")
    return "gpt-4o", client.chat.completions.create(model="gpt-4o", messages=HELLO, stream=api == "chat-stream")


@pytest.mark.parametrize("api", ["chat", "chat-stream", "messages", "responses"])
async def test_a_client_leaving_during_a_retrys_backoff_ends_its_request_then(
        node: tuple[Harness, str], api: str) -> None:
    """The first attempt fails retryably; the request waits BACKOFF seconds before the next one, and
    its client (a 1 s timeout) leaves meanwhile: the request ends then, its hold released, and the
    upstream sees no second attempt."""
    h, secret = node
    model, request = _call(h, secret, api)
    h.upstream.inject("*", status=500, times=1)  # (whichever upstream route the deployment's API takes)
    call = asyncio.ensure_future(request)
    await wait_until(lambda: len(h.upstream.requests) == 1)
    held = await _reserved(h)
    assert held and all(v > 0 for v in held.values()), held  # the request holds its budget estimate
    with pytest.raises((openai.APITimeoutError, anthropic.APITimeoutError)):
        await call
    await wait_until(lambda: _idle(h), timeout=5)  # not BACKOFF seconds later
    assert await _reserved(h) == {}
    rows = await _rows(h, model)
    assert len(rows) == 1, rows
    status, code, message = rows[0]
    assert (status, code) == (499, "client_disconnected"), rows
    assert message.startswith("the client closed the connection while the request waited for its next attempt "
                              "(a retry's backoff); the request was given up then"), message
    assert len(h.upstream.requests) == 1  # no second attempt
    await h.flush()
    assert h.delta_rows() == []  # nothing billed


async def test_a_client_gone_during_an_attempt_gets_no_further_attempt(node: tuple[Harness, str]) -> None:
    """The client leaves while the first attempt is in flight: that attempt is let finish; it fails,
    and no retry is made for nobody."""
    h, secret = node
    h.upstream.inject("/v1/chat/completions", status=500, delay=1.0, times=1)
    client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="gpt-4o", messages=HELLO)
    await wait_until(lambda: _idle(h), timeout=5)  # the attempt's second, not BACKOFF more
    assert await _reserved(h) == {}
    rows = await _rows(h, "gpt-4o")
    assert [(s, c) for s, c, _m in rows] == [(499, "client_disconnected")], rows
    assert rows[0][2].startswith("the client had closed the connection when the request came to wait for its "
                                 "next attempt"), rows
    assert len(h.upstream.requests_to("/v1/chat/completions")) == 1


async def test_a_client_leaving_while_a_vertex_token_is_fetched_ends_its_request_and_the_fetch_serves_the_next(
        database_url: str, tmp_path: Path) -> None:
    """Google's token endpoint holds the node's token request; the client waiting on it leaves: its
    request ends then (not when the token comes), and the fetch goes on: the next request is served
    with the token it brings, no second fetch made."""
    async with FakeGoogle() as google, harness(database_url, providers=False, upstream_retries=0) as h:
        google.token_hold = asyncio.Event()
        try:
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            google.public_key = private.public_key()
            key_file = tmp_path / "k.json"
            key_file.write_text(json.dumps(service_account(private, google.url + "/token")))
            await h.admin(AddProvider("vx", "vertex", google.url, None, ("only-vx",),
                                      options={"project": "proj-1", "location": "us-central1",
                                               "credentials_file": str(key_file)}))
            secret = await h.create_key("app")
            await h.sync()

            def fetches() -> int:
                return sum(r.path == "/token" for r in google.requests)

            impatient = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0, timeout=1.0)
            with pytest.raises(openai.APITimeoutError):
                await impatient.chat.completions.create(model="only-vx", messages=HELLO)
            await wait_until(lambda: _idle(h), timeout=3)  # (the fetch is held for as long as the test says)
            rows = await _rows(h, "only-vx")
            assert [(s, c) for s, c, _m in rows] == [(499, "client_disconnected")], rows
            assert "while the request waited for a cloud credential" in rows[0][2], rows
            assert fetches() == 1
            client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0, timeout=10.0)
            served = asyncio.ensure_future(client.chat.completions.create(model="only-vx", messages=HELLO))
            await wait_until(lambda: not _idle(h))
            google.token_hold.set()
            answer = await served
            assert answer.choices[0].message.content
            assert fetches() == 1  # the one the first request started
        finally:
            google.token_hold.set()
