"""Grounding with Google Search: Google bills it apart from tokens, per grounded prompt for Gemini
2.x ($35 per 1,000) and per search query for Gemini 3 ($14 per 1,000), and says what it searched
in each candidate's `groundingMetadata.webSearchQueries` (usageMetadata does not count it).
Through a real node and Google's google-genai SDK, JSON and streamed, a grounded answer costs the
model's per-search price on top of its tokens, in usage_daily and in the request log's
`web_searches`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from google import genai
from google.genai import types

from shieldes.projections.shared_commands import AddProvider
from tests.fake_google import FakeGoogle
from tests.integration.gateway_harness import Harness, harness, wait_until

KEY_ENV = "SHIELDES_TEST_GEMINI_KEY"
SEARCH = types.GenerateContentConfig(tools=[types.Tool(google_search=types.GoogleSearch())])
# nUSD per token: gemini-2.5-flash $0.30 / $2.50 per 1M; gemini-3-pro-preview $2 / $12 per 1M
FLASH, PRO3 = (300, 2500), (2000, 12_000)


def client(base: str, key: str) -> genai.Client:
    return genai.Client(api_key=key, http_options=types.HttpOptions(
        base_url=base, retry_options=types.HttpRetryOptions(attempts=1)))


@pytest.fixture
async def node(database_url: str) -> AsyncIterator[tuple[Harness, FakeGoogle]]:
    async with FakeGoogle() as google:
        os.environ[KEY_ENV] = google.api_key
        async with harness(database_url, providers=False, upstream_retries=0) as h:
            await h.admin(AddProvider("gem", "gemini", google.url + "/v1beta", "env:" + KEY_ENV,
                                      ("gemini-2.5-flash", "gemini-3-pro-preview")))
            await h.sync()
            yield h, google


async def test_grounded_answers_cost_the_per_search_price(node: tuple[Harness, FakeGoogle]) -> None:
    h, _ = node
    names = ("json", "stream", "plain", "gemini-3")
    keys = {name: await h.create_key(name) for name in names}
    await h.sync()
    models = {name: client(h.base, keys[name]).aio.models for name in names}

    grounded = await models["json"].generate_content(model="gemini-2.5-flash", contents="news?", config=SEARCH)
    assert grounded.candidates and grounded.candidates[0].grounding_metadata is not None
    chunks = [c async for c in await models["stream"].generate_content_stream(
        model="gemini-2.5-flash", contents="news?", config=SEARCH)]
    plain = await models["plain"].generate_content(model="gemini-2.5-flash", contents="news?")
    three = await models["gemini-3"].generate_content(model="gemini-3-pro-preview", contents="news?", config=SEARCH)

    await h.flush()
    totals = h.usage_totals()

    def tokens(usage: types.GenerateContentResponseUsageMetadata | None, rate: tuple[int, int]) -> int:
        assert usage is not None
        out = (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)
        return (usage.prompt_token_count or 0) * rate[0] + out * rate[1]

    assert totals["json"][3] == tokens(grounded.usage_metadata, FLASH) + 35_000_000  # one grounded prompt
    assert totals["stream"][3] == tokens(chunks[-1].usage_metadata, FLASH) + 35_000_000
    assert totals["plain"][3] == tokens(plain.usage_metadata, FLASH)
    assert totals["gemini-3"][3] == tokens(three.usage_metadata, PRO3) + 14_000_000  # one search query

    writer = h.node.request_log
    assert writer is not None
    await wait_until(lambda: writer.buffer.added >= len(names), timeout=10)
    assert await writer.flush_all(10)
    logged = dict(h.sql("SELECT key_name, web_searches FROM request_log"))
    assert logged == {"json": 1, "stream": 1, "plain": None, "gemini-3": 1}
