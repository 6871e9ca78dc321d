"""A Messages request read by its top-level fields (top_level.TopLevel), from where the `messages`
of the key's last body ended when it starts with that body's bytes, as chat and Responses turns
are (gateway/checked_histories.py keeps the body and the offset of its list's closing bracket).

A coding agent's turn is the bytes of its last turn with new messages at the end of the list:
splitting its 73 kB into fields cost about 25 us, its UTF-8 pass 2.5, its prompt-bytes windows 3.5
and its tool call ids' regex 50; a body carrying a 2 MB screenshot (kept in every turn after
it) 650, 95, 87 and 1100 us. Read on from the remembered part, a turn costs the comparison of that
part (memcmp: 1 us for 73 kB, 30 for 2.7 MB) and the reads of what follows it. The answer is the
whole read's: the fields ahead of the list are the bytes read before, those after it too when the
body ends with the bytes the last one had after its list (an agent's system prompt and tools),
else they are read again; a body that goes on in any other way than more entries, then the list's
closing bracket, then fields other than `messages`, is read whole. Pure: no I/O, no state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from shieldes.errors import InvalidRequest
from shieldes.gateway.checked_histories import PER_FOUND, SPACE, CheckedHistories, is_member, read_on_from
from shieldes.gateway.top_level import MESSAGES_HISTORY, TopLevel, check_utf8, malformed_json, split
from shieldes.providers.tool_ids import anthropic_ids_fit_in
from shieldes.usage.tokens import prompt_bytes

_KEY = b'"messages"'
_OPEN = b'{"messages":['  # a body's start, the entries of its list before it read already
_LIST = ord("[")
_FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ENTRIES = msgspec.json.Decoder(list[msgspec.Raw])


class Turn:
    """What reading a Messages body found: its top-level fields (`fields` as their bytes, `small`
    those but MESSAGES_HISTORY decoded) and its prompt bytes (usage.tokens.prompt_bytes, `size`);
    for a later turn of its key, `end`, the offset of its list's closing bracket (0: not read on
    from), `start` that of its opening one, `ahead` and `ahead_small` the fields before the list
    (`weight`: what they hold, in PER_FOUND bytes), `prefix` the prompt bytes up to `end`, `tail`
    the body's bytes from `end` on (None: they hold another `messages`), read as `tail_fields`
    (bytes of a buffer of their own), `tail_small` (those decoded: shared by the turns that end so,
    never changed) and `tail_size` (their prompt bytes). Whether its tool call ids fit Anthropic's
    rule is found when a native deployment first asks (ids_fit): a turn read on from one whose ids
    were checked checks only its new entries."""

    __slots__ = ("_fit", "_high", "_low", "_unchecked", "ahead", "ahead_small", "end", "fields", "prefix", "size",
                 "small", "start", "tail", "tail_fields", "tail_size", "tail_small", "weight")

    def __init__(self, fields: dict[str, msgspec.Raw], small: dict[str, Any], size: int, before: Turn | None = None,
                 end: int = 0, prefix: int = 0) -> None:
        self.fields, self.small, self.size, self.end, self.prefix = fields, small, size, end, prefix
        self.ahead: dict[str, msgspec.Raw]
        self.ahead_small: dict[str, Any]
        if before is None:
            self.start, self.ahead, self.ahead_small, self.weight = 0, {}, {}, 0
        else:
            self.start, self.ahead, self.ahead_small, self.weight = (before.start, before.ahead, before.ahead_small,
                                                                     before.weight)
        self.tail: memoryview | None = None
        self.tail_fields: dict[str, msgspec.Raw] = {}
        self.tail_small: dict[str, Any] = {}
        self.tail_size = 0
        self._fit: bool | None = None
        # the bytes whose ids are not checked yet (None: nothing to check), from _low to _high
        self._unchecked: bytes | msgspec.Raw | None = None
        self._low = self._high = 0

    def ids_fit(self) -> bool:
        """Whether every id of the history fits Anthropic's rule, read off its bytes
        (tool_ids.anthropic_ids_fit_in: True is certain, False sends the caller to the exact check)."""
        if self._fit is None:
            self._fit = self._unchecked is None or anthropic_ids_fit_in(self._unchecked, self._low, self._high)
            self._unchecked = None
        return self._fit


def weigh(turn: Turn) -> int:
    """CheckedHistories' weight of what a turn holds besides its body, in PER_FOUND bytes: the
    fields ahead of its list and after it, as bytes and decoded."""
    return turn.weight if turn.tail is None else turn.weight + 2 * len(turn.tail) // PER_FOUND


# CheckedHistories' read of a Messages body: given what follows the part read before (and what was
# found there) or the whole body (and None)
TurnRead = Callable[[memoryview, Turn | None], Turn | None]


def read_turn(raw: bytes) -> TurnRead:
    """CheckedHistories' read of the Messages body `raw`, its UTF-8 checked (from where the part
    read before ends: top_level.utf8_checked): read on from the end of a list of messages read
    before when it can be, else whole (raising its InvalidRequest when it is not a JSON object)."""

    def read(data: memoryview, before: Turn | None) -> Turn:
        at = len(raw) - len(data)
        if before is not None and before.tail is not None:
            turn = _read_between(raw, at, before, before.tail)
            if turn is not None:
                return turn
        check_utf8(raw, at)
        if before is not None:
            turn = _read_on(raw, at, before)
            if turn is not None:
                return turn
        return read_whole(raw)

    return read


class MessagesTopLevel(TopLevel):
    """A Messages body read as a Turn: its fields, its prompt bytes and its ids' check."""

    __slots__ = ("turn",)

    def __init__(self, raw: bytes, turn: Turn) -> None:
        self.raw, self._fields, self.small, self._decoded = raw, turn.fields, turn.small, None
        self.turn = turn

    def prompt_bytes(self) -> int:
        return self.turn.size


def read_messages(raw: bytes, checked: CheckedHistories[Turn], key_id: str) -> TopLevel:
    """The Messages body `raw` of the key `key_id`, read from where the messages of a body of the
    key that `checked` remembers ended when it starts with that body's bytes; a short one, which
    is not remembered, by its top-level fields (TopLevel: nothing found for a next turn)."""
    if not checked.remembers(len(raw)):
        return TopLevel(raw, MESSAGES_HISTORY)
    found = checked.check(key_id, raw, read_turn(raw))
    assert found is not None  # (read_turn's answer is a Turn or its error)
    return MessagesTopLevel(raw, found)


def _small(fields: dict[str, msgspec.Raw]) -> dict[str, Any]:
    """The fields but MESSAGES_HISTORY, decoded (TopLevel's)."""
    try:
        return {name: orjson.loads(memoryview(value)) for name, value in fields.items() if name not in MESSAGES_HISTORY}
    except orjson.JSONDecodeError as exc:
        raise malformed_json(exc) from None


def read_whole(raw: bytes) -> Turn:
    """The body `raw` read whole, and where its list of messages is, for its next turn."""
    fields = split(raw)
    turn = Turn(fields, _small(fields), prompt_bytes(raw))
    messages = fields.get("messages")
    if messages is None:
        return turn
    turn._unchecked, turn._high = messages, len(messages)
    if memoryview(messages)[0] != _LIST or bytes(memoryview(messages)[1:64]).lstrip(SPACE)[:1] in (b"]", b""):
        return turn  # (an empty list, or one that starts with much space: not read on from)
    # its bytes found after a `"messages":` at the top level (the whole read passed: the body is
    # well-formed), the fields ahead of it read with its place closed by a null
    start = raw.find(memoryview(messages)[:64])
    if start < 0 or not raw.startswith(messages, start):
        return turn
    if not is_member(raw, start, _KEY):
        return turn
    try:
        before = split(raw[:start] + b"null}")
    except InvalidRequest:  # (bytes like a list's nested inside another field: not read on from)
        return turn
    if next(reversed(before)) != "messages":
        return turn
    del before["messages"]
    end = start + len(messages) - 1
    turn.start, turn.end, turn.ahead, turn.ahead_small = start, end, before, _small(before)
    turn.weight = 2 * sum(len(value) for value in before.values()) // PER_FOUND  # (as bytes and decoded)
    tail = raw[end:]
    turn.tail_size = prompt_bytes(tail)
    turn.prefix = turn.size - turn.tail_size  # (media is a string: none spans the list's end)
    turn._unchecked, turn._low, turn._high = raw, start, end + 1  # (bytes: a screenshot's base64 not read)
    if _KEY not in tail:  # (the fields after the list, for a turn that ends as this one)
        turn.tail_fields = _FIELDS.decode(_OPEN + tail)
        del turn.tail_fields["messages"]
        turn.tail_small = _small(turn.tail_fields)
        turn.tail = memoryview(raw)[end:]
    return turn


def _read_on(raw: bytes, at: int, before: Turn) -> Turn | None:
    """`raw` read from `at`, where the list of messages of a body read before (`before`) closed:
    what follows is more entries after a comma, or the closing bracket, then the body's other
    fields. None when it is not so (the whole read then says what is wrong, in its own words)."""
    body = read_on_from(raw, at)
    if body is None or _KEY in body:  # (another `messages` member after the list: the whole read says which counts)
        return None
    try:
        tail = _FIELDS.decode(_OPEN + body)
        small = {name: orjson.loads(memoryview(value)) for name, value in tail.items() if name not in MESSAGES_HISTORY}
    except (msgspec.DecodeError, orjson.JSONDecodeError, RecursionError):
        return None
    end = len(raw) - len(body) + len(tail.pop("messages")) - 2  # (the list's `[` is the one _OPEN put there)
    fields = before.ahead.copy()
    fields["messages"] = msgspec.Raw(memoryview(raw)[before.start:end + 1])
    fields.update(tail)  # (a field named twice: its last value, in its first place, as the whole read takes)
    tail_small = small
    if before.ahead_small:
        small = {**before.ahead_small, **small}
    prefix = before.prefix + prompt_bytes(raw[at:end])
    tail_size = prompt_bytes(raw[end:])
    turn = Turn(fields, small, prefix + tail_size, before, end, prefix)
    turn.tail, turn.tail_fields, turn.tail_small, turn.tail_size = memoryview(raw)[end:], tail, tail_small, tail_size
    _fit_after(turn, before, raw, at, end)
    return turn


def _read_between(raw: bytes, at: int, before: Turn, tail: memoryview) -> Turn | None:
    """`raw` read when it ends with the bytes that followed the list of messages of `before` (an
    agent's system prompt, tools and settings, unchanged): only what is between the part read
    before and them, more entries after a comma, is read. None when it is not so."""
    end = len(raw) - len(tail)
    if end < at or not raw.endswith(tail):
        return None
    new = raw[at:end]
    entries = new.lstrip(SPACE)
    if entries:
        if entries[:1] != b",":
            return None
        if not new.isascii():
            try:
                new.decode("utf-8")
            except UnicodeDecodeError:
                check_utf8(raw, at)  # (its error: the bytes before `at` and those of `tail` are UTF-8)
        try:
            if not _ENTRIES.decode(b"[" + entries[1:] + b"]"):
                return None
        except (msgspec.DecodeError, RecursionError):
            return None
    fields = before.ahead.copy()
    fields["messages"] = msgspec.Raw(memoryview(raw)[before.start:end + 1])
    fields.update(before.tail_fields)
    small = {**before.ahead_small, **before.tail_small} if before.ahead_small else before.tail_small.copy()
    prefix = before.prefix + prompt_bytes(new)
    turn = Turn(fields, small, prefix + before.tail_size, before, end, prefix)
    turn.tail, turn.tail_fields, turn.tail_small, turn.tail_size = (memoryview(raw)[end:], before.tail_fields,
                                                                    before.tail_small, before.tail_size)
    _fit_after(turn, before, raw, at, end)
    return turn


def _fit_after(turn: Turn, before: Turn, raw: bytes, at: int, end: int) -> None:
    """What of `turn`'s history (raw's bytes up to `end`) has its ids checked when asked, given
    `before`'s answer for the part before `at` (bytes: a screenshot's base64 is not read)."""
    fit = before._fit
    if fit is None:  # (the entries before not checked: all are, when asked)
        turn._unchecked, turn._low, turn._high = raw, before.start, end + 1
    elif not fit:
        turn._fit = False
    elif end > at:  # (the entries before were checked: only the new ones are)
        turn._unchecked, turn._low, turn._high = raw, at, end
