"""POST /v1/chat/completions to a Gemini deployment with a max_tokens (or max_completion_tokens)
above what the model writes, through the official openai SDK on a real node: sent again within the
limit Google's 400 names, remembered for the next, and named in x-shieldes-dropped, as a Messages
or Responses request is (test_messages_translated, test_responses_output_cap)."""

from __future__ import annotations

import os

import openai

from shieldes.projections.shared_commands import AddProvider
from tests.fake_bedrock import FakeBedrock
from tests.fake_google import FakeGoogle
from tests.integration.gateway_harness import harness
from tests.integration.test_responses_api import oai


async def test_chat_max_tokens_above_what_a_gemini_model_writes_is_lowered_to_its_limit(database_url: str) -> None:
    """Google refuses a maxOutputTokens above the model's limit ("the supported range is from 1
    (inclusive) to 8193 (exclusive)"), which a chat client asking 32000 got as a 400, whole or
    streamed; an OpenAI-compatible upstream's own refusal is not this gateway's to change."""
    async with FakeGoogle() as google, harness(database_url, upstream_retries=0) as h:
        os.environ["SHIELDES_TEST_GEMINI_KEY"] = google.api_key
        await h.admin(AddProvider("gem", "gemini", google.url + "/v1beta", "env:SHIELDES_TEST_GEMINI_KEY",
                                  ("gemini-2.5-flash",)))
        secret = await h.create_key("app")
        await h.sync()
        google.output_cap = 8192
        client = oai(h.base, secret)
        hi: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]

        raw = await client.chat.completions.with_raw_response.create(model="gemini-2.5-flash", messages=hi,
                                                                     max_tokens=32000)
        assert raw.parse().choices[0].message.content
        assert raw.headers["x-shieldes-dropped"] == "max_tokens"
        raw = await client.chat.completions.with_raw_response.create(
            model="gemini-2.5-flash", messages=hi, max_completion_tokens=64000, stream=True)
        assert raw.headers["x-shieldes-dropped"] == "max_completion_tokens"
        chunks = [chunk async for chunk in raw.parse()]
        assert chunks[-1].usage is not None or chunks[-1].choices[0].finish_reason == "stop"
        asked = [r.body["generationConfig"]["maxOutputTokens"] for r in google.requests if "generationConfig" in r.body]
        assert asked == [32000, 8192, 8192]

        # within the limit: sent as asked, nothing named
        raw = await client.chat.completions.with_raw_response.create(model="gemini-2.5-flash", messages=hi,
                                                                     max_tokens=1000)
        assert "x-shieldes-dropped" not in raw.headers
        assert google.requests[-1].body["generationConfig"]["maxOutputTokens"] == 1000

        # an OpenAI-compatible deployment's refusal is the client's to see, as OpenAI words it
        h.upstream.output_caps["gpt-4o"] = 16384
        try:
            await client.chat.completions.create(model="gpt-4o", messages=hi, max_tokens=32000)
        except openai.BadRequestError as exc:
            assert "at most 16384 completion tokens" in exc.message
        else:
            raise AssertionError("a max_tokens gpt-4o refuses was lowered")


async def test_chat_max_tokens_above_what_a_bedrock_model_writes_is_lowered_to_its_limit(database_url: str) -> None:
    """Converse refuses a maxTokens above the model's limit ("The maximum tokens you requested
    exceeds the model limit of 10000", Nova Pro): sent again within it, remembered for the next."""
    async with FakeBedrock() as bedrock, harness(database_url, upstream_retries=0) as h:
        os.environ["SHIELDES_TEST_BEDROCK_KEY"] = bedrock.api_key
        await h.admin(AddProvider("br", "bedrock", bedrock.url, "env:SHIELDES_TEST_BEDROCK_KEY",
                                  ("amazon.nova-pro-v1:0",), options={"region": "us-east-1"}))
        secret = await h.create_key("app")
        await h.sync()
        bedrock.output_cap = 10000
        client = oai(h.base, secret)
        for _ in range(2):
            raw = await client.chat.completions.with_raw_response.create(
                model="amazon.nova-pro-v1:0", messages=[{"role": "user", "content": "hi"}], max_tokens=32000)
            assert raw.parse().choices[0].message.content
            assert raw.headers["x-shieldes-dropped"] == "max_tokens"
        asked = [r.body["inferenceConfig"]["maxTokens"] for r in bedrock.requests]
        assert asked == [32000, 10000, 10000]
