"""The flusher against the in-memory store twin, with appends failing as while Postgres is down."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from shieldes.errors import DatabaseUnavailable, Unavailable
from shieldes.events.codec import Codec
from shieldes.events.memory_store import InMemoryEventStore
from shieldes.events.store import AppendOptions, AppendResult, NewEvent
from shieldes.projections.projector import Projection
from shieldes.projections.state import ConfigState, VirtualKey
from shieldes.projections.usage import UsageState
from shieldes.usage.flusher import Flusher
from shieldes.usage.meter import Meter


class FlakyStore(InMemoryEventStore):
    """The in-memory twin; `down` makes appends fail, `lose_reply` commits but raises (ambiguous)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.lose_reply = False

    async def append(self, stream: str, events: Sequence[NewEvent], options: AppendOptions) -> AppendResult:
        if self.down:
            raise DatabaseUnavailable("cannot reach Postgres")
        result = await super().append(stream, events, options)
        if self.lose_reply:
            self.lose_reply = False
            raise DatabaseUnavailable("connection lost after commit")
        return result


KEY = VirtualKey("k1", "app", "h", "p", None, None, None)


def use(meter: Meter, n: int = 1) -> None:
    for _ in range(n):
        meter.settle(meter.admit(ConfigState(), UsageState(), KEY, 0), "dep", "gpt-4o", 10, 5, 100)


async def totals(store: InMemoryEventStore) -> tuple[int, int, int]:
    proj = Projection()
    proj.apply_all(await store.read(0, 10_000))
    t = proj.usage.totals["k1"]
    return t.requests, t.prompt_tokens, t.cost_nusd


async def test_usage_survives_an_outage_and_is_written_once() -> None:
    store = FlakyStore()
    meter = Meter("n1", 3, buffer_max=100)
    flusher = Flusher(store, meter, 0.01, codec=Codec())
    use(meter, 2)
    store.down = True
    assert not await flusher.flush_once()
    assert not flusher.healthy
    use(meter, 3)  # keeps aggregating while the head batch waits
    store.down = False
    store.lose_reply = True  # committed, but the node cannot know
    assert not await flusher.flush_once()
    assert await flusher.flush_all(1.0)  # retried with the same (epoch, seq): a no-op, then the rest
    events = await store.read(0)
    assert [e.data["seq"] for e in events] == [1, 2]
    assert await totals(store) == (5, 50, 500)
    assert meter.idle()


async def test_buffer_bound_refuses_new_requests_instead_of_dropping_usage() -> None:
    store = FlakyStore()
    store.down = True
    meter = Meter("n1", 3, buffer_max=1)
    flusher = Flusher(store, meter, 0.01)
    use(meter)
    with pytest.raises(Unavailable) as exc:
        use(meter)
    assert "usage buffer is full" in exc.value.message
    assert not await flusher.stop(timeout=0.05)  # shutdown while still down: reported, not lost silently
    store.down = False
    assert await flusher.flush_all(1.0)
    assert await totals(store) == (1, 10, 100)


async def test_a_paused_boot_whose_flush_a_peer_appended_sends_only_the_rest() -> None:
    """The leader appended what this boot had gossiped under the seq its accumulator would get (the
    boot was paused and taken for dead); the boot resumes, settles more and flushes that seq: the
    log holds every request once."""
    from shieldes.cluster.meter import ClusterMeter
    from shieldes.events.catalog import UsageDelta, UsageRecorded
    from shieldes.usage.flusher import append_flush

    store = InMemoryEventStore()
    meter = ClusterMeter("n1", 3, buffer_max=100)
    flusher = Flusher(store, meter, 0.01, codec=Codec())
    use(meter, 2)
    assert await flusher.flush_once()  # seq 1: 2 requests, appended by the node itself
    use(meter, 3)
    gossiped = meter.gossip_unflushed()  # what peers heard: 3 requests under seq 2
    assert {(e, s) for e, s, *_ in gossiped} == {(3, 2)}
    deltas = tuple(UsageDelta(k, t, p, m, h, *u) for (_, _, k, t, p, m, h), u in gossiped.items())
    taken = await append_flush(store, UsageRecorded("n1", 3, 2, deltas), Codec(), appended_by="leader")
    assert not taken.duplicate
    proj = Projection()
    proj.apply_all(await store.read(0, 100))
    assert meter.seq_taken(proj.usage)  # the node sees seq 2 in the log before cutting it
    use(meter, 4)  # it settles more meanwhile
    assert await flusher.flush_once()  # seq 2 again: a duplicate, the 4 new requests go back
    assert meter.buffered() == 1 and not meter.idle()
    assert await flusher.flush_once()  # seq 3: the rest
    assert await totals(store) == (2 + 3 + 4, 10 * 9, 100 * 9)
    events = await store.read(0, 100)
    assert [(e.data["seq"], e.metadata.get("appended_by")) for e in events] == [(1, None), (2, "leader"), (3, None)]
    proj = Projection()
    proj.apply_all(events)
    meter.drop_durable(proj.usage)
    assert meter.pending_snapshot() == {}  # every pending nUSD was accounted to a flush in the log


async def test_a_retry_of_our_own_append_is_not_taken_for_a_takeover() -> None:
    store = FlakyStore()
    meter = Meter("n1", 3, buffer_max=100)
    flusher = Flusher(store, meter, 0.01, codec=Codec())
    use(meter, 2)
    store.lose_reply = True
    assert not await flusher.flush_once()  # committed, reply lost
    assert await flusher.flush_once()  # the retry is a duplicate of the same content
    assert meter.idle() and await totals(store) == (2, 20, 200)


async def test_an_idle_flusher_sleeps_until_usage_arrives_then_appends_it_within_an_interval() -> None:
    store = FlakyStore()
    meter = Meter("n1", 3, buffer_max=100)
    flusher = Flusher(store, meter, 0.05, codec=Codec())
    await flusher.start()
    try:
        await asyncio.sleep(0.5)  # ten intervals with nothing to append
        assert flusher.waits == 1 and flusher.appends == 0
        use(meter, 2)
        arrived = time.monotonic()
        while not await store.read(0):
            assert time.monotonic() - arrived < 1.0, "usage was not appended after it arrived"
            await asyncio.sleep(0.005)
        assert time.monotonic() - arrived >= 0.04  # an interval's usage goes in one batch
        assert await totals(store) == (2, 20, 200)
        await asyncio.sleep(0.3)  # idle again: asleep with no timer
        assert flusher.waits == 2
    finally:
        await flusher.stop(timeout=1.0)


async def test_a_batch_that_failed_is_retried_every_interval() -> None:
    store = FlakyStore()
    store.down = True
    meter = Meter("n1", 3, buffer_max=100)
    flusher = Flusher(store, meter, 0.05, codec=Codec())
    await flusher.start()
    try:
        use(meter)
        await asyncio.sleep(0.4)
        assert flusher.waits >= 2 and not flusher.healthy  # retrying, not asleep
        store.down = False
        await asyncio.sleep(0.2)
        assert await totals(store) == (1, 10, 100) and meter.idle()
    finally:
        await flusher.stop(timeout=1.0)


class StalledStore(FlakyStore):
    """Appends that never answer while `stalled` (a database that stopped answering, not one that
    refuses): the loop's append is under way when the node is stopped."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = True
        self.appending = asyncio.Event()

    async def append(self, stream: str, events: Sequence[NewEvent], options: AppendOptions) -> AppendResult:
        self.appending.set()
        if self.stalled:
            await asyncio.Event().wait()
        return await super().append(stream, events, options)


async def test_a_stop_with_an_append_under_way_ends_within_its_timeout() -> None:
    """The append under way is the final flush's first attempt: a stop waits `timeout` in all, not
    the append's own APPEND_TIMEOUT (10 s) before its final flush begins, and keeps the batch."""
    store = StalledStore()
    meter = Meter("n1", 3, buffer_max=100)
    flusher = Flusher(store, meter, 0.01, codec=Codec())
    await flusher.start()
    use(meter, 2)
    await asyncio.wait_for(store.appending.wait(), 5)
    started = time.monotonic()
    assert not await flusher.stop(timeout=0.5)
    assert time.monotonic() - started < 2.0
    assert meter.buffered()  # kept in process (the node's log line counts it), not dropped
    store.stalled = False  # the same batch, under its seq, once the database answers
    assert await flusher.flush_all(5)
    requests, prompt_tokens, _ = await totals(store)
    assert (requests, prompt_tokens) == (2, 20)
