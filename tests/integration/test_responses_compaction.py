"""Compaction as Codex's built-in OpenAI provider does it: a turn whose input ends with a
`compaction_trigger` item, answered with one opaque `compaction` item that later turns send back.
A native deployment gets both as they are and the client gets the item whole, with its
encrypted_content, whether or not it included `reasoning.encrypted_content`. Any other deployment
compacts by the model's summary, sealed in this gateway's own compaction item."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import openai

from shieldes.projections.shared_commands import UpdateProvider
from shieldes.responses.compaction import SEAL, SUMMARY_HEADING, SUMMARY_REQUEST
from tests.integration.gateway_harness import Harness, harness

TRIGGER = {"type": "compaction_trigger"}
HELLO = "Hello from the fake upstream"
HISTORY: list[Any] = [{"role": "user", "content": "read the repo"},
                      {"role": "assistant", "content": "I read it."}]


async def test_native_deployment_forwards_compaction_both_ways(database_url: str) -> None:
    async with harness(database_url) as h:
        await h.admin(UpdateProvider("openai", responses="native"))
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)

        answer = await client.responses.create(model="gpt-4o", input=[*HISTORY, TRIGGER], store=False)
        (item,) = answer.output
        assert item.type == "compaction" and item.encrypted_content.startswith("gAAAAB")
        assert h.upstream.last("/v1/responses").body["input"][-1] == TRIGGER

        stream = await client.responses.create(model="gpt-4o", input=[*HISTORY, TRIGGER], stream=True)
        events = [e async for e in stream]
        done = [e.item for e in events if e.type == "response.output_item.done"]
        assert [i.type for i in done] == ["compaction"] and done[0].encrypted_content == item.encrypted_content
        assert events[-1].response.output[0].encrypted_content == item.encrypted_content

        # the next turn starts from the compaction item: it reaches the upstream unchanged
        compacted = item.model_dump(mode="json", exclude_none=True)
        follow = await client.responses.create(model="gpt-4o", input=[compacted, {"role": "user", "content": "go on"}])
        assert follow.output_text
        assert h.upstream.last("/v1/responses").body["input"][0] == compacted

        # over a WebSocket, as Codex sends it: the trigger after the connection's previous response
        async with _socket(h, secret) as ws:
            await _compacted_on_socket(ws)
            sent = h.upstream.last("/v1/responses").body["input"]
            assert len(sent) == 3 and sent[-1] == TRIGGER


@asynccontextmanager
async def _socket(h: Harness, secret: str) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    async with aiohttp.ClientSession() as s, s.ws_connect(h.base.replace("http://", "ws://") + "/v1/responses",
                                                          headers={"Authorization": f"Bearer {secret}"}) as ws:
        yield ws


async def _compacted_on_socket(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """A turn, then the trigger after it as Codex sends it (the connection's previous response and
    only the trigger): the compaction's response, which holds one compaction item."""
    first = await _ws_turn(ws, {"model": "gpt-4o", "input": HISTORY[:1], "store": False})
    turn = await _ws_turn(ws, {"model": "gpt-4o", "input": [TRIGGER], "store": False,
                               "previous_response_id": first["id"]})
    assert [i["type"] for i in turn["output"]] == ["compaction"]
    return turn


async def _ws_turn(ws: aiohttp.ClientWebSocketResponse, create: dict[str, Any]) -> dict[str, Any]:
    await ws.send_json({"type": "response.create", **create})
    while True:
        event = json.loads(await ws.receive_str(timeout=10))
        assert event["type"] != "error", event
        if event["type"] == "response.completed":
            response: dict[str, Any] = event["response"]
            return response


async def test_translate_deployment_compacts_by_summary_and_opens_it_for_any_deployment(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        tools: list[Any] = [{"type": "function", "name": "shell", "parameters": {"type": "object", "properties": {}}}]

        answer = await client.responses.create(model="gpt-4o", input=[*HISTORY, TRIGGER], tools=tools)
        (item,) = answer.output
        assert item.type == "compaction" and item.encrypted_content.startswith(SEAL)
        assert answer.status == "completed" and answer.usage is not None and answer.usage.output_tokens == 5
        asked = h.upstream.last("/v1/chat/completions").body
        assert [m["role"] for m in asked["messages"]] == ["user", "assistant", "user"]
        assert asked["messages"][-1]["content"] == SUMMARY_REQUEST and asked["tool_choice"] == "none"

        streamed = await client.responses.create(model="gpt-4o", input=[*HISTORY, TRIGGER], stream=True)
        events = [e async for e in streamed]
        assert [e.type for e in events] == ["response.created", "response.in_progress", "response.output_item.added",
                                            "response.output_item.done", "response.completed"]
        assert [e.sequence_number for e in events] == list(range(5))
        assert events[-1].response.output[0].type == "compaction"

        # automatic compaction is OpenAI's: elsewhere the field is left out, and the answer says so
        raw = await client.responses.with_raw_response.create(
            model="gpt-4o", input="hi", context_management=[{"type": "compaction", "compact_threshold": 1000}])
        assert raw.headers["x-shieldes-dropped"] == "context_management"
        assert "context_management" not in h.upstream.last("/v1/chat/completions").body
        # and so is truncation `auto` (dropping the oldest items that do not fit the model's window)
        raw = await client.responses.with_raw_response.create(model="gpt-4o", input="hi", truncation="auto")
        assert raw.headers["x-shieldes-dropped"] == "truncation" and raw.parse().truncation == "auto"
        async with client.responses.with_streaming_response.create(model="gpt-4o", input="hi", truncation="auto",
                                                                   stream=True) as streamed:
            assert streamed.headers["x-shieldes-dropped"] == "truncation"
        raw = await client.responses.with_raw_response.create(model="gpt-4o", input="hi", truncation="disabled")
        assert "x-shieldes-dropped" not in raw.headers

        # a later turn sends the item back: the upstream gets the summary in its place
        compacted = item.model_dump(mode="json", exclude_none=True)
        await client.responses.create(model="gpt-4o", input=[compacted, {"role": "user", "content": "go on"}])
        sent = h.upstream.last("/v1/chat/completions").body["messages"]
        assert sent == [{"role": "user", "content": f"{SUMMARY_HEADING}\n\n{HELLO}"},
                        {"role": "user", "content": "go on"}]
        # and so does a native deployment, which could not read this gateway's seal
        await h.admin(UpdateProvider("openai", responses="native"))
        await h.sync()
        await client.responses.create(model="gpt-4o", input=[compacted, {"role": "user", "content": "go on"}])
        first = h.upstream.last("/v1/responses").body["input"][0]
        assert first["role"] == "user" and first["content"][0]["text"] == f"{SUMMARY_HEADING}\n\n{HELLO}"
        await h.admin(UpdateProvider("openai", responses="translate"))
        await h.sync()

        # a seal that was changed, and OpenAI's own compaction, are refused in the API's words
        for bad, words in (({"type": "compaction", "encrypted_content": SEAL + "!!"}, "changed or cut"),
                           ({"type": "compaction", "encrypted_content": "gAAAAB0"}, "made by OpenAI")):
            try:
                await client.responses.create(model="gpt-4o", input=[bad, {"role": "user", "content": "go on"}])
            except openai.BadRequestError as exc:
                assert exc.status_code == 400 and words in exc.message, exc.message
            else:
                raise AssertionError(f"{bad} was taken")

        # over a WebSocket, continuing the connection's responses across the compaction
        async with _socket(h, secret) as ws:
            compaction = await _compacted_on_socket(ws)
            await _ws_turn(ws, {"model": "gpt-4o", "input": [compaction["output"][0],
                                                             {"role": "user", "content": "next"}], "store": False})
            assert h.upstream.last("/v1/chat/completions").body["messages"][0]["content"].startswith(SUMMARY_HEADING)

        await h.flush()
        assert h.usage_totals()["app"][0] == 11  # the compactions are billed turns


async def test_compact_endpoint_answers_the_users_messages_and_one_compaction(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        stored = await client.responses.create(model="gpt-4o", input="read the repo")  # (stored: a continuation)
        for mode, seal in (("translate", SEAL), ("native", "gAAAAB")):
            if mode == "native":
                await h.admin(UpdateProvider("openai", responses="native"))
                await h.sync()
            compacted = await client.responses.compact(model="gpt-4o", previous_response_id=stored.id,
                                                       input=[{"role": "user", "content": "now the tests"}])
            assert compacted.object == "response.compaction" and compacted.usage.output_tokens > 0
            kinds = [(item.type, getattr(item, "role", None)) for item in compacted.output]
            assert kinds == [("message", "user"), ("message", "user"), ("compaction", None)], kinds
            assert compacted.output[-1].encrypted_content.startswith(seal)
            if mode == "native":  # the upstream compacted a turn ending with the trigger, unstored
                sent = h.upstream.last("/v1/responses").body
                assert sent["input"][-1] == TRIGGER and len(sent["input"]) == 4 and sent["store"] is False

        with_stream = {"model": "gpt-4o", "input": "x", "stream": True}
        in_conversation = {"model": "gpt-4o", "input": "x", "conversation": "conv_1"}
        in_background = {"model": "gpt-4o", "input": "x", "background": True}
        async with aiohttp.ClientSession() as s:
            for body, param in ((with_stream, "stream"), (in_conversation, "conversation"),
                                (in_background, "background")):
                async with s.post(h.base + "/v1/responses/compact", json=body,
                                  headers={"Authorization": f"Bearer {secret}"}) as r:
                    assert r.status == 400 and (await r.json())["error"]["param"] == param
        await h.flush()
        assert h.usage_totals()["app"][0] == 3
