"""Tool call arguments sent as a JSON object (Ollama, some vLLM builds) instead of its text, in
JSON answers and stream deltas: chat clients get the JSON text, Messages clients `tool_use.input`,
Responses clients `function_call.arguments`; a client history holding an object is sent upstream as
text (OpenAI refuses anything else, and so does the fake). Official SDKs, a real node."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai

from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, harness

SCHEMA: Any = {"type": "object", "properties": {"path": {"type": "string"}, "depth": {"type": "integer"}},
               "required": ["path", "depth"]}
ARGS = {"path": "test", "depth": 1}
TOOL: Any = {"type": "function", "function": {"name": "read", "parameters": SCHEMA}}


async def test_object_arguments_reach_every_client_api_as_the_api_has_them(database_url: str) -> None:
    up = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=("gpt-4o",), object_arguments=True)
    async with harness(database_url, upstream=up) as h:
        secret = await h.create_key("app")
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        ask: Any = [{"role": "user", "content": "read it"}]

        chat = await client.chat.completions.create(model="gpt-4o", messages=ask, tools=[TOOL])
        calls = chat.choices[0].message.tool_calls
        assert calls is not None and isinstance(calls[0].function.arguments, str)  # type: ignore[union-attr]
        assert json.loads(calls[0].function.arguments) == ARGS  # type: ignore[union-attr]
        for usage in (False, True):
            options: Any = {"include_usage": True} if usage else openai.NOT_GIVEN
            stream = await client.chat.completions.create(model="gpt-4o", messages=ask, tools=[TOOL], stream=True,
                                                          stream_options=options)
            fragments = [c.choices[0].delta.tool_calls[0].function.arguments async for c in stream  # type: ignore
                         if c.choices and c.choices[0].delta.tool_calls]
            assert all(isinstance(f, str) for f in fragments) and json.loads("".join(fragments)) == ARGS

        claude = anthropic.AsyncAnthropic(base_url=h.base, api_key=secret, max_retries=0)
        tools: Any = [{"name": "read", "input_schema": SCHEMA}]
        message = await claude.messages.create(model="gpt-4o", max_tokens=50, messages=ask, tools=tools)
        assert [(b.type, b.input) for b in message.content] == [("tool_use", ARGS)]  # type: ignore[union-attr]
        async with claude.messages.stream(model="gpt-4o", max_tokens=50, messages=ask, tools=tools) as s:
            final = await s.get_final_message()
        assert [(b.type, b.input) for b in final.content] == [("tool_use", ARGS)]  # type: ignore[union-attr]

        rtools: Any = [{"type": "function", "name": "read", "parameters": SCHEMA, "strict": False}]
        response = await client.responses.create(model="gpt-4o", input="read it", tools=rtools)
        assert [(o.type, json.loads(o.arguments)) for o in response.output] == [("function_call", ARGS)]  # type: ignore
        events = [e async for e in await client.responses.create(model="gpt-4o", input="read it", tools=rtools,
                                                                 stream=True)]
        done = events[-1].response.output  # type: ignore[union-attr]
        assert [(o.type, json.loads(o.arguments)) for o in done] == [("function_call", ARGS)]  # type: ignore
        deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")  # type: ignore
        assert json.loads(deltas) == ARGS

        # a history whose call carries an object (as the Ollama answer had it) goes upstream as text
        history: Any = [*ask, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "read", "arguments": ARGS}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "done"}]
        for stream_it in (False, True):
            raw = await client.chat.completions.with_raw_response.create(model="gpt-4o", messages=history,
                                                                         tools=[TOOL], stream=stream_it)
            assert raw.http_response.status_code == 200
            await raw.http_response.aread()
            sent = up.last("/v1/chat/completions").body["messages"][1]["tool_calls"][0]["function"]
            assert json.loads(sent["arguments"]) == ARGS
