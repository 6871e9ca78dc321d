"""The request log on the agent-era routes: Anthropic Messages (JSON and stream, pass-through),
the Responses API and a route called without /v1 each get one row with the route labelled as
its /v1 route, the model, the tokens the upstream reported and the cost."""

from __future__ import annotations

from typing import Any

import aiohttp
import anthropic
import openai
import psycopg
from psycopg.rows import dict_row

from shieldes.gateway.responses_routes import token_usage
from shieldes.projections.shared_commands import SetPricing
from shieldes.responses.objects import ResponsesUsage
from tests.integration.gateway_harness import harness
from tests.integration.test_request_log import flushed

CLAUDE = "claude-3-5-haiku-latest"
ASK: Any = [{"role": "user", "content": "hello there"}]


async def test_messages_responses_and_unversioned_routes_are_logged(database_url: str) -> None:
    async with harness(database_url) as h:
        await h.admin(SetPricing(CLAUDE, 1.0, 5.0))
        secret = await h.create_key("agent")
        await h.sync()
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        await claude.messages.create(model=CLAUDE, max_tokens=64, messages=ASK)
        async with claude.messages.stream(model=CLAUDE, max_tokens=64, messages=ASK) as stream:
            await stream.get_final_message()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        await client.responses.create(model="gpt-4o", input="hello there", store=False)
        events = await client.responses.create(model="gpt-4o", input="hello there", store=False, stream=True)
        assert [e.type async for e in events][-1] == "response.completed"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {secret}"}) as http, \
                http.post(h.base + "/chat/completions", json={"model": "gpt-4o", "messages": ASK}) as resp:
            assert resp.status == 200

        await flushed(h, 5)
        with psycopg.connect(h.database_url, autocommit=True) as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute("SET ROLE shieldes_audit")
            rows = cur.execute("SELECT * FROM request_log ORDER BY started_at").fetchall()
        assert [(r["route"], r["model"], r["stream"], r["status"]) for r in rows] == [
            ("/v1/messages", CLAUDE, False, 200),
            ("/v1/messages", CLAUDE, True, 200),
            ("/v1/responses", "gpt-4o", False, 200),
            ("/v1/responses", "gpt-4o", True, 200),
            ("/v1/chat/completions", "gpt-4o", False, 200),
        ]
        for r in rows:
            assert r["key_name"] == "agent" and r["prompt_tokens"] > 0 and r["completion_tokens"] > 0, r
        assert all(r["cost_usd"] > 0 for r in rows[:2])  # the priced Claude model
        assert [r["ttft_ms"] is not None for r in rows] == [False, True, False, True, False]  # streams' first tokens
        metrics = await (await client._client.get(h.base + "/metrics")).aread()  # type: ignore[attr-defined]
        assert b"shieldes_time_to_first_token_seconds_count" in metrics


def test_responses_usage_keeps_cached_and_reasoning_tokens() -> None:
    """Cached input tokens of a Responses answer are billed as cache reads (shieldes pricing set
    --cache-read), reasoning tokens kept for the request log."""
    usage = token_usage(ResponsesUsage(1200, 40, cached_tokens=1024, reasoning_tokens=30), 0, 0)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cache_read_tokens, usage.reasoning_tokens) == \
        (1200, 40, 1024, 30)
    assert token_usage(ResponsesUsage(10, 1, cached_tokens=99), 0, 0).cache_read_tokens == 0  # not more than input
    written = token_usage(ResponsesUsage(100, 1, cached_tokens=20, cache_write_tokens=50), 0, 0)
    assert (written.cache_read_tokens, written.cache_write_tokens) == (20, 50)  # billed at the cache-write price
    assert token_usage(ResponsesUsage(100, 1, cached_tokens=60, cache_write_tokens=50), 0, 0).cache_write_tokens == 0
