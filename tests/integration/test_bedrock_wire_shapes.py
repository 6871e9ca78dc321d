"""What reaches Bedrock for the Messages requests teams send (cache_control on system, tools and
turns, extended thinking across a tool call, images and documents, tool results that failed),
streamed and not: the fake checks every body against the Converse service model botocore ships
(tests/bedrock_shape.py), as Bedrock does."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from shieldes.projections.shared_commands import AddProvider
from tests.fake_bedrock import FakeBedrock, aws_credentials
from tests.integration.gateway_harness import Harness, harness

CLAUDE = "anthropic.claude-sonnet-4-5-20250929-v1:0"
PNG = "iVBORw0KGgo="
PDF = base64.b64encode(b"%PDF-1.4 fake").decode()
WEATHER: Any = {"name": "get_weather", "description": "the weather", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}}}


@pytest.fixture
async def node(database_url: str) -> AsyncIterator[tuple[anthropic.AsyncAnthropic, FakeBedrock, Harness]]:
    with aws_credentials():
        async with FakeBedrock() as fake, harness(database_url, providers=False, upstream_retries=0) as h:
            await h.admin(AddProvider("br", "bedrock", fake.url, None, (CLAUDE,), options={"region": "us-east-1"}))
            secret = await h.create_key("app")
            await h.sync()
            client = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
            yield client, fake, h
            await client.close()


async def _both(client: anthropic.AsyncAnthropic, **kwargs: Any) -> None:
    """The request sent as it is and streamed; both must be answered."""
    await client.messages.create(model=CLAUDE, max_tokens=2000, **kwargs)
    async with client.messages.stream(model=CLAUDE, max_tokens=2000, **kwargs) as s:
        await s.get_final_message()


CASES: dict[str, dict[str, Any]] = {
    "cache_control everywhere": {
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "tools": [{**WEATHER, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "weather in Paris?",
                                                   "cache_control": {"type": "ephemeral"}}]}]},
    "image and pdf": {
        "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "document", "title": "report.pdf", "source": {"type": "base64", "media_type": "application/pdf",
                                                                   "data": PDF}},
            {"type": "text", "text": "what are these"}]}]},
    "plain text document": {
        "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "the notes"}},
            {"type": "text", "text": "summarize"}]}]},
    "failed tool result with an image": {
        "tools": [WEATHER],
        "messages": [{"role": "user", "content": "weather?"},
                     {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                                        "input": {"city": "Paris"}}]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True,
                                                   "content": [{"type": "text", "text": "timed out"},
                                                               {"type": "image", "source": {
                                                                   "type": "base64", "media_type": "image/png",
                                                                   "data": PNG}}]}]}]},
    "tool choice forced": {
        "tools": [WEATHER], "tool_choice": {"type": "tool", "name": "get_weather"},
        "messages": [{"role": "user", "content": "weather?"}]},
    "thinking": {
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "think"}]},
    "sampling and stops": {
        "extra_body": {"temperature": 0.5, "top_p": 0.9, "top_k": 5}, "stop_sequences": ["END"],
        "metadata": {"user_id": "u-1"},
        "messages": [{"role": "user", "content": "hello"}]},
}


@pytest.mark.parametrize("case", list(CASES))
async def test_messages_requests_reach_bedrock_in_converses_shape(
        node: tuple[anthropic.AsyncAnthropic, FakeBedrock, Harness], case: str) -> None:
    client, fake, _h = node
    await _both(client, **CASES[case])
    assert len(fake.requests) == 2



async def test_a_messages_clients_thinking_budget_reaches_claude_on_bedrock_as_asked(
        node: tuple[anthropic.AsyncAnthropic, FakeBedrock, Harness]) -> None:
    """The budget and max_tokens a Messages client sets reach Claude as they are: 1024 of 2000 had
    become effort `low`'s 2048 with max_tokens raised to 4048, twice the output the client allowed."""
    client, fake, _h = node
    for budget, most in ((1024, 2000), (31999, 32000)):  # (the second: Claude Code's)
        async with client.messages.stream(model=CLAUDE, max_tokens=most,
                                          thinking={"type": "enabled", "budget_tokens": budget},
                                          messages=[{"role": "user", "content": "think"}]) as s:
            await s.get_final_message()
        sent = fake.last().body
        assert sent["additionalModelRequestFields"]["thinking"] == {"type": "enabled", "budget_tokens": budget}
        assert sent["inferenceConfig"]["maxTokens"] == most


async def test_a_failed_tool_result_reaches_bedrock_with_status_error(
        node: tuple[anthropic.AsyncAnthropic, FakeBedrock, Harness]) -> None:
    """A Messages client's `is_error: true` tool result, and a chat client's tool message starting
    "Error:", reach Converse and ConverseStream as toolResult `status: "error"`: it had gone as a
    success whose text starts "Error:"."""
    client, fake, h = node
    await _both(client, **CASES["failed tool result with an image"])
    for seen in fake.requests[-2:]:
        assert seen.body["messages"][-1]["content"][0]["toolResult"]["status"] == "error"
    ok = dict(CASES["failed tool result with an image"])
    ok["messages"] = [*ok["messages"][:2], {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}]
    await client.messages.create(model=CLAUDE, max_tokens=100, **ok)
    assert fake.last().body["messages"][-1]["content"][0]["toolResult"]["status"] == "success"
    chat = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=client.api_key, max_retries=0)
    tool: Any = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER["input_schema"]}}
    call: Any = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    messages: Any = [{"role": "user", "content": "weather?"}, {"role": "assistant", "tool_calls": [call]},
                     {"role": "tool", "tool_call_id": "call_1", "content": "Error: timed out"}]
    await chat.chat.completions.create(model=CLAUDE, tools=[tool], messages=messages)
    assert fake.last().body["messages"][-1]["content"][0]["toolResult"]["status"] == "error"
    await chat.close()


async def test_top_k_reaches_claude_on_bedrock(node: tuple[anthropic.AsyncAnthropic, FakeBedrock, Harness]) -> None:
    """`top_k` from a Messages client, and from a chat client as LiteLLM sends it, reaches Claude in
    additionalModelRequestFields, streamed and not: it had been left out (named as dropped)."""
    client, fake, h = node
    raw = await client.messages.with_raw_response.create(
        model=CLAUDE, max_tokens=100, extra_body={"top_k": 5}, messages=[{"role": "user", "content": "hello"}])
    assert "top_k" not in raw.headers.get("x-shieldes-dropped", "")
    assert fake.last().body["additionalModelRequestFields"] == {"top_k": 5}
    async with client.messages.stream(model=CLAUDE, max_tokens=100, extra_body={"top_k": 7},
                                      messages=[{"role": "user", "content": "hello"}]) as s:
        await s.get_final_message()
    assert fake.last().body["additionalModelRequestFields"] == {"top_k": 7}
    chat = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=client.api_key, max_retries=0)
    answer = await chat.chat.completions.with_raw_response.create(
        model=CLAUDE, messages=[{"role": "user", "content": "hello"}], extra_body={"top_k": 9})
    assert "top_k" not in answer.headers.get("x-shieldes-dropped", "")
    assert fake.last().body["additionalModelRequestFields"] == {"top_k": 9}
    with pytest.raises(openai.BadRequestError) as refused:
        await chat.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "hello"}],
                                           extra_body={"top_k": "many"})
    assert "`top_k` must be a whole number" in refused.value.message
    await chat.close()


async def test_a_chat_clients_thinking_alone_reaches_claude_on_bedrock(
        node: tuple[anthropic.AsyncAnthropic, FakeBedrock, Harness]) -> None:
    """A chat request with LiteLLM's `thinking` and no `reasoning_effort` gets Claude's extended
    thinking with its budget, streamed and not: it had been ignored without a word."""
    client, fake, h = node
    chat = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=client.api_key, max_retries=0)
    thinking = {"type": "enabled", "budget_tokens": 2500}
    answer = await chat.chat.completions.with_raw_response.create(
        model=CLAUDE, max_tokens=4000, messages=[{"role": "user", "content": "think"}],
        extra_body={"thinking": thinking})
    assert "thinking" not in answer.headers.get("x-shieldes-dropped", "")
    assert fake.last().body["additionalModelRequestFields"] == {"thinking": thinking}
    stream = await chat.chat.completions.create(model=CLAUDE, max_tokens=4000, stream=True,
                                                messages=[{"role": "user", "content": "think"}],
                                                extra_body={"thinking": thinking})
    async for _ in stream:
        pass
    assert fake.last().body["additionalModelRequestFields"] == {"thinking": thinking}
    assert fake.last().body["inferenceConfig"]["maxTokens"] == 4000
    await chat.close()


async def test_a_cache_breakpoint_on_tools_reaches_bedrock_as_a_cache_point(
        node: tuple[anthropic.AsyncAnthropic, FakeBedrock, Harness]) -> None:
    """`cache_control` on a tool (a Messages client's, or a chat client's in LiteLLM's place for it)
    is a Converse cachePoint after that tool: it had been lost, and with it the only breakpoint of an
    agent that marks its tools, so every call paid for its tool definitions in full."""
    client, fake, h = node
    expected = [{"toolSpec": {"name": "get_weather", "description": "the weather",
                              "inputSchema": {"json": WEATHER["input_schema"]}}},
                {"cachePoint": {"type": "default", "ttl": "1h"}}]
    await client.messages.create(model=CLAUDE, max_tokens=100,
                                 tools=[{**WEATHER, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
                                 messages=[{"role": "user", "content": "weather?"}])
    assert fake.last().body["toolConfig"]["tools"] == expected
    chat = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=client.api_key, max_retries=0)
    tool: Any = {"type": "function", "cache_control": {"type": "ephemeral", "ttl": "1h"}, "function": {
        "name": "get_weather", "description": "the weather", "parameters": WEATHER["input_schema"]}}
    await chat.chat.completions.create(model=CLAUDE, tools=[tool], messages=[{"role": "user", "content": "weather?"}])
    assert fake.last().body["toolConfig"]["tools"] == expected
    await chat.close()


async def test_titan_dimensions_go_as_each_model_takes_them_or_are_refused_with_its_sizes(database_url: str) -> None:
    """`dimensions` reaches Titan v2 as it is and the multimodal model as embeddingConfig; a size a
    model does not take (any, on v1) is a 400 naming the sizes it takes, where it had been Bedrock's
    "extraneous key [dimensions] is not permitted", which does not say what to send."""
    models = ("amazon.titan-embed-text-v1", "amazon.titan-embed-text-v2:0", "amazon.titan-embed-image-v1")
    with aws_credentials():
        async with FakeBedrock() as fake, harness(database_url, providers=False, upstream_retries=0) as h:
            await h.admin(AddProvider("br", "bedrock", fake.url, None, models, options={"region": "us-east-1"}))
            secret = await h.create_key("app")
            await h.sync()
            client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
            await client.embeddings.create(model=models[1], input="one two", dimensions=256)
            assert fake.last().body == {"inputText": "one two", "dimensions": 256}
            await client.embeddings.create(model=models[2], input="one two", dimensions=384)
            assert fake.last().body == {"inputText": "one two", "embeddingConfig": {"outputEmbeddingLength": 384}}
            for model, size, says in ((models[0], 256, "has one size: leave `dimensions` out"),
                                      (models[1], 300, "takes `dimensions` 256, 512, 1024, not 300")):
                with pytest.raises(openai.BadRequestError) as refused:
                    await client.embeddings.create(model=model, input="x", dimensions=size)
                assert says in refused.value.message and refused.value.body["param"] == "dimensions"  # type: ignore[index]
            await client.close()
