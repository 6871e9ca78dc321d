"""A pass-through request body read by its top-level fields only. A coding agent's Messages turn
is tens to hundreds of kB of history that a native upstream reads anyway; decoding it into Python
objects (thousands of them) and freeing them again was the largest cost of relaying such a turn.
Here the history (`messages`, `system`, `tools`) stays the client's bytes, the small fields are
decoded, and the whole body is decoded only for a path that must rewrite the history (a translated
deployment, ids another provider minted)."""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from shieldes.errors import InvalidRequest

Body = dict[str, Any]
MESSAGES_HISTORY = frozenset({"messages", "system", "tools"})  # a Messages request's big fields
GEMINI_HISTORY = frozenset({"contents", "systemInstruction", "system_instruction", "tools"})  # generateContent's
_FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ENCODER = msgspec.json.Encoder()


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
        self._decoded: Body | None = None

    def shape(self, name: str) -> str:
        """What the big field `name` is, read off its first bytes: "missing" (absent or
        null, as a decoded body's get() would see it), "list", "empty list" or "other"."""
        value = self.fields.get(name)
        if value is None:
            return "missing"
        head = bytes(memoryview(value)[:64]).lstrip()  # (msgspec leaves no space around a value)
        if head.startswith(b"null"):
            return "missing"
        if not head.startswith(b"["):
            return "other"
        return "empty list" if bytes(value)[1:].lstrip().startswith(b"]") else "list"

    def decoded(self) -> Body:
        """The whole body as Python objects (decoded once, on first use)."""
        if self._decoded is None:
            body = orjson.loads(self.raw)
            assert isinstance(body, dict)
            self._decoded = body
        return self._decoded

    def with_fields(self, changes: Body) -> bytes:
        """The body with the top-level fields of `changes` set: every other field the client's
        bytes, in the client's order (a new field last)."""
        fields: dict[str, msgspec.Raw] = dict(self.fields)
        for name, value in changes.items():
            fields[name] = msgspec.Raw(orjson.dumps(value))
        return _ENCODER.encode(fields)
