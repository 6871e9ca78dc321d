"""Postgres goes away under load (a TCP proxy in front of it is cut and its backends terminated):
the node keeps serving from memory, says `degraded` on /ready while /health stays 200, holds usage in
its bounded buffer, then reconnects and flushes; the log's usage equals exactly what was served.
Postgres stalls (the proxy forwards nothing): what must wait for it is a 503 within its bound."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shieldes.responses.store import ResponseTable, StoredResponse, encode
from tests.integration.admin_client import AdminClient
from tests.integration.gateway_harness import Harness, wait_until
from tests.resilience.support import MESSAGES, Load, TcpProxy, node_via, terminate_backends


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    p = await TcpProxy(database_url).start()
    yield p
    await p.stop()


async def status_of(base: str, path: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as s, s.get(base + path) as r:
        return r.status, await r.json()


async def served_equals_log(h: Harness, key_name: str, served: int) -> None:
    assert len(h.upstream.requests_to("/v1/chat/completions")) == served
    await h.flush()
    # 4 prompt tokens and 5 completion tokens per request at the fake upstream
    rows = h.usage_totals()
    assert (rows[key_name][0], rows[key_name][1], rows[key_name][2]) == (served, 4 * served, 5 * served)


async def test_outage_under_load_serves_from_memory_and_loses_no_usage(database_url: str,
                                                                       proxy: TcpProxy) -> None:
    async with node_via(database_url, proxy.url_for(database_url)) as h:
        secret = await h.create_key("load", rpm=100_000, tpm=10_000_000, budget_usd=1000.0)
        await h.sync()
        load = Load(h.base, secret, workers=4).start()
        await wait_until(lambda: load.ok >= 20)

        proxy.cut()
        assert terminate_backends(database_url) >= 1  # the node's pool, LISTEN and leader connections
        cut_at, ok_at_cut = time.monotonic(), load.ok
        degraded_after = None
        peak = 0
        while time.monotonic() - cut_at < 4.0 or degraded_after is None:
            assert time.monotonic() - cut_at < 20, "the node never reported the outage on /ready"
            status, body = await status_of(h.base, "/ready")
            # an outage is `degraded`, never unready: a load balancer must keep routing to the node
            assert status == 200 and body["ready"] is True, body
            if body["degraded"]:
                assert body["status"] == "degraded" and body["database"] == "unreachable"
                degraded_after = degraded_after or time.monotonic() - cut_at
            assert (await status_of(h.base, "/health"))[0] == 200
            peak = max(peak, h.node.meter.buffered() if h.node.meter else 0)
            await asyncio.sleep(0.1)
        served_during = load.ok - ok_at_cut
        assert served_during >= 20, "auth, routing and limits must keep working from memory"
        assert peak >= 1 and h.node.meter is not None and not h.node.meter.idle()

        assert h.node.flusher is not None
        appends_before = h.node.flusher.appends
        proxy.restore()
        restored_at = time.monotonic()
        await wait_until(lambda: h.node.flusher is not None and h.node.flusher.appends > appends_before,
                         timeout=20)
        drained_after = time.monotonic() - restored_at
        assert drained_after < 10
        for _ in range(60):  # once a flush succeeded, /ready says so (no wait for a stuck poll)
            if (await status_of(h.base, "/ready"))[1]["degraded"] is False:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("/ready still said degraded 3 s after the first flush")
        # the other database users come back too: LISTEN, leadership, membership heartbeats
        cluster = h.node.cluster
        assert cluster is not None
        await wait_until(lambda: cluster.listener.state == "listening" and cluster.leader.is_leader, timeout=20)
        await load.stop()
        assert load.failed == {}
        await served_equals_log(h, "load", load.ok)
        assert h.sql("SELECT count(*) FROM cluster_nodes WHERE node_id = %s AND heartbeat_at > now() - interval '3s'",
                     h.node.node_id) == [(1,)]


async def test_an_idle_node_reports_a_silent_postgres_on_ready_within_the_bound(
        database_url: str, proxy: TcpProxy, caplog: pytest.LogCaptureFixture) -> None:
    """Postgres goes silent (the proxy forwards nothing: a paused server or a black-holed network)
    under a node that serves nothing, so no flush fails to tell it: its position poll must. /ready
    says `degraded` within a poll interval plus the poll's first-read bound, max(1 s, 5 intervals),
    not once psycopg has given up cancelling the unanswered read (10 s more), and `ok` again about
    a poll interval after Postgres answers. The status code stays 200 throughout. The log says so
    when /ready does, and says when Postgres answers again."""
    caplog.set_level(logging.INFO, logger="shieldes.log_poller")
    interval, size = 1.0, 8  # the default poll interval
    bound = interval + max(1.0, 5 * interval)
    async with node_via(database_url, proxy.url_for(database_url), poll_interval=interval,
                        db_pool_size=size) as h:
        await h.sync()
        # open the whole pool first, so the poll finds an idle connection and its read goes out
        # unanswered (a poll left waiting for a new connection gives up at once when timed out)
        assert h.node.pool is not None
        held = [await h.node.pool.getconn() for _ in range(size)]
        for conn in held:
            await h.node.pool.putconn(conn)
        assert (await status_of(h.base, "/ready"))[1]["degraded"] is False
        proxy.stall()
        try:
            stalled_at = time.monotonic()
            while True:
                status, body = await status_of(h.base, "/ready")
                assert status == 200 and body["ready"] is True, body
                if body["degraded"]:
                    assert body["database"] == "unreachable" and body["status"] == "degraded", body
                    break
                assert time.monotonic() - stalled_at < bound + 2.0, "a silent Postgres did not show on /ready"
                await asyncio.sleep(0.1)
            degraded_at = time.monotonic()
            while not (silent := [r.getMessage() for r in caplog.records if "has not answered" in r.getMessage()]):
                assert time.monotonic() - degraded_at < 1.0, caplog.text  # the log says it with /ready
                await asyncio.sleep(0.05)
            assert len(silent) == 1 and "shieldes doctor" in silent[0], silent
        finally:
            proxy.resume()
        resumed_at = time.monotonic()
        while (await status_of(h.base, "/ready"))[1]["degraded"]:
            assert time.monotonic() - resumed_at < interval + 2.0, "/ready still degraded after Postgres answered"
            await asyncio.sleep(0.1)
        while "answers the event-log poll again" not in caplog.text:
            assert time.monotonic() - resumed_at < interval + 2.0, caplog.text
            await asyncio.sleep(0.1)


async def unflushed_gauges(base: str) -> tuple[float, float]:
    """shieldes_usage_unflushed_deltas and shieldes_usage_buffer_max_deltas, as /metrics has them."""
    async with aiohttp.ClientSession() as s, s.get(base + "/metrics") as r:
        found = {f.name: f.samples[0].value for f in text_string_to_metric_families(await r.text())
                 if f.name in ("shieldes_usage_unflushed_deltas", "shieldes_usage_buffer_max_deltas")}
    return found["shieldes_usage_unflushed_deltas"], found["shieldes_usage_buffer_max_deltas"]


async def test_full_usage_buffer_refuses_with_503_and_drops_nothing(database_url: str, proxy: TcpProxy) -> None:
    # the buffer holds deltas (one per key, deployment, model and hour), so 3 keys fill a cap of 2
    async with node_via(database_url, proxy.url_for(database_url), usage_buffer_max=2) as h:
        keys = [await h.create_key(f"k{i}") for i in range(3)]
        await h.sync()
        clients = [openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=k, max_retries=0) for k in keys]
        proxy.cut()
        terminate_backends(database_url)
        await clients[0].chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        await clients[1].chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        await wait_until(lambda: h.node.meter is not None and h.node.meter.buffered() >= 2)
        # what ShieldesUsageBufferFilling reads says so during the outage, not the last poll's value
        assert await unflushed_gauges(h.base) == (2.0, 2.0)
        with pytest.raises(openai.APIStatusError) as full:
            await clients[2].chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        assert full.value.status_code == 503 and full.value.code == "unavailable"
        assert "usage buffer is full" in full.value.message
        assert len(h.upstream.requests_to("/v1/chat/completions")) == 2  # refused before the upstream

        proxy.restore()
        await wait_until(lambda: h.node.meter is not None and h.node.meter.buffered() == 0, timeout=20)
        assert await unflushed_gauges(h.base) == (0.0, 2.0)
        await clients[2].chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        for c in clients:
            await c.close()
        await h.flush()
        rows = h.usage_totals()
        assert {k: v[:3] for k, v in rows.items()} == {f"k{i}": (1, 4, 5) for i in range(3)}


async def test_stop_during_an_outage_is_bounded_and_says_what_was_not_written(
        database_url: str, proxy: TcpProxy, caplog: pytest.LogCaptureFixture) -> None:
    async with node_via(database_url, proxy.url_for(database_url), shutdown_grace=1.0) as h:
        secret = await h.create_key("late")
        await h.sync()
        proxy.cut()
        terminate_backends(database_url)
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0)
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        await client.close()
        started = time.monotonic()
        await h.node.stop()  # what SIGTERM runs
        took = time.monotonic() - started
        # the usage's final flush, the append under way at the stop included, within max(5 s, grace) =
        # 5 s; leaving the cluster at most 2 s (not the pool's 30 s); the stored responses' writer ~1 s;
        # the pool up to 5 s more to stop a reconnect attempt in progress: 13 s, measured 8.1-9.0 s.
        # (An append under way once waited out its own 10 s timeout before the final flush began:
        # 17 s; 40 s before the stop was bounded at all.)
        assert took < 15, took
        assert "usage deltas could not be written to Postgres" in caplog.text


async def test_cluster_wide_limit_holds_while_postgres_is_down(database_url: str, proxy: TcpProxy) -> None:
    from tests.resilience.support import burst, in_process_cluster, not_near_minute_end

    limit = 30
    async with in_process_cluster(database_url, 2, node_url=proxy.url_for(database_url)) as c:
        await not_near_minute_end()
        secret = await c.create_key("down-limit", rpm=limit)
        await wait_until(lambda: all(n.cluster is not None and n.cluster.alive_count() == 2 for n in c.nodes), 10)
        proxy.cut()
        terminate_backends(database_url)
        await asyncio.sleep(1.0)  # membership heartbeats now fail; gossip still runs
        statuses = await burst([c.base(i % 2) for i in range(3 * limit)], secret)
        assert set(statuses) <= {200, 429}
        assert limit // 2 <= statuses.count(200) <= limit + len(c.nodes)
        assert all(n.cluster is not None and n.cluster.alive_count() == 2 for n in c.nodes)
        proxy.restore()


async def test_a_stalled_postgres_is_a_503_within_the_bound_on_every_path_that_waits_for_it(
        database_url: str, proxy: TcpProxy) -> None:
    """Postgres stalls instead of going away (the proxy forwards nothing: a paused server or a
    black-holed network, where no connection fails). The requests that must wait for it, an admin
    config write, a conversation and a continuation of a response this node does not hold, each get
    a 503 within db_request_timeout: not after psycopg's own cancellation of the stalled query (10 s
    more), and not never. Chat is served meanwhile; everything works once Postgres answers again."""
    wait, admin = 1.0, "adm-stall-boot-token"
    async with node_via(database_url, proxy.url_for(database_url), db_request_timeout=wait,
                        responses_read_wait=0.2, admin_token=admin) as h:
        secret = await h.create_key("app")
        await h.sync()
        assert h.node.projector is not None
        key = h.node.projector.config.find_key("app")
        assert key is not None
        elsewhere = StoredResponse("resp_elsewhere", time.time(), key.id, None, "gpt-4o-mini",
                                   [{"role": "user", "content": "my name is Ada"}],
                                   {"id": "resp_elsewhere", "object": "response", "output": []})
        await ResponseTable(h.store.connections).insert([encode(elsewhere)])  # type: ignore[arg-type]  # another node's
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0, timeout=30)
        admin_api = AdminClient(h.base, admin)
        proxy.stall()
        try:
            began = time.monotonic()
            status, body = await asyncio.wait_for(admin_api.post("/admin/v1/keys", {"name": "during"}), 30)
            waited = time.monotonic() - began
            assert status == 503 and body["error"]["code"] == "database_unavailable", body
            assert "may or may not have been written" in body["error"]["message"], body
            assert wait <= waited < wait * 4, waited
            for name, call in {
                "conversation": lambda: client.conversations.create(),
                "continuation": lambda: client.responses.create(model="gpt-4o-mini", input="what is my name?",
                                                                previous_response_id=elsewhere.id),
            }.items():
                began = time.monotonic()
                with pytest.raises(openai.APIStatusError) as stalled:
                    await call()
                waited = time.monotonic() - began
                assert stalled.value.status_code == 503 and "retry" in stalled.value.message, name
                assert wait <= waited < wait * 4, (name, waited)
            chat = await asyncio.wait_for(
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES), 10)  # type: ignore[arg-type]
            assert chat.choices[0].message.content
        finally:
            proxy.resume()
        answer = await client.responses.create(model="gpt-4o-mini", input="what is my name?",
                                               previous_response_id=elsewhere.id)
        assert answer.previous_response_id == elsewhere.id
        status, body = await admin_api.post("/admin/v1/keys", {"name": "after"})
        assert status == 201, body
        await client.close()


async def test_a_continuation_that_waited_out_a_cut_finds_the_response_written_after_it(
        database_url: str, proxy: TcpProxy) -> None:
    """A response stored on one node during a Postgres cut waits in its writer; a continuation of it
    on another node waits for Postgres (the pool has no connection) past SHIELDES_RESPONSES_READ_WAIT.
    Once Postgres is back the writer lands the response within a second, and the continuation finds
    it: the read-your-writes poll counts from Postgres's first answer, not from the request's start
    (it answered 404 `not_found` for a response that existed, found by the nemesis)."""
    from tests.resilience.support import in_process_cluster

    read_wait = 1.5
    async with in_process_cluster(database_url, 2, node_url=proxy.url_for(database_url),
                                  responses_read_wait=read_wait) as c:
        secret = await c.create_key("cut-continue")
        first, second = (openai.AsyncOpenAI(base_url=c.base(i) + "/v1", api_key=secret, max_retries=0, timeout=30)
                         for i in (0, 1))
        proxy.cut()
        terminate_backends(database_url)
        try:
            stored = await first.responses.create(model="gpt-4o-mini", input="my name is Ada", store=True)
            assert c.nodes[0].responses is not None and c.nodes[0].responses.pending == 1
            for _ in range(10):
                began = time.monotonic()
                continuation = asyncio.ensure_future(second.responses.create(
                    model="gpt-4o-mini", input="what is my name?", previous_response_id=stored.id))
                # the cut outlasts the poll while the continuation waits for a connection
                await wait_until(lambda c=continuation, b=began: c.done() or time.monotonic() - b > read_wait + 0.5, 10)
                if not continuation.done():
                    break
                # a pooled connection the cut broke: the documented 503, to retry
                refused = continuation.exception()
                assert isinstance(refused, openai.APIStatusError) and refused.status_code == 503, refused
            assert not continuation.done()
        finally:
            proxy.restore()
        answer = await asyncio.wait_for(continuation, 15)
        assert answer.previous_response_id == stored.id
        await first.close()
        await second.close()
