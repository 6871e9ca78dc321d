"""Aliases and fallback groups through a real node and the official SDKs: cross-model fallback when
every target fails, context-window fallback when the upstream says the prompt is too long, usage
accounted to the model that served, `/v1/models` listing public names."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from shieldes.projections.shared_commands import AddProvider, SetModelAlias
from shieldes.projections.state import AliasTarget
from tests.integration.gateway_harness import UPSTREAM_KEY_ENV, harness

HELLO: Any = [{"role": "user", "content": "say hello"}]


async def test_alias_fallback_groups_and_context_window(database_url: str) -> None:
    async with harness(database_url) as h:
        await h.admin(AddProvider("dead", "openai", "http://127.0.0.1:1", "env:" + UPSTREAM_KEY_ENV, ("gpt-4o",)))
        await h.admin(SetModelAlias("smart", (AliasTarget("dead", "gpt-4o"),), ("claude-3-5-haiku-latest",)))
        await h.admin(SetModelAlias("big", (AliasTarget("openai", "gpt-4o-mini"),), ("smart",)))
        await h.admin(SetModelAlias("mini", (AliasTarget("openai", "gpt-4o-mini", 2.0),)))
        secret = await h.create_key("app", models=("smart", "big", "mini"))
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)

        models = sorted(m.id for m in (await client.models.list()).data)
        assert models == ["big", "mini", "smart"]  # the key may only use the public names

        # every target of `smart` is down: its fallback group (an Anthropic model) answers
        chat = await client.chat.completions.create(model="smart", messages=HELLO)
        assert chat.choices[0].message.content == "Hello from the fake upstream"
        assert h.upstream.last().path == "/v1/messages"
        stream = await client.chat.completions.create(model="smart", messages=HELLO, stream=True)
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

        # the upstream says the prompt is too long: `big` moves on to `smart`, whose fallback serves it
        h.upstream.inject("/v1/chat/completions", status=400, code="context_length_exceeded",
                          message="This model's maximum context length is 8 tokens.")
        chat = await client.chat.completions.create(model="big", messages=HELLO)
        assert h.upstream.last().path == "/v1/messages"
        assert [r.path for r in h.upstream.requests[-2:]] == ["/v1/chat/completions", "/v1/messages"]

        # without a fallback the client gets the mapped error
        h.upstream.inject("/v1/chat/completions", status=400, code="context_length_exceeded",
                          message="This model's maximum context length is 8 tokens.")
        with pytest.raises(openai.BadRequestError) as err:
            await client.chat.completions.create(model="mini", messages=HELLO)
        assert err.value.code == "context_length_exceeded"

        mini = await client.chat.completions.create(model="mini", messages=HELLO)
        assert mini.model == "gpt-4o-mini" and h.upstream.last().body["model"] == "gpt-4o-mini"

        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        msg = await claude.messages.create(model="mini", max_tokens=50, messages=HELLO)
        assert msg.usage.output_tokens == 5

        await h.flush()
        served = {(r[1], r[2]) for r in h.delta_rows()}
        assert served == {("claude", "claude-3-5-haiku-latest"), ("openai", "gpt-4o-mini")}
