"""Conversations of stored responses a node remembers (responses/stored_histories): the pure
decision of when one may stand for the walk over the stored responses, the bound, and, through a
node's real ResponseStore, that the history a continuation gets is always the one reading every
turn of its chain finds (`History.of(conversation(chain))`), for growing and forking chains, with
the memory cache evicting under them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shieldes.dbwait import DbWait
from shieldes.errors import NotFound
from shieldes.responses.cached_chain import conversation
from shieldes.responses.history import NONE, History
from shieldes.responses.service import ResponseStore
from shieldes.responses.store import ResponseTable, StoredResponse, encode
from shieldes.responses.stored_histories import Known, StoredHistories, extended, usable
from shieldes.settings import Settings
from tests.strategies import responses_items

IMAGE = {"type": "message", "role": "user", "content": [
    {"type": "input_image", "image_url": "data:image/png;base64," + "iVBORw0KGgo" * 1200}]}


def known(rid: str, weight: int = 10, first: int = 5, oldest: float = 100.0, parent: str | None = None) -> Known:
    return Known(rid, NONE, weight, first, oldest, parent)


def test_a_remembered_history_stands_for_the_walk_only_while_its_whole_chain_is_cached_and_fresh() -> None:
    k = known("r", first=5, oldest=100.0)
    assert usable(k, evicted=4, horizon=99.0)
    assert not usable(k, evicted=5, horizon=99.0)  # its oldest response left the memory cache
    assert not usable(k, evicted=4, horizon=100.0)  # its oldest response expired
    grown = extended(k, "s", [{"role": "user", "content": "q"}], 7, sequence=9, created_at=200.0)
    assert (grown.first, grown.oldest, grown.weight, grown.parent) == (5, 100.0, 17, "r")
    assert grown.history == History.of([{"role": "user", "content": "q"}])
    first = extended(None, "t", [], 3, sequence=2, created_at=50.0)
    assert (first.first, first.oldest, first.weight, first.parent) == (2, 50.0, 3, None)


def test_memory_is_per_key_bounded_by_weight_and_keeps_a_conversations_latest_two() -> None:
    memory = StoredHistories(most=100)
    memory.put("a", known("r1", weight=10))
    memory.put("a", known("r2", weight=20, parent="r1"))
    assert memory.get("b", "r1") is None  # never another key's
    memory.put("a", known("r3", weight=30, parent="r2"))  # r1 (before r2) is forgotten
    assert memory.get("a", "r1") is None and memory.get("a", "r2") is not None
    memory.put("a", known("r3b", weight=30, parent="r2"))  # a fork of r2: r2 stays for it
    assert memory.get("a", "r2") is not None and memory.get("a", "r3") is not None
    assert memory.weight == 80
    memory.put("b", known("x", weight=40))  # past the bound: the used longest ago go
    assert memory.weight <= 100 and memory.get("b", "x") is not None
    memory.put("b", known("huge", weight=101))  # heavier than the bound: never held
    assert memory.get("b", "huge") is None
    memory.forget("a")
    assert all(memory.get("a", r) is None for r in ("r2", "r3", "r3b")) and memory.get("b", "x") is not None
    assert memory.weight == 40


# One step of a run: continue an earlier response (index into those made; None: a new conversation),
# with these input items, answered with these output items, by key 0 or 1
_steps = st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 40)),
                            st.lists(st.one_of(responses_items, st.just(IMAGE)), max_size=3),
                            st.lists(responses_items, max_size=2), st.integers(0, 1)),
                  min_size=1, max_size=25)


def _store(cache_bytes: int) -> ResponseStore:
    s = Settings(database_url="postgresql://unused", responses_cache_bytes=cache_bytes)
    return ResponseStore(ResponseTable(None), s, DbWait(1.0))  # type: ignore[arg-type]  # no I/O: all stay pending


def _whole(rows: dict[str, StoredResponse], rid: str) -> History:
    chain = []
    at: str | None = rid
    while at is not None:
        chain.append(encode(rows[at]))
        at = rows[at].previous_response_id
    return History.of(conversation(list(chain)))


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(steps=_steps, cache_bytes=st.sampled_from([1 << 30, 4000, 600]))
def test_the_history_a_continuation_gets_is_the_one_reading_its_whole_chain_finds(
        steps: list[tuple[int | None, list[Any], list[Any], int]], cache_bytes: int) -> None:
    """Every response stays waiting to be written (the walk finds it in memory), while a small cache
    evicts under the remembered histories: they must then give way to the walk."""
    store = _store(cache_bytes)
    rows: dict[str, StoredResponse] = {}
    made: list[str] = []

    async def run() -> None:
        for n, (at, own, output, key) in enumerate(steps):
            previous = made[at % len(made)] if at is not None and made else None
            key_id = f"key_{key}" if previous is None else rows[previous].key_id
            before = NONE if previous is None else await store.history(previous, key_id)
            if previous is not None:
                assert before == _whole(rows, previous)
            rid = f"resp_{n}"
            stored = StoredResponse(rid, time.time(), key_id, previous, "gpt-4o", own,
                                    {"id": rid, "output": output})
            rows[rid] = stored
            store.save(stored, before)
            made.append(rid)
        for rid in made:  # every response, continued once more, by its own key and another's
            assert await store.history(rid, rows[rid].key_id) == _whole(rows, rid)
            with pytest.raises(NotFound, match=rid):
                await store.history(rid, "key_0" if rows[rid].key_id == "key_1" else "key_1")

    asyncio.run(run())
    if cache_bytes == 1 << 30 and sum(1 for s in steps if s[0] is not None) > 2:
        assert store.continued["remembered"] + store.continued["extended"] > 0


def test_a_chain_of_continuations_reads_only_the_first_turn_and_then_nothing_of_the_earlier_ones() -> None:
    store = _store(1 << 30)

    async def run() -> None:
        previous: str | None = None
        before = NONE
        for n in range(10):
            rid = f"resp_{n}"
            if previous is not None:
                before = await store.history(previous, "key_1")
            store.save(StoredResponse(rid, time.time(), "key_1", previous, "gpt-4o",
                                      [{"role": "user", "content": f"q{n}"}],
                                      {"id": rid, "output": [{"type": "message", "content": f"a{n}"}]}), before)
            previous = rid
        assert len(before.items) == 18

    asyncio.run(run())
    # the first continuation read resp_0; every later one was remembered as its turn was served
    assert store.continued == {"remembered": 8, "extended": 0, "read": 1}
