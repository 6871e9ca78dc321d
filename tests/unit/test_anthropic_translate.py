"""Translation of OpenAI chat requests to the Anthropic Messages API and of its answers and stream
back to the OpenAI format; cache breakpoints for the upstreams that take them."""

from __future__ import annotations

from typing import Any

import pytest

from shieldes.errors import InvalidRequest
from shieldes.providers.anthropic_translate import (
    DEFAULT_MAX_TOKENS,
    StreamTranslator,
    chat_request_to_anthropic,
    messages_response_to_chat,
    stop_reason_to_finish,
)
from shieldes.providers.base import TokenUsage, UpstreamFailure
from tests.unit.chat_samples import TOOL_TURNS, WEATHER_TOOL

# --- OpenAI request -> Anthropic request -----------------------------------------------------------


def test_system_prompts_become_top_level_system_and_defaults_apply() -> None:
    out = chat_request_to_anthropic(
        {
            "model": "claude",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                {"role": "user", "content": "Hi"},
            ],
        },
        "claude-3-5-haiku-latest",
    )
    assert out == {
        "model": "claude-3-5-haiku-latest",
        "system": "Be brief.\n\nAnswer in French.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
        "max_tokens": DEFAULT_MAX_TOKENS,
    }


def test_sampling_parameters_stop_sequences_user_and_stream() -> None:
    out = chat_request_to_anthropic(
        {
            "messages": [{"role": "user", "content": "Hi"}],
            "max_completion_tokens": 50,
            "max_tokens": 99,
            "temperature": 1.7,
            "top_p": 0.9,
            "stop": "END",
            "user": "u-1",
            "stream": True,
            "frequency_penalty": 0.5,
        },
        "m",
    )
    assert out["max_tokens"] == 50
    assert out["temperature"] == 1.0  # clamped into Anthropic's 0..1
    assert out["top_p"] == 0.9
    assert out["stop_sequences"] == ["END"]
    assert out["metadata"] == {"user_id": "u-1"}
    assert out["stream"] is True
    assert "frequency_penalty" not in out
    assert chat_request_to_anthropic(
        {"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b"]}, "m"
    )["stop_sequences"] == ["a", "b"]


def test_json_schema_response_format_becomes_structured_output() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    out = chat_request_to_anthropic({"messages": [{"role": "user", "content": "x"}], "response_format": {
        "type": "json_schema", "json_schema": {"name": "thing", "schema": schema, "strict": True}}}, "m")
    assert out["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    with pytest.raises(InvalidRequest, match=r"json_schema\.schema"):
        chat_request_to_anthropic({"messages": [{"role": "user", "content": "x"}],
                                   "response_format": {"type": "json_schema", "json_schema": {"name": "t"}}}, "m")


def test_multi_turn_and_images() -> None:
    out = chat_request_to_anthropic(
        {
            "messages": [
                {"role": "user", "content": "one"},
                {"role": "assistant", "content": "two"},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                    ],
                },
                {"role": "user", "content": "and quickly"},
            ]
        },
        "m",
    )
    assert [m["role"] for m in out["messages"]] == ["user", "assistant", "user"]
    assert out["messages"][1]["content"] == [{"type": "text", "text": "two"}]
    assert out["messages"][2]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
        {"type": "text", "text": "and quickly"},  # consecutive user turns merged
    ]


def test_tools_tool_calls_and_tool_results() -> None:
    out = chat_request_to_anthropic(
        {
            "messages": TOOL_TURNS,
            "tools": [WEATHER_TOOL],
            "tool_choice": "required",
            "parallel_tool_calls": False,
        },
        "m",
    )
    assert out["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather in a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],
        }
    ]
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert out["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}},
        ],
    }
    # Both results answer one assistant turn: they travel together in one user turn.
    assert out["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "rainy"},
        ],
    }


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    out = chat_request_to_anthropic(
        {"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER_TOOL], "tool_choice": choice}, "m"
    )
    assert out["tool_choice"] == expected


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"messages": []}, "non-empty list"),
        ({"messages": [{"role": "system", "content": "only system"}]}, "at least one user message"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "role must be"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "`n` > 1"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input_audio"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}
                ]
            },
            "http",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "tool_call_id"),
        (  # Cloud Storage links work for Gemini/Vertex, not for Anthropic
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "gs://b/x.png"}}]}]},
            "http(s) URL or a base64 data URL for Anthropic",
        ),
        ({"messages": [{"role": "user", "content": ""}]}, "content is empty"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]}, "content is empty"),
        ({"messages": [{"role": "assistant"}]}, "content` or `tool_calls"),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{not json"}}],
                    }
                ]
            },
            "arguments must be a JSON object",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web"}]}, "tools[0]"),
        (
            {"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER_TOOL], "tool_choice": "any"},
            "tool_choice",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [WEATHER_TOOL],
                "tool_choice": {"function": "f"},
            },
            "tool_choice",
        ),
        (
            {
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "f", "parameters": "object"}}],
            },
            "JSON Schema object",
        ),
    ],
)
def test_invalid_chat_requests_say_what_to_fix(body: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        chat_request_to_anthropic(body, "m")
    assert fragment in info.value.message


# --- Anthropic response -> OpenAI response ---------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("end_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("stop_sequence", "stop"),
        ("refusal", "content_filter"),
        (None, None),
    ],
)
def test_stop_reasons(reason: str | None, finish: str | None) -> None:
    assert stop_reason_to_finish(reason) == finish


def test_message_response_to_chat_with_text_tools_and_cache_usage() -> None:
    resp = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "s"},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "cache_read_input_tokens": 5,
            "cache_creation_input_tokens": 2,
            "output_tokens": 7,
        },
    }
    body, usage = messages_response_to_chat(resp, "claude-x", created=1700000000)
    assert usage == TokenUsage(prompt_tokens=17, completion_tokens=7, cache_read_tokens=5, cache_write_tokens=2)
    assert body == {
        "id": "msg_01",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "claude-x",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Let me check.",
                    "reasoning_content": "hmm",  # the thinking, and its signed block to send back
                    "thinking_blocks": [{"type": "thinking", "thinking": "hmm", "signature": "s"}],
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 17, "completion_tokens": 7, "total_tokens": 24,
                  "prompt_tokens_details": {"cached_tokens": 5}, "cache_creation_input_tokens": 2},
    }


# --- Anthropic stream -> OpenAI chunks ---------------------------------------------------------------


def _feed(events: list[dict[str, Any]]) -> tuple[StreamTranslator, list[dict[str, Any]]]:
    translator = StreamTranslator("claude-x", created=1)
    chunks: list[dict[str, Any]] = []
    for event in events:
        chunks.extend(translator.feed(event["type"], event))
    return translator, chunks


def _start(input_tokens: int = 9) -> dict[str, Any]:
    return {
        "type": "message_start",
        "message": {
            "id": "msg_9",
            "model": "claude-x",
            "usage": {"input_tokens": input_tokens, "output_tokens": 1},
        },
    }


def test_stream_text_sequence_ends_with_finish_and_usage_chunks() -> None:
    translator, chunks = _feed(
        [
            _start(),
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "ping"},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 2}},
            {"type": "message_stop"},
        ]
    )
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas == [{"role": "assistant", "content": ""}, {"content": "Hel"}, {"content": "lo"}, {}]
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["id"] for c in chunks} == {"msg_9"}
    assert translator.done and translator.usage == TokenUsage(9, 2)


def test_stream_tool_use_becomes_indexed_tool_call_deltas() -> None:
    _, chunks = _feed(
        [
            _start(),
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking."}},
            {"type": "content_block_stop", "index": 0},
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": '{"ci'},
            },
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": 'ty":"P"}'},
            },
            {"type": "content_block_stop", "index": 1},
            {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 12}},
            {"type": "message_stop"},
        ]
    )
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert calls[0] == {
        "index": 0,
        "id": "toolu_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert "".join(c["function"]["arguments"] for c in calls) == '{"city":"P"}'
    assert all(c["index"] == 0 for c in calls)
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == 12


def test_stream_error_event_raises_upstream_failure() -> None:
    with pytest.raises(UpstreamFailure) as info:
        _feed([_start(), {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}])
    assert info.value.message == "Overloaded" and info.value.retryable


def test_cache_breakpoints_reach_upstreams_that_take_them() -> None:
    """`cache_control` on OpenAI-format parts (as LiteLLM takes them) becomes Anthropic
    `cache_control` on the same block and Bedrock `cachePoint` after it (an hour's ttl kept);
    Gemini caches implicitly
    and gets none. Messages requests keep their marks only for upstreams that take them."""
    from shieldes.providers.anthropic_inbound import translate_messages_request
    from shieldes.providers.bedrock_translate import chat_to_converse
    from shieldes.providers.gemini_translate import chat_to_gemini

    mark = {"type": "ephemeral", "ttl": "1h"}
    chat: Any = {"messages": [
        {"role": "system", "content": [{"type": "text", "text": "rules", "cache_control": mark},
                                       {"type": "text", "text": "today"}]},
        {"role": "user", "content": [{"type": "text", "text": "long document", "cache_control": {"type": "ephemeral"}},
                                     {"type": "text", "text": "question"}]}]}
    anthropic_body = chat_request_to_anthropic(chat, "m")
    assert anthropic_body["system"] == [{"type": "text", "text": "rules", "cache_control": mark},
                                        {"type": "text", "text": "today"}]
    assert anthropic_body["messages"][0]["content"] == [
        {"type": "text", "text": "long document", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "question"}]
    converse = chat_to_converse(chat)
    point = {"cachePoint": {"type": "default"}}
    hour = {"cachePoint": {"type": "default", "ttl": "1h"}}
    assert converse["system"] == [{"text": "rules"}, hour, {"text": "today"}]
    assert converse["messages"][0]["content"] == [{"text": "long document"}, point, {"text": "question"}]
    gemini = chat_to_gemini(chat)
    assert gemini["systemInstruction"] == {"parts": [{"text": "rules\n\ntoday"}]}
    assert gemini["contents"][0]["parts"] == [{"text": "long document"}, {"text": "question"}]

    messages: Any = {"model": "m", "max_tokens": 10,
                     "system": [{"type": "text", "text": "rules", "cache_control": {"type": "ephemeral"}}],
                     "messages": [{"role": "user", "content": "ask"},
                                  {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f"}]},
                                  {"role": "user", "content": [
                                      {"type": "tool_result", "tool_use_id": "t1", "content": "42",
                                       "cache_control": {"type": "ephemeral"}}]}]}
    kept, _ = translate_messages_request(messages, cache_marks=True)
    assert kept["messages"][0]["content"] == [{"type": "text", "text": "rules", "cache_control": {"type": "ephemeral"}}]
    assert kept["messages"][3]["content"] == [{"type": "text", "text": "42", "cache_control": {"type": "ephemeral"}}]
    plain, _ = translate_messages_request(messages)
    assert plain["messages"][0]["content"] == "rules" and plain["messages"][3]["content"] == "42"


def test_a_chat_tools_cache_control_is_a_breakpoint_after_it() -> None:
    """A chat tool's `cache_control` (LiteLLM's place for it) is Anthropic's `cache_control` on the
    tool and a Converse cachePoint after it; it had been lost."""
    from shieldes.providers.bedrock_translate import chat_to_converse

    tool: Any = {"type": "function", "cache_control": {"type": "ephemeral"},
                 "function": {"name": "f", "parameters": {"type": "object"}}}
    chat: Any = {"messages": [{"role": "user", "content": "hi"}], "tools": [tool]}
    assert chat_request_to_anthropic(chat, "m")["tools"] == [
        {"name": "f", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}]
    assert chat_to_converse(chat)["toolConfig"]["tools"] == [
        {"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}, {"cachePoint": {"type": "default"}}]


def test_usage_counts_only_positive_whole_numbers() -> None:
    from shieldes.providers.anthropic_translate import usage_from_anthropic

    odd = {"input_tokens": True, "output_tokens": -3, "cache_read_input_tokens": 2.5,
           "cache_creation_input_tokens": "9", "server_tool_use": {"web_search_requests": False}}
    assert usage_from_anthropic(odd) == TokenUsage(0, 0)
    assert usage_from_anthropic({"input_tokens": 7, "output_tokens": 2, "cache_read_input_tokens": 3}) == \
        TokenUsage(10, 2, cache_read_tokens=3)


def test_a_failed_tool_result_is_marked_is_error() -> None:
    """A tool message whose text starts "Error:" (what a Messages client's `is_error: true` becomes in
    chat) reaches Claude with `is_error: true`, with or without images: it had arrived as a success."""
    failed = [*TOOL_TURNS[:2], {"role": "tool", "tool_call_id": "call_1", "content": "Error: timed out"},
              {"role": "tool", "tool_call_id": "call_2", "content": [
                  {"type": "text", "text": "Error:"}, {"type": "text", "text": "no such city"},
                  {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]
    results = chat_request_to_anthropic({"messages": failed, "tools": [WEATHER_TOOL]}, "m")["messages"][2]["content"]
    assert [r.get("is_error") for r in results] == [True, True]
    assert results[0]["content"] == "Error: timed out"
    ok = chat_request_to_anthropic({"messages": TOOL_TURNS, "tools": [WEATHER_TOOL]}, "m")["messages"][2]["content"]
    assert all("is_error" not in r for r in ok)
