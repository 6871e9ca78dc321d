"""OpenAI automatic prompt caching through a real node: the cached part of the prompt that the
upstream reports (`prompt_tokens_details.cached_tokens`) is billed at the model's shipped cache-read
price, on plain and streamed answers. (Anthropic: test_anthropic_passthrough; Bedrock and Gemini:
test_kind_bedrock, test_kind_google.)"""

from __future__ import annotations

from typing import Any

import openai

from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, harness

SYSTEM = {"role": "system", "content": "You are a careful assistant"}  # 5 words: the cached prefix
# gpt-4o-mini's shipped price, nUSD per token: input 0.15/1M, cache read 0.075/1M, output 0.6/1M
INPUT, CACHE_READ, OUTPUT = 150, 75, 600


async def test_openai_cached_tokens_billed_at_the_cache_read_price(database_url: str) -> None:
    upstream = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, implicit_cache=True)
    async with harness(database_url, upstream=upstream) as h:
        secret = await h.create_key("cached")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        first_ask: Any = [SYSTEM, {"role": "user", "content": "first question here"}]
        first = await client.chat.completions.create(model="gpt-4o-mini", messages=first_ask)
        assert first.usage is not None and first.usage.prompt_tokens == 8
        assert first.usage.prompt_tokens_details is not None and first.usage.prompt_tokens_details.cached_tokens == 0

        second_ask: Any = [SYSTEM, {"role": "user", "content": "second one"}]
        stream = await client.chat.completions.create(model="gpt-4o-mini", messages=second_ask, stream=True,
                                                      stream_options={"include_usage": True})
        second = [c async for c in stream][-1].usage
        assert second is not None and second.prompt_tokens == 7
        assert second.prompt_tokens_details is not None and second.prompt_tokens_details.cached_tokens == 5

        await h.flush()
        out = first.usage.completion_tokens + second.completion_tokens
        expected = 8 * INPUT + (2 * INPUT + 5 * CACHE_READ) + out * OUTPUT
        assert h.usage_totals() == {"cached": (2, 15, out, expected)}
