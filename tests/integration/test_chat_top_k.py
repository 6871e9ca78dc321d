"""A chat client's `top_k` (as LiteLLM sends it) to an Anthropic deployment, through a real node
and the openai SDK, against the fake Anthropic upstream (which records what it receives): sent as
Claude's `top_k`, streamed and not, where it had been left out without a word; named in
x-shieldes-dropped while Claude thinks (it refuses top_k then); a value no model takes is a 400."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from shieldes.projections.shared_commands import AddProvider
from tests.integration.gateway_harness import UPSTREAM_KEY_ENV, harness

CLAUDE = "claude-3-5-haiku-latest"
HELLO: Any = [{"role": "user", "content": "say hello"}]


async def test_top_k_reaches_claude_on_anthropic(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        for stream in (False, True):
            raw: Any = await client.chat.completions.with_raw_response.create(
                model=CLAUDE, messages=HELLO, stream=stream, extra_body={"top_k": 40})
            assert "top_k" not in raw.headers.get("x-shieldes-dropped", "")
            if stream:
                assert "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])
            else:
                assert raw.parse().choices[0].message.content
            assert h.upstream.last("/v1/messages").body["top_k"] == 40
        # a model that thinks when asked: while it does, top_k is left out, and named
        await h.admin(AddProvider("claude4", "anthropic", h.upstream.url, "env:" + UPSTREAM_KEY_ENV,
                                  ("claude-sonnet-4-5",)))
        await h.sync()
        raw = await client.chat.completions.with_raw_response.create(
            model="claude-sonnet-4-5", messages=HELLO, max_tokens=4000, reasoning_effort="low",
            extra_body={"top_k": 40})
        sent = h.upstream.last("/v1/messages").body
        assert "thinking" in sent and "top_k" not in sent and raw.headers["x-shieldes-dropped"] == "top_k"
        calls = len(h.upstream.requests)
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(model=CLAUDE, messages=HELLO, extra_body={"top_k": "many"})
        assert "`top_k` must be a whole number" in refused.value.message and refused.value.body["param"] == "top_k"
        assert len(h.upstream.requests) == calls
