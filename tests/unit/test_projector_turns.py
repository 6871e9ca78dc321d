"""A page of events is folded with the event loop turning between events (every `turn_every`
seconds): a page of 5,000 config events at 100k keys folded in one step held every request on the
node ~0.6 s. Made deterministic with turn_every = 0 (a turn after every event)."""

from __future__ import annotations

import asyncio
import itertools

from shieldes.events.catalog import CONFIG_STREAM, VirtualKeyCreated
from shieldes.events.codec import Codec
from shieldes.events.memory_store import InMemoryEventStore
from shieldes.events.store import AppendOptions, Fingerprint, NewEvent
from shieldes.projections.projector import Projection, Projector
from shieldes.secrets import hash_key

COUNT = 8


async def _keys(store: InMemoryEventStore, count: int) -> None:
    codec = Codec()
    events = [NewEvent.of(VirtualKeyCreated(f"key_{i}", f"app-{i}", hash_key(f"sk-{i}"), "sk-shd-abcd", None), codec)
              for i in range(1, count + 1)]
    await store.append(CONFIG_STREAM, events, AppendOptions())


async def test_a_page_is_folded_with_the_loop_turning_between_events_and_waiters_woken_as_it_goes() -> None:
    store = InMemoryEventStore()
    await _keys(store, COUNT)
    projector = Projector(store)
    projector.turn_every = 0.0
    notes: list[str] = []
    projector.on_event(lambda recorded, _: notes.append(f"event {recorded.position}"))
    stop = asyncio.Event()

    async def turns() -> None:
        while not stop.is_set():
            notes.append("turn")
            await asyncio.sleep(0)

    async def waiter() -> None:
        await projector.wait_for(3)
        notes.append("reached 3")

    ticking, waiting = asyncio.create_task(turns()), asyncio.create_task(waiter())
    await asyncio.sleep(0)
    # a second catch-up asked meanwhile waits for the first: no event is folded twice or out of order
    first, second = await asyncio.gather(projector.catch_up(), projector.catch_up())
    await waiting
    stop.set()
    await ticking
    assert (first, second) == (COUNT, COUNT)
    folded = [n for n in notes if n.startswith("event")]
    assert folded == [f"event {i}" for i in range(1, COUNT + 1)]
    between = [n for n in notes if n != "reached 3"]
    assert all(a == "turn" or b == "turn" for a, b in itertools.pairwise(between)), notes
    assert notes.index("reached 3") < notes.index(f"event {COUNT}")  # woken mid-page, not at its end
    plain = Projection()
    plain.apply_all(await store.read(0, 100))
    assert projector.config == plain.config and projector.position == COUNT
    assert projector.anchor == (COUNT, Fingerprint.of((await store.read(COUNT - 1, 1))[0]))


async def test_a_fold_shorter_than_turn_every_is_one_step() -> None:
    """Below the bound nothing changes: a page folds without giving the loop a turn."""
    store = InMemoryEventStore()
    await _keys(store, COUNT)
    projector = Projector(store, turn_every=3600.0)
    notes: list[str] = []
    projector.on_event(lambda recorded, _: notes.append("event"))
    stop = asyncio.Event()

    async def turns() -> None:
        while not stop.is_set():
            notes.append("turn")
            await asyncio.sleep(0)

    page = await store.read(0, 100)
    ticking = asyncio.create_task(turns())
    await asyncio.sleep(0)
    await projector.apply_appended(page)
    stop.set()
    await ticking
    start = notes.index("event")
    assert notes[start:start + COUNT] == ["event"] * COUNT
