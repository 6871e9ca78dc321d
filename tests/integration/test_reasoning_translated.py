"""A chat client's `reasoning_effort` reaches Anthropic, Bedrock (Claude) and Gemini deployments as
their own thinking settings, and their reasoning comes back as `reasoning_content` (with Claude's
signed `thinking_blocks`, which an openai-SDK agent loop sends back to continue a tool call). The
fake upstreams enforce Claude's rules for thinking, so a wrong translation fails here."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from shieldes.projections.shared_commands import AddProvider
from tests import fake_wire
from tests.fake_bedrock import FakeBedrock
from tests.fake_google import FakeGoogle
from tests.integration.gateway_harness import UPSTREAM_KEY_ENV, Harness, harness
from tests.responses_schema import check_event, check_response

SONNET = "claude-sonnet-4-5"
BEDROCK_CLAUDE = "us.anthropic.claude-sonnet-4-20250514-v1:0"
GEMINI = "gemini-2.5-flash"
WEATHER: Any = {"type": "function", "function": {"name": "get_weather", "description": "weather now",
                                                 "parameters": {"type": "object",
                                                                "properties": {"city": {"type": "string"}}}}}
REPLY = "Hello from the fake Gemini"
ASK: Any = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture
async def node(database_url: str) -> AsyncIterator[tuple[Harness, openai.AsyncOpenAI, FakeBedrock, FakeGoogle]]:
    async with FakeBedrock() as bedrock, FakeGoogle() as google, harness(database_url, upstream_retries=0) as h:
        os.environ["SHIELDES_TEST_BEDROCK_KEY"] = bedrock.api_key
        os.environ["SHIELDES_TEST_GEMINI_KEY"] = google.api_key
        await h.admin(AddProvider("sonnet", "anthropic", h.upstream.url, "env:" + UPSTREAM_KEY_ENV, (SONNET,)))
        await h.admin(AddProvider("br", "bedrock", bedrock.url, "env:SHIELDES_TEST_BEDROCK_KEY", (BEDROCK_CLAUDE,),
                                  options={"region": "us-east-1"}))
        await h.admin(AddProvider("gem", "gemini", google.url + "/v1beta", "env:SHIELDES_TEST_GEMINI_KEY", (GEMINI,)))
        secret = await h.create_key("app")
        await h.sync()
        yield h, openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0), bedrock, google


def extra(obj: Any, name: str) -> Any:
    """A field the openai SDK's types do not declare (kept in `model_extra`)."""
    return (obj.model_extra or {}).get(name)


async def streamed(client: openai.AsyncOpenAI, **ask: Any) -> tuple[dict[str, Any], Any]:
    """A streamed answer put together as a client does: (the assistant message, the usage)."""
    stream = await client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **ask)
    reasoning, text, blocks, calls, usage = [], [], [], {}, None
    async for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            delta = choice.delta
            reasoning.append(extra(delta, "reasoning_content") or "")
            text.append(delta.content or "")
            blocks += extra(delta, "thinking_blocks") or []
            for call in delta.tool_calls or []:
                got = calls.setdefault(call.index, {"id": call.id, "type": "function",
                                                    "function": {"name": call.function.name, "arguments": ""}})
                got["function"]["arguments"] += call.function.arguments or ""
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text), "reasoning_content": "".join(reasoning),
                               "thinking_blocks": blocks}
    if calls:
        message["tool_calls"] = list(calls.values())
    return message, usage


async def test_reasoning_effort_reaches_anthropic_and_its_thinking_comes_back(
        node: tuple[Harness, openai.AsyncOpenAI, FakeBedrock, FakeGoogle]) -> None:
    h, client, _bedrock, _google = node
    raw = await client.chat.completions.with_raw_response.create(model=SONNET, messages=ASK, reasoning_effort="low")
    answer = raw.parse()
    sent = h.upstream.last("/v1/messages").body
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent["max_tokens"] == 2048 + 4096  # the budget on top of the answer's default room
    assert "x-shieldes-dropped" not in raw.headers
    message = answer.choices[0].message
    assert extra(message, "reasoning_content") == "Let me think." and message.content
    [block] = extra(message, "thinking_blocks")
    assert block["type"] == "thinking" and block["signature"] in h.upstream.thinking_signatures

    message_dict, usage = await streamed(client, model=SONNET, messages=ASK, reasoning_effort="high",
                                         max_completion_tokens=30000)
    sent = h.upstream.last("/v1/messages").body
    assert sent["thinking"]["budget_tokens"] == 24576 and sent["max_tokens"] == 30000  # it fits: the client's cap
    assert message_dict["reasoning_content"] == "Let me think." and message_dict["content"]
    [block] = message_dict["thinking_blocks"]  # whole, once its signature came
    assert block["thinking"] == "Let me think." and block["signature"] in h.upstream.thinking_signatures
    assert usage is not None and usage.completion_tokens == 5

    # Claude thinks only at temperature 1: refused in OpenAI's shape, saying what to change
    with pytest.raises(openai.BadRequestError, match="temperature"):
        await client.chat.completions.create(model=SONNET, messages=ASK, reasoning_effort="low", temperature=0.2)
    # "none" is thinking off; an older Claude that cannot think gets none and the effort is named
    await client.chat.completions.create(model=SONNET, messages=ASK, reasoning_effort="none")
    assert "thinking" not in h.upstream.last("/v1/messages").body
    old = await client.chat.completions.with_raw_response.create(model="claude-3-5-haiku-latest", messages=ASK,
                                                                 reasoning_effort="low", temperature=0.2)
    assert old.headers["x-shieldes-dropped"] == "reasoning_effort"
    assert "thinking" not in h.upstream.last("/v1/messages").body


async def test_an_agent_loop_with_tools_keeps_thinking_across_the_tool_call(
        node: tuple[Harness, openai.AsyncOpenAI, FakeBedrock, FakeGoogle]) -> None:
    h, client, _bedrock, _google = node
    for stream in (False, True):
        messages: list[Any] = list(ASK)
        ask = dict(model=SONNET, tools=[WEATHER], reasoning_effort="medium")
        if stream:
            turn, _usage = await streamed(client, messages=messages, **ask)
        else:
            first = await client.chat.completions.create(messages=messages, **ask)
            turn = first.choices[0].message  # the SDK's own object goes back as it is, extra fields and all
            assert first.choices[0].finish_reason == "tool_calls"
        messages.append(turn)
        call = turn["tool_calls"][0] if stream else turn.tool_calls[0]  # type: ignore[index,union-attr]
        messages.append({"role": "tool", "tool_call_id": call["id"] if stream else call.id, "content": "sunny"})
        raw = await client.chat.completions.with_raw_response.create(messages=messages, **ask)
        second = h.upstream.last("/v1/messages").body
        assert second["thinking"]["type"] == "enabled" and "x-shieldes-dropped" not in raw.headers
        assert second["messages"][1]["content"][0]["type"] == "thinking"  # the signed block went back first
        assert raw.parse().choices[0].message.content

    # a client that drops the blocks: the conversation goes on without thinking, which is named
    bare = [*ASK, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}]
    raw = await client.chat.completions.with_raw_response.create(model=SONNET, messages=bare, tools=[WEATHER],
                                                                 reasoning_effort="medium")
    assert raw.headers["x-shieldes-dropped"] == "reasoning_effort" and raw.parse().choices[0].message.content
    assert "thinking" not in h.upstream.last("/v1/messages").body
    # ... which the fake (as the real API) would otherwise refuse
    refused = fake_wire.check_thinking({"thinking": {"type": "enabled", "budget_tokens": 1024}, "max_tokens": 5000,
                                        "messages": [{"role": "user", "content": "hi"},
                                                     {"role": "assistant", "content": [
                                                         {"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
                                                     {"role": "user", "content": [
                                                         {"type": "tool_result", "tool_use_id": "t"}]}]}, set())
    assert refused is not None and "must start with a thinking block" in refused


async def test_bedrock_claude_thinks_and_continues_tool_calls(
        node: tuple[Harness, openai.AsyncOpenAI, FakeBedrock, FakeGoogle]) -> None:
    _h, client, bedrock, _google = node
    answer = await client.chat.completions.create(model=BEDROCK_CLAUDE, messages=ASK, reasoning_effort="minimal")
    sent = bedrock.last().body
    assert sent["additionalModelRequestFields"] == {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    assert sent["inferenceConfig"]["maxTokens"] == 1024 + 4096
    message = answer.choices[0].message
    assert extra(message, "reasoning_content") == "Let me think."
    assert extra(message, "thinking_blocks")[0]["signature"] in bedrock.signatures

    for stream in (False, True):
        messages: list[Any] = list(ASK)
        ask = dict(model=BEDROCK_CLAUDE, tools=[WEATHER], reasoning_effort="low")
        if stream:
            turn, _usage = await streamed(client, messages=messages, **ask)
            assert turn["reasoning_content"] == "Let me think." and turn["thinking_blocks"]
            call_id = turn["tool_calls"][0]["id"]
        else:
            first = await client.chat.completions.create(messages=messages, **ask)
            turn, call_id = first.choices[0].message, first.choices[0].message.tool_calls[0].id  # type: ignore[index]
        messages += [turn, {"role": "tool", "tool_call_id": call_id, "content": "sunny"}]
        raw = await client.chat.completions.with_raw_response.create(messages=messages, **ask)
        assert "x-shieldes-dropped" not in raw.headers and raw.parse().choices[0].message.content
        assert "reasoningContent" in bedrock.last().body["messages"][1]["content"][0]


async def test_gemini_thinking_budget_and_thoughts(
        node: tuple[Harness, openai.AsyncOpenAI, FakeBedrock, FakeGoogle]) -> None:
    _h, client, _bedrock, google = node
    raw = await client.chat.completions.with_raw_response.create(model=GEMINI, messages=ASK, reasoning_effort="medium")
    assert google.last().body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 8192, "includeThoughts": True}
    assert "x-shieldes-dropped" not in raw.headers
    answer = raw.parse()
    assert extra(answer.choices[0].message, "reasoning_content") == "Thinking it over."
    assert answer.choices[0].message.content == REPLY
    assert answer.usage is not None and answer.usage.completion_tokens_details is not None
    assert answer.usage.completion_tokens_details.reasoning_tokens == 1  # thoughts are output tokens too

    message, usage = await streamed(client, model=GEMINI, messages=ASK, reasoning_effort="low")
    assert message["reasoning_content"] == "Thinking it over." and message["content"] == REPLY
    assert usage.completion_tokens_details.reasoning_tokens == 1
    await client.chat.completions.create(model=GEMINI, messages=ASK, reasoning_effort="none")
    assert google.last().body["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 0}


async def test_a_responses_client_gets_claude_reasoning_as_a_reasoning_item(
        node: tuple[Harness, openai.AsyncOpenAI, FakeBedrock, FakeGoogle]) -> None:
    h, client, _bedrock, _google = node
    raw = await client.responses.with_raw_response.create(model=SONNET, input="think hard",
                                                          reasoning={"effort": "high"})
    assert h.upstream.last("/v1/messages").body["thinking"] == {"type": "enabled", "budget_tokens": 24576}
    assert "x-shieldes-dropped" not in raw.headers
    response = raw.parse()
    check_response(response.model_dump(mode="json", exclude_unset=True))
    assert [item.type for item in response.output] == ["reasoning", "message"] and response.output_text
    assert response.output[0].content[0].text == "Let me think."  # type: ignore[union-attr,index]

    # asked for a summary: the thinking (Claude's is a summary already) is the item's summary
    asked = await client.responses.create(model=SONNET, input="think", reasoning={"effort": "low", "summary": "auto"})
    assert asked.output[0].summary[0].text == "Let me think."  # type: ignore[union-attr]
    events = [e async for e in await client.responses.create(
        model=SONNET, input="think", reasoning={"effort": "low", "summary": "auto"}, stream=True)]
    for e in events:
        check_event(e.model_dump(mode="json", exclude_unset=True))
    deltas = [e.delta for e in events if e.type == "response.reasoning_summary_text.delta"]
    assert "".join(deltas) == "Let me think."

    # a Responses loop through tools whose items were answered without include
    # reasoning.encrypted_content carries no Claude signature, so the call is continued with
    # thinking off, named (with the include: test_reasoning_items)
    first = await client.responses.create(model=SONNET, input="weather?", reasoning={"effort": "low"},
                                          tools=[{"type": "function", "name": "get_weather",
                                                  "parameters": {"type": "object", "properties": {}}}])
    call = next(i for i in first.output if i.type == "function_call")
    raw = await client.responses.with_raw_response.create(
        model=SONNET, reasoning={"effort": "low"},
        input=[{"role": "user", "content": "weather?"}, *[i.model_dump(exclude_unset=True) for i in first.output],
               {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],  # type: ignore[union-attr]
        tools=[{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}])
    assert raw.headers["x-shieldes-dropped"] == "reasoning_effort" and raw.parse().output_text


async def test_a_messages_client_thinks_on_bedrock_claude_and_gemini(
        node: tuple[Harness, openai.AsyncOpenAI, FakeBedrock, FakeGoogle]) -> None:
    """The anthropic SDK's `thinking` reaches Bedrock's Claude and Gemini through the chat
    translation; Claude's signed blocks come back as they are and go back for a tool loop."""
    _h, client, bedrock, google = node
    claude = anthropic.AsyncAnthropic(base_url=_h.base, api_key=client.api_key, max_retries=0)
    tools: Any = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}]
    thinking: Any = {"type": "enabled", "budget_tokens": 1024}
    for stream in (False, True):
        messages: list[Any] = [{"role": "user", "content": "weather?"}]
        ask = dict(model=BEDROCK_CLAUDE, max_tokens=3000, tools=tools, thinking=thinking)
        if stream:
            async with claude.messages.stream(messages=messages, **ask) as events:
                first = await events.get_final_message()
        else:
            first = await claude.messages.create(messages=messages, **ask)
        assert bedrock.last().body["additionalModelRequestFields"]["thinking"]["budget_tokens"] == 1024  # as asked
        assert [b.type for b in first.content] == ["thinking", "tool_use"]
        assert first.content[0].signature in bedrock.signatures  # type: ignore[union-attr]
        use = first.content[1]
        messages += [{"role": "assistant", "content": [b.model_dump() for b in first.content]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,  # type: ignore[union-attr]
                                                   "content": "sunny"}]}]
        raw = await claude.messages.with_raw_response.create(messages=messages, **ask)
        assert "x-shieldes-dropped" not in raw.headers
        assert "reasoningContent" in bedrock.last().body["messages"][1]["content"][0]
        assert [b.type for b in (await raw.parse()).content] == ["thinking", "text"]

    answer = await claude.messages.create(model=GEMINI, max_tokens=3000, thinking=thinking,
                                          messages=[{"role": "user", "content": "hi"}])
    assert google.last().body["generationConfig"]["thinkingConfig"]["includeThoughts"] is True
    assert [b.type for b in answer.content] == ["thinking", "text"]
    assert answer.content[0].thinking == "Thinking it over."  # type: ignore[union-attr]


async def test_a_refused_field_is_named_in_param_as_openai_names_it(
        node: tuple[Harness, openai.AsyncOpenAI, FakeBedrock, FakeGoogle]) -> None:
    """A 400 of a translation names the request field at fault in `error.param` (OpenAI's shape);
    Anthropic's shape, on the Messages route, has no such field."""
    h, client, _bedrock, _google = node
    refusals: list[tuple[Any, str]] = [
        (client.chat.completions.create(model=SONNET, messages=ASK, reasoning_effort="low", temperature=0.2),
         "temperature"),
        (client.chat.completions.create(model=BEDROCK_CLAUDE, messages=ASK, reasoning_effort="low", top_p=0.5),
         "top_p"),
        (client.chat.completions.create(model=SONNET, messages=ASK, reasoning_effort="extreme"),  # type: ignore[arg-type]
         "reasoning_effort"),
        (client.chat.completions.create(model=SONNET, messages=ASK, n=2), "n"),
        (client.chat.completions.create(model=SONNET, messages=[*ASK, {"role": "robot", "content": "x"}]),  # type: ignore[list-item]
         "messages[1].role"),
        (client.responses.create(model=SONNET, input=[{"type": "message", "role": "user",
                                                       "content": [{"type": "input_video"}]}]),  # type: ignore[list-item]
         "input[0].content[0].type"),
    ]
    for call, param in refusals:
        with pytest.raises(openai.BadRequestError) as refused:
            await call
        assert refused.value.param == param, refused.value.message
    claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=client.api_key, max_retries=0)
    with pytest.raises(anthropic.BadRequestError, match="temperature") as messages_refused:
        await claude.messages.create(model=BEDROCK_CLAUDE, max_tokens=3000, extra_body={"temperature": 0.2},
                                     thinking={"type": "enabled", "budget_tokens": 1024},
                                     messages=[{"role": "user", "content": "hi"}])
    body: Any = messages_refused.value.body
    assert body["type"] == "error" and "param" not in body["error"]
