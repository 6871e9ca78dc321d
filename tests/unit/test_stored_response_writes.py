"""A stored response's JSON is encoded once, when it is saved: the memory cache counts its bytes and
the writer sends the same text. The writer's batches and the bound of each write."""

from __future__ import annotations

import time

import orjson

from shieldes.dbwait import DbWait
from shieldes.responses.service import (
    MAX_BATCH_BYTES,
    MAX_BATCH_ROWS,
    ResponseStore,
    batch_length,
    write_bound,
)
from shieldes.responses.store import Encoded, ResponseTable, StoredResponse, encode, json_size
from shieldes.settings import Settings


def response(rid: str, text: str) -> StoredResponse:
    return StoredResponse(rid, time.time(), "key_1", None, "gpt-4o", [{"role": "user", "content": text}],
                          {"id": rid, "output": [{"type": "message", "content": [{"text": "hé " + text}]}]})


def test_the_encoded_text_is_the_response_and_its_size_counts_bytes_not_characters() -> None:
    stored = response("resp_1", "é" * 100 + "\U0001f600")
    row = encode(stored)
    assert orjson.loads(row.input) == stored.input and orjson.loads(row.response) == stored.response
    size = len(orjson.dumps(stored.input)) + len(orjson.dumps(stored.response))
    assert row.size == size == json_size(stored) == len(row.input) + len(row.response)
    assert size > len(row.input.decode()) + len(row.response.decode())  # é is two bytes, the emoji four


def test_the_cache_holds_the_newest_responses_up_to_its_bytes() -> None:
    rows = [encode(response(f"resp_{i}", "x" * 1000)) for i in range(3)]
    settings = Settings(database_url="postgresql://unused", responses_cache_bytes=rows[1].size + rows[2].size)
    store = ResponseStore(ResponseTable(None), settings, DbWait(1.0))  # type: ignore[arg-type]  # no I/O here
    for row in rows:
        store.save(row.stored)
    assert list(store._cache) == ["resp_1", "resp_2"]  # the oldest left the cache ...
    assert store._cached_bytes == rows[1].size + rows[2].size
    assert store.pending == 3  # ... but waits to be written, readable meanwhile
    assert store._local("resp_0") == rows[0].stored
    assert [r.input for r in store._pending] == [r.input for r in rows]


def sized(n: int, size: int) -> list[Encoded]:
    return [Encoded(response(f"resp_{i}", ""), b"[]", b"{}", size) for i in range(n)]


def test_a_write_takes_up_to_its_rows_and_bytes_and_at_least_one_response() -> None:
    assert batch_length(sized(3, 10)) == 3
    assert batch_length(sized(MAX_BATCH_ROWS + 5, 10)) == MAX_BATCH_ROWS
    assert batch_length(sized(5, MAX_BATCH_BYTES // 2)) == 2
    assert batch_length(sized(3, MAX_BATCH_BYTES * 3)) == 1  # one response larger than a batch goes alone


def test_a_write_may_take_the_request_bound_plus_a_second_per_megabyte() -> None:
    assert write_bound(5.0, 0) == 5.0
    assert write_bound(5.0, 2_700_000) == 7.7
