"""A pass-through request body read by its top-level fields only. A coding agent's turn (Messages,
chat, the Gemini API) is tens to hundreds of kB of history that a native upstream reads anyway;
decoding it into Python objects (thousands of them) and freeing them again was the largest cost of
relaying such a turn. Here the history (`messages`, `system`, `tools`, ...) stays the client's
bytes, the small fields are decoded, and the whole body is decoded only for a path that must
rewrite the history (a translated deployment, ids another provider minted)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import msgspec
import orjson

from shieldes.errors import InvalidRequest
from shieldes.gateway.checked_histories import Read
from shieldes.providers.chat_history import READ, ChatRead, Found, read_chat_request
from shieldes.providers.upstream_connection import Payload, Pieces
from shieldes.usage.tokens import prompt_bytes

Body = dict[str, Any]
MESSAGES_HISTORY = frozenset({"messages", "system", "tools"})  # a Messages request's big fields
GEMINI_HISTORY = frozenset({"contents", "systemInstruction", "system_instruction", "tools"})  # generateContent's
CHAT_HISTORY = frozenset({"messages", "tools"})  # an OpenAI chat request's
INPUT = frozenset({"input"})  # a Responses request's conversation (instructions and tools are echoed)
NOTHING: frozenset[str] = frozenset()  # every field decoded (a small body)
_FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ENCODER = msgspec.json.Encoder()
_NULL, _LIST = ord("n"), ord("[")
_TRUNCATED = "Input data was truncated"  # msgspec's reason for a cut body, and for a lone surrogate escape
T = TypeVar("T")


def check_utf8(raw: bytes, start: int = 0) -> None:
    """A body whose strings are skipped, not decoded, has its UTF-8 checked here, at once: from
    `start`, a character's first byte, when the bytes before it are known to be UTF-8."""
    part = raw[start:] if start else raw  # (a copy of what follows a remembered part: a turn's new bytes)
    if not part.isascii():
        try:
            part.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidRequest(f"malformed JSON body (not UTF-8 at byte {start + exc.start}): send one valid "
                                 "JSON object in UTF-8") from None


def utf8_checked(raw: bytes, read: Read[T]) -> Read[T]:
    """CheckedHistories' `read` of the body `raw`, its UTF-8 checked first: only what follows a
    remembered part, whose bytes are those of a body checked whole before (it ends before a
    list's closing bracket, so what follows starts a character). isascii over a coding agent's
    71 kB costs more than finding the remembered part does."""

    def checked(data: memoryview, before: T | None) -> T | None:
        check_utf8(raw, len(raw) - len(data))
        return read(data, before)

    return checked


def malformed_json(exc: Exception, raw: bytes | None = None) -> InvalidRequest:
    """A body that does not parse as JSON: the client's error, with the parser's reason (cut short).
    msgspec calls a lone surrogate escape (`"\\ud83d"` without its pair, as a string cut through an
    emoji encodes) "Input data was truncated", which sends the user looking for a cut body: with
    `raw`, orjson (on this error path only) names the surrogate and where it is."""
    reason = str(exc)
    if reason.startswith("depth limit exceeded"):  # orjson's, past 1024 levels
        return InvalidRequest("malformed JSON body (its arrays and objects nest over 1024 levels deep): send one "
                              "valid JSON object nested less deeply")
    if raw is not None and reason == _TRUNCATED:
        try:
            orjson.loads(raw)
        except orjson.JSONDecodeError as precise:
            if "surrogate" in str(precise):
                reason = f"{precise}; a \\ud800-\\udfff escape must be one half of a pair"
    return InvalidRequest(f"malformed JSON body ({reason[:200]}): send one valid JSON object")


def too_deep() -> InvalidRequest:
    """msgspec refuses JSON nested deeper than Python's recursion limit (about 1000 levels) with a
    RecursionError: the client's error, said so (orjson refuses 1024 levels)."""
    return InvalidRequest("malformed JSON body (its arrays and objects nest about 1000 levels deep or more): send "
                          "one valid JSON object nested less deeply")


def split(raw: bytes) -> dict[str, msgspec.Raw]:
    """The JSON object `raw`'s top-level fields, each as its bytes."""
    try:
        return _FIELDS.decode(raw)
    except msgspec.ValidationError:  # valid JSON, not an object
        raise InvalidRequest("the request body must be a JSON object, e.g. {\"model\": ..., ...}") from None
    except msgspec.DecodeError as exc:
        raise malformed_json(exc, raw) from None
    except RecursionError:
        raise too_deep() from None


class TopLevel:
    """The body's top-level fields: `small` decoded (every field but those of `big`), `fields`
    each as its bytes in the body, `raw` the body itself."""

    __slots__ = ("_decoded", "_fields", "raw", "small")
    _fields: dict[str, msgspec.Raw] | None  # (split on first use, where a reader did not need to)

    def __init__(self, raw: bytes, big: frozenset[str]) -> None:
        check_utf8(raw)
        fields = split(raw)
        try:
            small = {name: orjson.loads(memoryview(value)) for name, value in fields.items() if name not in big}
        except orjson.JSONDecodeError as exc:
            raise malformed_json(exc) from None
        self.raw, self._fields, self.small = raw, fields, small
        self._decoded: Body | None = None if big else small

    @staticmethod
    def read(raw: bytes, small: Body, big: frozenset[str]) -> TopLevel:
        """A body whose fields but those of `big` were read elsewhere (`small`; responses/input_turns):
        split into its fields and decoded only if a path needs them."""
        return _ReadTopLevel(raw, small, big)

    @property
    def fields(self) -> dict[str, msgspec.Raw]:
        """Each top-level field as its bytes in the body."""
        if self._fields is None:
            self._fields = split(self.raw)
        return self._fields

    def has(self, name: str) -> bool:
        """Whether the body has the top-level field `name` (null included)."""
        return name in self.fields

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

    def prompt_bytes(self) -> int:
        """The body's bytes that stand for its input tokens (usage.tokens.prompt_bytes: media
        counted as the tokens it is, not its base64 bytes)."""
        return prompt_bytes(self.raw)

    def decoded(self) -> Body:
        """The whole body as Python objects (decoded once, on first use)."""
        if self._decoded is None:
            body = orjson.loads(self.raw)
            assert isinstance(body, dict)
            self._decoded = body
        return self._decoded

    def changes(self, sent: Body, drop: frozenset[str] = frozenset()) -> Body:
        """The fields of `sent` (top-level fields as the gateway decided them) that are not the
        client's own, but those of `drop`: its values are the very objects decoded here, so a change
        is told by identity."""
        client = self.small
        out: Body = {}
        for name, value in sent.items():  # (a loop: a comprehension makes a function object a call)
            if client.get(name, _MISSING) is not value and name not in drop:
                out[name] = value
        return out

    def sent_with(self, changes: Body) -> Payload:
        """The body with the top-level fields of `changes` set, as an upstream gets it: when it has
        none of them, the client's bytes with them after its last field (appended: neither copied
        nor split, where a coding agent's turn is tens of kB), else as with_fields writes it."""
        if not any(map(self.has, changes)):
            out = appended(self.raw, changes)
            if out is not None:
                return out
        return self.with_fields(changes)

    def with_fields(self, changes: Body, drop: Iterable[str] = ()) -> bytes:
        """The body with the top-level fields of `changes` set and those of `drop` left out: every
        other field the client's bytes, in the client's order (a new field last)."""
        return _ENCODER.encode(_rewritten(self.fields, changes, drop))


def _rewritten(fields: dict[str, msgspec.Raw], changes: Body, drop: Iterable[str] = ()) -> dict[str, msgspec.Raw]:
    """`fields` with those of `drop` left out and those of `changes` set (a new one last)."""
    out = dict(fields)
    for name in drop:
        out.pop(name, None)
    for name, value in changes.items():
        out[name] = msgspec.Raw(orjson.dumps(value))
    return out


class _ReadTopLevel(TopLevel):
    """TopLevel.read's: `small` holds every top-level field but those of `big`, so whether the
    body has another field is known without splitting it."""

    __slots__ = ("_big",)

    def __init__(self, raw: bytes, small: Body, big: frozenset[str]) -> None:
        self.raw, self._fields, self.small, self._decoded, self._big = raw, None, small, None, big

    def has(self, name: str) -> bool:
        return name in self.fields if name in self._big else name in self.small


class ChatTopLevel(TopLevel):
    """A chat request read in one typed pass (chat_history.read_chat_request): `small` holds the
    top-level fields the gateway decides on (chat_history.READ), the split into every top-level
    field is made only when one is rewritten, `ids` are the history's tool call ids."""

    __slots__ = ("_messages", "_size", "ids")

    def __init__(self, raw: bytes, read: ChatRead) -> None:
        self.raw, self._fields, self.small, self._decoded = raw, None, read.fields, None
        self.ids, self._messages, self._size = read.ids, read.messages, read.size

    def prompt_bytes(self) -> int:
        # (a turn read on from the key's last body: the bytes up to where that one's messages ended
        # counted then)
        return super().prompt_bytes() if self._size is None else self._size

    def has(self, name: str) -> bool:
        return name in self.small if name in READ else name in self.fields

    def shape(self, name: str) -> str:
        if name != "messages":
            return super().shape(name)
        return "missing" if self._messages is None else "list" if self._messages else "empty list"


def read_chat(raw: bytes, turn: Callable[[bytes], Found | None] | None = None) -> TopLevel:
    """A chat request's body: in one typed pass where it can be (ChatTopLevel; by `turn` when
    given, chat_history.read_turn, which checks its UTF-8: utf8_checked), else by its top-level
    fields (an odd shape, checked exactly by the caller on the decoded body)."""
    if turn is None:
        check_utf8(raw)
    try:
        read = read_chat_request(raw, turn)
    except msgspec.DecodeError as exc:
        raise malformed_json(exc, raw) from None
    except RecursionError:
        raise too_deep() from None
    return TopLevel(raw, CHAT_HISTORY) if read is None else ChatTopLevel(raw, read)


_JSON_SPACE = b" \t\r\n"
_CLOSE = ord("}")


def appended(raw: bytes, members: Body) -> Pieces | None:
    """`raw`, the client's encoding of a JSON object with at least one member, with `members` (names
    it does not have) added at its end, every byte of the client's kept; None when `raw` does not
    end as an object does. In pieces, written upstream as they are: the client's bytes are not
    copied (a coding agent's turn is tens of kB, a body of screenshots megabytes)."""
    end = len(raw)
    while end and raw[end - 1] in _JSON_SPACE:
        end -= 1
    if not end or raw[end - 1] != _CLOSE:
        return None
    return Pieces(memoryview(raw)[:end - 1], b",", orjson.dumps(members)[1:])


class Outgoing:
    """A request as the gateway sends it on: the client's body read by its top-level fields
    (`top`), those fields as the gateway decided them (`fields`: a budget's bound added, the
    stream's usage asked for, the routed model; the client's own values are the very same objects,
    so a change is told by identity), and the chat history's tool call ids read off its bytes
    (`ids`; None when not read so). A deployment that takes the client's body gets its bytes,
    changed only in the fields the gateway changed (`encoded`); any other gets the whole body
    decoded (`whole`). `drop`: the client's top-level fields no upstream gets (another gateway's,
    providers/gateway_fields.py), `named` what of them (and of the tags recorded) is named to the client;
    `fallback_fields` the request's per-fallback overrides applied."""

    __slots__ = ("drop", "fallback_fields", "fields", "ids", "named", "top")

    def __init__(self, top: TopLevel, fields: Body, ids: list[str] | None = None,
                 drop: tuple[str, ...] = (), named: tuple[str, ...] | None = None,
                 fallback_fields: Mapping[str, Body] | None = None) -> None:
        self.top, self.fields, self.ids, self.drop = top, fields, ids, drop
        self.named = drop if named is None else named  # (recorded tags are left out but not named)
        # per fallback name, the fields its attempts send over `fields` (asked_fallbacks.fallback_fields)
        self.fallback_fields = fallback_fields

    def whole(self, sent: Body) -> Body:
        """The whole body decoded, with the top-level fields of `sent` (`fields` as one attempt sends
        them: the target's model)."""
        body = {**self.top.decoded(), **sent}
        for name in self.drop:
            body.pop(name, None)
        return body

    def encoded(self, sent: Body, drop: frozenset[str] = frozenset()) -> Payload:
        """The client's bytes with the top-level fields of `sent` that differ from the client's
        set and those of `drop` left out: the very bytes when nothing differs, the client's bytes
        with the gateway's additions at the end when it only adds, else each top-level field the
        client's bytes but those changed."""
        if self.drop:
            drop = drop.union(self.drop)
        top = self.top
        changes = top.changes(sent, drop)
        dropped = [name for name in drop if top.has(name)] if drop else drop
        if not dropped:  # (a request that reached here has a field: appended needs one)
            return top.sent_with(changes) if changes else top.raw
        return top.with_fields(changes, dropped)


_MISSING = object()
