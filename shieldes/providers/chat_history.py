"""An OpenAI chat request read in one typed pass over its bytes: the top-level fields the gateway
decides on (model, stream, stream_options, max_tokens, max_completion_tokens, n, service_tier;
top_k and thinking, which OpenAI itself refuses) decoded, and of the history only what the
gateway must know (every message an object with a string `role`; its tool call ids; every tool
call's arguments text); contents, tools' schemas and every other field
are skipped, not decoded into Python objects. A coding agent's 70 kB turn becomes a few hundred
small objects instead of thousands of strings, dicts and lists, and a body carrying a 2 MB
screenshot is read once. Pure: no I/O, no state.

An agent's turn is the body of its last turn with new messages after the old ones, and the
typed pass costs what scanning the body's bytes costs (skipping the messages instead costs half
of it): `read_turn` reads a body of a key from where the `messages` of a body read before ended
(through gateway/checked_histories.py, which keeps the body and the length of it up to that
list's closing bracket), decoding only what follows, with the decisions of the whole read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, NamedTuple

import msgspec

from shieldes.gateway.checked_histories import is_member, read_on_from
from shieldes.providers.gateway_fields import FOREIGN, METADATA
from shieldes.providers.tool_ids import CallIds
from shieldes.usage.tokens import prompt_bytes

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


class _Foreign(msgspec.Struct, gc=False):
    """Another gateway's fields (gateway_fields.FOREIGN) and `metadata`, read to be left out."""

    tags: Any = _UNSET
    fallbacks: Any = _UNSET
    num_retries: Any = _UNSET
    mock_response: Any = _UNSET
    mock_testing_fallbacks: Any = _UNSET
    caching: Any = _UNSET
    cache: Any = _UNSET
    guardrails: Any = _UNSET
    extra_headers: Any = _UNSET
    litellm_metadata: Any = _UNSET
    litellm_trace_id: Any = _UNSET
    litellm_session_id: Any = _UNSET
    litellm_call_id: Any = _UNSET
    context_window_fallback_dict: Any = _UNSET
    request_timeout: Any = _UNSET
    timeout: Any = _UNSET
    api_base: Any = _UNSET
    base_url: Any = _UNSET
    api_key: Any = _UNSET
    api_version: Any = _UNSET
    disable_fallbacks: Any = _UNSET
    ttl: Any = _UNSET
    metadata: Any = _UNSET


class _ChatRequest(_Foreign, gc=False):
    messages: list[_Message] | msgspec.UnsetType = _UNSET
    model: Any = _UNSET
    stream: Any = _UNSET
    stream_options: Any = _UNSET
    max_tokens: Any = _UNSET
    max_completion_tokens: Any = _UNSET
    n: Any = _UNSET
    service_tier: Any = _UNSET  # (a priority request is held at the priority price)
    top_k: Any = _UNSET  # (OpenAI itself refuses these two: openai_strict.refit)
    thinking: Any = _UNSET


class _ChatTop(_Foreign, gc=False):  # (_ChatRequest's fields, the messages skipped)
    messages: msgspec.Raw | msgspec.UnsetType = _UNSET  # (well-formed JSON checked, nothing built)
    model: Any = _UNSET
    stream: Any = _UNSET
    stream_options: Any = _UNSET
    max_tokens: Any = _UNSET
    max_completion_tokens: Any = _UNSET
    n: Any = _UNSET
    service_tier: Any = _UNSET
    top_k: Any = _UNSET  # (OpenAI itself refuses these two: openai_strict.refit)
    thinking: Any = _UNSET


OWN = ("model", "stream", "stream_options", "max_tokens", "max_completion_tokens", "n", "service_tier", "top_k",
       "thinking")
READ = (*OWN, *FOREIGN, METADATA)  # decoded, when present
_OWN_OF, _REST_OF = attrgetter(*OWN), attrgetter(*FOREIGN, METADATA)
_REQUEST = msgspec.json.Decoder(_ChatRequest)
_TOP = msgspec.json.Decoder(_ChatTop)
_MESSAGES = msgspec.json.Decoder(list[_Message])


@dataclass(slots=True)
class ChatRead:
    """`fields`: those of READ the body has (null included), decoded; `messages`: how many
    (None: the body has no `messages`); `ids`: every tool call id of the history (assistant
    `tool_calls[].id`, tool `tool_call_id`); `size`: its prompt bytes (usage.tokens.prompt_bytes),
    when read through read_turn (None: not counted). Read only, but not frozen: every chat request
    builds one, and a frozen dataclass sets each field through object.__setattr__ (a C call each,
    some 1,200 instructions a request)."""

    fields: dict[str, Any]
    messages: int | None
    ids: list[str]  # (a CallIds when read through read_turn: a long body, read on from turn to turn)
    size: int | None = field(default=None, compare=False)


def read_chat_request(raw: bytes, turn: Callable[[bytes], Found | None] | None = None) -> ChatRead | None:
    """The chat request `raw` (valid JSON, its UTF-8 checked) as ChatRead, or None when it has a
    shape this reading does not take: not an object, `messages` not a list of objects with a
    string role, a tool call that is not an object, an id that is not text, arguments that are not
    text (OpenAI takes text only; the gateway encodes objects as text for it). The caller then
    decodes the body and checks it exactly, so an odd but valid request is not refused here and a
    wrong one gets its exact error. What is wrong inside a message's content is left to the
    upstream, which answers in its own words. `turn`, when given, reads it instead (read_turn,
    through a key's CheckedHistories)."""
    if turn is not None:
        found = turn(raw)
        return None if found is None else found.read
    try:
        request = _REQUEST.decode(raw)
    except msgspec.ValidationError:
        return None
    fields = _fields(request)
    messages = request.messages
    if messages is _UNSET:
        return ChatRead(fields, None, [])
    return ChatRead(fields, len(messages), _ids(messages))


def _ids(messages: list[_Message]) -> list[str]:
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


class Found(NamedTuple):
    """What reading a chat body found, and where to read a later turn of it from: `end`, the
    offset of its `messages` list's closing bracket (0: not to be read on from), `before`, the
    fields of READ ahead of that list, `ids` the history's tool call ids (kept: read.ids is the
    caller's), `prefix` the prompt bytes up to `end` (media is a string: none spans it)."""

    read: ChatRead
    ids: CallIds
    end: int
    before: dict[str, Any]
    prefix: int = 0


# CheckedHistories' read of a chat body: given what follows the part read before (and what was
# found there) or the whole body (and None)
TurnRead = Callable[[memoryview, Found | None], Found | None]
_KEY = b'"messages"'
_OPEN = b'{"messages":['  # a body's start, with the list of messages before it read already


def read_turn(raw: bytes) -> TurnRead:
    """CheckedHistories' read of the chat body `raw`: what read_chat_request finds in it (its
    error, when it has one), read from the end of a list of messages read before when it can be."""

    def read(data: memoryview, before: Found | None) -> Found | None:
        if before is not None:
            found = _read_on(raw, len(raw) - len(data), before)
            if found is not None:
                return found
        return _read_whole(raw)

    return read


def _read_whole(raw: bytes) -> Found | None:
    read = read_chat_request(raw)
    if read is None:
        return None
    size = prompt_bytes(raw)
    ids = CallIds(read.ids)
    read = ChatRead(read.fields, read.messages, ids.plus([]), size)
    if read.messages is None:
        return Found(read, ids, 0, {})
    # where the list is, for the next turn: its bytes found after a `"messages":` (the whole read
    # passed: the body is well-formed)
    messages = _TOP.decode(raw).messages
    assert not isinstance(messages, msgspec.UnsetType)
    start = raw.find(memoryview(messages)[:64])
    if start < 0 or not raw.startswith(messages, start):
        return Found(read, ids, 0, {})
    if not is_member(raw, start, _KEY):
        return Found(read, ids, 0, {})
    try:  # (the fields ahead of it: its place closed with a null)
        top = _TOP.decode(raw[:start] + b"null}")
    except (msgspec.DecodeError, RecursionError):  # (bytes like a list's nested deeper: not read on from)
        return Found(read, ids, 0, {})
    end = start + len(messages) - 1
    return Found(read, ids, end, _fields(top), size - prompt_bytes(raw[end:]))


def _fields(top: _ChatRequest | _ChatTop) -> dict[str, Any]:
    """The fields of READ `top` has, in READ's order. Another gateway's fields and `metadata` are
    rare: one C-level count over them instead of a look at each of their 23 names."""
    fields = {name: value for name, value in zip(OWN, _OWN_OF(top), strict=True) if value is not _UNSET}
    rest = _REST_OF(top)
    if rest.count(_UNSET) != len(rest):
        fields.update((name, value) for name, value in zip(READ[len(OWN):], rest, strict=True) if value is not _UNSET)
    return fields


def _read_on(raw: bytes, start: int, before: Found) -> Found | None:
    """`raw` read from `start`, where the list of messages of a body read before (`before`) closed:
    what follows is more messages (after a comma, or after the bare bracket of an empty list) or
    the closing bracket, then the body's other fields. None when it is not so (the whole read then
    says what is wrong, in its own words)."""
    count = before.read.messages
    assert count is not None
    body = read_on_from(raw, start, not count)
    if body is None or _KEY in body:  # (another `messages` member after the list: the whole read says which counts)
        return None
    try:
        top = _TOP.decode(_OPEN + body)
        messages = top.messages
        assert not isinstance(messages, msgspec.UnsetType)
        new = _MESSAGES.decode(messages)
    except (msgspec.DecodeError, RecursionError):
        return None
    fields = dict(before.before)
    fields.update(_fields(top))  # (a field named twice: its last value, as the whole read takes)
    ids = before.ids.plus(_ids(new))
    end = len(raw) - len(body) + len(messages) - 2  # (the list's `[` is the one _OPEN put there)
    prefix = before.prefix + prompt_bytes(raw[start:end])
    return Found(ChatRead(fields, count + len(new), ids, prefix + prompt_bytes(raw[end:])), ids.plus([]), end,
                 before.before, prefix)
