"""The stored responses' writer statement on a real Postgres: a batch of many rows read back as
written (every column, created_at to the microsecond as `to_timestamp` stores it), and a batch
retried after part of it landed (each row once, the landed ones untouched)."""

from __future__ import annotations

import random
import time
from typing import Any

import orjson
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from shieldes.responses.store import Encoded, ResponseTable, StoredResponse, encode


def turn(n: int, created: float, rng: random.Random) -> StoredResponse:
    """A varied stored turn: text past ASCII, a continuation or not, input items or the client's bytes."""
    rid = f"resp_{n:04d}_{rng.getrandbits(64):016x}"
    text = rng.choice(["hello", "héllo wörld ✓", "日本語のテキスト", "emoji 🙂 " * 30, "quote \" and \\ back"])
    items: list[Any] = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}]
    given: list[Any] | bytes = orjson.dumps(items) if n % 3 == 0 else items  # (as the client sent them)
    response = {"id": rid, "object": "response", "created_at": int(created), "status": "completed",
                "model": "gpt-4o", "output": [{"type": "message", "id": f"msg_{n}", "role": "assistant",
                                               "content": [{"type": "output_text", "text": text * (1 + n % 5)}]}],
                "usage": {"input_tokens": n, "output_tokens": 2 * n, "total_tokens": 3 * n}, "n": 1.5e-7 * n}
    previous = None if n % 2 else f"resp_prev_{n}"
    return StoredResponse(rid, created, f"key_{n % 4}", previous, rng.choice(["gpt-4o", "mödel/ü"]), given, response)


async def rows_of(pool: AsyncConnectionPool[Any], ids: list[str]) -> dict[str, tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT id, key_id, previous_response_id, model, input, response, "
            "(extract(epoch FROM created_at - '2000-01-01 00:00:00+00'::timestamptz) * 1000000)::bigint "
            "FROM stored_responses WHERE id = ANY(%s)", (ids,))
        return {r[0]: r for r in await cur.fetchall()}


async def test_a_batch_of_many_rows_reads_back_as_written(pool: AsyncConnectionPool[Any]) -> None:
    """Equivalence test (passes with the INSERT and with the COPY): every column as given, the
    created_at Postgres's to_timestamp of the float (microseconds, rounded half to even), a row
    read back by `get` and `chain` equal to the one saved."""
    rng = random.Random(7)
    now = time.time()
    created = [now + rng.random(), now - 3600 * 30, int(now), now + 0.0000005, now + 0.0000015]
    stored = [turn(n, created[n % len(created)], rng) for n in range(60)]
    table = ResponseTable(pool)
    await table.insert([encode(s) for s in stored])
    got = await rows_of(pool, [s.id for s in stored])
    assert len(got) == len(stored)
    async with pool.connection() as conn:
        for s in stored:
            cur = await conn.execute("SELECT (extract(epoch FROM to_timestamp(%s::float8) - "
                                     "'2000-01-01 00:00:00+00'::timestamptz) * 1000000)::bigint", (s.created_at,))
            expected = await cur.fetchone()
            assert expected is not None
            row = got[s.id]
            assert row[1:4] == (s.key_id, s.previous_response_id, s.model), s.id
            assert row[4] == s.items() and row[5] == s.response, s.id
            assert row[6] == expected[0], (s.id, s.created_at)
    for s in stored[:5]:
        back = await table.get(s.id, 86400 * 7)
        assert back is not None and (back.id, back.key_id, back.model, back.input, back.response) == \
            (s.id, s.key_id, s.model, s.items(), s.response)
    chained = StoredResponse("resp_next", now, "key_1", stored[1].id, "gpt-4o", [], {"id": "resp_next", "output": []})
    await table.insert([encode(chained)])
    assert [r.id for r in await table.chain("resp_next", 86400 * 7)] == ["resp_next", stored[1].id]


async def test_a_batch_retried_after_part_of_it_landed_writes_each_row_once(pool: AsyncConnectionPool[Any]) -> None:
    """Equivalence test: a write retried after one that did land (a connection lost with the
    commit's answer) skips the rows already there, leaves them as they were, and writes the rest."""
    rng = random.Random(11)
    now = time.time()
    stored = [turn(n, now + n * 0.0001, rng) for n in range(20)]
    table = ResponseTable(pool)
    landed = [encode(s) for s in stored[:8]]
    await table.insert(landed)
    changed = [Encoded(r.id, r.created_at, r.key_id, r.previous_response_id, r.model, b"[]", b'{"changed":1}', b"[]")
               for r in landed]  # (if a landed row were written again, its content would show it)
    await table.insert([*changed[:3], *(encode(s) for s in stored[8:]), *changed[3:]])
    await table.insert(changed[:1])  # a batch wholly landed: nothing
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT id, count(*) FROM stored_responses GROUP BY id")
        counts = dict(await cur.fetchall())
    assert counts == {s.id: 1 for s in stored}
    got = await rows_of(pool, [s.id for s in stored])
    assert all(got[s.id][5] == s.response for s in stored)


async def test_a_batch_with_bytes_postgres_refuses_is_refused_whole_as_a_data_error(
        pool: AsyncConnectionPool[Any]) -> None:
    """Equivalence test: a row whose JSON is not valid UTF-8, holds a NUL byte or a \\u0000 escape
    (jsonb holds no NUL) makes the whole batch fail with a DataError, nothing of it written: the
    writer then writes the batch one by one and keeps the refused row in memory only."""
    now = time.time()
    table = ResponseTable(pool)
    for n, bad in enumerate((b'["\xff\xfe"]', b'["a\x00b"]', b'["a\\u0000b"]')):
        good = encode(StoredResponse(f"resp_good_{n}", now, "key_1", None, "m", [], {"id": f"resp_good_{n}"}))
        refused = Encoded(f"resp_bad_{n}", now, "key_1", None, "m", bad, b'{"id": 1}', b"[]")
        with pytest.raises(psycopg.errors.DataError):
            await table.insert([good, refused])
        assert await rows_of(pool, [good.id, refused.id]) == {}
        await table.insert([good])
        assert list(await rows_of(pool, [good.id])) == [good.id]


async def test_a_batch_written_through_a_pool_not_in_autocommit_is_committed(database_url: str) -> None:
    """Equivalence test: the node's pool is autocommit, but a table given a pool whose connections
    open transactions still commits its batch (another connection reads it at once)."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(database_url, min_size=1, max_size=1, open=False,
                                                         kwargs={"autocommit": False})
    await pool.open(wait=True)
    try:
        stored = turn(1, time.time(), random.Random(5))
        await ResponseTable(pool).insert([encode(stored)])
        with psycopg.connect(database_url) as other:
            assert other.execute("SELECT count(*) FROM stored_responses WHERE id = %s", (stored.id,)).fetchone() == (1,)
    finally:
        await pool.close()
