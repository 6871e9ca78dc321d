"""The conversations of stored responses a node served or read, remembered so that a continuation
by `previous_response_id` reads only its own items.

Without them every turn of an agent's conversation walked its whole chain of stored responses and
decoded every input and output in it, then read all of it again for its admission size and call
ids (`History.of`): a 60-turn conversation's 60 turns, tens of kB, for a turn that adds a few items.
Here a response's `History` (every turn up to and including it) is remembered as it is served,
from the turn's own history and items (`History.then`), or as a continuation reads it, so the next
turn is `remembered.then(its input)`.

A remembered history is used only while the stored-responses service would find every response of
its chain in its own memory, each fresh, exactly as its walk does (`usable`): it is then what that
walk reads, and anything the walk would not find (a response evicted from the memory cache, so
read from Postgres; deleted; expired) sends the continuation down the walk. The cache
hands out a sequence number per insertion and evicts oldest first, so "every insertion still
there" is one comparison with the newest evicted (`first > evicted`); an insertion removed out of
order (a delete) forgets the key's histories. Entries are per API key and never shared across keys.

Bounded: each entry weighs the JSON bytes of its conversation's inputs and outputs (the entries of
one conversation share their parsed items, so they are counted more than once); past `most`
(SHIELDES_RESPONSES_HISTORY_BYTES, 32 MiB), the entries used longest ago are forgotten. Parsed
items take about two to three times their JSON. A continuation that extends a remembered response keeps that one (a
second continuation of it, a fork or a retry, is read from it too) and forgets the one before it.
Pure: no I/O, no clock (the caller says what is fresh)."""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from shieldes.responses.history import History
from shieldes.responses.objects import Body

NO_SEQUENCE = -1  # a response not in the memory cache: a chain holding it is never usable


class Known(NamedTuple):
    """A stored response's conversation: every turn's input and output up to and including it."""

    response_id: str
    history: History
    weight: int  # JSON bytes of those inputs and outputs
    first: int  # the oldest memory-cache insertion among the chain's responses
    oldest: float  # created_at of the chain's oldest response (unix seconds)
    parent: str | None  # the response whose Known this one extended, if any


def usable(known: Known, evicted: int, horizon: float) -> bool:
    """Whether every response of `known`'s chain is still where the stored-responses walk finds it:
    in the memory cache (insertions leave it oldest first: none at or before `evicted` is left) and
    fresh (created after `horizon`, now minus the retention)."""
    return known.first > evicted and known.oldest > horizon


def extended(base: Known | None, response_id: str, items: list[Body], weight: int, sequence: int,
             created_at: float) -> Known:
    """The conversation of `response_id`: `base`'s (its previous response's; None: it has none)
    followed by its own `items` (its input and output), which weigh `weight` bytes of JSON and
    were cached as insertion `sequence`."""
    if base is None:
        return Known(response_id, History.of(items), weight, sequence, created_at, None)
    return Known(response_id, base.history.then(items), base.weight + weight, min(base.first, sequence),
                 min(base.oldest, created_at), base.response_id)



class StoredHistories:
    __slots__ = ("_entries", "_most", "weight")

    def __init__(self, most: int) -> None:
        # (key id, response id) -> its conversation, used longest ago first
        self._entries: OrderedDict[tuple[str, str], Known] = OrderedDict()
        self._most = most
        self.weight = 0  # of every entry held

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key_id: str, response_id: str) -> Known | None:
        """The conversation of `response_id` as `key_id` made it, if remembered (not checked: see
        `usable`)."""
        known = self._entries.get((key_id, response_id))
        if known is not None:
            self._entries.move_to_end((key_id, response_id))
        return known

    def put(self, key_id: str, known: Known) -> None:
        """Remember `known` for `key_id`; the response before the one it extended is forgotten (a
        conversation keeps its latest two), then the entries used longest ago while past the bound."""
        if known.weight > self._most:
            return
        self._drop((key_id, known.response_id))
        if known.parent is not None:
            before = self._entries.get((key_id, known.parent))
            if before is not None and before.parent is not None:
                self._drop((key_id, before.parent))
        self._entries[(key_id, known.response_id)] = known
        self.weight += known.weight
        while self.weight > self._most:
            _, old = self._entries.popitem(last=False)
            self.weight -= old.weight

    def forget(self, key_id: str) -> None:
        """Every conversation of `key_id` (one of its responses left the memory out of order)."""
        for entry in [e for e in self._entries if e[0] == key_id]:
            self._drop(entry)

    def _drop(self, entry: tuple[str, str]) -> None:
        old = self._entries.pop(entry, None)
        if old is not None:
            self.weight -= old.weight
