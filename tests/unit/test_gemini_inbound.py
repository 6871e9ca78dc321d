"""The Gemini API's generateContent requests as chat requests, and chat answers and chunks as
GenerateContentResponses (pure)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from shieldes.errors import InvalidRequest
from shieldes.providers.base import TokenUsage
from shieldes.providers.gemini_inbound import translate_generate_request
from shieldes.providers.gemini_replies import chat_to_generate_response, chunks_to_generate_responses
from shieldes.providers.gemini_schema import json_schema


def test_a_tool_round_trip_in_either_field_spelling_becomes_chat_messages() -> None:
    body = {
        "system_instruction": {"parts": [{"text": "be brief"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "weather?"},
                                       {"inline_data": {"mime_type": "image/png", "data": "iVBORw0K"}}]},
            {"role": "model", "parts": [{"thought": True, "text": "hmm"},
                                        {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}}]},
        ],
        "tools": [{"function_declarations": [{"name": "get_weather", "parameters": {
            "type": "OBJECT", "properties": {"city_name": {"type": "STRING", "nullable": True}},
            "property_ordering": ["city_name"]}}]}, {"googleSearch": {}}],
        "toolConfig": {"functionCallingConfig": {"mode": "NONE"}},
        "generationConfig": {"topK": 3, "maxOutputTokens": 20, "thinkingConfig": {"thinkingBudget": 1024}},
        "safetySettings": [],
    }
    chat, dropped = translate_generate_request(body, "gpt-4o")
    assert chat["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "weather?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1_0", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1_0", "content": "sunny"},
    ]
    assert chat["tools"][0]["function"]["parameters"] == {
        "type": "object", "properties": {"city_name": {"type": ["string", "null"]}}}
    assert chat["tool_choice"] == "none" and chat["max_tokens"] == 20
    assert dropped == ["safetySettings", "tools[1].googleSearch", "generationConfig.thinkingConfig",
                       "generationConfig.topK"]
    thinking, named = translate_generate_request(body, "o3")  # a reasoning model takes the thinking budget
    assert thinking["reasoning_effort"] == "low" and thinking["max_completion_tokens"] == 20
    assert "generationConfig.thinkingConfig" not in named


@pytest.mark.parametrize(("body", "says"), [
    ({"contents": []}, "`contents` must be a non-empty list"),
    ({"contents": [{"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]}]},
     "which the model turn before it did not call"),
    ({"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"candidateCount": 3}}, "candidateCount"),
    ({"contents": [{"parts": [{"text": "hi"}]}], "toolConfig": {"functionCallingConfig": {"mode": "ANY"}}},
     "declares no functions"),
    ({"contents": [{"parts": [{"inlineData": {"mimeType": "audio/wav", "data": "AAAA"}}]}]}, "audio/wav data"),
    ({"contents": [{"role": "system", "parts": [{"text": "hi"}]}]}, '"user" or "model"'),
    ({"contents": [{"parts": [{"text": "hi"}]}], "cachedContent": "cachedContents/x"}, "cachedContent"),
])
def test_what_cannot_be_translated_is_refused_with_what_to_do(body: dict[str, Any], says: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        translate_generate_request(body, "gpt-4o")
    assert says in info.value.message


def test_json_output_and_allowed_functions() -> None:
    decl = [{"functionDeclarations": [{"name": "a"}, {"name": "b", "parametersJsonSchema": {"type": "object"}}]}]
    chat, _ = translate_generate_request({
        "contents": [{"parts": [{"text": "hi"}]}], "tools": decl,
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["b"]}},
        "generationConfig": {"responseMimeType": "application/json"}}, "gpt-4o")
    assert [t["function"]["name"] for t in chat["tools"]] == ["b"]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "b"}}
    assert chat["response_format"] == {"type": "json_object"}
    assert json_schema({"type": "ARRAY", "items": {"anyOf": [{"type": "INTEGER"}], "nullable": True},
                        "example": [1]}) == {"type": "array",
                                             "items": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}


def test_a_chat_answer_becomes_a_generate_content_response() -> None:
    answer = {"id": "chatcmpl-1", "choices": [{"finish_reason": "length", "message": {
        "content": "Hi", "reasoning_content": "thinking", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]}}]}
    reply = chat_to_generate_response(answer, "gpt-4o", TokenUsage(10, 7, cache_read_tokens=4, reasoning_tokens=2),
                                      thoughts=True)
    assert reply == {
        "candidates": [{"content": {"role": "model", "parts": [
            {"text": "thinking", "thought": True}, {"text": "Hi"}, {"functionCall": {"name": "f", "args": {"x": 1},
                                                                                   "id": "c1"}}]},
            "index": 0, "finishReason": "MAX_TOKENS"}],
        "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 17,
                          "thoughtsTokenCount": 2, "cachedContentTokenCount": 4},
        "modelVersion": "gpt-4o", "responseId": "chatcmpl-1"}


async def test_streamed_tool_call_fragments_come_whole_in_the_last_chunk() -> None:
    async def chunks() -> AsyncIterator[dict[str, Any]]:
        yield {"id": "x", "choices": [{"delta": {"content": "Lo"}}]}
        yield {"id": "x", "choices": [{"delta": {"tool_calls": [
            {"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a"'}}]}}]}
        yield {"id": "x", "choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": ': 2}'}}]}}]}
        yield {"id": "x", "choices": [{"delta": {}, "finish_reason": "tool_calls"}]}

    out = [r async for r in chunks_to_generate_responses(chunks(), "m", lambda: TokenUsage(3, 4))]
    assert [r["candidates"][0]["content"]["parts"] for r in out] == [
        [{"text": "Lo"}], [{"functionCall": {"name": "f", "args": {"a": 2}, "id": "c1"}}]]
    assert out[-1]["candidates"][0]["finishReason"] == "STOP" and out[-1]["usageMetadata"]["totalTokenCount"] == 7
    assert "usageMetadata" not in out[0] and out[0]["responseId"] == "x"
