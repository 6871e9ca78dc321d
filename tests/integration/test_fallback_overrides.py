"""LiteLLM's per-fallback overrides (`fallbacks: [{"model": M, "temperature": ..., "max_tokens": ...}]`)
applied to that fallback's attempts on the chat and completions routes, the requested model's
attempts keeping the request's own settings; keys that are not settings of the call are named in
x-shieldes-dropped; under a budget an output limit above the budget's bound is not applied (named).
Before, every override was left out and named."""

from __future__ import annotations

from typing import Any

import openai

from shieldes.projections.shared_commands import SetPricing
from tests.integration.gateway_harness import harness

HELLO: Any = [{"role": "user", "content": "say hello"}]
CHAT = "/v1/chat/completions"


async def test_a_fallbacks_own_settings_apply_to_its_attempts(database_url: str) -> None:
    async with harness(database_url, upstream_retries=0) as h:
        for model in ("gpt-4o", "gpt-4o-mini"):
            await h.admin(SetPricing(model, 1.0, 4.0))
        secret = await h.create_key("app")
        budgeted = await h.create_key("budgeted", budget_usd=5.0)
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        up = h.upstream
        entry = {"model": "gpt-4o-mini", "temperature": 0.1, "max_tokens": 7, "messages": [], "api_key": "x"}
        for stream in (False, True):
            up.inject(CHAT, status=500, message="down")  # the requested model's one attempt fails
            raw: Any = await client.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=HELLO, temperature=0.9, stream=stream, extra_body={"fallbacks": [entry]})
            if stream:
                assert [c async for c in raw.parse()]
            assert raw.headers["x-shieldes-fallback"] == "gpt-4o-mini"
            assert raw.headers["x-shieldes-dropped"] == "fallbacks[0].messages, fallbacks[0].api_key"
            first, second = up.requests_to(CHAT)[-2:]
            mine, its = first.body, second.body
            assert (mine["model"], mine["temperature"], mine.get("max_tokens")) == ("gpt-4o", 0.9, None)
            assert (its["model"], its["temperature"], its["max_tokens"]) == ("gpt-4o-mini", 0.1, 7)
            assert "fallbacks" not in second.body
        # completions: the same
        up.inject("/v1/completions", status=500, message="down")
        done: Any = await client.completions.with_raw_response.create(
            model="gpt-4o", prompt="say hello", extra_body={"fallbacks": [{"model": "gpt-4o-mini", "seed": 3}]})
        assert done.headers["x-shieldes-fallback"] == "gpt-4o-mini" and "x-shieldes-dropped" not in done.headers
        assert up.last("/v1/completions").body["seed"] == 3
        # under a budget: a lower output limit goes in the field the budget's bound is in; a higher one is named
        capped = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=budgeted, max_retries=0)
        for limit, named in ((5, None), (10**9, "fallbacks[0].max_tokens")):
            up.inject(CHAT, status=500, message="down")
            fallbacks = [{"model": "gpt-4o-mini", "max_tokens": limit}]
            raw = await capped.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=HELLO, extra_body={"fallbacks": fallbacks})
            assert raw.headers.get("x-shieldes-dropped") == named
            first, second = up.requests_to(CHAT)[-2:]
            assert "max_tokens" not in second.body  # (OpenAI refuses both limits at once)
            bound = first.body["max_completion_tokens"]
            assert second.body["max_completion_tokens"] == (5 if named is None else bound)
