"""A page of events is folded with the event loop turning between events (every `turn_every`
seconds): a page of 5,000 config events at 100k keys folded in one step held every request on the
node ~0.6 s. Made deterministic with turn_every = 0 (a turn after every event)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from shieldes.events.catalog import CONFIG_STREAM, Event, UsageDelta, UsageRecorded, VirtualKeyCreated, usage_stream
from shieldes.events.codec import Codec
from shieldes.events.memory_store import InMemoryEventStore
from shieldes.events.store import AppendOptions, Fingerprint, NewEvent
from shieldes.projections import projector as projector_module
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


async def test_a_large_flush_is_folded_a_part_at_a_time_its_seq_noted_after_the_last(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A flush after a database outage holds every delta of it (100k deltas: ~400 ms to decode and
    fold): it is folded DELTAS_PER_PART at a time with the loop turning between. Until its last
    part the position and the node's durable seq stay where they were (its spend still counts as
    pending), and the end state is the one-step fold's."""
    monkeypatch.setattr(projector_module, "DELTAS_PER_PART", 2, raising=False)
    store, codec = InMemoryEventStore(), Codec()
    deltas = tuple(UsageDelta(f"k{i}", None, "p", "m", 400_000, 1, 10, 5, 1000) for i in range(7))
    await store.append(usage_stream("n1"), [NewEvent.of(UsageRecorded("n1", 1, 4, deltas), codec)], AppendOptions())
    projector = Projector(store, turn_every=0.0)
    heard: list[Event] = []
    projector.on_event(lambda _, event: heard.append(event))
    seen: list[tuple[int, int, int]] = []  # (position, durable seq, requests folded) at each turn
    stop = asyncio.Event()

    async def turns() -> None:
        while not stop.is_set():
            usage = projector.usage
            seen.append((projector.position, usage.durable_seq("n1", 1),
                         sum(t.requests for t in usage.totals.values())))
            await asyncio.sleep(0)

    ticking = asyncio.create_task(turns())
    await asyncio.sleep(0)
    assert await projector.catch_up() == 1
    stop.set()
    await ticking
    partial = [s for s in seen if 0 < s[2] < 7]
    assert sorted({s[2] for s in partial}) == [2, 4, 6], seen
    assert all(s[:2] == (0, 0) for s in partial)
    plain = Projection()
    plain.apply_all(await store.read(0, 10))
    assert projector.usage == plain.usage and projector.position == 1 and projector.usage.durable_seq("n1", 1) == 4
    assert heard == [UsageRecorded("n1", 1, 4, deltas)]


async def test_a_large_flush_with_a_delta_it_cannot_read_leaves_the_state_as_it_was(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every part is decoded before any is folded: a catch-up that fails on such a flush (and is
    tried again) never counts its first parts twice."""
    monkeypatch.setattr(projector_module, "DELTAS_PER_PART", 2)
    store, codec = InMemoryEventStore(), Codec()
    deltas = tuple(UsageDelta(f"k{i}", None, "p", "m", 400_000, 1, 10, 5, 1000) for i in range(7))
    flush = NewEvent.of(UsageRecorded("n1", 1, 4, deltas), codec)
    del flush.data["deltas"][-1]["hour"]
    await store.append(usage_stream("n1"), [flush], AppendOptions())
    projector = Projector(store, turn_every=0.0)
    for _ in range(2):
        with pytest.raises(KeyError):
            await projector.catch_up()
        assert (projector.position, projector.usage) == (0, Projection().usage)
