"""Message histories whose tool call ids were found to fit, remembered by key, so a coding agent's
next turn reads only its new messages.

An agent sends its whole conversation every turn, and each turn's `messages` are the bytes of the
turn before with the new messages after them (clients encode the same objects the same way). The
ids of a Messages history are read off its bytes by one regex pass (providers/tool_ids
.anthropic_ids_fit_in), about 47 us for an agent's 68 kB: more than anything else the node does
with the body. A history that passed is remembered by its length and CRC-32 (up to the end of its
last message, the closing `]` left out); a later history of the same key that starts with those
bytes is read from there on. Checking the CRC costs a quarter of the regex pass, and the CRC of the
new history is the old one carried over the new bytes.

A CRC says nothing about who made the bytes: a client that forges a collision only sends an id the
upstream refuses, in its own words, to itself (entries are per key). Nothing here decides access.
No I/O; one per node (its gateway's)."""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

KEYS = 4096  # keys whose histories are remembered; the one used longest ago is forgotten
PER_KEY = 4  # histories of one key (an agent and its sub-agents, each its own conversation)
HEAD = 256  # bytes whose CRC tells a key's conversations apart before a whole prefix is read

Fit = Callable[[memoryview], bool]


class _Checked(NamedTuple):
    length: int  # bytes, up to the end of the history's last message
    head: int  # CRC-32 of its first min(HEAD, length) bytes
    crc: int  # CRC-32 of its `length` bytes


class CheckedHistories:
    def __init__(self, keys: int = KEYS, per_key: int = PER_KEY, head: int = HEAD) -> None:
        self._by_key: OrderedDict[str, list[_Checked]] = OrderedDict()
        self._keys = keys
        self._per_key = per_key
        self._head = head

    def ids_fit(self, key_id: str, history: bytes | memoryview, fit: Fit) -> bool:
        """fit(history), reading only what follows a history of `key_id` that passed before."""
        view = memoryview(history)
        size = len(view)
        start = crc = 0
        kept = self._by_key.get(key_id, [])
        head = self._head
        for old in kept:
            if old.length < size and zlib.crc32(view[:min(head, old.length)]) == old.head \
                    and zlib.crc32(view[:old.length]) == old.crc:
                start, crc = old.length, old.crc
                kept = [c for c in kept if c is not old]  # (this history goes on from it: it takes its place)
                break
        if not fit(view[start:]):
            return False
        end = size - 1  # (a JSON array: its last byte is the `]`; a next turn goes on before it)
        if end > 0:
            if end > start:
                crc = zlib.crc32(view[start:end], crc)
            self._by_key[key_id] = [_Checked(end, zlib.crc32(view[:min(head, end)]), crc), *kept][:self._per_key]
            self._by_key.move_to_end(key_id)
            while len(self._by_key) > self._keys:
                self._by_key.popitem(last=False)
        return True
