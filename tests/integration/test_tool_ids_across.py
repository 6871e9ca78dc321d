"""A conversation's tool call ids move between providers: a Gemini 3 call's signed id (far over 40
characters) and a Kimi-style id (`functions.get_weather:0`) go on to OpenAI-compatible, Anthropic
and Bedrock upstreams, whose fakes check ids as the real APIs do (OpenAI: at most 40 characters;
Anthropic: [a-zA-Z0-9_-]+; Converse: the same, at most 64) and that every result answers its call.
Driven by the official openai and anthropic SDKs through a real node."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import openai
import pytest

from shieldes.projections.shared_commands import AddProvider
from shieldes.providers.tool_ids import ANTHROPIC, BEDROCK, OPENAI
from tests.fake_bedrock import FakeBedrock
from tests.fake_google import FakeGoogle
from tests.integration.gateway_harness import Harness, harness

GEMINI, CLAUDE, BEDROCK_CLAUDE = "gemini-3-pro-preview", "claude-3-5-haiku-latest", "anthropic.claude-3-5-sonnet-v1:0"
KIMI_ID = "functions.get_weather:0"
WEATHER: Any = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}
ASK: Any = {"role": "user", "content": "weather in Paris and Rome?"}


@pytest.fixture
async def node(database_url: str) -> AsyncIterator[tuple[Harness, FakeGoogle, FakeBedrock]]:
    os.environ["SHIELDES_TEST_XP_GEMINI"] = "gm-key"
    os.environ["SHIELDES_TEST_XP_BEDROCK"] = "bedrock-api-key"
    async with FakeGoogle() as google, FakeBedrock() as bedrock, harness(database_url, upstream_retries=0) as h:
        await h.admin(AddProvider("gem3", "gemini", google.url + "/v1beta", "env:SHIELDES_TEST_XP_GEMINI", (GEMINI,)))
        await h.admin(AddProvider("br", "bedrock", bedrock.url, "env:SHIELDES_TEST_XP_BEDROCK", (BEDROCK_CLAUDE,),
                                  options={"region": "us-east-1"}))
        yield h, google, bedrock


def _history(call_ids: list[str]) -> list[Any]:
    turn = {"role": "assistant", "content": None, "tool_calls": [
        {"id": i, "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
        for i in call_ids]}
    return [ASK, turn, *[{"role": "tool", "tool_call_id": i, "content": "sunny"} for i in call_ids]]


def _chat_ids(body: Any) -> tuple[list[str], list[str]]:
    calls = [c["id"] for m in body["messages"] for c in m.get("tool_calls") or []]
    return calls, [m["tool_call_id"] for m in body["messages"] if m["role"] == "tool"]


async def test_a_gemini_3_tool_loop_goes_on_at_openai_anthropic_and_bedrock(
        node: tuple[Harness, FakeGoogle, FakeBedrock]) -> None:
    h, google, bedrock = node
    secret = await h.create_key("app")
    await h.sync()
    client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
    first = await client.chat.completions.create(model=GEMINI, messages=[ASK], tools=[WEATHER])
    calls = first.choices[0].message.tool_calls
    assert calls is not None
    signed = calls[0].id
    assert "__ts__" in signed and len(signed) > 64  # the signature rides in the id
    ids = [signed, KIMI_ID]
    history = _history(ids)

    # OpenAI-compatible: the signed id is too long (replaced), the Kimi id fits (kept); streamed too
    reply = await client.chat.completions.create(model="gpt-4o", messages=history, tools=[WEATHER])
    assert reply.choices[0].message.content
    sent_calls, sent_results = _chat_ids(h.upstream.last("/v1/chat/completions").body)
    assert sent_calls == sent_results == [OPENAI.fit(signed), KIMI_ID] and OPENAI.fit(signed) != signed
    stream = await client.chat.completions.create(model="gpt-4o", messages=history, tools=[WEATHER], stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert _chat_ids(h.upstream.last("/v1/chat/completions").body) == (sent_calls, sent_results)

    # Anthropic (chat translated to Messages): the Kimi id breaks the pattern
    await client.chat.completions.create(model=CLAUDE, messages=history, tools=[WEATHER])
    sent = h.upstream.last("/v1/messages").body["messages"]
    uses = [b["id"] for b in sent[1]["content"] if b["type"] == "tool_use"]
    assert uses == [b["tool_use_id"] for b in sent[2]["content"]] == [signed, ANTHROPIC.fit(KIMI_ID)]

    # Bedrock Converse: both break its rule (length, pattern)
    await client.chat.completions.create(model=BEDROCK_CLAUDE, messages=history, tools=[WEATHER])
    sent = bedrock.last().body["messages"]
    uses = [b["toolUse"]["toolUseId"] for b in sent[1]["content"]]
    assert uses == [b["toolResult"]["toolUseId"] for b in sent[2]["content"]] == [BEDROCK.fit(i) for i in ids]
    assert all(u != i for u, i in zip(uses, ids, strict=True))

    # the Responses API (translated to chat) and the Messages API (translated, and passed through)
    responses = await client.responses.create(model="gpt-4o", tools=[
        {"type": "function", "name": "get_weather", "parameters": WEATHER["function"]["parameters"], "strict": False}],
        input=[{"role": "user", "content": ASK["content"]},
               *[{"type": "function_call", "call_id": i, "name": "get_weather", "arguments": "{}"} for i in ids],
               *[{"type": "function_call_output", "call_id": i, "output": "sunny"} for i in ids]])
    assert responses.output_text
    assert _chat_ids(h.upstream.last("/v1/chat/completions").body) == (sent_calls, sent_results)
    claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
    turns: Any = [ASK, {"role": "assistant", "content": [
        {"type": "tool_use", "id": i, "name": "get_weather", "input": {"city": "Paris"}} for i in ids]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": i, "content": "sunny"} for i in ids]}]
    for model in ("gpt-4o", CLAUDE):
        message = await claude.messages.create(model=model, max_tokens=50, messages=turns)
        assert message.content[0].type == "text"
    sent = h.upstream.last("/v1/messages").body["messages"]  # passed through, with only the Kimi id replaced
    assert [b["id"] for b in sent[1]["content"]] == [b["tool_use_id"] for b in sent[2]["content"]] == \
        [signed, ANTHROPIC.fit(KIMI_ID)]
    assert _chat_ids(h.upstream.requests_to("/v1/chat/completions")[-1].body) == (sent_calls, sent_results)

    # and back on Gemini 3 the original ids still carry the signature it checks
    back = await client.chat.completions.create(model=GEMINI, messages=_history([signed]), tools=[WEATHER])
    assert back.choices[0].message.content == "Hello from the fake Gemini"
    assert google.last().body["contents"][1]["parts"][0]["thoughtSignature"] in google.signatures


async def test_a_claude_agents_turns_are_checked_from_where_the_last_one_ended(database_url: str) -> None:
    """Turn after turn the history grows by its new messages (the node reads only those, after the
    part that passed): ids that fit go to Anthropic as the client's bytes, and a foreign id that
    arrives in a later turn is still found and fitted, in that turn and the ones after it."""
    async with harness(database_url, upstream_retries=0) as h:
        secret = await h.create_key("app")
        await h.sync()
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)

        def tool_turn(call_id: str) -> list[Any]:
            return [{"role": "assistant", "content": [{"type": "tool_use", "id": call_id, "name": "get_weather",
                                                       "input": {"city": "Paris"}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "sunny"}]}]

        def sent_ids() -> list[str]:
            return [b.get("id") or b["tool_use_id"] for m in h.upstream.last("/v1/messages").body["messages"]
                    if isinstance(m["content"], list) for b in m["content"]]

        # (an agent's history: long enough to be remembered, checked_histories.REMEMBER_FROM)
        turns: list[Any] = [{"role": "user", "content": ASK["content"] + " the repository: " + "x = 1\n" * 4000}]
        for call_id in ("toolu_01", "toolu_02", KIMI_ID, "toolu_03"):
            turns += tool_turn(call_id)
            message = await claude.messages.create(model=CLAUDE, max_tokens=50, messages=turns)
            assert message.content[0].type == "text"
            seen = [i for i in ("toolu_01", "toolu_02", KIMI_ID, "toolu_03") if any(
                b.get("id") == i for m in turns if isinstance(m["content"], list) for b in m["content"])]
            assert sent_ids() == [ANTHROPIC.fit(i) for i in seen for _ in (0, 1)]
