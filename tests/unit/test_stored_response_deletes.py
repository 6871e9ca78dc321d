"""A deleted stored response is never read again, whatever the writer was doing when the delete
came: its batch in flight (beside a flush), a write of it that failed and put it back in the queue,
or a continuation reading its chain from Postgres at that moment."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from shieldes.dbwait import DbWait
from shieldes.errors import NotFound
from shieldes.responses.service import ResponseStore
from shieldes.responses.store import Encoded, ResponseTable, StoredResponse, encode
from shieldes.settings import Settings

KEY = "key_1"


def response(rid: str, previous: str | None = None) -> StoredResponse:
    return StoredResponse(rid, time.time(), KEY, previous, "gpt-4o", [{"role": "user", "content": rid}],
                          {"id": rid, "output": [{"type": "message", "content": [{"text": "to " + rid}]}]})


class HeldTable(ResponseTable):
    """Rows in a dict; the first write (or the first chain read) waits until the test opens the gate."""

    pool_size = 1  # (no pool: the writer keeps no connection)

    def __init__(self, fail_first_write: bool = False) -> None:
        super().__init__(None)  # type: ignore[arg-type]  # no pool: every statement is this class's own
        self.rows: dict[str, StoredResponse] = {}
        self.gate = asyncio.Event()
        self.holding = asyncio.Event()  # the held statement started
        self.fail_first_write = fail_first_write
        self.hold_chain = False

    async def insert(self, rows: Sequence[Encoded], keep: bool = False) -> None:
        first = not self.holding.is_set()
        self.holding.set()
        if first:
            await self.gate.wait()
            if self.fail_first_write:
                raise OSError("connection lost")
        self.rows.update({r.id: r.decoded() for r in rows})

    async def chain(self, response_id: str, retention: float) -> list[StoredResponse]:
        found: list[StoredResponse] = []
        next_id: str | None = response_id
        while next_id is not None and next_id in self.rows:
            found.append(self.rows[next_id])
            next_id = found[-1].previous_response_id
        if self.hold_chain:  # (what it read stands: a delete meanwhile does not change it)
            self.hold_chain = False
            self.holding.set()
            await self.gate.wait()
        return found

    async def delete(self, response_id: str, key_id: str) -> bool:
        return self.rows.pop(response_id, None) is not None

    async def purge(self, now: float, retention: float) -> list[str]:
        return []


def store_of(table: HeldTable) -> ResponseStore:
    return ResponseStore(table, Settings(database_url="postgresql://unused", responses_read_wait=0.0), DbWait(5.0))


async def settled() -> None:
    """Every task runs until it waits on something (no time passes: the loop is only yielded to)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def _until(done: object) -> None:
    while not done():  # type: ignore[operator]
        await asyncio.sleep(0.001)


async def test_a_delete_while_the_writers_batch_is_in_flight_beside_a_flush_removes_the_row() -> None:
    """A flush called while the writer's batch is in flight waits for it: two writes at once left
    the delete unaware of the first batch, whose row then landed after the delete had run."""
    table = HeldTable()
    store = store_of(table)
    await store.start()
    try:
        store.save(response("resp_a"))
        await asyncio.wait_for(table.holding.wait(), 5)  # the writer's batch, held by the database
        store.save(response("resp_b"))
        flushed = asyncio.create_task(store.flush())
        deleted = asyncio.create_task(store.delete("resp_a", KEY))
        await settled()
        table.gate.set()
        assert await asyncio.wait_for(flushed, 5)  # everything queued before it landed
        await asyncio.wait_for(deleted, 5)
        assert set(table.rows) == {"resp_b"}
        assert store.pending == 0 and store.pending_bytes == 0
    finally:
        table.gate.set()
        await store.stop()


async def test_a_delete_waiting_for_a_write_that_fails_takes_the_response_out_of_the_queue() -> None:
    """The failed batch goes back in the queue: the response deleted meanwhile must not go with it."""
    table = HeldTable(fail_first_write=True)
    store = store_of(table)
    await store.start()
    try:
        store.save(response("resp_a"))
        await asyncio.wait_for(table.holding.wait(), 5)
        deleted = asyncio.create_task(store.delete("resp_a", KEY))
        await settled()
        table.gate.set()
        await asyncio.wait_for(deleted, 5)
        assert await store.flush()  # (the writer would retry a second later)
        assert table.rows == {} and store.pending == 0 and store.pending_bytes == 0
    finally:
        table.gate.set()
        await store.stop()


async def test_a_delete_of_a_queued_response_gives_its_bytes_back_to_the_backlog_bound() -> None:
    store = store_of(HeldTable())
    store.save(response("resp_a"))
    assert store.pending_bytes == encode(response("resp_a")).size
    await store.delete("resp_a", KEY)
    assert store.pending == 0 and store.pending_bytes == 0


async def test_a_chain_read_from_postgres_across_a_delete_caches_nothing_of_it() -> None:
    """A continuation that read the chain just before a delete of one of its responses is answered
    (it came first), but what it read is not cached: the next continuation finds the chain broken."""
    table = HeldTable()
    table.rows = {"resp_a": response("resp_a"), "resp_b": response("resp_b", "resp_a")}
    store = store_of(table)  # a node that holds none of them (a restart, or another node wrote them)
    table.hold_chain = True
    reading = asyncio.create_task(store.history("resp_b", KEY))
    await asyncio.wait_for(table.holding.wait(), 5)
    await store.delete("resp_a", KEY)
    table.gate.set()
    assert len((await asyncio.wait_for(reading, 5)).items) == 4
    with pytest.raises(NotFound, match="resp_a"):
        await store.history("resp_b", KEY)


class LandsThenStalls(HeldTable):
    """The first write commits, then its answer never comes (a stalled server): it is cancelled
    past its bound and the batch is queued again."""

    async def insert(self, rows: Sequence[Encoded], keep: bool = False) -> None:
        self.rows.update({r.id: r.decoded() for r in rows})
        if not self.holding.is_set():
            self.holding.set()
            await self.gate.wait()


async def test_a_delete_of_a_response_queued_again_after_a_stalled_write_removes_the_row_it_landed() -> None:
    table = LandsThenStalls()
    store = ResponseStore(table, Settings(database_url="postgresql://unused", db_request_timeout=0.2), DbWait(5.0))
    store.save(response("resp_a"))
    assert not await store.flush() and store.stalls == 1 and store.pending == 1
    assert "resp_a" in table.rows  # it landed all the same
    await store.delete("resp_a", KEY)
    assert table.rows == {} and store.pending == 0 and store.pending_bytes == 0
    assert await store.flush() and table.rows == {}
    await store.stop()
