"""Which stop sequence ended an answer, where the upstream says it: an Anthropic deployment names it
(`stop_sequence`), and chat clients get it in the choice's `stop_reason`, as vLLM sends it; an
OpenAI-style `finish_reason: stop` does not say, and nothing is made up. Official SDKs, a real node."""

from __future__ import annotations

from typing import Any

import anthropic
import openai

from tests.integration.gateway_harness import harness


async def test_the_matched_stop_sequence_reaches_chat_and_messages_clients_where_known(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        ask: Any = [{"role": "user", "content": "hi"}]
        # Anthropic says which sequence matched: chat clients see it, JSON and streamed
        chat = await client.chat.completions.create(model="claude-3-5-haiku-latest", messages=ask, stop=["fake", "x"])
        choice = chat.choices[0]
        assert (choice.finish_reason, choice.message.content) == ("stop", "Hello from the ")
        assert (choice.model_extra or {}).get("stop_reason") == "fake"
        stream = await client.chat.completions.create(model="claude-3-5-haiku-latest", messages=ask,
                                                      stop=["fake", "x"], stream=True)
        finishes = [c.choices[0] async for c in stream if c.choices and c.choices[0].finish_reason]
        assert [(f.finish_reason, (f.model_extra or {}).get("stop_reason")) for f in finishes] == [("stop", "fake")]
        plain = await client.chat.completions.create(model="claude-3-5-haiku-latest", messages=ask)
        assert "stop_reason" not in (plain.choices[0].model_extra or {})

        # an OpenAI-style server's finish_reason stop does not say whether a sequence matched
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        message = await claude.messages.create(model="gpt-4o", max_tokens=50, messages=ask, stop_sequences=["fake"])
        assert message.content[0].text == "Hello from the "  # type: ignore[union-attr]
        assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
