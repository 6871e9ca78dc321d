"""The output-token estimate of a non-streamed answer whose upstream reported no usage
(usage.tokens.estimate_output_tokens): UTF-8 bytes / 4, rounded up, per piece of text."""

from __future__ import annotations

from typing import Any

import pytest

from shieldes.usage.tokens import estimate_output_tokens


def _chat(message: dict[str, Any]) -> dict[str, Any]:
    return {"object": "chat.completion", "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}


@pytest.mark.parametrize(("answer", "tokens"), [
    (_chat({"role": "assistant", "content": "Rain."}), 2),  # 5 bytes: rounded up, never 0
    (_chat({"role": "assistant", "content": "abcd" * 3}), 3),
    (_chat({"role": "assistant", "content": "é" * 4}), 2),  # bytes, not characters
    (_chat({"role": "assistant", "content": [{"type": "text", "text": "abcdefgh"}]}), 2),
    (_chat({"role": "assistant", "content": "abcd", "reasoning_content": "abcdefgh"}), 3),
    (_chat({"role": "assistant", "content": "abcd", "reasoning": "abcdefgh"}), 3),
    (_chat({"role": "assistant", "content": None, "refusal": "no"}), 1),
    (_chat({"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get", "arguments": '{"city":"Paris"}'}},
        {"id": "c2", "type": "function", "function": {"name": "get", "arguments": {"city": "Rome"}}},  # Ollama
    ]}), 1 + 4 + 1 + 4),
    (_chat({"role": "assistant", "content": None, "function_call": {"name": "get", "arguments": "{}"}}), 2),
    ({"object": "text_completion", "choices": [{"text": "abcde", "index": 0}, {"text": "abc", "index": 1}]}, 3),
    ({"type": "message", "content": [{"type": "thinking", "thinking": "abcdefgh", "signature": "x" * 400},
                                     {"type": "text", "text": "abc"},
                                     {"type": "tool_use", "id": "t", "name": "get", "input": {"city": "Paris"}}]},
     2 + 1 + 1 + 4),
    ({"object": "response", "output": [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "abcd"}],
         "content": [{"type": "reasoning_text", "text": "abcdefgh"}], "encrypted_content": "x" * 400},
        {"type": "message", "content": [{"type": "output_text", "text": "abcde", "annotations": []}]},
        {"type": "function_call", "call_id": "c", "name": "get", "arguments": '{"city":"Paris"}'},
    ]}, 1 + 2 + 2 + 1 + 4),
])
def test_the_output_is_the_answers_text_over_four(answer: dict[str, Any], tokens: int) -> None:
    assert estimate_output_tokens(answer) == tokens


@pytest.mark.parametrize("answer", [
    {"object": "list", "data": [{"object": "embedding", "embedding": [0.1, 0.2]}]},  # no output
    _chat({"role": "assistant", "content": ""}),
    {"type": "message", "content": []},
    {"object": "response", "output": []},
    {"choices": "not a list"},
    {},
])
def test_no_text_back_is_no_output(answer: dict[str, Any]) -> None:
    assert estimate_output_tokens(answer) == 0
