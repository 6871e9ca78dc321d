"""An OpenAI chat history read off its JSON bytes: what the gateway must know of a coding agent's
history (every message an object with a string `role`; its tool call ids; every tool call's
arguments text) without decoding the history into Python objects. A typed msgspec read skips what
it does not name (contents, tools' schemas), so a 70 kB history becomes a few hundred small
objects instead of thousands of strings, dicts and lists. Pure: no I/O, no state."""

from __future__ import annotations

import msgspec


class _Function(msgspec.Struct, gc=False):
    arguments: str | None = None  # (an object here, as some agents send, is not read so: see below)


class _Call(msgspec.Struct, gc=False):
    id: str | None = None
    function: _Function | None = None


class _Message(msgspec.Struct, gc=False):
    role: str
    tool_calls: list[_Call] | None = None
    tool_call_id: str | None = None


_MESSAGES = msgspec.json.Decoder(list[_Message])


def chat_history_ids(history: bytes | memoryview) -> list[str] | None:
    """Every tool call id (assistant `tool_calls[].id`, tool `tool_call_id`) of the chat history
    `messages` (its JSON bytes, already checked to be valid JSON), or None when the history has a
    shape this reading does not take: a message that is not an object with a string role, a tool
    call that is not an object, an id that is not text, arguments that are not text (OpenAI takes
    text only; the gateway encodes objects as text for it). The caller then decodes the history and
    checks it exactly, so an odd but valid history is not refused here and a wrong one gets its
    exact error. What is wrong inside a message's content is left to the upstream, which answers
    in its own words."""
    try:
        messages = _MESSAGES.decode(history)
    except msgspec.ValidationError:
        return None
    ids: list[str] = []
    for msg in messages:
        calls = msg.tool_calls
        if calls is not None:
            for call in calls:
                if call.id is not None:
                    ids.append(call.id)
        if msg.tool_call_id is not None:
            ids.append(msg.tool_call_id)
    return ids
