"""Conversations a key sent that passed a check read off their bytes, remembered so an agent's
next turn reads only what it added: a Messages body up to the end of its messages (the fields
ahead of them, its prompt bytes, whether its tool call ids fit Anthropic's rule:
gateway/messages_turns.py), a count_tokens history's numbers and ids, a Responses input's items
(do they go to a native upstream as sent, and which calls they made), a chat body up to the end of
its messages (their tool call ids, the fields ahead of them: providers/chat_history.read_turn,
whose `end` says where the next body is read from).

An agent sends its whole conversation every turn, and each turn's list is the bytes of the turn
before with the new entries after them (clients encode the same objects the same way). Reading
the list is the largest part of what the node does with such a body: one regex pass over a
coding agent's 68 kB of Messages, about 47 us; a typed pass over 66 kB of Responses items, about
75 us. A list that passed is remembered by its bytes (up to the end of its last entry, the
closing `]` left out) with what the check found; a later list of the same key that starts with
those bytes is read from there on, given that. The bytes are compared as they are (memcmp: about
1 us for 66 kB, where a CRC-32 of them cost 16): a request body is immutable `bytes` and is kept
itself, a part of one (a Messages history) is copied once (about 2 us). The comparison is exact,
so no crafted body can pass for another.

What a node holds is bounded by bytes: each remembered list weighs the bytes kept for it (the
whole body when that is what is kept) plus a little for the entry and what was found in it
(`ENTRY`, `PER_FOUND` per unit `weigh` counts: the call ids of a Responses input). Past `MOST`
(64 MiB for each API: about 900 coding agents' 70 kB conversations, or 80 of 800 kB) the keys used
longest ago are forgotten and their next turn is read whole. Nothing here decides access. No I/O;
each node's gateway holds one per API. The three reads of a turn from where the last one's list
ended share read_on_from (what may follow it) and is_member (where a list is)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from operator import itemgetter
from typing import Generic, NamedTuple, TypeVar

MOST = 64 * 1024 * 1024  # bytes a node holds per API (its gateway's CheckedHistories each)
ENTRY = 200  # bytes an entry weighs besides its kept bytes (the tuple, its list, what was found)
PER_FOUND = 100  # bytes per unit `weigh` counts of what was found (a call id in a set)
PER_KEY = 4  # lists of one key (an agent and its sub-agents, each its own conversation)
# Lists shorter than this are read whole and not remembered: remembering costs about 3 us, reading
# a 16 kB list 3-11 us (plain text to an agent's ids and quotes), a chat's first turn well under 1.
REMEMBER_FROM = 16 * 1024

T = TypeVar("T")
# read(bytes, found): what the check finds in a list (None: it does not pass), given the bytes after
# the part that passed before (from a comma, or the closing bracket) and what was found there, or
# the whole list and None
Read = Callable[[memoryview, T | None], T | None]


class _Checked(NamedTuple, Generic[T]):
    length: int  # bytes, up to the end of the list's last entry
    kept: bytes  # starting with those bytes (the body itself, or a copy of them)
    found: T  # what the check found in them
    weight: int  # bytes held for it: `kept`, ENTRY, PER_FOUND per unit of what was found


_WEIGHT = itemgetter(3)  # (summed by map: no Python frame per entry)


class CheckedHistories(Generic[T]):
    def __init__(self, weigh: Callable[[T], int] = lambda _found: 0, most: int = MOST, per_key: int = PER_KEY,
                 remember_from: int = REMEMBER_FROM, end: Callable[[T], int] | None = None) -> None:
        self._by_key: OrderedDict[str, list[_Checked[T]]] = OrderedDict()
        self._weigh = weigh
        self._most = most
        self._per_key = per_key
        self._from = remember_from
        # where a later read goes on from, by what was found (0: nowhere); by default before the
        # list's closing bracket
        self._end = end
        self.weight = 0  # bytes, of every list held

    def remembers(self, size: int) -> bool:
        """Whether a list of `size` bytes is remembered (a shorter one is read whole every time)."""
        return size >= self._from

    def check(self, key_id: str, data: bytes | memoryview, read: Read[T]) -> T | None:
        """What `read` finds in the JSON list `data` (None: it does not pass), reading only what
        follows a list of `key_id` that passed before."""
        view = memoryview(data)
        size = len(view)
        if size < self._from:
            return read(view, None)
        start = 0
        prior: T | None = None
        kept = self._by_key.get(key_id, [])
        for old in kept:
            # (bytes.startswith takes the view as it is and compares with memcmp; `==` on
            # memoryviews goes byte by byte, 100 us for 66 kB)
            if old.length < size and old.kept.startswith(view[:old.length]):
                start, prior = old.length, old.found
                kept = [c for c in kept if c is not old]  # (this list goes on from it: it takes its place)
                break
        found = read(view[start:], prior)
        if found is None:
            return None
        end = size - 1 if self._end is None else self._end(found)  # (a JSON list: its last byte is the `]`)
        if end > 0:
            # a request body is immutable and kept as it is; anything else (a part of one) is copied
            held = data if type(data) is bytes else view[:end].tobytes()
            entry = _Checked(end, held, found, len(held) + ENTRY + PER_FOUND * self._weigh(found))
            self._set(key_id, [entry, *kept][:self._per_key])
        return found

    def _set(self, key_id: str, lists: list[_Checked[T]]) -> None:
        self.weight += self._weight_of(lists) - self._weight_of(self._by_key.get(key_id, []))
        self._by_key[key_id] = lists
        self._by_key.move_to_end(key_id)
        while self.weight > self._most and self._by_key:
            _, old = self._by_key.popitem(last=False)
            self.weight -= self._weight_of(old)

    @staticmethod
    def _weight_of(lists: list[_Checked[T]]) -> int:
        return sum(map(_WEIGHT, lists))


SPACE = b" \t\r\n"  # JSON's white space


def read_on_from(raw: bytes, at: int, empty: bool = False) -> bytes | None:
    """The bytes a read goes on with, in `raw` after `at`, where the list part of a body read
    before closed: more entries after a comma, or the list's closing bracket (then the body's other
    fields), from that entry or bracket on. `empty`: the part before held no entry (the list's bare
    `[`), so entries follow it without a comma. None when it is not so (the whole read then says
    what is wrong, in its own words)."""
    body = raw[at:].lstrip(SPACE)
    if body[:1] == b",":
        if empty:
            return None
        body = body[1:].lstrip(SPACE)
        if body[:1] == b"]":  # (a trailing comma)
            return None
    elif not empty and body[:1] != b"]":
        return None
    return body


def is_member(raw: bytes, start: int, key: bytes) -> bool:
    """Whether the value at `start` in the JSON object `raw` is that of member `key` (its quoted
    name): the bytes ahead of it end with the name and a colon, white space aside."""
    ahead = raw[:start].rstrip(SPACE)
    return ahead.endswith(b":") and ahead[:-1].rstrip(SPACE).endswith(key)


def items_after(tail: memoryview) -> bytes:
    """The entries of `tail` (what follows the part of a list that passed: a comma and entries, or
    the closing bracket) as a JSON list of their own."""
    return b"[" + bytes(tail[1:]) if tail[:1].tobytes() == b"," else b"[]"
