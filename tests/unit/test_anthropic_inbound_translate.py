"""Translation of Anthropic Messages requests to the OpenAI chat format, and of OpenAI answers and
chunks back to Anthropic messages and events (the Messages API in front of an OpenAI upstream); and,
both directions, any JSON in gives only InvalidRequest out."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from anthropic.lib.streaming._messages import accumulate_event
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shieldes.errors import InvalidRequest
from shieldes.providers.anthropic_translate import (
    chat_request_to_anthropic,
    messages_request_to_openai,
    openai_chunks_to_message_events,
    openai_response_to_messages,
)
from tests.unit.chat_samples import TOOL_TURNS, WEATHER_TOOL

# --- inbound: Anthropic request -> OpenAI request --------------------------------------------------


def test_messages_request_to_openai_full() -> None:
    out = messages_request_to_openai(
        {
            "model": "gpt-4o",
            "max_tokens": 100,
            "system": [{"type": "text", "text": "Be brief."}],
            "messages": [
                {"role": "user", "content": "Weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Checking."},
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": [{"type": "text", "text": "sunny"}],
                        },
                        {"type": "text", "text": "Thanks"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                        },
                    ],
                },
            ],
            "tools": [{"name": "get_weather", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
            "stop_sequences": ["END"],
            "temperature": 0.2,
            "top_p": 0.5,
            "top_k": 5,
            "metadata": {"user_id": "u1"},
            "stream": True,
        }
    )
    assert out == {
        "model": "gpt-4o",
        "max_tokens": 100,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Thanks"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "get_weather", "parameters": {"type": "object"}, "description": "d"},
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "stop": ["END"],
        "temperature": 0.2,
        "top_p": 0.5,
        "user": "u1",
        "stream": True,
        "stream_options": {"include_usage": True},
    }


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ([], "JSON object"),
        ({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "`model` is required"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "`max_tokens` is required"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "non-empty"),
        ({"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}, '"system"'),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "document"}]}],
            },
            "document",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "document", "source": {
                    "type": "url", "url": "https://example.com/a.pdf"}}]}],
            },
            "send the document's text instead",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "temperature": "hot",
            },
            "number",
        ),
    ],
)
def test_invalid_messages_requests_say_what_to_fix(body: Any, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        messages_request_to_openai(body)
    assert fragment in info.value.message


def test_round_trip_openai_to_anthropic_and_back() -> None:
    original = {
        "model": "claude",
        "max_tokens": 64,
        "messages": [
            {"role": "system", "content": "Be brief."},
            *TOOL_TURNS,
            {"role": "assistant", "content": "Done."},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
    }
    anthropic_body = chat_request_to_anthropic(original, "claude")
    back = messages_request_to_openai(anthropic_body)
    assert back["messages"][0] == {"role": "system", "content": "Be brief."}
    assert [m["role"] for m in back["messages"]] == [
        "system",
        "user",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]
    assert [m.get("tool_call_id") for m in back["messages"][3:5]] == ["call_1", "call_2"]
    assert back["messages"][2]["tool_calls"] == TOOL_TURNS[1]["tool_calls"]
    assert back["tools"][0]["function"]["parameters"] == WEATHER_TOOL["function"]["parameters"]
    assert back["tool_choice"] == "auto" and back["max_tokens"] == 64


# --- inbound: OpenAI response -> Anthropic message -------------------------------------------------


@pytest.mark.parametrize(
    ("finish", "reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
    ],
)
def test_openai_response_to_messages(finish: str, reason: str) -> None:
    resp = {
        "id": "chatcmpl-1",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hi",
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a":1}'},
                        }
                    ],
                },
                "finish_reason": finish,
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }
    msg = openai_response_to_messages(resp, "gpt-4o")
    assert msg == {
        "id": "msg_chatcmpl-1",
        "type": "message",
        "role": "assistant",
        "model": "gpt-4o",
        "content": [
            {"type": "text", "text": "Hi"},
            {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
        ],
        "stop_reason": reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                  "output_tokens": 4},
    }


def test_malformed_tool_arguments_are_kept_visible() -> None:
    resp = {
        "choices": [
            {"message": {"tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{oops"}}]}}
        ]
    }
    assert openai_response_to_messages(resp, "m")["content"][0]["input"] == {"_raw_arguments": "{oops"}


# --- inbound: OpenAI chunks -> Anthropic events ----------------------------------------------------


def _chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, usage: dict[str, int] | None = None
) -> dict[str, Any]:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    out: dict[str, Any] = {"id": "chatcmpl-7", "object": "chat.completion.chunk", "choices": choices}
    if usage:
        out["usage"] = usage
    return out


async def _events(chunks: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    async def gen() -> AsyncIterator[dict[str, Any]]:
        for c in chunks:
            yield c

    return [e async for e in openai_chunks_to_message_events(gen(), "gpt-4o")]


def _snapshot(events: list[tuple[str, dict[str, Any]]]) -> Any:
    """Fold the events with the anthropic SDK's own stream accumulator."""
    snapshot = None
    bufs: dict[int, bytes] = {}
    for name, data in events:
        assert name == data["type"]
        snapshot = accumulate_event(event=data, current_snapshot=snapshot, json_bufs=bufs)  # type: ignore[arg-type]
    return snapshot


USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


async def test_chunks_to_events_text() -> None:
    events = await _events(
        [
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"content": "Hello"}),
            _chunk({"content": " world"}),
            _chunk({}, "stop"),
            _chunk(usage=USAGE),
        ]
    )
    assert [n for n, _ in events] == [
        "message_start", "ping", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    assert events[-2][1]["usage"] == {"input_tokens": 5, "cache_creation_input_tokens": 0,
                                      "cache_read_input_tokens": 0, "output_tokens": 3}
    message = _snapshot(events)
    assert message.content[0].text == "Hello world"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (5, 3)


async def test_chunks_to_events_text_then_two_tool_calls() -> None:
    def call(index: int, id_: str | None = None, name: str | None = None, args: str = "") -> dict[str, Any]:
        fn: dict[str, Any] = {"arguments": args}
        if name:
            fn["name"] = name
        tc: dict[str, Any] = {"index": index, "function": fn}
        if id_:
            tc.update(id=id_, type="function")
        return {"tool_calls": [tc]}

    events = await _events(
        [
            _chunk({"role": "assistant", "content": "Let me look."}),
            _chunk(call(0, "call_a", "get_weather")),
            _chunk(call(0, args='{"city":')),
            _chunk(call(0, args='"Paris"}')),
            _chunk(call(1, "call_b", "get_weather", '{"city":"Rome"}')),
            _chunk({}, "tool_calls"),
            _chunk(usage=USAGE),
        ]
    )
    message = _snapshot(events)
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[1].id == "call_a" and message.content[1].input == {"city": "Paris"}
    assert message.content[2].id == "call_b" and message.content[2].input == {"city": "Rome"}
    assert message.stop_reason == "tool_use"
    starts = [d["index"] for n, d in events if n == "content_block_start"]
    stops = [d["index"] for n, d in events if n == "content_block_stop"]
    assert starts == stops == [0, 1, 2]


async def test_parallel_calls_sent_at_one_index_become_separate_tool_use_blocks() -> None:
    """Ollama (and other servers) stream every parallel tool call at index 0, each with its own id:
    each is its own tool_use block with its own input, not one block with the inputs run together."""
    def call(id_: str | None, args: str, name: str | None = None) -> dict[str, Any]:
        fn: dict[str, Any] = {"arguments": args, **({"name": name} if name else {})}
        return {"tool_calls": [{"index": 0, "function": fn, **({"id": id_, "type": "function"} if id_ else {})}]}

    events = await _events([
        _chunk(call("call_a", '{"path": "a"}', "read")),
        _chunk(call("call_b", '{"q"', "grep")),
        _chunk(call(None, ': "x"}')),  # a fragment without an id: the call before it
        _chunk(call("call_b", "")),  # an id sent again: the same call
        _chunk({}, "tool_calls"),
        _chunk(usage=USAGE),
    ])
    message = _snapshot(events)
    assert [(b.id, b.name, b.input) for b in message.content] == [
        ("call_a", "read", {"path": "a"}), ("call_b", "grep", {"q": "x"})]
    assert [d["index"] for n, d in events if n == "content_block_stop"] == [0, 1]


async def test_empty_stream_still_yields_a_complete_event_sequence() -> None:
    events = await _events([])
    assert [n for n, _ in events] == ["message_start", "message_delta", "message_stop"]
    assert _snapshot(events).content == []


# --- robustness: any JSON in, only InvalidRequest out ------------------------------------------------


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)
# Scalars (wrong types, empty and short strings) are where shape checks slip most.
_leaf = st.none() | st.booleans() | st.integers(-2, 2) | st.text(max_size=3)
_junk = _leaf | _json
_kinds = st.sampled_from(["text", "image_url", "image", "tool_use", "tool_result", "function", "thinking"])
_part = st.fixed_dictionaries(
    {"type": _kinds | _junk},
    optional={
        k: _junk | st.text(max_size=4) for k in ("text", "id", "name", "input", "tool_use_id", "content")
    }
    | {
        "image_url": st.fixed_dictionaries(
            {
                "url": st.sampled_from(["data:image/png;base64,AA==", "https://x/y.png", "data:,x", "ftp://x"])
                | _junk
            }
        )
    },
)
_content = st.text(max_size=4) | st.lists(_part | _junk, max_size=3) | _junk
_call = st.fixed_dictionaries(
    {
        "id": st.text(max_size=3) | _junk,
        "function": st.fixed_dictionaries(
            {"name": st.text(max_size=3) | _junk},
            optional={"arguments": st.sampled_from(["{}", '{"a":1}', "[1]", "{x"]) | _junk},
        )
        | _junk,
    },
)
_message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system", "developer", "tool"]) | _junk,
        "content": _content,
    },
    optional={"tool_calls": st.lists(_call, max_size=2) | _junk, "tool_call_id": st.text(max_size=3) | _junk},
)
_function = st.fixed_dictionaries(
    {"name": st.text(max_size=3) | _junk}, optional={"parameters": _junk, "description": _junk}
)
_tools = (
    st.lists(
        st.fixed_dictionaries({"type": st.just("function") | _junk, "function": _function | _junk})
        | st.fixed_dictionaries(
            {"name": st.text(max_size=3) | _junk}, optional={"type": _junk, "input_schema": _junk}
        )
        | _junk,
        max_size=2,
    )
    | _junk
)
_choice = (
    st.sampled_from(["auto", "none", "required", "any"])
    | st.fixed_dictionaries(
        {"type": st.sampled_from(["auto", "any", "tool", "none", "function"]) | _junk},
        optional={
            "name": _junk | st.text(max_size=3),
            "function": _function | _junk,
            "disable_parallel_tool_use": _junk,
        },
    )
    | _junk
)
_fields = {
    "messages": st.lists(_message | _junk, max_size=4) | _junk,
    "tools": _tools,
    "tool_choice": _choice,
    **{
        k: _junk | _content
        for k in (
            "stop",
            "max_tokens",
            "max_completion_tokens",
            "temperature",
            "system",
            "n",
            "stop_sequences",
            "parallel_tool_calls",
            "metadata",
            "user",
            "top_p",
        )
    },
}


def _mutations(base: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """`base` (valid) with one or two fields replaced by junk, so every field's checks are reached."""
    one = st.one_of([st.builds(lambda v, k=k: {k: v}, strategy) for k, strategy in _fields.items()])
    return st.builds(lambda a, b: {**base, **a, **b}, one, one)


_OPENAI_BASE = {
    "messages": [{"role": "user", "content": "hi"}],
    "tools": [WEATHER_TOOL],
    "tool_choice": "auto",
}
_ANTHROPIC_BASE = {
    "model": "m",
    "max_tokens": 5,
    "messages": [{"role": "user", "content": "hi"}],
    "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "auto"},
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations(_OPENAI_BASE))
def test_chat_request_translation_fails_only_with_invalid_request(body: dict[str, Any]) -> None:
    with contextlib.suppress(InvalidRequest):
        chat_request_to_anthropic(body, "m")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutations(_ANTHROPIC_BASE))
def test_messages_request_translation_fails_only_with_invalid_request(body: dict[str, Any]) -> None:
    with contextlib.suppress(InvalidRequest):
        messages_request_to_openai(body)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from(["id", "choices", "usage", "model"]), _junk | st.lists(_junk), max_size=4)
)
def test_odd_upstream_answers_still_give_a_message(resp: dict[str, Any]) -> None:
    message = openai_response_to_messages(resp, "m")
    assert message["type"] == "message" and isinstance(message["content"], list)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.dictionaries(st.sampled_from(["id", "choices", "usage"]), _junk | st.lists(_junk)), max_size=4
    )
)
async def test_odd_upstream_chunks_still_give_a_complete_event_sequence(chunks: list[dict[str, Any]]) -> None:
    events = await _events(chunks)
    assert events[0][0] == "message_start" and events[-1][0] == "message_stop"


@pytest.mark.parametrize(("extra", "expected"), [
    ({"stop_reason": "END"}, ("stop_sequence", "END")),  # vLLM
    ({"matched_stop": "END"}, ("stop_sequence", "END")),  # SGLang
    ({"stop_reason": 128001}, ("end_turn", None)),  # a stop token id, not a sequence
    ({"matched_stop": 2}, ("end_turn", None)),
    ({}, ("end_turn", None)),  # OpenAI, Ollama: finish_reason stop says nothing more
])
def test_a_chat_server_names_the_matched_stop_sequence_or_nothing_is_claimed(
        extra: dict[str, Any], expected: tuple[str, str | None]) -> None:
    resp = {"id": "x", "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": "a"}, **extra}]}
    message = openai_response_to_messages(resp, "m")
    assert (message["stop_reason"], message["stop_sequence"]) == expected
