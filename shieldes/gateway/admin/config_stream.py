"""GET /admin/v1/config for every key, written a slice of keys at a time: at a million keys the
answer is some 170 MB, and built in one go it held the node's event loop (every request, /health
included) for the 7-8 s it took. The keys are sorted in a thread, each slice is built and sent on
the loop with a turn for other requests between slices, and the body is never whole in memory."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import AsyncIterator, Iterable
from typing import Any

from shieldes import plainjson
from shieldes.projections.state import ConfigState
from shieldes.snapshots.history import config_view, key_entity

KEY_SLICE = 500  # keys built and sent per turn of the loop (~10 ms of work at a million keys)
SORT_SLICE = 50_000  # ids sorted per C call in the thread (a million-id sort would hold the GIL)


def sorted_ids(ids: Iterable[str]) -> list[str]:
    """The ids ascending, sorted in slices merged lazily: a thread running this lets the event loop
    in between (one sort of a million strings is one call that holds the GIL for its length)."""
    every = list(ids)
    runs = [sorted(every[start:start + SORT_SLICE]) for start in range(0, len(every), SORT_SLICE)]
    return list(heapq.merge(*runs))


def _split(whole: dict[str, Any]) -> tuple[bytes, bytes]:
    """The JSON text of `whole` before its `keys` list's items and after them."""
    items = list(whole.items())
    at = [name for name, _ in items].index("keys")
    before, after = dict(items[:at]), dict(items[at + 1:])
    head = plainjson.dumps(before)[:-1] + (b',"keys":[' if before else b'{"keys":[')
    return head, (b"]," + plainjson.dumps(after)[1:]) if after else b"]}"


async def config_json(head: dict[str, Any], state: ConfigState) -> AsyncIterator[bytes]:
    """`head` (at, position, ...) and the config view of `state` with every key, as the JSON text
    `plainjson.dumps({**head, **config_view(state)})` writes, in chunks."""
    whole = {**head, **config_view(state, keys_limit=0)}
    del whole["keys_total"]
    opening, closing = _split(whole)
    ids = await asyncio.to_thread(sorted_ids, state.keys)  # (a persistent map: later writes leave it be)
    yield opening
    for start in range(0, len(ids), KEY_SLICE):
        keys = [key_entity(state, state.keys[key_id]) for key_id in ids[start:start + KEY_SLICE]]
        yield (b"," if start else b"") + plainjson.dumps(keys)[1:-1]
        await asyncio.sleep(0)  # other requests' turn, whether or not the socket made us wait
    yield closing
