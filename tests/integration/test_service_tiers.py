"""The tier that served a request, as the upstream reports it, reaches the client in the client's
API's words: an Anthropic answer's `usage.service_tier` as OpenAI's `service_tier` (chat JSON, every
chunk of a stream, Responses objects), and an OpenAI-compatible answer's tier as a Messages
client's `usage.service_tier`."""

from __future__ import annotations

from typing import Any

import anthropic
import openai

from tests.integration.gateway_harness import harness

CLAUDE = "claude-3-5-haiku-latest"
ASK: Any = [{"role": "user", "content": "hi"}]


async def test_a_claude_answer_says_its_tier_in_openais_words(database_url: str) -> None:
    """Anthropic says the tier in `usage.service_tier` (`standard`, `priority`); chat and Responses
    clients of a Claude deployment got no tier (chat) or the one they asked for (Responses)."""
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        for priority, asked, said in ((False, None, "default"), (True, None, "priority"),
                                      (True, "default", "default")):
            h.upstream.anthropic_priority = priority  # the account's Priority Tier serves `auto` requests
            tier: Any = {"service_tier": asked} if asked else {}
            chat = await client.chat.completions.create(model=CLAUDE, messages=ASK, **tier)
            assert chat.service_tier == said
            sent = h.upstream.last("/v1/messages").body
            assert sent.get("service_tier") == ("standard_only" if asked == "default" else None)
            stream = await client.chat.completions.create(model=CLAUDE, messages=ASK, stream=True,
                                                          stream_options={"include_usage": True}, **tier)
            chunks = [c async for c in stream]
            assert len(chunks) > 3 and {c.service_tier for c in chunks} == {said}  # as OpenAI: on every chunk
            resp = await client.responses.create(model=CLAUDE, input="hi", **tier)
            assert resp.service_tier == said
            events = [e async for e in await client.responses.create(model=CLAUDE, input="hi", stream=True, **tier)]
            assert events[-1].type == "response.completed" and events[-1].response.service_tier == said


async def test_a_messages_client_gets_the_tier_an_openai_upstream_says(database_url: str) -> None:
    """A Messages request served by an OpenAI-compatible deployment: the chat answer's
    `service_tier` (`default`) comes back as Anthropic's `usage.service_tier` (`standard`), JSON and
    streamed."""
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        message = await claude.messages.create(model="gpt-4o", max_tokens=64, messages=ASK)
        assert message.usage.service_tier == "standard"
        assert h.upstream.last("/v1/chat/completions").body.get("service_tier") is None  # nothing asked
        async with claude.messages.stream(model="gpt-4o", max_tokens=64, messages=ASK) as stream:
            events = [e async for e in stream]
            final = await stream.get_final_message()
        assert events[0].type == "message_start" and final.usage.service_tier == "standard"
        await claude.close()
