"""A broken or hostile upstream cannot fill a node's memory: what the node holds of an answer is
bounded by SHIELDES_MAX_UPSTREAM_BODY_BYTES (set small here): a JSON answer read whole (chat, an
image answer, an MCP server's), and what a stream holds while looking for an event's end (one
line that never ends). Past it the attempt is the deployment's failure: the client gets a 502 in
its API's shape naming the deployment (the MCP server) and what to do, a request's fallback is
tried as for any broken answer, and nothing is billed for the answer that never came. Answers
larger than the node's read-ahead but within the bound are read whole (they used to stall until
the call's timeout)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from shieldes import secrets
from shieldes.projections.shared_commands import AddMcpServer, AddProvider
from tests import fake_wire as wire
from tests.fake_mcp import TOKEN, running_mcp_server
from tests.integration.gateway_harness import UPSTREAM_KEY_ENV, Harness, harness, wait_until

CAP = 2 * 1024 * 1024  # the node's bound here (256 MiB by default), above the 1 MiB read-ahead
ASK: Any = [{"role": "user", "content": "hi"}]
ENCRYPTION_KEY = secrets.generate_key()


def chat_answer(text: str) -> bytes:
    return json.dumps({"id": "chatcmpl-big", "object": "chat.completion", "created": 1, "model": "gpt-4o",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}).encode()


@pytest.fixture
async def node(database_url: str) -> AsyncIterator[Harness]:
    async with harness(database_url, upstream_retries=0, max_upstream_body_bytes=CAP,
                       encryption_key=ENCRYPTION_KEY) as h:
        yield h


def names_the_bound(message: str, who: str) -> None:
    assert who in message and f"over {CAP} bytes" in message, message
    assert "SHIELDES_MAX_UPSTREAM_BODY_BYTES" in message and "ask" in message, message


async def test_a_json_answer_over_the_bound_is_the_deployments_failure(node: Harness) -> None:
    h = node
    client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=await h.create_key("app"), max_retries=0)
    await h.sync()
    # within the bound, and several times the read-ahead (1 MiB past which reading pauses): read whole
    h.upstream.inject("/v1/chat/completions", answer=wire.Answer(200, chat_answer("a" * (CAP - 1024))))
    fine = await client.chat.completions.create(model="gpt-4o", messages=ASK)
    assert fine.choices[0].message.content == "a" * (CAP - 1024)
    h.upstream.inject("/v1/chat/completions", answer=wire.Answer(200, chat_answer("a" * 4 * CAP)))
    with pytest.raises(openai.APIStatusError) as err:
        await client.chat.completions.create(model="gpt-4o", messages=ASK)
    assert err.value.status_code == 502
    names_the_bound(err.value.message, "upstream deployment 'openai'")
    # a request's fallback is tried as for any broken answer, and bills the model that answered
    h.upstream.inject("/v1/chat/completions", answer=wire.Answer(200, chat_answer("a" * 4 * CAP)))
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=ASK, extra_body={"fallbacks": ["gpt-4o-mini"]})
    served = raw.parse()
    assert served.model == "gpt-4o-mini" and served.choices[0].message.content
    assert [r.body["model"] for r in h.upstream.requests[-2:]] == ["gpt-4o", "gpt-4o-mini"]
    assert h.node.in_flight.count == 0


async def test_a_stream_line_that_never_ends_is_cut_at_the_bound(node: Harness) -> None:
    h = node
    client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=await h.create_key("app"), max_retries=0)
    await h.sync()
    h.upstream.inject("/v1/chat/completions", endless_line=4 * CAP)
    with pytest.raises(openai.APIStatusError) as err:
        await client.chat.completions.create(model="gpt-4o", messages=ASK, stream=True)
    assert err.value.status_code == 502
    names_the_bound(err.value.message, "upstream deployment 'openai'")
    # the same through a request's fallback: the client's stream comes from the next model
    h.upstream.inject("/v1/chat/completions", endless_line=4 * CAP)
    stream = await client.chat.completions.create(model="gpt-4o", messages=ASK, stream=True,
                                                  extra_body={"fallbacks": ["gpt-4o-mini"]})
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text
    # after frames went out: the stream ends with the API's error event, the relayed part billed
    h.upstream.inject("/v1/chat/completions", endless_line=4 * CAP, endless_after=3)
    stream = await client.chat.completions.create(model="gpt-4o", messages=ASK, stream=True)
    got = []
    with pytest.raises(openai.APIError) as cut:
        async for chunk in stream:
            got.append(chunk)
    assert got, "the frames before the endless line were relayed"
    names_the_bound(cut.value.message, "upstream deployment 'openai'")
    await wait_until(lambda: h.node.in_flight.count == 0)


async def test_an_image_answer_over_the_bound_is_a_502(node: Harness) -> None:
    h = node
    await h.admin(AddProvider("img", "openai", h.upstream.url, "env:" + UPSTREAM_KEY_ENV, ("gpt-image-1",)))
    client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=await h.create_key("app"), max_retries=0)
    await h.sync()
    images = json.dumps({"created": 1, "data": [{"b64_json": "A" * CAP} for _ in range(4)]}).encode()
    h.upstream.inject("/v1/images/generations", answer=wire.Answer(200, images))
    with pytest.raises(openai.APIStatusError) as err:
        await client.images.generate(model="gpt-image-1", prompt="a cat")
    assert err.value.status_code == 502
    names_the_bound(err.value.message, "upstream deployment 'img'")
    # (fewer images fit: the next answer is the fake's own)
    assert (await client.images.generate(model="gpt-image-1", prompt="a cat")).data


async def test_an_mcp_answer_over_the_bound_is_a_jsonrpc_error(node: Harness) -> None:
    h = node
    with running_mcp_server(json_response=True) as (url, _seen):
        header = secrets.encrypt_secret(f"Bearer {TOKEN}", ENCRYPTION_KEY)
        await h.admin(AddMcpServer("tools", url, {"Authorization": header}))
        key = await h.create_key("agent", mcp=("tools/echo",))
        await h.sync()
        head = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream",
                "Content-Type": "application/json"}
        async with aiohttp.ClientSession() as session:
            init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
            async with session.post(f"{h.base}/mcp/tools", json=init, headers=head) as resp:
                assert resp.status == 200, await resp.text()
                sid = resp.headers.get("Mcp-Session-Id")
            if sid is not None:
                head["Mcp-Session-Id"] = sid
            async with session.post(f"{h.base}/mcp/tools", json={"jsonrpc": "2.0", "method":
                                    "notifications/initialized"}, headers=head) as resp:
                assert resp.status in (200, 202)

            async def echo(size: int) -> tuple[int, Any]:
                call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                        "params": {"name": "echo", "arguments": {"text": "a" * size}}}
                async with session.post(f"{h.base}/mcp/tools", json=call, headers=head) as resp:
                    return resp.status, await resp.json()

            status, small = await echo(1000)
            assert status == 200 and "a" * 1000 in json.dumps(small)
            status, big = await echo(CAP + CAP // 2)
    assert status == 502, big
    assert big["error"]["data"]["code"] == "mcp_upstream_too_large"
    names_the_bound(big["error"]["message"], "MCP server 'tools'")
    await wait_until(lambda: h.node.in_flight.count == 0)
