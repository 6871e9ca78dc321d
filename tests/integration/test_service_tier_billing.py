"""Service tiers: OpenAI serves a request at the flex tier for half its list price and at the
priority tier for more (gpt-5: twice), and says which in the answer's `service_tier`; Anthropic
says so in `usage.service_tier`. Through a real node and the official SDKs, JSON and streamed, an
answer costs its tier's multiplier of the model's prices (the shipped catalog's for gpt-5, an
operator's for Claude), the budget holds a priority request at the priority price, and the request
log shows the tier."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from shieldes.projections.shared_commands import AddProvider, SetPricing
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, UPSTREAM_KEY_ENV, harness, wait_until

ASK: Any = [{"role": "user", "content": "say hello"}]
# nUSD per token: gpt-5 $1.25 / $10 per 1M; claude-sonnet-4-5 $3 / $15 per 1M
GPT5 = (1250, 10_000)
SONNET = (3000, 15_000)


def _cost(rate: tuple[int, int], prompt: int, completion: int, factor: float = 1.0) -> int:
    return round((prompt * rate[0] + completion * rate[1]) * factor)


async def test_answers_cost_the_tier_that_served_them(database_url: str) -> None:
    up = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=("gpt-5", "claude-sonnet-4-5"))
    up.anthropic_priority = True
    async with harness(database_url, upstream=up, providers=False) as h:
        ref = "env:" + UPSTREAM_KEY_ENV
        await h.admin(AddProvider("openai", "openai", up.url, ref, ("gpt-5",)))
        await h.admin(AddProvider("claude", "anthropic", up.url, ref, ("claude-sonnet-4-5",)))
        await h.admin(SetPricing("claude-sonnet-4-5", 3.0, 15.0, multipliers=(("priority", 1.5),)))
        names = ("default", "flex", "flex-stream", "priority", "claude-priority", "claude-standard")
        keys = {name: await h.create_key(name) for name in names}
        await h.sync()

        def oa(name: str) -> openai.AsyncOpenAI:
            return openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=keys[name], max_retries=0)

        default = await oa("default").chat.completions.create(model="gpt-5", messages=ASK)
        flex = await oa("flex").chat.completions.create(model="gpt-5", messages=ASK, service_tier="flex")
        assert default.service_tier == "default" and flex.service_tier == "flex"
        stream = await oa("flex-stream").chat.completions.create(
            model="gpt-5", messages=ASK, service_tier="flex", stream=True, stream_options={"include_usage": True})
        streamed = [c async for c in stream]
        usage = next(c.usage for c in streamed if c.usage is not None)
        priority = await oa("priority").chat.completions.create(model="gpt-5", messages=ASK, service_tier="priority")
        assert priority.service_tier == "priority"

        def ac(name: str) -> anthropic.AsyncAnthropic:
            return anthropic.AsyncAnthropic(base_url=h.base, api_key=keys[name], max_retries=0)

        served = await ac("claude-priority").messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=ASK)
        assert served.usage.service_tier == "priority"
        standard = await ac("claude-standard").messages.create(model="claude-sonnet-4-5", max_tokens=50,
                                                               messages=ASK, service_tier="standard_only")
        assert standard.usage.service_tier == "standard"

        await h.flush()
        totals = h.usage_totals()
        assert default.usage is not None and flex.usage is not None and priority.usage is not None
        assert totals["default"][3] == _cost(GPT5, default.usage.prompt_tokens, default.usage.completion_tokens)
        assert totals["flex"][3] == _cost(GPT5, flex.usage.prompt_tokens, flex.usage.completion_tokens, 0.5)
        assert totals["flex-stream"][3] == _cost(GPT5, usage.prompt_tokens, usage.completion_tokens, 0.5)
        assert totals["priority"][3] == _cost(GPT5, priority.usage.prompt_tokens, priority.usage.completion_tokens,
                                              2.0)
        assert totals["claude-priority"][3] == _cost(SONNET, served.usage.input_tokens, served.usage.output_tokens,
                                                     1.5)
        assert totals["claude-standard"][3] == _cost(SONNET, standard.usage.input_tokens,
                                                     standard.usage.output_tokens)

        writer = h.node.request_log
        assert writer is not None
        await wait_until(lambda: writer.buffer.added >= len(names), timeout=10)
        assert await writer.flush_all(10)
        logged = {name: (tier, cost) for name, tier, cost in
                  h.sql("SELECT key_name, service_tier, cost_nusd FROM request_log")}
        assert logged == {"default": ("default", totals["default"][3]), "flex": ("flex", totals["flex"][3]),
                          "flex-stream": ("flex", totals["flex-stream"][3]),
                          "priority": ("priority", totals["priority"][3]),
                          "claude-priority": ("priority", totals["claude-priority"][3]),
                          "claude-standard": ("default", totals["claude-standard"][3])}


async def test_responses_cost_the_tier_that_served_them(database_url: str) -> None:
    """A native Responses answer says its tier in the response object's `service_tier`: JSON and
    streamed, it costs that tier's multiplier, and the request log shows the tier."""
    up = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=("gpt-5",))
    async with harness(database_url, upstream=up, providers=False) as h:
        await h.admin(AddProvider("openai", "openai", up.url, "env:" + UPSTREAM_KEY_ENV, ("gpt-5",),
                                  responses="native"))
        names = ("json-flex", "stream-flex", "stream-priority", "stream-default")
        keys = {name: await h.create_key(name) for name in names}
        await h.sync()

        def oa(name: str) -> openai.AsyncOpenAI:
            return openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=keys[name], max_retries=0)

        answer = await oa("json-flex").responses.create(model="gpt-5", input="say hello", service_tier="flex")
        assert answer.service_tier == "flex" and answer.usage is not None
        usages = {"json-flex": answer.usage}
        for name, tier in (("stream-flex", "flex"), ("stream-priority", "priority"), ("stream-default", None)):
            asked: Any = {"service_tier": tier} if tier else {}
            events = [e async for e in await oa(name).responses.create(model="gpt-5", input="say hello",
                                                                       stream=True, **asked)]
            done = events[-1]
            assert done.type == "response.completed" and done.response.service_tier == (tier or "default")
            assert done.response.usage is not None
            usages[name] = done.response.usage

        await h.flush()
        totals = h.usage_totals()
        factors = {"json-flex": 0.5, "stream-flex": 0.5, "stream-priority": 2.0, "stream-default": 1.0}
        for name, factor in factors.items():
            assert totals[name][3] == _cost(GPT5, usages[name].input_tokens, usages[name].output_tokens, factor), name
        writer = h.node.request_log
        assert writer is not None
        await wait_until(lambda: writer.buffer.added >= len(names), timeout=10)
        assert await writer.flush_all(10)
        logged = dict(h.sql("SELECT key_name, service_tier FROM request_log"))
        assert logged == {"json-flex": "flex", "stream-flex": "flex", "stream-priority": "priority",
                          "stream-default": "default"}


async def test_a_budget_holds_a_priority_request_at_the_priority_price(database_url: str) -> None:
    """Admission holds a request's estimate at the price it may be billed at: one asking for the
    priority tier at the model's priority multiplier (gpt-5: twice), so a budget that has room for
    it at the standard price refuses it, and a flex or default request still fits."""
    up = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=("gpt-5",))
    async with harness(database_url, upstream=up, providers=False) as h:
        await h.admin(AddProvider("openai", "openai", up.url, "env:" + UPSTREAM_KEY_ENV, ("gpt-5",)))
        # 1000 output tokens: $0.01 at the standard price, $0.02 at priority; the budget holds $0.015
        secret = await h.create_key("budgeted", budget_usd=0.015)
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        with pytest.raises(openai.RateLimitError) as refused:
            await client.chat.completions.create(model="gpt-5", messages=ASK, max_tokens=1000,
                                                 service_tier="priority")
        assert refused.value.code == "budget_exceeded"
        for tier in ("flex", "default"):
            answer = await client.chat.completions.create(model="gpt-5", messages=ASK, max_tokens=1000,
                                                          service_tier=tier)  # type: ignore[arg-type]
            assert answer.service_tier == tier
