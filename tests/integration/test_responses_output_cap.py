"""A Responses request (Codex, the OpenAI Agents SDK) whose max_output_tokens is above what a
translated deployment's model writes, through the official openai SDK on a real node: sent again
within the limit the upstream's 400 names, remembered for the next, and named in
x-shieldes-dropped, as a Messages request is (test_messages_translated)."""

from __future__ import annotations

import os
from typing import Any

from shieldes.projections.shared_commands import AddProvider
from tests.fake_google import FakeGoogle
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, harness
from tests.integration.test_responses_api import oai
from tests.integration.test_responses_background import wait_until_async
from tests.integration.test_responses_compaction import _socket, _ws_turn

CHAT = "/v1/chat/completions"


async def test_max_output_tokens_above_what_the_model_writes_is_lowered_to_its_limit(database_url: str) -> None:
    """gpt-4o writes at most 16384 tokens and a chat upstream refuses a request asking more (400
    "max_tokens is too large"), which the client got as it was, whole, streamed or in the
    background or over a WebSocket. The request goes again within the limit named, one upstream call each after the
    first."""
    upstream = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=("gpt-4o",),
                            output_caps={"gpt-4o": 16384})
    async with harness(database_url, upstream=upstream) as h:
        secret = await h.create_key("codex")
        await h.sync()
        client = oai(h.base, secret)

        def sent() -> list[Any]:
            return [r.body.get("max_tokens") for r in h.upstream.requests_to(CHAT)]

        raw = await client.responses.with_raw_response.create(model="gpt-4o", input="hi", max_output_tokens=32000)
        response = raw.parse()
        assert response.status == "completed" and response.output_text
        assert raw.headers["x-shieldes-dropped"] == "max_output_tokens"
        assert sent() == [32000, 16384]

        async with client.responses.stream(model="gpt-4o", input="hi", max_output_tokens=64000) as stream:
            final = await stream.get_final_response()
        assert final.status == "completed" and final.output_text
        assert sent() == [32000, 16384, 16384]

        made = await client.responses.create(model="gpt-4o", input="hi", max_output_tokens=32000, background=True)

        async def done() -> bool:
            return (await client.responses.retrieve(made.id)).status == "completed"

        await wait_until_async(done)
        assert sent() == [32000, 16384, 16384, 16384]
        async with _socket(h, secret) as ws:  # a WebSocket turn, as Codex sends it
            turn = await _ws_turn(ws, {"model": "gpt-4o", "input": "hi", "max_output_tokens": 32000, "store": False})
        assert turn["status"] == "completed" and sent() == [32000, 16384, 16384, 16384, 16384]

        # within the limit: sent as asked, nothing named
        raw = await client.responses.with_raw_response.create(model="gpt-4o", input="hi", max_output_tokens=1000)
        assert "x-shieldes-dropped" not in raw.headers and sent()[-1] == 1000


async def test_max_output_tokens_above_what_a_gemini_model_writes_is_lowered_to_its_limit(database_url: str) -> None:
    """Google refuses a maxOutputTokens above the model's limit in its own words ("the supported
    range is from 1 (inclusive) to 8193 (exclusive)"); a Codex turn streamed to Gemini failed on it."""
    async with FakeGoogle() as google, harness(database_url, providers=False, upstream_retries=0) as h:
        os.environ["SHIELDES_TEST_GEMINI_KEY"] = google.api_key
        await h.admin(AddProvider("gem", "gemini", google.url + "/v1beta", "env:SHIELDES_TEST_GEMINI_KEY",
                                  ("gemini-2.5-flash",)))
        secret = await h.create_key("codex")
        await h.sync()
        google.output_cap = 8192
        client = oai(h.base, secret)
        for _ in range(2):
            raw = await client.responses.with_raw_response.create(
                model="gemini-2.5-flash", input="fix the typo in a.py", max_output_tokens=32000, stream=True)
            assert raw.headers["x-shieldes-dropped"] == "max_output_tokens"
            events = [event async for event in raw.parse()]
            assert events[-1].type == "response.completed"
        asked = [r.body["generationConfig"]["maxOutputTokens"] for r in google.requests if "generationConfig" in r.body]
        assert asked == [32000, 8192, 8192]


async def test_max_output_tokens_above_what_a_claude_model_writes_is_lowered_to_its_limit(database_url: str) -> None:
    """Anthropic refuses a max_tokens above the model's limit in its own words ("max_tokens: 64000 >
    32000, which is the maximum allowed number of output tokens for ..."): sent again within it."""
    upstream = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=("gpt-4o",),
                            output_caps={"claude-3-5-haiku-latest": 8192})
    async with harness(database_url, upstream=upstream) as h:
        secret = await h.create_key("agents")
        await h.sync()
        client = oai(h.base, secret)
        for _ in range(2):
            raw = await client.responses.with_raw_response.create(model="claude-3-5-haiku-latest", input="hi",
                                                                  max_output_tokens=64000)
            assert raw.parse().status == "completed"
            assert raw.headers["x-shieldes-dropped"] == "max_output_tokens"
        assert [r.body["max_tokens"] for r in h.upstream.requests_to("/v1/messages")] == [64000, 8192, 8192]
