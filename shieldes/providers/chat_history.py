"""An OpenAI chat request read in one typed pass over its bytes: the top-level fields the gateway
decides on (model, stream, stream_options, max_tokens, max_completion_tokens, n) decoded, and of
the history only what the gateway must know (every message an object with a string `role`; its
tool call ids; every tool call's arguments text); contents, tools' schemas and every other field
are skipped, not decoded into Python objects. A coding agent's 70 kB turn becomes a few hundred
small objects instead of thousands of strings, dicts and lists, and a body carrying a 2 MB
screenshot is read once. Pure: no I/O, no state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

_UNSET = msgspec.UNSET


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
    service_tier: Any = _UNSET  # (a priority request is held at the priority price)


READ = ("model", "stream", "stream_options", "max_tokens", "max_completion_tokens", "n",
        "service_tier")  # decoded, when present
_REQUEST = msgspec.json.Decoder(_ChatRequest)


@dataclass(frozen=True, slots=True)
class ChatRead:
    """`fields`: those of READ the body has (null included), decoded; `messages`: how many
    (None: the body has no `messages`); `ids`: every tool call id of the history (assistant
    `tool_calls[].id`, tool `tool_call_id`)."""

    fields: dict[str, Any]
    messages: int | None
    ids: list[str]


def read_chat_request(raw: bytes) -> ChatRead | None:
    """The chat request `raw` (valid JSON, its UTF-8 checked) as ChatRead, or None when it has a
    shape this reading does not take: not an object, `messages` not a list of objects with a
    string role, a tool call that is not an object, an id that is not text, arguments that are not
    text (OpenAI takes text only; the gateway encodes objects as text for it). The caller then
    decodes the body and checks it exactly, so an odd but valid request is not refused here and a
    wrong one gets its exact error. What is wrong inside a message's content is left to the
    upstream, which answers in its own words."""
    try:
        request = _REQUEST.decode(raw)
    except msgspec.ValidationError:
        return None
    fields = {name: value for name in READ if (value := getattr(request, name)) is not _UNSET}
    messages = request.messages
    if messages is _UNSET:
        return ChatRead(fields, None, [])
    ids: list[str] = []
    for msg in messages:
        calls = msg.tool_calls
        if calls is not None:
            for call in calls:
                if call.id is not None:
                    ids.append(call.id)
        if msg.tool_call_id is not None:
            ids.append(msg.tool_call_id)
    return ChatRead(fields, len(messages), ids)
