"""Replay fast paths: the projector's read-ahead across page boundaries and the codec's delta
shortcut give exactly what the plain fold gives."""

from __future__ import annotations

import pytest

from shieldes.events import codec as codec_module
from shieldes.events.catalog import UsageDelta, UsageRecorded, usage_stream
from shieldes.events.codec import Codec
from shieldes.events.memory_store import InMemoryEventStore
from shieldes.events.store import AppendOptions, NewEvent
from shieldes.projections import projector as projector_module
from shieldes.projections.projector import BelowHorizon, Projection, Projector


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


async def test_a_head_read_before_this_nodes_own_write_is_no_divergence() -> None:
    """A poll reads the head, an admin write on this node appends and applies the next event, then
    the poll compares: the log did not lose anything, so the node must not reload."""
    store, codec = InMemoryEventStore(), Codec()
    await store.append(usage_stream("n1"), [NewEvent.of(flush(1), codec)], AppendOptions())
    projector = Projector(store)
    await projector.catch_up()
    stale_head = await store.head()
    await store.append(usage_stream("n1"), [NewEvent.of(flush(2), codec)], AppendOptions())
    await projector.catch_up()
    assert await projector.divergence(stale_head) is None
    ahead = Projection()
    ahead.apply_all(await store.read(0, 100))
    ahead.position = 5  # applied events the log no longer holds: a failover to a lagging replica
    assert "ends at position 2, before this node's position 5" in (await Projector(store, ahead).divergence(2) or "")
