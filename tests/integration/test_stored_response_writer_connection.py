"""The stored responses' writer keeps one connection while batches come, on a real node and
Postgres: every batch on the same backend, the connection given back after HOLD_IDLE without a
batch, and a kept connection whose backend ended replaced at once (the next response lands
without a failed write and the retry's wait)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from shieldes.responses.service import ResponseStore
from shieldes.responses.store import StoredResponse
from shieldes.responses.write_pacing import HOLD_IDLE
from tests.integration.gateway_harness import Harness, harness

INSERTS = ("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
           "AND query LIKE 'INSERT INTO stored_responses%%'")  # (a backend's last statement, idle or not)


def turn(n: int) -> StoredResponse:
    rid = f"resp_writer_{n}_{time.time_ns()}"
    return StoredResponse(rid, time.time(), "key_1", None, "gpt-4o", [{"role": "user", "content": f"turn {n}"}],
                          {"id": rid, "object": "response", "output": []})


async def landed(h: Harness, rid: str, within: float) -> float:
    """Seconds until `rid`'s row is in Postgres (read from a thread: the writer shares this loop)."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if await asyncio.to_thread(h.sql, "SELECT 1 FROM stored_responses WHERE id = %s", rid):
            return time.monotonic() - start
        await asyncio.sleep(0.01)
    raise AssertionError(f"{rid} not written within {within} s")


async def until(check: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)


KEPT_THROUGH_A_CHECK = 60.0  # a hold no check here outlasts, however loaded the machine


async def held(store: ResponseStore) -> None:
    """The writer keeps its connection once its write has ended: the row can be seen from another
    connection a moment before (the commit reaches Postgres before the writer reads its answer)."""
    await until(lambda: store.table.kept, 5.0)


async def kept_backend(h: Harness, store: ResponseStore) -> int:
    """One response written, and the backend of the connection the writer keeps after it."""
    stored = turn(0)
    store.save(stored)
    await landed(h, stored.id, 5.0)
    await held(store)
    [(pid,)] = await asyncio.to_thread(h.sql, INSERTS)
    return int(pid)


def writer(h: Harness) -> ResponseStore:
    """The node's writer, its kept connection held while a test checks it: a read of the row from a
    thread can take longer than HOLD_IDLE on a loaded machine, and the connection would go back."""
    store = h.node.responses
    assert store is not None
    store.hold_idle = KEPT_THROUGH_A_CHECK
    return store


async def test_batches_go_on_one_kept_connection_given_back_when_no_batch_comes(database_url: str) -> None:
    async with harness(database_url) as h:
        store = writer(h)
        for n in range(6):  # one batch each (each lands before the next is saved)
            stored = turn(n)
            store.save(stored)
            await landed(h, stored.id, 5.0)
        await held(store)
        pids = await asyncio.to_thread(h.sql, INSERTS)
        assert len(pids) == 1, pids  # every batch's statement on one backend
        store.hold_idle = HOLD_IDLE  # (the product's; the writer waits on it after its next write)
        saved = time.monotonic()  # its write ends after this, so the connection goes back HOLD_IDLE later at least
        stored = turn(98)
        store.save(stored)
        await landed(h, stored.id, 5.0)
        await held(store)
        await until(lambda: not store.table.kept, HOLD_IDLE + 10.0)
        assert time.monotonic() - saved >= HOLD_IDLE
        store.hold_idle = KEPT_THROUGH_A_CHECK
        stored = turn(99)  # taken again from the pool for the next batch
        store.save(stored)
        await landed(h, stored.id, 5.0)
        await held(store)


async def test_a_pool_of_one_is_never_kept_from_the_nodes_other_work(database_url: str) -> None:
    """Equivalence test for a pool of one (the writer takes and gives back the connection each
    batch, as before): a read of a stored response on this pool is not held up by the writer."""
    async with harness(database_url, db_pool_size=1) as h:
        store = writer(h)
        stored = turn(0)
        store.save(stored)
        await landed(h, stored.id, 5.0)
        assert not store.table.kept
        found = await store.table.get(stored.id, 3600.0)
        assert found is not None and found.id == stored.id


async def test_a_kept_connection_whose_backend_ended_is_replaced_at_once(database_url: str,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """pg_terminate_backend on the writer's kept connection (a Postgres restart, a pooler or an
    administrator ending it between batches): the next batch is sent again on a connection from the
    pool within the same write, so it lands with no failed write logged and without the writer's
    RETRY wait, and the writer keeps the new connection."""
    async with harness(database_url) as h:
        store = writer(h)
        killed = await kept_backend(h, store)
        ended = await asyncio.to_thread(h.sql, "SELECT pg_terminate_backend(%s)", killed)
        assert ended == [(True,)]
        await until(lambda: not h.sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s", killed), 5.0)
        second = turn(1)
        store.save(second)
        await landed(h, second.id, 5.0)
        # (sent again at once: no failed write logged, and no RETRY wait, which follows one)
        assert not [r for r in caplog.records if "failed, will retry" in r.getMessage()]
        await held(store)
        assert store.stalls == 0 and store.pending == 0
        pids = await asyncio.to_thread(h.sql, INSERTS)
        assert len(pids) == 1 and pids[0][0] != killed, (pids, killed)


async def test_a_node_stopping_gives_the_kept_connection_back_before_its_pool_closes(database_url: str) -> None:
    async with harness(database_url) as h:
        store = writer(h)
        kept = await kept_backend(h, store)
    assert not store.table.kept
    # (the pool closed every connection it had back: the kept one's backend ends with it)
    await until(lambda: not h.sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s", kept), 5.0)
