"""The flusher against the in-memory store twin, with appends failing as while Postgres is down."""

from __future__ import annotations

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
