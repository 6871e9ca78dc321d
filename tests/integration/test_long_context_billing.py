"""Long-context price tiers through a real node: a request whose prompt is above 200k tokens costs
the higher tier for every token of it, output included (Claude Sonnet 4.5 with the 1M window on
the Messages API, Gemini 2.5 Pro through the chat API), one at the threshold the base prices; the
request log and usage_daily agree, and a budget holds the estimate at the tier that applies."""

from __future__ import annotations

import os
from typing import Any

import anthropic
import openai
import pytest

from shieldes.projections.shared_commands import AddProvider, SetPricing
from shieldes.projections.state import LongContext
from tests.fake_google import FakeGoogle
from tests.integration.gateway_harness import UPSTREAM_KEY_ENV, harness, wait_until

ONE_MILLION = {"anthropic-beta": "context-1m-2025-08-07"}
KEY_ENV = "SHIELDES_TEST_GEMINI_KEY"


def words(n: int) -> str:
    """A prompt the fakes count as `n` tokens (one a word)."""
    return "a " * n


async def test_claude_sonnet_above_200k_costs_the_long_context_tier(database_url: str) -> None:
    async with harness(database_url) as h:
        await h.admin(AddProvider("sonnet", "anthropic", h.upstream.url, "env:" + UPSTREAM_KEY_ENV,
                                  ("claude-sonnet-4-5",)))
        keys = {name: await h.create_key(name) for name in ("at", "above")}
        await h.sync()
        for name, prompt in (("at", 200_000), ("above", 200_001)):
            client = anthropic.AsyncAnthropic(base_url=h.base, api_key=keys[name], max_retries=0)
            msg = await client.messages.create(model="claude-sonnet-4-5", max_tokens=50, extra_headers=ONE_MILLION,
                                               messages=[{"role": "user", "content": words(prompt)}])
            assert msg.usage.input_tokens == prompt
        await h.flush()
        totals = h.usage_totals()
        # nUSD per token: base input 3000, output 15000; above 200k input 6000, output 22500
        assert totals["at"] == (1, 200_000, 5, 200_000 * 3000 + 5 * 15000)
        assert totals["above"] == (1, 200_001, 5, 200_001 * 6000 + 5 * 22500)

        writer = h.node.request_log
        assert writer is not None
        await wait_until(lambda: writer.buffer.added >= 2, timeout=10)
        assert await writer.flush_all(10)
        logged = dict(h.sql("SELECT key_name, cost_nusd FROM request_log"))
        assert logged == {"at": totals["at"][3], "above": totals["above"][3]}


async def test_gemini_pro_above_200k_costs_the_long_context_tier(database_url: str) -> None:
    async with FakeGoogle(max_prompt=1_000_000) as fake:
        os.environ[KEY_ENV] = fake.api_key
        async with harness(database_url, providers=False) as h:
            await h.admin(AddProvider("gem", "gemini", fake.url + "/v1beta", "env:" + KEY_ENV, ("gemini-2.5-pro",)))
            secret = await h.create_key("long")
            await h.sync()
            client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
            chat = await client.chat.completions.create(
                model="gemini-2.5-pro", messages=[{"role": "user", "content": words(250_000)}])
            assert chat.usage is not None
            prompt, out = chat.usage.prompt_tokens, chat.usage.completion_tokens
            assert prompt > 200_000
            await h.flush()
            # above 200k: input $2.50/1M, output (thinking included) $15/1M
            assert h.usage_totals()["long"] == (1, prompt, out, prompt * 2500 + out * 15000)


async def test_an_operator_tier_and_the_budget_hold_use_the_tier_that_applies(database_url: str) -> None:
    """`pricing set` with a long-context tier prices an operator's model so; a budget that would hold
    a long request's estimate at the base price refuses it at the tier's."""
    async with harness(database_url) as h:
        await h.admin(SetPricing("gpt-4o-mini", 1.0, 2.0, long_context=LongContext(1000, 4.0, 8.0)))
        # a 1 MB prompt is estimated at 250,000 tokens: $0.25 at the base price, $1 at the tier's
        budgeted = await h.create_key("budgeted", budget_usd=0.5)
        free = await h.create_key("free")
        await h.sync()
        ask: Any = [{"role": "user", "content": "abc " * 250_000}]
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=budgeted, max_retries=0)
        with pytest.raises(openai.RateLimitError) as refused:
            await client.chat.completions.create(model="gpt-4o-mini", messages=ask, max_tokens=10)
        assert refused.value.code == "budget_exceeded"

        plain = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=free, max_retries=0)
        short = await plain.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        long = await plain.chat.completions.create(model="gpt-4o-mini", messages=ask, max_tokens=10)
        assert short.usage is not None and long.usage is not None
        await h.flush()
        expected = (short.usage.prompt_tokens * 1000 + short.usage.completion_tokens * 2000
                    + long.usage.prompt_tokens * 4000 + long.usage.completion_tokens * 8000)
        assert long.usage.prompt_tokens > 1000
        assert h.usage_totals()["free"][3] == expected
