"""Messages streams translated from upstreams that report usage only at the end (OpenAI-compatible
servers, Bedrock ConverseStream, Gemini): the final `message_delta` carries input, cache read, cache
write and output tokens, as Anthropic's API does, so the anthropic SDK's `get_final_message().usage`
has the real input counts although `message_start` could only say 0. Official SDK, a real node."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from shieldes.projections.shared_commands import AddProvider
from tests.fake_bedrock import FakeBedrock
from tests.fake_google import FakeGoogle
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, Harness, harness
from tests.integration.test_request_log import flushed

BEDROCK_CLAUDE = "anthropic.claude-3-5-sonnet-v1:0"
SYSTEM = "You answer questions about the weather in one short sentence please now"  # 12 words


@pytest.fixture
async def node(database_url: str) -> AsyncIterator[tuple[Harness, anthropic.AsyncAnthropic]]:
    os.environ["SHIELDES_TEST_SU_GEMINI"] = "gm-key"
    os.environ["SHIELDES_TEST_SU_BEDROCK"] = "bedrock-api-key"
    up = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=("gpt-4o",), implicit_cache=True)
    async with FakeGoogle(implicit_cache=True) as google, FakeBedrock() as bedrock, \
            harness(database_url, upstream=up, upstream_retries=0) as h:
        await h.admin(AddProvider("gem", "gemini", google.url + "/v1beta", "env:SHIELDES_TEST_SU_GEMINI",
                                  ("gemini-2.5-flash",)))
        await h.admin(AddProvider("br", "bedrock", bedrock.url, "env:SHIELDES_TEST_SU_BEDROCK", (BEDROCK_CLAUDE,),
                                  options={"region": "us-east-1"}))
        secret = await h.create_key("app")
        await h.sync()
        yield h, anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)


async def _streamed(claude: anthropic.AsyncAnthropic, **ask: Any) -> tuple[Any, Any, Any]:
    """(message_start usage, message_delta usage, final message usage) of one streamed call."""
    async with claude.messages.stream(max_tokens=100, **ask) as stream:
        events = [e async for e in stream]
        final = await stream.get_final_message()
    start = next(e for e in events if e.type == "message_start").message.usage
    delta = next(e for e in events if e.type == "message_delta").usage
    return start, delta, final.usage


def _counts(usage: Any) -> tuple[int, int, int, int]:
    return (usage.input_tokens, usage.cache_read_input_tokens, usage.cache_creation_input_tokens,
            usage.output_tokens)


@pytest.mark.parametrize(("model", "fresh", "cached"), [
    ("gpt-4o", (15, 0, 0, 5), (3, 12, 0, 5)),  # OpenAI-style: implicit cache of the prefix
    ("gemini-2.5-flash", (15, 0, 0, 5), (3, 12, 0, 5)),  # Gemini: implicit context caching
    (BEDROCK_CLAUDE, (3, 0, 12, 5), (3, 12, 0, 5)),  # Bedrock: cachePoint written, then read
])
async def test_final_message_delta_carries_the_real_input_and_cache_tokens(
        node: tuple[Harness, anthropic.AsyncAnthropic], model: str, fresh: tuple[int, ...],
        cached: tuple[int, ...]) -> None:
    _h, claude = node
    system: Any = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    for expected, question in ((fresh, "rain in Paris?"), (cached, "wind in Rome?")):
        start, delta, final = await _streamed(claude, model=model, system=system,
                                              messages=[{"role": "user", "content": question}])
        assert start.input_tokens == 0  # not known before the upstream's last event
        assert _counts(delta) == _counts(final) == expected
        plain = await claude.messages.create(model=model, max_tokens=100, system=system,
                                             messages=[{"role": "user", "content": "snow " + question}])
        assert plain.usage.input_tokens + (plain.usage.cache_read_input_tokens or 0) + \
            (plain.usage.cache_creation_input_tokens or 0) == 16


async def test_a_stream_without_upstream_usage_shows_the_client_the_estimate_that_is_billed(
        database_url: str) -> None:
    """An OpenAI-compatible server that refuses `stream_options` reports no usage: the gateway bills
    an estimate (prompt bytes / 4, one token per content chunk), and the client is told that same
    estimate, in the final `message_delta` of a Messages stream and in the usage chunk of a chat
    stream that asked for one (never 0 while something else is billed), and the request log holds it."""

    up = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=("gpt-4o",), reject_stream_options=True)
    async with harness(database_url, upstream=up, upstream_retries=0) as h:
        secret = await h.create_key("app")
        await h.sync()
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        start, delta, final = await _streamed(claude, model="gpt-4o",
                                              messages=[{"role": "user", "content": "rain in Paris?"}])
        await h.flush()
        billed = h.usage_totals()["app"]
        assert billed[0] == 1 and billed[2] > 0  # an estimate: the upstream sent no counts
        assert (delta.input_tokens, delta.output_tokens) == (final.input_tokens, final.output_tokens) == \
            (billed[1], billed[2])
        assert start.input_tokens == 0 and delta.cache_read_input_tokens == 0

        chat = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        stream = await chat.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                                    stream=True, stream_options={"include_usage": True})
        chunks = [c async for c in stream]
        await h.flush()
        after = h.usage_totals()["app"]
        usage = chunks[-1].usage
        assert usage is not None and not chunks[-1].choices and chunks[-1].id == chunks[0].id
        assert (usage.prompt_tokens, usage.completion_tokens) == (after[1] - billed[1], after[2] - billed[2]) != (0, 0)
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
        assert sum(1 for r in up.requests if "stream_options" in r.body) == 2  # both refused, both sent again
        plain = await chat.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                                                   stream=True)
        assert all(c.usage is None for c in [c async for c in plain])  # not asked for: none sent
        await flushed(h, 3)
        logged = h.sql("SELECT route, prompt_tokens, completion_tokens FROM request_log ORDER BY started_at")
        assert logged[:2] == [("/v1/messages", delta.input_tokens, delta.output_tokens),
                              ("/v1/chat/completions", usage.prompt_tokens, usage.completion_tokens)]
