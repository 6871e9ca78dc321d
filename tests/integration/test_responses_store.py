"""Stored responses across two real nodes on one database: previous_response_id continued on the
other node at once (read-your-writes), retrieve/delete/input_items, key isolation, store: false,
and retention by partition drop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import openai
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from shieldes.events.pg_store import open_pool
from shieldes.node import Node
from shieldes.responses.store import ResponseTable, StoredResponse, encode, partition_name
from tests.integration.gateway_harness import Harness, harness
from tests.integration.test_responses_api import oai
from tests.responses_schema import check_response

MODELS = ("gpt-4o", "gpt-4o-mini")


@asynccontextmanager
async def second_node(h: Harness) -> AsyncIterator[Node]:
    node = Node(h.settings.model_copy(update={"node_id": h.settings.node_id + "-b"}))
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


def chat_messages(h: Harness) -> list[dict[str, object]]:
    body = h.upstream.last("/v1/chat/completions").body
    return [{"role": m["role"], "content": m.get("content")} for m in body["messages"]]


async def test_continue_on_another_node_and_manage_stored_responses(database_url: str) -> None:
    async with harness(database_url, responses_read_wait=0.5) as h, second_node(h) as b:
        secret = await h.create_key("app", models=MODELS)
        other = await h.create_key("other", models=MODELS)
        await h.sync()
        assert b.poller is not None and await b.poller.poll_once()
        a_client, b_client = oai(h.base, secret), oai(f"http://127.0.0.1:{b.port}", secret)

        first = await a_client.responses.create(model="gpt-4o", input="my name is Ada", instructions="be brief")
        # the next turn lands on the other node at once: it reads Postgres (waiting for the write)
        second = await b_client.responses.create(model="gpt-4o", input="what is my name?",
                                                 previous_response_id=first.id)
        assert second.previous_response_id == first.id
        assert chat_messages(h) == [
            {"role": "user", "content": "my name is Ada"},
            {"role": "assistant", "content": "Hello from the fake upstream"},
            {"role": "user", "content": "what is my name?"},
        ]  # instructions are not carried over, as the API specifies
        # a third turn, streamed, back on the first node: the whole chain
        stream = await a_client.responses.create(model="gpt-4o", input="and again?", stream=True,
                                                 previous_response_id=second.id)
        third = [e async for e in stream][-1].response
        assert third.previous_response_id == second.id
        assert [m["content"] for m in chat_messages(h)] == [
            "my name is Ada", "Hello from the fake upstream", "what is my name?",
            "Hello from the fake upstream", "and again?"]

        got = await b_client.responses.retrieve(third.id)
        assert got.output_text == "Hello from the fake upstream" and got.id == third.id
        check_response(got.model_dump(mode="json", exclude_unset=True))
        items = await b_client.responses.input_items.list(second.id)
        assert [i.content[0].text for i in items.data] == ["what is my name?"]  # type: ignore[union-attr]
        page = await b_client.responses.input_items.list(first.id, limit=1, order="asc")
        assert len(page.data) == 1 and page.has_more is False and page.first_id == page.data[0].id

        # another key sees nothing: not the response, not its items, no continuation, no delete
        intruder = oai(h.base, other)
        for attempt in (intruder.responses.retrieve(first.id), intruder.responses.input_items.list(first.id),
                        intruder.responses.delete(first.id)):
            with pytest.raises(openai.NotFoundError):
                await attempt
        with pytest.raises(openai.BadRequestError) as lost:  # a continuation: OpenAI's 400
            await intruder.responses.create(model="gpt-4o", input="x", previous_response_id=first.id)
        assert lost.value.code == "previous_response_not_found"

        await b_client.responses.delete(first.id)
        for client in (a_client, b_client):
            with pytest.raises(openai.NotFoundError, match="not found"):
                await client.responses.retrieve(first.id)
        with pytest.raises(openai.BadRequestError) as lost:
            await b_client.responses.create(model="gpt-4o", input="x", previous_response_id=second.id)
        assert lost.value.code == "previous_response_not_found"

        # store: false keeps nothing anywhere
        unsaved = await a_client.responses.create(model="gpt-4o", input="secret", store=False)
        assert unsaved.store is False
        assert h.node.responses is not None and await h.node.responses.flush()
        assert h.sql("SELECT count(*) FROM stored_responses WHERE id = %s", unsaved.id) == [(0,)]
        with pytest.raises(openai.NotFoundError):
            await b_client.responses.retrieve(unsaved.id)
        stored = {r[0] for r in h.sql("SELECT id FROM stored_responses")}
        assert stored == {second.id, third.id}


async def test_an_unstored_previous_response_is_not_found_at_once_on_any_node(database_url: str) -> None:
    """A continuation of a response that was not stored (`store: false`, e.g. a WebSocket turn whose
    socket reconnected to another node) waited out the whole read wait before its
    `previous_response_not_found`, as if another node might still be writing it. Its id says it
    is never written, so every node answers at once; an id it did not mint (one minted before ids
    said so, one from elsewhere) still waits, and a stored one is still found on the other node."""
    wait = 3.0
    async with harness(database_url, responses_read_wait=wait) as h, second_node(h) as b:
        secret = await h.create_key("app", models=MODELS)
        await h.sync()
        assert b.poller is not None and await b.poller.poll_once()
        a_client, b_client = oai(h.base, secret), oai(f"http://127.0.0.1:{b.port}", secret)
        unsaved = await a_client.responses.create(model="gpt-4o", input="hi", store=False)
        for client in (a_client, b_client):
            t0 = time.monotonic()
            with pytest.raises(openai.BadRequestError) as lost:
                await client.responses.create(model="gpt-4o", input="x", previous_response_id=unsaved.id)
            assert lost.value.code == "previous_response_not_found" and time.monotonic() - t0 < wait / 2
            t0 = time.monotonic()
            with pytest.raises(openai.NotFoundError):
                await client.responses.retrieve(unsaved.id)
            assert time.monotonic() - t0 < wait / 2
        t0 = time.monotonic()
        with pytest.raises(openai.BadRequestError):
            await b_client.responses.create(model="gpt-4o", input="x", previous_response_id="resp_" + "ab" * 24)
        assert time.monotonic() - t0 >= wait
        first = await a_client.responses.create(model="gpt-4o", input="my name is Ada")
        assert first.id.startswith("resp_") and len(first.id) == 53
        second = await b_client.responses.create(model="gpt-4o", input="and?", previous_response_id=first.id)
        assert second.previous_response_id == first.id


async def test_retention_hides_old_rows_and_the_purge_drops_their_partitions(database_url: str) -> None:
    async with harness(database_url) as h:
        assert h.node.pool is not None and h.node.responses is not None
        table = ResponseTable(h.node.pool)
        day = 24 * 3600.0
        now = time.time()
        old = StoredResponse("resp_old", now - 40 * day, "key_1", None, "m", [], {"id": "resp_old", "output": []})
        edge = StoredResponse("resp_edge", now - 30 * day - 60, "key_1", None, "m", [], {"id": "resp_edge"})
        new = StoredResponse("resp_new", now, "key_1", None, "m", [], {"id": "resp_new", "output": []})
        await table.insert([encode(old), encode(edge), encode(new)])
        retention = 30 * day
        assert await table.get("resp_edge", retention) is None  # expired, even before its partition goes
        assert await table.get("resp_new", retention) is not None
        dropped = await table.purge(now, retention)
        from shieldes.responses.store import day_of

        assert partition_name(day_of(old.created_at)) in dropped
        assert partition_name(day_of(now)) not in dropped
        assert h.sql("SELECT id FROM stored_responses ORDER BY id") in (
            [("resp_new",)], [("resp_edge",), ("resp_new",)])  # the edge day drops once it is whole
        # the node's own purge job runs the same code on its schedule
        assert await h.node.responses.purge() == []


async def test_no_database_round_trip_before_the_answer(database_url: str) -> None:
    """With the stored-responses table locked, responses (JSON, streamed, and a continuation this
    node holds in memory) are still served; the rows land once the lock goes."""
    async with harness(database_url) as h:
        secret = await h.create_key("app", models=MODELS)
        await h.sync()
        client = oai(h.base, secret)
        with psycopg.connect(database_url) as locker:
            locker.execute("LOCK TABLE stored_responses IN ACCESS EXCLUSIVE MODE")
            first = await asyncio.wait_for(client.responses.create(model="gpt-4o", input="one"), 10)
            stream = await client.responses.create(model="gpt-4o", input="two", stream=True,
                                                   previous_response_id=first.id)
            second = await asyncio.wait_for(_last(stream), 10)
            assert second.output_text == "Hello from the fake upstream"
        # (read from a thread: the node's writer shares this event loop and must run meanwhile)
        for _ in range(500):
            if len(await asyncio.to_thread(h.sql, "SELECT id FROM stored_responses")) == 2:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the stored responses were not written after the lock went")


async def _last(stream: Any) -> Any:
    events = [e async for e in stream]
    return events[-1].response


async def test_a_response_postgres_refuses_does_not_hold_up_the_others(database_url: str) -> None:
    """jsonb holds no NUL character: a batch with such a response is written one by one, the
    others land with every column as given, and the refused one stays readable on this node."""
    async with harness(database_url) as h:
        store = h.node.responses
        assert store is not None
        now = time.time()
        good = StoredResponse("resp_good", now, "key_1", None, "m", [{"role": "user", "content": "hé"}],
                              {"id": "resp_good", "output": [{"type": "message", "content": []}]})
        bad = StoredResponse("resp_nul", now, "key_1", "resp_good", "m", [{"role": "user", "content": "a\x00b"}],
                             {"id": "resp_nul", "output": []})
        after = StoredResponse("resp_after", now, "key_2", "resp_good", "m2", [], {"id": "resp_after"})
        for stored in (good, bad, after):
            store.save(stored)
        assert await store.flush()
        rows = h.sql("SELECT id, key_id, previous_response_id, model, input, response, "
                     "abs(extract(epoch FROM created_at) - %s) < 0.001 FROM stored_responses ORDER BY id", now)
        assert rows == [("resp_after", "key_2", "resp_good", "m2", [], {"id": "resp_after"}, True),
                        ("resp_good", "key_1", None, "m", good.input, good.response, True)]
        assert (await store.get("resp_nul", "key_1")).input == bad.input  # from this node's memory
        assert await store.flush()  # nothing left queued


WAIT = 1.0  # db_request_timeout in the stall test: the bound it checks, lowered to keep it fast


async def test_a_stalled_database_is_a_503_within_the_bound_and_chat_is_served(database_url: str) -> None:
    """A stored response this node does not hold (another node wrote it) is read from Postgres.
    With its table locked (a stalled database, not a refusing one) a continuation, a retrieve, its
    input items, a delete and an input-token count each get a 503 to retry after db_request_timeout,
    never held until the lock goes; chat is served meanwhile, and the same turn works after."""
    async with harness(database_url, db_request_timeout=WAIT, responses_read_wait=0.2) as h:
        secret = await h.create_key("app", models=MODELS)
        await h.sync()
        key = h.node.projector.config.find_key("app") if h.node.projector else None
        assert key is not None
        now = time.time()
        elsewhere = StoredResponse(
            "resp_elsewhere", now, key.id, None, "gpt-4o", [{"role": "user", "content": "my name is Ada"}],
            {"id": "resp_elsewhere", "object": "response", "created_at": int(now), "status": "completed",
             "model": "gpt-4o", "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status":
                                            "completed", "content": [{"type": "output_text", "text": "Hi Ada"}]}]})
        await ResponseTable(h.store.connections).insert([encode(elsewhere)])  # type: ignore[arg-type]  # another node's write
        client = oai(h.base, secret).with_options(timeout=WAIT * 30)
        calls = {
            "continuation": lambda: client.responses.create(model="gpt-4o", input="what is my name?",
                                                            previous_response_id=elsewhere.id),
            "retrieve": lambda: client.responses.retrieve(elsewhere.id),
            "input_items": lambda: client.responses.input_items.list(elsewhere.id),
            "delete": lambda: client.responses.delete(elsewhere.id),
            "input_tokens": lambda: client.responses.input_tokens.count(model="gpt-4o", input="what is my name?",
                                                                         previous_response_id=elsewhere.id),
        }
        with psycopg.connect(database_url) as locker:
            locker.execute("LOCK TABLE stored_responses IN ACCESS EXCLUSIVE MODE")
            for name, call in calls.items():
                began = time.monotonic()
                with pytest.raises(openai.APIStatusError) as stalled:
                    await call()
                waited = time.monotonic() - began
                error = stalled.value.body
                assert stalled.value.status_code == 503, name
                assert isinstance(error, dict) and error["code"] == "database_unavailable", (name, error)
                assert "retry" in error["message"] and f"within {WAIT:g} s" in error["message"], error
                assert WAIT <= waited < WAIT * 4, (name, waited)
            chat = await client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
            assert chat.choices[0].message.content == "Hello from the fake upstream"
        second = await client.responses.create(model="gpt-4o", input="what is my name?",
                                               previous_response_id=elsewhere.id)
        assert second.output_text and [m["content"] for m in chat_messages(h)] == [
            "my name is Ada", "Hi Ada", "what is my name?"]


async def scrape(h: Harness) -> dict[str, float]:
    async with aiohttp.ClientSession() as s, s.get(h.base + "/metrics") as r:
        text = await r.text()
    return {name: float(value) for name, value in
            (line.split(" ", 1) for line in text.splitlines() if line.startswith("shieldes_stored_responses_"))}


async def metric_reaches(h: Harness, name: str, value: float, timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while (seen := await scrape(h)).get(name, -1.0) < value:
        assert time.monotonic() < deadline, (name, value, seen)
        await asyncio.sleep(0.05)
    return seen


async def test_a_stalled_write_is_cancelled_retried_and_lands_once(database_url: str,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """The writer's INSERT held by a stalled database (its table locked by another session) is
    cancelled past db_request_timeout and retried on a new connection: the stall is counted, the
    backlog is on /metrics and a warning says the cause and what to do; continuations are served
    from this node's memory throughout; once the lock goes every response lands exactly once."""
    async with harness(database_url, db_request_timeout=WAIT) as h:
        secret = await h.create_key("app", models=MODELS)
        await h.sync()
        client = oai(h.base, secret).with_options(timeout=WAIT * 10)
        ids: list[str] = []
        with psycopg.connect(database_url) as locker:
            locker.execute("LOCK TABLE stored_responses IN ACCESS EXCLUSIVE MODE")
            previous = None
            for turn in range(4):  # each turn continues the last: served from memory, the rows unwritten
                answer = await client.responses.create(model="gpt-4o", input=f"turn {turn}",
                                                       previous_response_id=previous)
                ids.append(answer.id)
                previous = answer.id
            assert [m["content"] for m in chat_messages(h)][-2:] == ["Hello from the fake upstream", "turn 3"]
            # cancelled, retried, cancelled again
            seen = await metric_reaches(h, "shieldes_stored_responses_write_stalls_total", 2, WAIT * 20)
            assert seen["shieldes_stored_responses_pending"] == 4, seen
            assert seen["shieldes_stored_responses_write_stalls_total"] >= 2, seen
            warnings = [r.getMessage() for r in caplog.records if "did not answer within" in r.getMessage()]
            assert warnings and "was cancelled" in warnings[0] and "retried on a new connection" in warnings[0]
            assert "shieldes doctor" in warnings[0] and "4 responses wait in this node's memory" in warnings[0]
            more = await client.responses.create(model="gpt-4o", input="still here?", previous_response_id=previous)
            ids.append(more.id)
        for _ in range(500):  # (read from a thread: the node's writer shares this event loop)
            rows = await asyncio.to_thread(h.sql, "SELECT id, count(*) FROM stored_responses GROUP BY id")
            if len(rows) == len(ids):
                break
            await asyncio.sleep(0.02)
        assert sorted(rows) == sorted((i, 1) for i in ids)
        await metric_reaches(h, "shieldes_stored_responses_pending", 0, WAIT * 10)


async def test_a_backlog_past_its_bytes_refuses_storing_requests_before_any_upstream_call(database_url: str) -> None:
    """With stored_responses locked (a stalled database) the unwritten responses pile up in the
    node's memory. Past SHIELDES_RESPONSES_PENDING_BYTES a request with store: true gets a 503
    stored_responses_backlog with Retry-After at once, before the upstream sees it; store: false
    turns are served meanwhile. Once the lock goes the backlog drains, every kept response lands
    once and the refused turn is served."""
    async with harness(database_url, db_request_timeout=WAIT, responses_pending_bytes=20_000) as h:
        secret = await h.create_key("app", models=MODELS)
        await h.sync()
        client = oai(h.base, secret).with_options(timeout=WAIT * 10, max_retries=0)
        with psycopg.connect(database_url) as locker:
            locker.execute("LOCK TABLE stored_responses IN ACCESS EXCLUSIVE MODE")
            kept = [await client.responses.create(model="gpt-4o", input="x" * 12_000) for _ in range(2)]
            seen = await scrape(h)
            assert seen["shieldes_stored_responses_pending"] == 2
            assert seen["shieldes_stored_responses_pending_bytes"] > 20_000
            calls = len(h.upstream.requests)
            began = time.monotonic()
            with pytest.raises(openai.APIStatusError) as refused:
                await client.responses.create(model="gpt-4o", input="one more turn")
            assert time.monotonic() - began < WAIT  # refused at once: a request never waits on the database
            error = refused.value
            assert error.status_code == 503 and error.response.headers["Retry-After"] == "1"
            assert isinstance(error.body, dict) and error.body["code"] == "stored_responses_backlog", error.body
            for advice in ("SHIELDES_RESPONSES_PENDING_BYTES", "store: false", "retry"):
                assert advice in error.body["message"], advice
            assert len(h.upstream.requests) == calls  # refused before the upstream call
            unstored = await client.responses.create(model="gpt-4o", input="not kept", store=False)
            assert unstored.output_text and len(h.upstream.requests) == calls + 1
        deadline = time.monotonic() + WAIT * 10
        while (await scrape(h))["shieldes_stored_responses_pending_bytes"] > 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        again = await client.responses.create(model="gpt-4o", input="one more turn")
        assert again.output_text
        expected = sorted((i, 1) for i in [*(r.id for r in kept), again.id])
        for _ in range(500):  # (read from a thread: the node's writer shares this event loop)
            rows = await asyncio.to_thread(h.sql, "SELECT id, count(*) FROM stored_responses GROUP BY id")
            if len(rows) == len(expected):
                break
            await asyncio.sleep(0.02)
        assert sorted(rows) == expected


async def test_large_stored_values_are_compressed_with_lz4_where_the_server_has_it_unless_configured(
        database_url: str, pool: AsyncConnectionPool[Any]) -> None:
    # pglz spends most of a stored screenshot turn's INSERT failing to compress base64; where the
    # server is built with lz4 (Debian's, the clouds'; not the embedded one) the node's sessions use
    # it, unless the server, the database or the role chose a method (then the choice stands)
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT 'lz4' = ANY (enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
                           ).fetchone()
        assert row is not None
    has_lz4 = bool(row[0])
    transcript = [{"role": "user", "content": "the same line of a long transcript\n" * 2000}]

    async def stored_with(connections: AsyncConnectionPool[Any], rid: str) -> str:
        await ResponseTable(connections).insert([encode(StoredResponse(
            rid, time.time(), "key_1", None, "m", transcript, {"id": rid, "output": []}))])
        async with connections.connection() as conn:
            cur = await conn.execute("SELECT pg_column_compression(input) FROM stored_responses WHERE id = %s", (rid,))
            method = await cur.fetchone()
        assert method is not None
        return str(method[0])

    assert await stored_with(pool, "resp_default") == ("lz4" if has_lz4 else "pglz")
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {conn.info.dbname} SET default_toast_compression = 'pglz'")
    configured = open_pool(database_url, size=1)
    await configured.open(wait=True)
    try:
        assert await stored_with(configured, "resp_configured") == "pglz"
    finally:
        await configured.close()
