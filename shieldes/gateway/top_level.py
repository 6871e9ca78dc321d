"""A pass-through request body read by its top-level fields only. A coding agent's turn (Messages,
chat, the Gemini API) is tens to hundreds of kB of history that a native upstream reads anyway;
decoding it into Python objects (thousands of them) and freeing them again was the largest cost of
relaying such a turn. Here the history (`messages`, `system`, `tools`, ...) stays the client's
bytes, the small fields are decoded, and the whole body is decoded only for a path that must
rewrite the history (a translated deployment, ids another provider minted)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
import orjson

from shieldes.errors import InvalidRequest

Body = dict[str, Any]
MESSAGES_HISTORY = frozenset({"messages", "system", "tools"})  # a Messages request's big fields
GEMINI_HISTORY = frozenset({"contents", "systemInstruction", "system_instruction", "tools"})  # generateContent's
CHAT_HISTORY = frozenset({"messages", "tools"})  # an OpenAI chat request's
INPUT = frozenset({"input"})  # a Responses request's conversation (instructions and tools are echoed)
NOTHING: frozenset[str] = frozenset()  # every field decoded (a small body)
_FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ENCODER = msgspec.json.Encoder()
_NULL, _LIST = ord("n"), ord("[")


class TopLevel:
    """The body's top-level fields: `small` decoded (every field but those of `big`), `fields`
    each as its bytes in the body, `raw` the body itself."""

    __slots__ = ("_decoded", "fields", "raw", "small")

    def __init__(self, raw: bytes, big: frozenset[str]) -> None:
        if not raw.isascii():  # (the history's strings are skipped, not decoded: their UTF-8 is checked here)
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidRequest(f"malformed JSON body (not UTF-8 at byte {exc.start}): send one valid JSON "
                                     "object in UTF-8") from None
        try:
            fields = _FIELDS.decode(raw)
        except msgspec.ValidationError:  # valid JSON, not an object
            raise InvalidRequest("the request body must be a JSON object, e.g. {\"model\": ..., ...}") from None
        except msgspec.DecodeError as exc:
            raise InvalidRequest(f"malformed JSON body ({str(exc)[:200]}): send one valid JSON object") from None
        try:
            small = {name: orjson.loads(memoryview(value)) for name, value in fields.items() if name not in big}
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest(f"malformed JSON body ({str(exc)[:200]}): send one valid JSON object") from None
        self.raw, self.fields, self.small = raw, fields, small
        self._decoded: Body | None = None if big else small

    def shape(self, name: str) -> str:
        """What the big field `name` is, read off its first bytes: "missing" (absent or
        null, as a decoded body's get() would see it), "list", "empty list" or "other"."""
        value = self.fields.get(name)
        if value is None:
            return "missing"
        view = memoryview(value)  # (msgspec leaves no space around a value)
        if view[0] == _NULL:
            return "missing"
        if view[0] != _LIST:
            return "other"
        rest = bytes(view[1:64]).lstrip() or bytes(view[1:]).lstrip()  # (the whole value only if all space)
        return "empty list" if rest.startswith(b"]") else "list"

    def decoded(self) -> Body:
        """The whole body as Python objects (decoded once, on first use)."""
        if self._decoded is None:
            body = orjson.loads(self.raw)
            assert isinstance(body, dict)
            self._decoded = body
        return self._decoded

    def with_fields(self, changes: Body, drop: Iterable[str] = ()) -> bytes:
        """The body with the top-level fields of `changes` set and those of `drop` left out: every
        other field the client's bytes, in the client's order (a new field last)."""
        fields: dict[str, msgspec.Raw] = dict(self.fields)
        for name in drop:
            fields.pop(name, None)
        for name, value in changes.items():
            fields[name] = msgspec.Raw(orjson.dumps(value))
        return _ENCODER.encode(fields)


_JSON_SPACE = b" \t\r\n"
_CLOSE = ord("}")


def appended(raw: bytes, members: Body) -> bytes | None:
    """`raw`, the client's encoding of a JSON object with at least one member, with `members` (names
    it does not have) added at its end, every byte of the client's kept; None when `raw` does not
    end as an object does."""
    end = len(raw)
    while end and raw[end - 1] in _JSON_SPACE:
        end -= 1
    if not end or raw[end - 1] != _CLOSE:
        return None
    # one join: a body of screenshots is megabytes, and every copy is a fresh buffer to fault in
    return b"".join((memoryview(raw)[:end - 1], b",", orjson.dumps(members)[1:]))


class Outgoing:
    """A request as the gateway sends it on: the client's body read by its top-level fields
    (`top`), those fields as the gateway decided them (`fields`: a budget's bound added, the
    stream's usage asked for, the routed model; the client's own values are the very same objects,
    so a change is told by identity), and the chat history's tool call ids read off its bytes
    (`ids`; None when not read so). A deployment that takes the client's body gets its bytes,
    changed only in the fields the gateway changed (`encoded`); any other gets the whole body
    decoded (`whole`)."""

    __slots__ = ("fields", "ids", "top")

    def __init__(self, top: TopLevel, fields: Body, ids: list[str] | None = None) -> None:
        self.top, self.fields, self.ids = top, fields, ids

    def whole(self, sent: Body) -> Body:
        """The whole body decoded, with the top-level fields of `sent` (`fields` as one attempt sends
        them: the target's model)."""
        return {**self.top.decoded(), **sent}

    def encoded(self, sent: Body, drop: frozenset[str] = frozenset()) -> bytes:
        """The client's bytes with the top-level fields of `sent` that differ from the client's
        set and those of `drop` left out: the very bytes when nothing differs, the client's bytes
        with the gateway's additions at the end when it only adds, else each top-level field the
        client's bytes but those changed."""
        client = self.top.small
        changes: Body = {}
        for name, value in sent.items():
            if client.get(name, _MISSING) is not value and name not in drop:
                changes[name] = value
        dropped = [name for name in drop if name in self.top.fields] if drop else drop
        if not dropped:
            if not changes:
                return self.top.raw
            if self.top.fields and self.top.fields.keys().isdisjoint(changes):
                out = appended(self.top.raw, changes)
                if out is not None:
                    return out
        return self.top.with_fields(changes, dropped)


_MISSING = object()
