"""POST /v1/messages to an OpenAI-compatible deployment (translated), GET /v1/models/{id}, and the
routes without the /v1 prefix, on a real node with the official SDKs."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, harness

PATH_SCHEMA: Any = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}


async def test_claude_code_style_request_is_translated_and_says_what_it_dropped(database_url: str) -> None:
    async with harness(database_url) as h:
        secret = await h.create_key("cc")
        await h.sync()
        client = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        raw = await client.messages.with_raw_response.create(
            model="gpt-4o-mini",
            max_tokens=300,
            system=[{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
            messages=[
                {"role": "user", "content": [
                    {"type": "document", "title": "notes",
                     "source": {"type": "text", "media_type": "text/plain", "data": "The sky is blue."}},
                    {"type": "text", "text": "Colour?", "cache_control": {"type": "ephemeral"}},
                ]},
                {"role": "system", "content": "Reminder: answer in one word."},  # type: ignore[misc,list-item]
            ],
            thinking={"type": "enabled", "budget_tokens": 2048},
            service_tier="auto",
            extra_body={"top_k": 5},
        )
        message = await raw.parse()
        assert message.content[0].type == "text" and message.stop_reason == "end_turn"
        assert raw.http_response.headers["x-shieldes-dropped"] == "service_tier, top_k, thinking"
        sent = h.upstream.last("/v1/chat/completions").body
        assert sent["messages"] == [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "notes\n\nThe sky is blue.\nColour?"},
            {"role": "system", "content": "Reminder: answer in one word."},
        ]
        assert sent["max_tokens"] == 300 and "top_k" not in sent and "reasoning_effort" not in sent

        with pytest.raises(anthropic.BadRequestError) as info:
            await client.messages.create(model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": [
                {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}]}])
        assert info.value.body["type"] == "error"  # type: ignore[index]
        assert "send the document's text instead" in info.value.body["error"]["message"]  # type: ignore[index]

        async with client.messages.stream(
            model="gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": "hi"}],
            thinking={"type": "enabled", "budget_tokens": 2048},
        ) as stream:
            final = await stream.get_final_message()
        assert final.content[0].type == "text" and final.usage.output_tokens == 5


async def test_models_by_id_and_routes_without_v1(database_url: str) -> None:
    async with harness(database_url) as h:
        narrow = await h.create_key("narrow", models=("gpt-4o",))
        wide = await h.create_key("wide")
        await h.sync()
        bare = openai.AsyncOpenAI(base_url=h.base, api_key=narrow, max_retries=0)  # no /v1
        model = await bare.models.retrieve("gpt-4o")
        assert (model.id, model.object, model.owned_by) == ("gpt-4o", "model", "openai")
        reply = await bare.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content
        assert [m.id async for m in bare.models.list()] == ["gpt-4o"]
        for missing in ("gpt-4o-mini", "no-such-model"):  # not allowed to the key, unknown
            with pytest.raises(openai.NotFoundError) as info:
                await bare.models.retrieve(missing)
            assert info.value.body["code"] == "model_not_found"  # type: ignore[index]
        v1 = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=wide, max_retries=0)
        assert (await v1.models.retrieve("openai/gpt-4o")).id == "openai/gpt-4o"  # a pinned name
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=wide, max_retries=0)
        info: Any = await claude.models.retrieve("claude-3-5-haiku-latest")
        assert (info.type, info.id) == ("model", "claude-3-5-haiku-latest")

        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {wide}"}) as http:
            ask = {"model": "claude-3-5-haiku-latest", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
            async with http.post(f"{h.base}/messages", json=ask) as resp:
                assert resp.status == 200 and (await resp.json())["type"] == "message"
            async with http.post(f"{h.base}/messages/count_tokens", json=ask) as resp:
                assert resp.status == 200 and (await resp.json())["input_tokens"] == 1
            async with http.get(f"{h.base}/metrics") as resp:
                text = await resp.text()
        assert 'route="/v1/messages",status="2xx"' in text and 'route="/v1/models/{model}"' in text


@pytest.mark.parametrize("at_index_zero", [False, True], ids=["openai-indices", "ollama-indices"])
async def test_parallel_tool_calls_of_a_chat_upstream_stay_apart(database_url: str, at_index_zero: bool) -> None:
    """Parallel tool calls streamed by a chat server, numbered as OpenAI does or (as Ollama does)
    all at index 0, each with its own id: the Messages and the Responses clients get each call apart,
    its arguments whole."""
    up = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=("gpt-4o",), parallel_calls=3,
                      calls_at_index_zero=at_index_zero)
    async with harness(database_url, upstream=up) as h:
        secret = await h.create_key("agent")
        await h.sync()
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        async with claude.messages.stream(model="gpt-4o", max_tokens=100, messages=[{"role": "user", "content": "go"}],
                                          tools=[{"name": "read", "input_schema": PATH_SCHEMA}]) as stream:
            message = await stream.get_final_message()
        assert [(b.type, b.input) for b in message.content] == [("tool_use", {"path": "test"})] * 3  # type: ignore[union-attr]
        assert len({b.id for b in message.content}) == 3 and message.stop_reason == "tool_use"  # type: ignore[union-attr]
        events = [e async for e in await openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
                  .responses.create(model="gpt-4o", input="go", stream=True, tools=[
                      {"type": "function", "name": "read", "parameters": PATH_SCHEMA, "strict": False}])]
        calls = events[-1].response.output
        assert [(c.type, json.loads(c.arguments)) for c in calls] == [("function_call", {"path": "test"})] * 3
        assert len({c.call_id for c in calls}) == 3


async def test_reasoning_of_a_chat_upstream_comes_back_as_thinking_when_asked_for(database_url: str) -> None:
    """A reasoning model behind a chat server (DeepSeek, vLLM, Ollama send `reasoning_content`):
    a Messages client that enabled extended thinking gets it as a thinking block, streamed or not;
    one that did not gets the text alone, as from Anthropic."""
    thinking = "The user greets me so I greet back"
    up = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=("gpt-4o",), reasoning=thinking)
    async with harness(database_url, upstream=up) as h:
        secret = await h.create_key("cc")
        await h.sync()
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        ask: Any = dict(model="gpt-4o", max_tokens=2048, messages=[{"role": "user", "content": "hi"}])
        async with claude.messages.stream(**ask, thinking={"type": "enabled", "budget_tokens": 1024}) as stream:
            deltas = [e.thinking async for e in stream if e.type == "thinking"]
            streamed = await stream.get_final_message()
        assert "".join(deltas) == thinking and len(deltas) == len(thinking.split())
        assert [b.type for b in streamed.content] == ["thinking", "text"]
        assert streamed.content[0].thinking == thinking  # type: ignore[union-attr]
        plain = await claude.messages.create(**ask, thinking={"type": "enabled", "budget_tokens": 1024})
        assert [b.type for b in plain.content] == ["thinking", "text"]
        assert plain.content[0].thinking == thinking  # type: ignore[union-attr]
        # the next turn sends the thinking block back: it is not forwarded to the chat server
        turn = [b.model_dump(exclude_none=True) for b in plain.content]
        await claude.messages.create(**{**ask, "messages": [{"role": "user", "content": "hi"},
                                                             {"role": "assistant", "content": turn},
                                                             {"role": "user", "content": "x"}]})
        sent = json.dumps(h.upstream.last("/v1/chat/completions").body)
        assert thinking not in sent and "Hello from the fake upstream" in sent
        async with claude.messages.stream(**ask) as stream:
            assert [b.type for b in (await stream.get_final_message()).content] == ["text"]
        assert [b.type for b in (await claude.messages.create(**ask)).content] == ["text"]


async def test_an_openai_upstreams_refusal_names_the_clients_own_message(database_url: str) -> None:
    """An OpenAI-compatible upstream refuses the chat request a Messages request became by its chat
    message index, one on from the client's own (the system prompt is chat message 0)."""
    async with harness(database_url) as h:
        secret = await h.create_key("cc")
        await h.sync()
        client = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        h.upstream.inject("/v1/chat/completions", status=400,
                          message="Invalid 'messages[2].content': string too long.")
        with pytest.raises(anthropic.BadRequestError) as err:
            await client.messages.create(model="gpt-4o-mini", max_tokens=50, system="You are terse.", messages=[
                {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "x" * 100}])
        assert "Invalid 'messages[1].content': string too long." in err.value.message, err.value.message
        await client.close()


async def test_a_tool_result_that_answers_no_call_is_refused_in_the_clients_own_terms(database_url: str) -> None:
    """A tool result must answer a call the assistant made before it: Anthropic refuses a
    `tool_result` whose `tool_use_id` the previous message did not use, OpenAI a `tool` message no
    `tool_calls` entry before it made. Translated for another API, the upstream's refusal spoke of
    the format it got (`tool` messages to a Messages client, `tool_use` blocks to a chat client),
    after an upstream call; the gateway refuses it first, in the client's API's words."""
    async with harness(database_url) as h:
        secret = await h.create_key("k", models=("gpt-4o-mini", "claude-3-5-haiku-latest"))
        await h.sync()
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        orphan: Any = {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_gone", "content": "42"}]}
        asked: Any = {"role": "user", "content": "weather?"}
        called: Any = {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}]}
        answer: Any = {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}]}
        tools: Any = [{"name": "weather",
                       "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
        for messages, where in (([orphan], "messages[0].content[0]"),
                                ([asked, called, answer, {"role": "assistant", "content": "sunny"}, orphan],
                                 "messages[4].content[0]")):
            for stream in (False, True):
                with pytest.raises(anthropic.BadRequestError) as bad:
                    await claude.messages.create(model="gpt-4o-mini", max_tokens=20, messages=messages, tools=tools,
                                                 stream=stream)
                assert bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
                assert f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: toolu_gone" \
                    in bad.value.message, bad.value.message
        assert h.upstream.requests_to("/v1/chat/completions") == []
        done = await claude.messages.create(model="gpt-4o-mini", max_tokens=20, messages=[asked, called, answer],
                                            tools=tools)
        assert done.stop_reason in ("end_turn", "tool_use")

        chat = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        with pytest.raises(openai.BadRequestError) as refused:
            await chat.chat.completions.create(model="claude-3-5-haiku-latest", messages=[
                {"role": "user", "content": "weather?"},
                {"role": "tool", "tool_call_id": "call_gone", "content": "42"}])
        assert refused.value.param == "messages[1].tool_call_id"
        assert "the tool message with tool_call_id 'call_gone' answers no tool call" in refused.value.message
        assert h.upstream.requests_to("/v1/messages") == []


async def test_a_tool_call_the_conversation_goes_on_without_answering_is_refused_in_the_clients_terms(
        database_url: str) -> None:
    """The other half of the pairing: an interrupted tool call (the user wrote on instead of the
    tool's result) is refused by Anthropic (each `tool_use` needs a `tool_result` in the next
    message) and by OpenAI (an assistant message's `tool_calls` need tool messages). Translated for
    another API, the upstream's refusal spoke of its own format; the gateway refuses it first, in
    the words of the client's API, naming the client's own message."""
    async with harness(database_url) as h:
        secret = await h.create_key("k", models=("gpt-4o-mini", "claude-3-5-haiku-latest"))
        await h.sync()
        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        tools: Any = [{"name": "weather", "input_schema": {"type": "object", "properties": {}}}]
        called: Any = {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "weather",
                                                         "input": {}}]}
        with pytest.raises(anthropic.BadRequestError) as bad:
            await claude.messages.create(model="gpt-4o-mini", max_tokens=20, tools=tools, messages=[
                {"role": "user", "content": "weather?"}, called, {"role": "user", "content": "never mind"}])
        assert "messages[2]: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1" \
            in bad.value.message, bad.value.message
        with pytest.raises(anthropic.BadRequestError) as bad:  # an empty turn would vanish from the chat request
            await claude.messages.create(model="gpt-4o-mini", max_tokens=20, messages=[
                {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                {"role": "user", "content": []}])
        assert "messages[2]: all messages must have non-empty content" in bad.value.message, bad.value.message

        chat = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        call: Any = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
        with pytest.raises(openai.BadRequestError) as refused:
            await chat.chat.completions.create(model="claude-3-5-haiku-latest", messages=[
                {"role": "user", "content": "weather?"}, {"role": "assistant", "tool_calls": [call]},
                {"role": "user", "content": "never mind"}])
        assert refused.value.param == "messages[1].tool_calls" and "'call_1'" in refused.value.message
        with pytest.raises(openai.BadRequestError) as refused:  # a Responses client: its own item named
            await chat.responses.create(model="claude-3-5-haiku-latest", input=[
                {"role": "user", "content": "weather?"},
                {"type": "function_call", "call_id": "call_1", "name": "weather", "arguments": "{}"},
                {"role": "user", "content": "never mind"}])
        assert refused.value.param == "input[1].tool_calls" and "'call_1'" in refused.value.message
        assert h.upstream.requests == []


async def test_max_tokens_above_what_the_model_writes_is_lowered_to_its_limit(database_url: str) -> None:
    """Claude Code asks for 32000 output tokens; gpt-4o writes at most 16384 and OpenAI refuses a
    request asking more (400 "max_tokens is too large"), which made every Claude Code turn fail on
    it. The request goes again within the limit the upstream named, which is remembered for the
    next (one request upstream each), and `max_tokens` is named in x-shieldes-dropped."""
    upstream = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=("gpt-4o",),
                            output_caps={"gpt-4o": 16384})
    async with harness(database_url, upstream=upstream) as h:
        secret = await h.create_key("cc")
        await h.sync()
        client = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        ask: Any = [{"role": "user", "content": "hi"}]
        raw = await client.messages.with_raw_response.create(model="gpt-4o", max_tokens=32000, messages=ask,
                                                             timeout=60)  # (a streamed size, sent whole)
        assert (await raw.parse()).content[0].type == "text"
        assert raw.http_response.headers["x-shieldes-dropped"] == "max_tokens"
        sent = [r.body["max_tokens"] for r in h.upstream.requests_to("/v1/chat/completions")]
        assert sent == [32000, 16384]
        for _ in range(2):
            async with client.messages.stream(model="gpt-4o", max_tokens=64000, messages=ask) as stream:
                final = await stream.get_final_message()
            assert final.content[0].type == "text" and final.stop_reason == "end_turn"
        sent = [r.body["max_tokens"] for r in h.upstream.requests_to("/v1/chat/completions")]
        assert sent == [32000, 16384, 16384, 16384]
        # within the limit: sent as asked, nothing named
        raw = await client.messages.with_raw_response.create(model="gpt-4o", max_tokens=1000, messages=ask)
        assert "x-shieldes-dropped" not in raw.http_response.headers
        assert h.upstream.last("/v1/chat/completions").body["max_tokens"] == 1000
