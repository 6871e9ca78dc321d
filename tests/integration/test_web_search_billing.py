"""Server-side tool fees: Claude's web search tool runs at Anthropic, which bills each search ($10
per 1,000) and reports the count in `usage.server_tool_use.web_search_requests`. Through a real
node and the official SDK, JSON and streamed, each search costs the model's per-search price on
top of its tokens, in usage_daily and the request log alike; an operator price sets it."""

from __future__ import annotations

from typing import Any

import anthropic

from shieldes.projections.shared_commands import AddProvider, SetPricing
from tests.integration.gateway_harness import UPSTREAM_KEY_ENV, harness, wait_until

SEARCH: Any = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]
ASK: Any = [{"role": "user", "content": "weather in Paris today"}]
# nUSD: claude-sonnet-4-5 input 3000 and output 15000 per token, $0.01 a search
INPUT, OUTPUT, SEARCH_FEE = 3000, 15000, 10_000_000


async def test_claude_web_searches_cost_the_per_search_price(database_url: str) -> None:
    async with harness(database_url) as h:
        await h.admin(AddProvider("sonnet", "anthropic", h.upstream.url, "env:" + UPSTREAM_KEY_ENV,
                                  ("claude-sonnet-4-5", "house-claude")))
        await h.admin(SetPricing("house-claude", 1.0, 2.0, per_web_search=0.025))
        keys = {name: await h.create_key(name) for name in ("json", "stream", "plain", "house")}
        await h.sync()

        def client(name: str) -> anthropic.AsyncAnthropic:
            return anthropic.AsyncAnthropic(base_url=h.base, api_key=keys[name], max_retries=0)

        msg = await client("json").messages.create(model="claude-sonnet-4-5", max_tokens=50, tools=SEARCH,
                                                   messages=ASK)
        assert msg.usage.server_tool_use is not None and msg.usage.server_tool_use.web_search_requests == 1
        async with client("stream").messages.stream(model="claude-sonnet-4-5", max_tokens=50, tools=SEARCH,
                                                     messages=ASK) as events:
            final = await events.get_final_message()
        assert final.usage.server_tool_use is not None and final.usage.server_tool_use.web_search_requests == 1
        plain = await client("plain").messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=ASK)
        assert plain.usage.server_tool_use is None
        await client("house").messages.create(model="house-claude", max_tokens=50, tools=SEARCH, messages=ASK)

        await h.flush()
        totals = h.usage_totals()
        tokens = msg.usage.input_tokens * INPUT + msg.usage.output_tokens * OUTPUT
        assert totals["json"] == (1, msg.usage.input_tokens, msg.usage.output_tokens, tokens + SEARCH_FEE)
        assert totals["stream"][3] == tokens + SEARCH_FEE
        assert totals["plain"][3] == plain.usage.input_tokens * INPUT + plain.usage.output_tokens * OUTPUT
        assert totals["house"][3] == msg.usage.input_tokens * 1000 + msg.usage.output_tokens * 2000 + 25_000_000

        writer = h.node.request_log
        assert writer is not None
        await wait_until(lambda: writer.buffer.added >= 4, timeout=10)
        assert await writer.flush_all(10)
        logged = dict(h.sql("SELECT key_name, cost_nusd FROM request_log"))
        assert logged == {name: t[3] for name, t in totals.items()}
