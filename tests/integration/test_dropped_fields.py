"""A chat request's settings a translation has nothing to carry to are named in the answer's
`x-shieldes-dropped` header (JSON and streams), never dropped in silence; a deployment that takes
the request as it is names nothing."""

from __future__ import annotations

from typing import Any

import openai

from tests.integration.gateway_harness import harness

ASKS: dict[str, Any] = {"seed": 0, "frequency_penalty": 0.5, "logprobs": True, "top_logprobs": None,
                        "response_format": {"type": "json_object"}}


async def test_what_a_translation_leaves_out_is_named(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        messages: Any = [{"role": "user", "content": "answer in JSON"}]
        for stream in (False, True):
            raw = await client.chat.completions.with_raw_response.create(
                model="claude-3-5-haiku-latest", messages=messages, stream=stream, **ASKS)
            assert raw.headers["x-shieldes-dropped"] == "seed, frequency_penalty, logprobs, response_format.json_object"
            if stream:
                async for _chunk in raw.parse():  # type: ignore[union-attr]
                    pass
            plain = await client.chat.completions.with_raw_response.create(
                model="claude-3-5-haiku-latest", messages=messages, stream=stream, temperature=0.2, logprobs=False)
            assert "x-shieldes-dropped" not in plain.headers  # nothing asked that is left out
            if stream:
                async for _chunk in plain.parse():  # type: ignore[union-attr]
                    pass
        native = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=messages, **ASKS)
        assert "x-shieldes-dropped" not in native.headers  # an OpenAI-compatible upstream gets them all
        assert h.upstream.last("/v1/chat/completions").body["seed"] == 0


async def test_a_responses_turn_translated_for_anthropic_names_them_too(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        raw = await client.responses.with_raw_response.create(
            model="claude-3-5-haiku-latest", input="think hard", reasoning={"effort": "high"})
        assert raw.headers["x-shieldes-dropped"] == "reasoning_effort"
        plain = await client.responses.with_raw_response.create(model="claude-3-5-haiku-latest", input="hi")
        assert "x-shieldes-dropped" not in plain.headers


async def test_service_tier_and_metadata_are_carried_where_they_mean_the_same_or_named(database_url: str) -> None:
    """`service_tier` and `metadata` vanished on the way to Anthropic without a word. Anthropic has
    `auto` and a standard-only tier and a user id for abuse detection (OpenAI's safety_identifier),
    no flex or priority tier and no tags."""
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        messages: Any = [{"role": "user", "content": "hi"}]
        for stream in (False, True):
            raw = await client.chat.completions.with_raw_response.create(
                model="claude-3-5-haiku-latest", messages=messages, stream=stream, service_tier="flex",
                metadata={"team": "search"})
            assert raw.headers["x-shieldes-dropped"] == "service_tier, metadata"
            if stream:
                async for _chunk in raw.parse():  # type: ignore[union-attr]
                    pass
            sent = h.upstream.last("/v1/messages").body
            assert "service_tier" not in sent and "metadata" not in sent
        raw = await client.chat.completions.with_raw_response.create(
            model="claude-3-5-haiku-latest", messages=messages, service_tier="default", safety_identifier="u-7f3a")
        assert "x-shieldes-dropped" not in raw.headers
        sent = h.upstream.last("/v1/messages").body
        assert sent["service_tier"] == "standard_only" and sent["metadata"] == {"user_id": "u-7f3a"}
        raw = await client.chat.completions.with_raw_response.create(
            model="claude-3-5-haiku-latest", messages=messages, service_tier="auto")
        assert "x-shieldes-dropped" not in raw.headers
        assert h.upstream.last("/v1/messages").body["service_tier"] == "auto"
