"""Tokens per minute are reserved at admission (estimated tokens) and settled to the real count, so
concurrent requests cannot all pass a token limit (they used to: tokens counted only once answered)."""

from __future__ import annotations

import asyncio

import openai

from tests.integration.gateway_harness import harness

MSGS = [{"role": "user", "content": "hello there"}]


async def test_concurrent_requests_cannot_all_pass_a_token_limit(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("tokens", tpm=1000)
        await h.sync()
        h.upstream.inject("/v1/chat/completions", delay=1.0, times=None)  # all five in flight at once
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)

        async def one() -> int:
            try:
                await client.chat.completions.create(model="gpt-4o", messages=MSGS, max_tokens=300)  # type: ignore[arg-type]
            except openai.RateLimitError as exc:
                assert exc.code == "rate_limit_exceeded" and "may use up to" in exc.message
                return 429
            return 200

        # each holds about 300 + body bytes / 4 tokens: three fit in 1000, the others are refused
        statuses = await asyncio.gather(*(one() for _ in range(5)))
        assert sorted(statuses) == [200, 200, 200, 429, 429]
        h.upstream.clear_faults()
        # settled: each used 2 + 5 tokens, the rest of the estimates is handed back
        assert h.node.meter is not None
        ((requests, tokens, released),) = h.node.meter.rate_snapshot().values()
        assert (requests, tokens - released) == (3, 21)
        await client.chat.completions.create(model="gpt-4o", messages=MSGS, max_tokens=300)  # type: ignore[arg-type]
        await client.close()
