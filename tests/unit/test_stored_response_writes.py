"""A stored response's JSON is encoded once, when it is saved: the memory cache keeps those bytes and
the writer sends the same text. The writer's batches and the bound of each write."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from collections.abc import Sequence

import orjson
import pytest

from shieldes.dbwait import DbWait
from shieldes.errors import StoredResponsesBacklog
from shieldes.responses.cached_chain import PARSED_FROM, conversation
from shieldes.responses.service import ResponseStore
from shieldes.responses.store import DAY_EDGE, Encoded, ResponseTable, StoredResponse, day_of, days_of, encode
from shieldes.responses.write_pacing import (
    HOLD_MOST,
    LINGER,
    MAX_BATCH_BYTES,
    MAX_BATCH_ROWS,
    batch_length,
    keeps_connection,
    write_bound,
)
from shieldes.settings import Settings


def response(rid: str, text: str) -> StoredResponse:
    return StoredResponse(rid, time.time(), "key_1", None, "gpt-4o", [{"role": "user", "content": text}],
                          {"id": rid, "output": [{"type": "message", "content": [{"text": "hé " + text}]}]})


def test_the_encoded_text_is_the_response_and_its_size_counts_bytes_not_characters() -> None:
    stored = response("resp_1", "é" * 100 + "\U0001f600")
    row = encode(stored)
    assert orjson.loads(row.input) == stored.input and orjson.loads(row.response) == stored.response
    size = len(orjson.dumps(stored.input)) + len(orjson.dumps(stored.response))
    assert row.size == size == len(row.input) + len(row.response)
    assert row.decoded() == stored
    later = encode(StoredResponse("resp_2", time.time(), "key_1", "resp_1", "gpt-4o", [],
                                  {"id": "resp_2", "output": []}))
    # a continuation's history: each turn's input, then its output, oldest first (the chain is newest first)
    assert conversation([later, row]) == [*stored.input, *stored.response["output"]]
    assert conversation([]) == []
    assert size > len(row.input.decode()) + len(row.response.decode())  # é is two bytes, the emoji four


def test_the_cache_holds_the_newest_responses_up_to_its_bytes_as_json() -> None:
    responses = [response(f"resp_{i}", "x" * 1000) for i in range(3)]
    rows = [encode(r) for r in responses]
    settings = Settings(database_url="postgresql://unused", responses_cache_bytes=rows[1].held + rows[2].held)
    store = ResponseStore(ResponseTable(None), settings, DbWait(1.0))  # type: ignore[arg-type]  # no I/O here
    for stored in responses:
        store.save(stored)
    assert list(store._cache) == ["resp_1", "resp_2"]  # the oldest left the cache ...
    # kept as the JSON the writer sends, not as parsed objects (a third of the memory, nothing for the
    # cyclic collector to walk), and read back as it was saved
    assert all(isinstance(e, Encoded) and type(e.input) is bytes for e, _, _ in store._cache.values())
    assert store._cached_bytes == rows[1].held + rows[2].held
    assert (cached := store._local("resp_2")) is not None and cached.decoded() == responses[2]
    assert store.pending == 3  # ... but waits to be written, readable meanwhile
    assert (unwritten := store._local("resp_0")) is not None and unwritten.decoded() == responses[0]
    assert [r.input for r in store._pending] == [r.input for r in rows]


def test_a_large_response_is_cached_parsed_and_a_continuation_reads_every_kind_in_order() -> None:
    """A screenshot turn's JSON would be a fresh mapped buffer kept per row: the parsed objects the
    request already was are kept instead. A chain mixing both gives its items oldest first."""
    settings = Settings(database_url="postgresql://unused")
    store = ResponseStore(ResponseTable(None), settings, DbWait(1.0))  # type: ignore[arg-type]  # no I/O here
    first = response("resp_1", "small")
    big = StoredResponse("resp_2", time.time(), "key_1", "resp_1", "gpt-4o",
                         [{"role": "user", "content": "x" * PARSED_FROM}],
                         {"id": "resp_2", "output": [{"type": "message", "content": [{"text": "big"}]}]})
    last = StoredResponse("resp_3", time.time(), "key_1", "resp_2", "gpt-4o", [{"role": "user", "content": "end"}],
                          {"id": "resp_3", "output": [{"type": "message", "content": [{"text": "done"}]}]})
    for stored in (first, big, last):
        store.save(stored)
    store._pending.clear()  # written
    assert [type(e).__name__ for e, _, _ in store._cache.values()] == ["Encoded", "StoredResponse", "Encoded"]
    assert store._cached_bytes == sum(encode(s).held for s in (first, big, last))
    want = [item for s in (first, big, last) for item in (*s.input, *s.response["output"])]
    assert conversation([store._local(r) for r in ("resp_3", "resp_2", "resp_1")]) == want  # type: ignore[misc]


def sized(n: int, size: int) -> list[Encoded]:
    answer = b"x" * (size - 2)  # one object shared by every row
    return [Encoded(f"resp_{i}", time.time(), "key_1", None, "gpt-4o", b"[]", answer, b"[]") for i in range(n)]


def test_a_batchs_days_are_each_rows_day_from_any_day_met_before() -> None:
    """days_of, which remembers the last day's inner span, gives what day_of gives for every row
    (an equivalence test): times in one day, across midnights, at a day's first and last
    microseconds and within DAY_EDGE of them, in any order, from any span known before."""
    rng = random.Random(7)
    midnight = dt.datetime(2026, 12, 7, tzinfo=dt.UTC).timestamp()
    edges = [midnight + k * 86_400 + d for k in range(-1, 2)
             for d in (0.0, 1e-6, -1e-6, 4e-7, -4e-7, 5e-7, -5e-7, DAY_EDGE, -DAY_EDGE, 2 * DAY_EDGE, -2 * DAY_EDGE)]
    known = (0.0, 0.0, dt.date.min)
    for _ in range(300):
        times = [rng.choice(edges) if rng.random() < 0.3 else midnight + rng.uniform(-86_400, 2 * 86_400)
                 for _ in range(rng.randint(1, 12))]
        days, known = days_of(times, known)
        assert days == {day_of(t) for t in times}
        assert known[0] <= known[1] and day_of(known[0]) == day_of(known[1]) == known[2]


def test_a_rows_sizes_are_counted_once_as_its_json_bytes() -> None:
    row = encode(response("resp_1", "é"))
    assert row.size == len(row.input) + len(row.response)
    assert row.held == row.size + len(row.output)


def test_a_write_takes_up_to_its_rows_and_bytes_and_at_least_one_response() -> None:
    assert batch_length(sized(3, 10)) == 3
    assert batch_length(sized(MAX_BATCH_ROWS + 5, 10)) == MAX_BATCH_ROWS
    assert batch_length(sized(5, MAX_BATCH_BYTES // 2)) == 2
    assert batch_length(sized(3, MAX_BATCH_BYTES * 3)) == 1  # one response larger than a batch goes alone
    # with a bound on the bytes waiting (the writer's count): the same answers
    for rows in (sized(3, 10), sized(MAX_BATCH_ROWS + 5, 10), sized(5, MAX_BATCH_BYTES // 2),
                 sized(3, MAX_BATCH_BYTES * 3), sized(1, MAX_BATCH_BYTES)):
        total = sum(r.size for r in rows)
        for bound in (total, total + 1, total + MAX_BATCH_BYTES):
            assert batch_length(rows, bound) == batch_length(rows)


def test_the_writer_keeps_its_connection_unless_the_pool_is_one_or_it_was_kept_its_longest() -> None:
    assert keeps_connection(4, None) and keeps_connection(2, 0.0) and keeps_connection(2, HOLD_MOST - 0.001)
    assert not keeps_connection(4, HOLD_MOST)  # given back: the pool applies its max lifetime to it
    assert not keeps_connection(1, None) and not keeps_connection(1, 1.0)  # the node's only connection


def test_a_write_may_take_the_request_bound_plus_a_second_per_megabyte() -> None:
    assert write_bound(5.0, 0) == 5.0
    assert write_bound(5.0, 2_700_000) == 7.7


class GatedTable(ResponseTable):
    """Records each batch written; the first write waits until the test opens the gate."""

    pool_size = 1  # (no pool: the writer keeps no connection)

    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]  # no pool: insert is this class's own
        self.batches: list[list[str]] = []
        self.gate = asyncio.Event()
        self.writing = asyncio.Event()

    async def insert(self, rows: Sequence[Encoded], keep: bool = False) -> None:
        self.batches.append([r.id for r in rows])
        self.writing.set()
        await self.gate.wait()

    async def purge(self, now: float, retention: float) -> list[str]:
        return []


async def test_what_arrives_during_a_write_waits_for_the_next_batch() -> None:
    """Under steady load the writer waits LINGER again after each write, so the responses that end
    meanwhile share one statement instead of following the write at once a few at a time."""
    table = GatedTable()
    store = ResponseStore(table, Settings(database_url="postgresql://unused"), DbWait(1.0))
    await store.start()
    try:
        store.save(response("resp_1", "a"))
        await asyncio.wait_for(table.writing.wait(), 5)
        store.save(response("resp_2", "b"))  # ends while the first write runs
        table.gate.set()
        await asyncio.sleep(LINGER / 2)  # the window in which no second write may start
        assert table.batches == [["resp_1"]]
        store.save(response("resp_3", "c"))
        await asyncio.wait_for(_until(lambda: store.pending == 0), 5)
        assert table.batches == [["resp_1"], ["resp_2", "resp_3"]]
    finally:
        await store.stop()


async def test_flush_writes_its_limit_of_the_oldest_rows_or_everything() -> None:
    table = GatedTable()
    table.gate.set()
    store = ResponseStore(table, Settings(database_url="postgresql://unused"), DbWait(1.0))
    for i in range(5):
        store.save(response(f"resp_{i}", "x"))
    assert await store.flush(2) and table.batches == [["resp_0", "resp_1"]] and store.pending == 3
    assert await store.flush() and table.batches[1:] == [["resp_2", "resp_3", "resp_4"]] and store.pending == 0


async def _until(done: object) -> None:
    while not done():  # type: ignore[operator]
        await asyncio.sleep(0.001)


def test_the_backlog_counts_the_bytes_of_what_waits_and_of_what_was_dropped() -> None:
    rows = [response(f"resp_{i}", "x" * 100) for i in range(3)]
    store = ResponseStore(ResponseTable(None), Settings(database_url="postgresql://unused"),  # type: ignore[arg-type]
                          DbWait(1.0))
    for stored in rows:
        store.save(stored)
    assert store.pending_bytes == sum(encode(r).size for r in rows) > 0


async def test_a_storing_request_is_refused_while_the_backlog_is_past_its_bound_and_taken_once_a_write_lands() -> None:
    """Past `responses_pending_bytes` of unwritten responses, the next storing request is refused at
    once (it never waits on the database), with what to do; once the writer lands the batch, the
    next one is taken. Nothing served is dropped for the bound."""
    table = GatedTable()  # the first write is held until the gate opens: a slow database
    rows = [response(f"resp_{i}", "x" * 2000) for i in range(2)]
    settings = Settings(database_url="postgresql://unused", responses_pending_bytes=encode(rows[0]).size + 1)
    store = ResponseStore(table, settings, DbWait(5.0))
    store.check_room()  # nothing waits
    await store.start()
    try:
        for stored in rows:
            store.save(stored)
        began = time.monotonic()
        with pytest.raises(StoredResponsesBacklog) as refused:
            store.check_room()
        assert time.monotonic() - began < 0.1
        error = refused.value
        assert error.status == 503 and error.code == "stored_responses_backlog" and error.headers["Retry-After"] == "1"
        for advice in ("SHIELDES_RESPONSES_PENDING_BYTES", "store: false", "retry", "shieldes doctor"):
            assert advice in error.message, advice
        assert store.pending == 2  # nothing served is dropped for the bound
        table.gate.set()
        await asyncio.wait_for(_until(lambda: store.pending == 0), 5)
        assert store.pending_bytes == 0
        store.check_room()
    finally:
        table.gate.set()
        await store.stop()


class FirstWriteHangs(GatedTable):
    """The first write never ends until it is cancelled; every later one lands at once."""

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = 0

    async def insert(self, rows: Sequence[Encoded], keep: bool = False) -> None:
        self.batches.append([r.id for r in rows])
        if len(self.batches) > 1:
            return
        self.writing.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


async def test_a_write_cut_short_by_shutdown_is_written_by_the_shutdown() -> None:
    """Graceful shutdown writes what waits: a batch whose write the stop cancelled (a slow database,
    past the writer's patience) goes back to the queue and stop's own flush writes it."""
    table = FirstWriteHangs()
    store = ResponseStore(table, Settings(database_url="postgresql://unused"), DbWait(30.0))
    await store.start()
    store.save(response("resp_1", "a"))
    await asyncio.wait_for(table.writing.wait(), 5)
    await store.stop()
    assert table.cancelled == 1
    assert table.batches == [["resp_1"], ["resp_1"]] and store.pending == 0
