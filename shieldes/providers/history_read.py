"""A chat or Messages request read in one typed pass over its bytes: the top-level fields the
gateway decides on decoded, and of the history only what the gateway must know (chat: every
message an object with a string `role`, its tool call ids, every tool call's arguments text;
Messages: the tool_use and tool_result ids); contents, tools' schemas and every other field are
skipped, not decoded into Python objects. A coding agent's 70 kB turn becomes a few hundred small
objects instead of thousands of strings, dicts and lists, and a body carrying a 2 MB screenshot is
read once. Pure: no I/O, no state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

_UNSET = msgspec.UNSET


@dataclass(frozen=True, slots=True)
class HistoryRead:
    """`fields`: the top-level fields the reader decodes (its READ) that the body has, null
    included; `messages`: how many (None: the body has no `messages`); `ids`: every tool call id
    of the history."""

    fields: dict[str, Any]
    messages: int | None
    ids: list[str]


# --- OpenAI chat ---------------------------------------------------------------------------------


class _Function(msgspec.Struct, gc=False):
    arguments: str | None = None  # (an object here, as some agents send, is not read so: see below)


class _Call(msgspec.Struct, gc=False):
    id: str | None = None
    function: _Function | None = None


class _Message(msgspec.Struct, gc=False):
    role: str
    tool_calls: list[_Call] | None = None
    tool_call_id: str | None = None


class _ChatRequest(msgspec.Struct, gc=False):
    messages: list[_Message] | msgspec.UnsetType = _UNSET
    model: Any = _UNSET
    stream: Any = _UNSET
    stream_options: Any = _UNSET
    max_tokens: Any = _UNSET
    max_completion_tokens: Any = _UNSET
    n: Any = _UNSET


CHAT_READ = frozenset({"model", "stream", "stream_options", "max_tokens", "max_completion_tokens", "n"})
_CHAT = msgspec.json.Decoder(_ChatRequest)


def read_chat_request(raw: bytes) -> HistoryRead | None:
    """The chat request `raw` (its UTF-8 checked) as HistoryRead (its ids: assistant
    `tool_calls[].id` and tool `tool_call_id`), or None when it has a shape this reading does not
    take: not an object, `messages` not a list of objects with a string role, a tool call that is
    not an object, an id that is not text, arguments that are not text (OpenAI takes text only;
    the gateway encodes objects as text for it). The caller then decodes the body and checks it
    exactly, so an odd but valid request is not refused here and a wrong one gets its exact error.
    What is wrong inside a message's content is left to the upstream, which answers in its own
    words. Raises msgspec.DecodeError for a body that is not JSON."""
    try:
        request = _CHAT.decode(raw)
    except msgspec.ValidationError:
        return None
    fields = _read_fields(request, CHAT_READ)
    messages = request.messages
    if messages is _UNSET:
        return HistoryRead(fields, None, [])
    ids: list[str] = []
    for msg in messages:
        calls = msg.tool_calls
        if calls is not None:
            for call in calls:
                if call.id is not None:
                    ids.append(call.id)
        if msg.tool_call_id is not None:
            ids.append(msg.tool_call_id)
    return HistoryRead(fields, len(messages), ids)


# --- Anthropic Messages --------------------------------------------------------------------------


class _Block(msgspec.Struct, gc=False):
    type: str | None = None
    id: str | None = None
    tool_use_id: str | None = None


class _Turn(msgspec.Struct, gc=False):
    content: str | list[_Block]


class _MessagesRequest(msgspec.Struct, gc=False):
    messages: list[_Turn] | msgspec.UnsetType = _UNSET
    model: Any = _UNSET
    max_tokens: Any = _UNSET
    stream: Any = _UNSET
    thinking: Any = _UNSET


MESSAGES_READ = frozenset({"model", "max_tokens", "stream", "thinking"})
_MESSAGES = msgspec.json.Decoder(_MessagesRequest)


def read_messages_request(raw: bytes) -> HistoryRead | None:
    """The Messages request `raw` (its UTF-8 checked) as HistoryRead (its ids: every `tool_use.id`
    and `tool_result.tool_use_id`), or None when it has a shape this reading does not take (not an
    object, a message that is not an object with text or a list of block objects as `content`, an
    id that is not text): the caller then reads it by its top-level fields and checks the ids
    exactly. Raises msgspec.DecodeError for a body that is not JSON."""
    try:
        request = _MESSAGES.decode(raw)
    except msgspec.ValidationError:
        return None
    fields = _read_fields(request, MESSAGES_READ)
    messages = request.messages
    if messages is _UNSET:
        return HistoryRead(fields, None, [])
    ids: list[str] = []
    for msg in messages:
        if msg.content.__class__ is list:
            for block in msg.content:
                kind = block.type
                if kind == "tool_use":
                    if block.id is not None:
                        ids.append(block.id)
                elif kind == "tool_result" and block.tool_use_id is not None:
                    ids.append(block.tool_use_id)
    return HistoryRead(fields, len(messages), ids)


def _read_fields(request: msgspec.Struct, names: frozenset[str]) -> dict[str, Any]:
    return {name: value for name in names if (value := getattr(request, name)) is not _UNSET}
