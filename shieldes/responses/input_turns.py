"""A long Responses body read from where the `input` of a body of the same key read before ended.

A coding agent (Codex, the Agents SDK with `store: false`) sends its whole conversation as
`input` every turn, and each turn's body is the last one's bytes up to the end of that list with
new items and the other fields after them. Read whole, such a body costs a split into its
top-level fields (a msgspec pass over every byte, about 25 us for 73 kB) and then the check of
its items (input_bytes, from where the key's last list ended: a comparison of what came before).
Here the body itself is remembered up to its list's last item (gateway/checked_histories.py: the
body itself and that length), with what the whole read found: the top-level fields decoded, the call ids
the items made. A later body of the key that starts with those bytes is read from there: the new
items and the fields after the list, nothing before them again. An agent sends the same fields
after its list every turn (the bench's instructions and tools, Codex's tools and settings): what
follows the list is remembered too (`After`), and a later body that ends with those very bytes has
only its new items read, its other fields those found before.

What follows the remembered part must go on as a list does (a comma and items, or the closing
bracket), name no second `input` and decode; anything else is read whole (`read_whole`), and a
body the whole read does not take (malformed, an input that is no list, items that do not go
upstream as sent) gets None here: the caller then reads it the general way, whose answers and
errors are the reference. Pure: no I/O, no state."""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec
import orjson

from shieldes.errors import InvalidRequest
from shieldes.gateway.checked_histories import PER_FOUND, SPACE, is_member, read_on_from
from shieldes.gateway.top_level import check_utf8, split
from shieldes.responses.input_bytes import calls_made
from shieldes.usage.tokens import prompt_bytes

Body = dict[str, Any]
_KEY = b'"input"'
_OPEN = b'{"input":['  # a body's start, with the list before it read already
_FIELDS = msgspec.json.Decoder(dict[str, msgspec.Raw])
# values a remembered body may share with the reads after it (nothing changes them in place)
_IMMUTABLE = (str, int, float, bool, type(None))


class InputTurn(NamedTuple):
    """Where a body's input list is and what reading it found, as a key's memory keeps it: `start`
    and `end`, the offsets of the list's `[` and `]`; `calls`, the call ids its items made (they go
    upstream as sent); `before`, the top-level fields ahead of the list when they are plain values
    (shared with the next turn's read: Codex sends `model` and its instructions, tens of kB, there;
    their text weighs in the key's memory), else None (decoded again from their bytes);
    `prefix`, the prompt bytes (usage.tokens.prompt_bytes) of the body up to `end`, counted once:
    a later turn counts only what follows (no JSON string spans `end`, so the two parts add up to
    the whole body's count)."""

    start: int
    end: int
    calls: frozenset[str]
    before: Body | None
    prefix: int
    after: After | None = None


class After(NamedTuple):
    """What follows a remembered body's input list: its bytes from the list's closing bracket on
    (`raw`), its top-level fields in order (`fields`: (name, value, again), a plain value shared
    as it is, any other kept as its bytes and decoded `again` for each read, so no read shares a
    list or an object another may change), their prompt bytes (`size`) and the bytes held for them
    beyond the body (`held`: `raw` and the text of the values shared)."""

    raw: bytes
    fields: tuple[tuple[str, Any, bool], ...]
    size: int
    held: int


def weigh(found: InputTurn) -> int:
    """What CheckedHistories weighs for a remembered body beyond its bytes, in units of PER_FOUND:
    a call id each, and what is held for the fields ahead of its list and after it."""
    held = 0 if found.after is None else found.after.held
    if found.before:
        held += sum(len(value) for value in found.before.values() if isinstance(value, str))
    return len(found.calls) + -(-held // PER_FOUND)


class TurnRead:
    """CheckedHistories' read of the Responses body `raw`, given what follows a part read before
    (and what was found there) or the whole body (and None). It checks the UTF-8 of what it is
    given (top_level.check_utf8, raising its InvalidRequest), but of the bytes that followed the
    list of the body read before when the body ends with them: those were checked. `small`, once a
    read found the body passes: its top-level fields but `input`, decoded (the caller's, never
    remembered), and `size`, the body's prompt bytes (usage.tokens.prompt_bytes)."""

    __slots__ = ("raw", "size", "small")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.small: Body = {}
        self.size = 0

    def __call__(self, data: memoryview, prior: InputTurn | None) -> InputTurn | None:
        raw = self.raw
        at = len(raw) - len(data)
        body = None if prior is None else read_on_from(raw, at)
        if body is not None and prior is not None:
            after = prior.after
            if after is not None and body.endswith(after.raw):  # (the fields after the list as the last turn's)
                found = _read_on_to(raw, body, prior, after, self)
                if found is not None:
                    return found
        check_utf8(raw, at)  # (the bytes before `at` are those of a body checked before)
        if body is not None and prior is not None:
            found = _read_on(raw, body, prior, self)
            if found is not None:
                return found
        return read_whole(raw, self)


def _decoded(fields: dict[str, msgspec.Raw], into: Body) -> Body | None:
    try:
        for name, value in fields.items():
            if name != "input":
                into[name] = orjson.loads(memoryview(value))
    except orjson.JSONDecodeError:
        return None
    return into


def _ahead(raw: bytes, start: int) -> Body | None:
    """The top-level fields ahead of the list at `start` (its place closed with a null), decoded."""
    try:
        fields = _FIELDS.decode(raw[:start] + b"null}")
    except (msgspec.DecodeError, RecursionError):
        return None
    return _decoded(fields, {})


def read_whole(raw: bytes, into: TurnRead) -> InputTurn | None:
    """`raw` read whole, its input list located for the next turn (its fields into `into.small`);
    None when it is not a JSON object whose `input` is a non-empty list of items that go upstream
    as sent."""
    try:
        fields = split(raw)
    except InvalidRequest:
        return None
    value = fields.get("input")
    if value is None or bytes(memoryview(value)[:1]) != b"[":
        return None
    small = _decoded(fields, {})
    calls = calls_made(value)
    if small is None or calls is None:
        return None
    start = raw.find(memoryview(value)[:64])
    if start < 0 or not raw.startswith(value, start):
        return None
    if not is_member(raw, start, _KEY):
        return None
    before = _ahead(raw, start)
    if before is None:
        return None
    end = start + len(value) - 1
    if raw[start + 1:end].strip(SPACE) == b"":  # (an empty list: not what an agent's turn goes on from)
        return None
    shared = all(isinstance(v, _IMMUTABLE) for v in before.values())
    into.small = small
    into.size = size = prompt_bytes(raw)
    after = _after(raw[end:], small)
    return InputTurn(start, end, calls, before if shared else None,
                     size - (prompt_bytes(raw[end:]) if after is None else after.size), after)


def _after(tail: bytes, small: Body) -> After | None:
    """What follows a body's input list, `tail` (from its closing bracket), given the body's fields
    decoded (`small`: those of `tail` are the last of their names); None when it names `input`
    again (a later body ending so would not have its input where this one's list is)."""
    rest = tail[1:].lstrip(SPACE)
    try:
        fields = _FIELDS.decode(b"{" + (rest[1:] if rest[:1] == b"," else rest))
    except (msgspec.DecodeError, RecursionError):
        return None
    if "input" in fields:
        return None
    kept = []
    held = len(tail)
    for name, value in fields.items():
        decoded = small[name]
        plain = isinstance(decoded, _IMMUTABLE)
        kept.append((name, decoded if plain else bytes(value), not plain))
        if isinstance(decoded, str):
            held += len(decoded)
    return After(tail, tuple(kept), prompt_bytes(tail), held)


def _read_on_to(raw: bytes, body: bytes, prior: InputTurn, after: After, into: TurnRead) -> InputTurn | None:
    """`raw` read on, given `body` (what follows the part read before, from its first new item or
    the list's closing bracket) ends with the very bytes that followed `prior`'s list: only the
    new items between are read (they must be UTF-8 and items a JSON list holds, comma-separated, as
    the part before left the list open), the fields after are those found before. None when the new
    items are not so (read then in full from the part before, its UTF-8 checked there)."""
    cut = len(body) - len(after.raw)
    calls = prior.calls
    if cut:
        new = body[:cut]
        if not new.isascii():
            try:
                new.decode("utf-8")
            except UnicodeDecodeError:
                return None
        try:
            made = calls_made(b"[" + new + b"]", prior.calls)
        except (msgspec.DecodeError, RecursionError):
            return None
        if made is None:
            return None
        calls = made
    small = dict(prior.before) if prior.before is not None else _ahead(raw, prior.start)
    if small is None:
        return None
    for name, value, again in after.fields:
        small[name] = orjson.loads(value) if again else value
    end = len(raw) - len(after.raw)
    prefix = prior.prefix + prompt_bytes(raw[prior.end:end]) if end > prior.end else prior.prefix
    into.small, into.size = small, prefix + after.size
    return InputTurn(prior.start, end, calls, prior.before, prefix, after)


def _read_on(raw: bytes, body: bytes, prior: InputTurn, into: TurnRead) -> InputTurn | None:
    """`raw` read on from where the input list of a body read before (`prior`) ended, given `body`,
    what follows it there (read_on_from: more items, or the closing bracket, then the body's other
    fields). None when it is not so."""
    buffer = _OPEN + body
    try:
        fields = _FIELDS.decode(buffer)
    except (msgspec.DecodeError, RecursionError):
        return None
    value = fields["input"]
    opened = len(_OPEN) - 1
    if memoryview(value) != memoryview(buffer)[opened:opened + len(value)]:  # (a second `input` after it)
        return None
    calls = calls_made(value, prior.calls)
    if calls is None:
        return None
    small = dict(prior.before) if prior.before is not None else _ahead(raw, prior.start)
    if small is None or _decoded(fields, small) is None:
        return None
    end = len(raw) - len(body) + len(value) - 2  # (the list's `[` is the one _OPEN put there)
    into.small = small
    prefix = prior.prefix + prompt_bytes(raw[prior.end:end]) if end > prior.end else prior.prefix
    after = _after(raw[end:], small)
    into.size = prefix + (prompt_bytes(raw[end:]) if after is None else after.size)
    return InputTurn(prior.start, end, calls, prior.before, prefix, after)
