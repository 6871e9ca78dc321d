"""A stored response's JSON is encoded once, when it is saved: the memory cache counts its bytes and
the writer sends the same text."""

from __future__ import annotations

import time

import orjson

from shieldes.dbwait import DbWait
from shieldes.responses.service import ResponseStore
from shieldes.responses.store import ResponseTable, StoredResponse, encode, json_size
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
