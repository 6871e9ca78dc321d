"""Replay fast paths: the projector's read-ahead across page boundaries and the codec's delta
shortcut give exactly what the plain fold gives."""

from __future__ import annotations

import pytest

from shieldes.events import codec as codec_module
from shieldes.events.catalog import UsageDelta, UsageRecorded, usage_stream
from shieldes.events.codec import Codec
from shieldes.events.memory_store import InMemoryEventStore
from shieldes.events.store import AppendOptions, Fingerprint, LogPage, NewEvent
from shieldes.projections import projector as projector_module
from shieldes.projections.projector import BelowHorizon, LogDiverged, Projection, Projector, divergence_in


def flush(i: int) -> UsageRecorded:
    return UsageRecorded(
        "n1",
        1,
        i,
        (UsageDelta(f"k{i % 3}", "t" if i % 2 else None, "p", "m", 400_000 + i * 30, 1, i, 2 * i, 1000 * i),),
    )


@pytest.mark.parametrize("count", [0, 1, 5, 6, 7, 13])
async def test_catch_up_reads_ahead_across_pages(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    monkeypatch.setattr(projector_module, "PAGE", 3)
    store, codec = InMemoryEventStore(), Codec()
    for i in range(1, count + 1):
        await store.append(usage_stream("n1"), [NewEvent.of(flush(i), codec)], AppendOptions())
    projector = Projector(store)
    seen: list[int] = []
    projector.on_event(lambda recorded, _: seen.append(recorded.position))
    assert await projector.catch_up() == count
    assert seen == list(range(1, count + 1))
    plain = Projection()
    plain.apply_all(await store.read(0, 100))
    assert projector.usage == plain.usage
    await store.append(usage_stream("n1"), [NewEvent.of(flush(99), codec)], AppendOptions())
    assert await projector.catch_up() == count + 1


def test_delta_shortcut_equals_the_careful_path() -> None:
    data = Codec().encode(flush(5))[2]["deltas"][0]
    fast = codec_module._delta_from_data(data)
    careful = codec_module._delta_from_data({**data, "extra": 1})  # unknown shape: field by field
    assert fast == careful == flush(5).deltas[0]
    assert hash(fast) == hash(careful) and isinstance(fast, UsageDelta)


async def test_a_projection_below_the_compaction_horizon_reloads_instead_of_reading_on() -> None:
    store, codec = InMemoryEventStore(), Codec()
    for i in range(1, 4):
        await store.append(usage_stream("n1"), [NewEvent.of(flush(i), codec)], AppendOptions())
    lapsed = Projection()
    lapsed.apply_all(await store.read(0, 1))  # at position 1, then the log is compacted up to 3
    store.horizon = 3
    with pytest.raises(BelowHorizon):  # without a way to reload, it refuses to read on
        await Projector(store, lapsed).catch_up()
    fresh = Projection()
    fresh.apply_all(await store.read(0, 100))

    async def reload() -> Projection:
        return fresh

    projector = Projector(store, lapsed, reload=reload)
    await store.append(usage_stream("n1"), [NewEvent.of(flush(4), codec)], AppendOptions())
    assert await projector.catch_up() == 4
    assert projector.reloads == 1 and projector.projection is fresh
    # a replay from 0 reads whatever the horizon is (rollups instead of the raw events they replaced)
    assert await Projector(store).catch_up() == 4


async def test_a_log_that_lost_or_replaced_what_was_applied_is_seen_in_the_catch_up_read() -> None:
    """The check runs on the page the catch-up reads (head and the event at the cursor come with it):
    after this node's own write it is no divergence; a log ending before the position, or another
    event at the anchor's position (a failover to a lagging replica), raises before anything after
    the cursor is applied."""
    store, codec = InMemoryEventStore(), Codec()
    await store.append(usage_stream("n1"), [NewEvent.of(flush(1), codec)], AppendOptions())
    projector = Projector(store)
    await projector.catch_up()
    written = await store.append(usage_stream("n1"), [NewEvent.of(flush(2), codec)], AppendOptions())
    assert await projector.apply_appended(written.events) == 2
    assert await projector.catch_up() == 2  # its own write is no divergence

    ahead = Projection()
    ahead.apply_all(await store.read(0, 100))
    ahead.position = 5  # applied events the log no longer holds
    with pytest.raises(LogDiverged, match="ends at position 2, before this node's position 5"):
        await Projector(store, ahead).catch_up()

    replica = InMemoryEventStore()  # a new primary that got event 1 but another event at position 2
    await replica.append(usage_stream("n1"), [NewEvent.of(flush(1), codec)], AppendOptions())
    await replica.append(usage_stream("n2"), [NewEvent.of(flush(2), codec)], AppendOptions())
    await replica.append(usage_stream("n2"), [NewEvent.of(flush(3), codec)], AppendOptions())
    projector.store = replica
    with pytest.raises(LogDiverged, match="event at position 2 is not the one this node applied"):
        await projector.catch_up()
    assert projector.position == 2  # nothing read past the cursor was applied


def test_divergence_is_not_checked_before_this_process_applied_anything() -> None:
    page = LogPage([], 0, 10, None)
    assert divergence_in(None, 10, page) is None  # just loaded from a snapshot: nothing to compare
    assert divergence_in(None, 11, page) is not None  # but a log ending before it always is one


async def test_own_append_applied_from_its_result_equals_reading_it_back() -> None:
    """Read-your-writes without a read: right after the position, the append's events are applied
    as returned; with another writer's event in between, the catch-up reads both in order."""
    store, codec = InMemoryEventStore(), Codec()
    projector = Projector(store)
    seen: list[int] = []
    projector.on_event(lambda recorded, _: seen.append(recorded.position))
    mine = await store.append(usage_stream("n1"), [NewEvent.of(flush(1), codec)], AppendOptions())
    assert await projector.apply_appended(mine.events) == 1
    await store.append(usage_stream("n2"), [NewEvent.of(flush(2), codec)], AppendOptions())
    mine = await store.append(usage_stream("n1"), [NewEvent.of(flush(3), codec)], AppendOptions())
    assert await projector.apply_appended(mine.events) == 3
    assert seen == [1, 2, 3]
    plain = Projection()
    plain.apply_all(await store.read(0, 100))
    assert projector.usage == plain.usage and projector.anchor == (3, Fingerprint.of((await store.read(2, 1))[0]))
