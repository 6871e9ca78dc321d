"""Tool call arguments given as JSON objects (Ollama) become the JSON text the OpenAI chat format
has, in histories, answers and chunks, and in the translations to Messages and Responses."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from shieldes.providers.anthropic_replies import openai_chunks_to_message_events, openai_response_to_messages
from shieldes.providers.responses_replies import ChatStreamTranslator, chat_to_output
from shieldes.providers.responses_translate import request_to_chat
from shieldes.providers.tool_args import (
    OBJECT_ARGUMENTS,
    arguments_text,
    string_answer_arguments,
    string_arguments,
)
from shieldes.responses.objects import ResponseContext

ARGS = {"city": "Paris", "days": [1, 2]}


def _answer(arguments: Any) -> dict[str, Any]:
    return {"id": "x", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}]}}]}


def test_arguments_text() -> None:
    assert arguments_text('{"a": 1}') == '{"a": 1}' and arguments_text(None) == ""
    assert json.loads(arguments_text(ARGS)) == ARGS and arguments_text([1]) == "[1]"


def test_histories_keep_their_identity_unless_an_object_is_in_them() -> None:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "x"}, _answer('{"a":1}')["choices"][0]["message"]]}
    assert string_arguments(body) is body
    with_object = {"messages": [body["messages"][0], _answer(ARGS)["choices"][0]["message"]]}
    fixed = string_arguments(with_object)
    assert fixed is not with_object and with_object["messages"][1]["tool_calls"][0]["function"]["arguments"] == ARGS
    assert json.loads(fixed["messages"][1]["tool_calls"][0]["function"]["arguments"]) == ARGS
    assert string_arguments(fixed) is fixed


def test_answers_and_chunks_are_fixed_in_place() -> None:
    answer = _answer(ARGS)
    assert string_answer_arguments(answer) and not string_answer_arguments(answer)
    assert json.loads(answer["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]) == ARGS
    chunk = {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ARGS}}]}}]}
    assert string_answer_arguments(chunk)
    assert json.loads(chunk["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]) == ARGS
    assert OBJECT_ARGUMENTS.search(b'{"arguments": {"a":1}}') and not OBJECT_ARGUMENTS.search(b'{"arguments":"{}"}')


async def _chunks(items: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for item in items:
        yield item


async def test_translations_take_objects_too() -> None:
    message = openai_response_to_messages(_answer(ARGS), "m")
    assert message["content"] == [{"type": "tool_use", "id": "c1", "name": "f", "input": ARGS}]
    stream = [{"id": "x", "choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": ARGS}}]}}]},
        {"id": "x", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}]
    events = [e async for e in openai_chunks_to_message_events(_chunks(stream), "m")]
    partial = [d["delta"]["partial_json"] for name, d in events if name == "content_block_delta"]
    assert json.loads("".join(partial)) == ARGS
    output = chat_to_output(_answer(ARGS)).output
    assert json.loads(output[0]["arguments"]) == ARGS
    translator = ChatStreamTranslator(ResponseContext("resp_1", 0, "m"))
    translator.start()
    for chunk in stream:
        translator.feed(chunk)
    final = translator.finish(0)[-1]["response"]["output"]
    assert json.loads(final[0]["arguments"]) == ARGS
    chat = request_to_chat({"input": [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": ARGS},
                                      {"type": "function_call_output", "call_id": "c1", "output": "ok"}]}, "m")
    assert json.loads(chat["messages"][0]["tool_calls"][0]["function"]["arguments"]) == ARGS
