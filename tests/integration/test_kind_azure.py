"""`azure` deployments through a real node and the official openai SDK, against the fake upstream's
Azure routes (`/openai/deployments/{deployment}/...?api-version=V`, `api-key` header)."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from shieldes.projections.shared_commands import AddProvider
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, UPSTREAM_KEY_ENV, harness

HELLO: Any = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hello"}]
WEATHER: Any = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


async def test_azure_deployments_chat_stream_tools_embeddings_errors(database_url: str) -> None:
    up = FakeUpstream(api_key=UPSTREAM_KEY, completion_tokens=4)
    async with harness(database_url, upstream=up, providers=False, upstream_retries=0) as h:
        await h.admin(AddProvider("az", "azure", up.url, "env:" + UPSTREAM_KEY_ENV, ("prod-gpt4o", "emb-small"),
                                  options={"api_version": "2024-10-21"}))
        await h.admin(AddProvider("az-entra", "azure", up.url + "/openai", "env:" + UPSTREAM_KEY_ENV,
                                  ("prod-mini",), options={"api_version": "2025-01-01-preview", "auth": "bearer"}))
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)

        chat = await client.chat.completions.create(model="prod-gpt4o", messages=HELLO)
        assert chat.choices[0].message.content == "Hello from the fake"
        assert chat.usage is not None and (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (4, 4)
        sent = up.last()
        assert sent.path == "/openai/deployments/prod-gpt4o/chat/completions"
        assert sent.query == {"api-version": "2024-10-21"}
        assert sent.headers["api-key"] == UPSTREAM_KEY and "authorization" not in sent.headers

        stream = await client.chat.completions.create(model="az/prod-gpt4o", messages=HELLO, stream=True,
                                                      stream_options={"include_usage": True})
        chunks = [c async for c in stream]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the fake"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4

        tool = await client.chat.completions.create(model="prod-gpt4o", messages=HELLO, tools=[WEATHER])
        assert tool.choices[0].message.tool_calls and tool.choices[0].finish_reason == "tool_calls"

        emb = await client.embeddings.create(model="emb-small", input=["a b", "c"])
        assert len(emb.data) == 2 and emb.usage.prompt_tokens == 3
        assert up.last().path == "/openai/deployments/emb-small/embeddings"

        await client.chat.completions.create(model="prod-mini", messages=HELLO)
        sent = up.last()
        assert sent.path == "/openai/deployments/prod-mini/chat/completions"
        assert sent.query == {"api-version": "2025-01-01-preview"}
        assert sent.headers["authorization"] == "Bearer " + UPSTREAM_KEY and "api-key" not in sent.headers

        # Azure names the category that refused the prompt only in innererror.content_filter_result
        up.inject("/openai/deployments/prod-gpt4o/chat/completions", filtered="hate")
        with pytest.raises(openai.BadRequestError) as filtered:
            await client.chat.completions.create(model="prod-gpt4o", messages=HELLO)
        assert filtered.value.code == "content_filter"
        assert "content management policy" in filtered.value.message
        assert "filtered: hate (severity medium)" in filtered.value.message
        up.inject("/openai/deployments/prod-gpt4o/chat/completions", filtered="jailbreak")
        with pytest.raises(openai.BadRequestError) as filtered:
            await client.chat.completions.create(model="prod-gpt4o", messages=HELLO, stream=True)
        assert filtered.value.code == "content_filter" and "filtered: jailbreak (detected)" in filtered.value.message
        up.inject("/openai/deployments/prod-gpt4o/chat/completions", status=400, code="context_length_exceeded",
                  message="This model's maximum context length is 128000 tokens.")
        with pytest.raises(openai.BadRequestError) as too_long:
            await client.chat.completions.create(model="prod-gpt4o", messages=HELLO)
        assert too_long.value.code == "context_length_exceeded"
        up.inject("/openai/deployments/prod-gpt4o/chat/completions", status=429, retry_after=7)
        with pytest.raises(openai.RateLimitError) as limited:
            await client.chat.completions.create(model="prod-gpt4o", messages=HELLO)
        assert limited.value.response.headers["retry-after"] == "7"

        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        msg = await claude.messages.create(model="prod-gpt4o", max_tokens=50, system="be brief",
                                           messages=[{"role": "user", "content": "say hello"}])
        assert msg.content[0].text == "Hello from the fake"  # type: ignore[union-attr]
        assert (msg.usage.input_tokens, msg.usage.output_tokens) == (4, 4)

        await h.flush()
        assert h.usage_totals()["app"][:3] == (6, 5 * 4 + 3, 5 * 4)  # the embeddings call has no completion


async def test_azure_responses_native_on_the_v1_surface(database_url: str) -> None:
    """`--responses native` on Azure: /openai/v1/responses, the deployment named in `model`, no
    api-version; streams and input_tokens the same way; usage billed from the upstream's answer."""
    up = FakeUpstream(api_key=UPSTREAM_KEY, completion_tokens=4)
    async with harness(database_url, upstream=up, providers=False, upstream_retries=0) as h:
        await h.admin(AddProvider("az", "azure", up.url, "env:" + UPSTREAM_KEY_ENV, ("prod-gpt4o",),
                                  responses="native", options={"api_version": "2024-10-21"}))
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)

        resp = await client.responses.create(model="prod-gpt4o", input="say hello", store=False)
        assert resp.output_text and resp.usage is not None and resp.usage.output_tokens == 4
        sent = up.last()
        assert (sent.path, sent.query) == ("/openai/v1/responses", {})
        assert sent.body["model"] == "prod-gpt4o" and sent.headers["api-key"] == UPSTREAM_KEY

        stream = await client.responses.create(model="prod-gpt4o", input="say hello", stream=True, store=False)
        events = [e.type async for e in stream]
        assert events[0] == "response.created" and events[-1] == "response.completed"
        assert up.last().path == "/openai/v1/responses" and up.last().body.get("stream") is True

        counted = await client.responses.input_tokens.count(model="prod-gpt4o", input="say hello")
        assert counted.input_tokens > 0 and up.last().path == "/openai/v1/responses/input_tokens"
        await h.flush()
        assert h.usage_totals()["app"][0] == 2  # the two responses calls; counting is not billed


async def test_azure_streams_reach_messages_clients_with_the_answers_own_id(database_url: str) -> None:
    """Azure streams open with a chunk of prompt filter results that has an empty id: a translated
    Messages stream took its id from it, so every such answer was `msg_shieldes`."""
    up = FakeUpstream(api_key=UPSTREAM_KEY, completion_tokens=4)
    async with harness(database_url, upstream=up, providers=False, upstream_retries=0) as h:
        await h.admin(AddProvider("az", "azure", up.url, "env:" + UPSTREAM_KEY_ENV, ("prod-gpt4o",),
                                  options={"api_version": "2024-10-21"}))
        secret = await h.create_key("app")
        await h.sync()
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        ids = []
        for _ in range(2):
            async with claude.messages.stream(model="prod-gpt4o", max_tokens=50, messages=HELLO[1:]) as stream:
                final = await stream.get_final_message()
            assert final.content[0].type == "text" and final.content[0].text == "Hello from the fake"
            ids.append(final.id)
        assert ids[0] != ids[1] and all(i.startswith("msg_chatcmpl-") for i in ids), ids
        await claude.close()
