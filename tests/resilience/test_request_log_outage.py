"""Postgres goes away (a TCP proxy in front of it is cut): requests keep being served, their
request-log rows wait in the node's bounded buffer and are written once the database is back;
when the buffer overflows the oldest rows waiting are dropped and the drop counter is exact."""

from __future__ import annotations

from collections.abc import AsyncIterator

import openai
import pytest

from tests.integration.gateway_harness import wait_until
from tests.resilience.support import MESSAGES, TcpProxy, node_via, terminate_backends

CAPACITY = 20


@pytest.fixture
async def proxy(database_url: str) -> AsyncIterator[TcpProxy]:
    p = await TcpProxy(database_url).start()
    yield p
    await p.stop()


async def test_outage_buffers_rows_then_writes_them_and_counts_drops_exactly(database_url: str,
                                                                           proxy: TcpProxy) -> None:
    async with node_via(database_url, proxy.url_for(database_url), request_log_buffer=CAPACITY,
                        request_log_interval=0.05) as h:
        writer = h.node.request_log
        assert writer is not None
        secret = await h.create_key("steady", rpm=100_000)
        await h.sync()
        client = openai.AsyncOpenAI(base_url=h.base + "/v1", api_key=secret, max_retries=0, timeout=30)
        before = []
        for _ in range(5):
            r = await client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
            before.append(r.headers["x-request-id"])
        await wait_until(lambda: writer.written == 5, timeout=10)

        proxy.cut()
        terminate_backends(database_url)
        during = []
        for _ in range(2 * CAPACITY + 5):  # every one is served from memory; at least 5 must drop
            r = await client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
            during.append(r.headers["x-request-id"])
        await wait_until(lambda: not writer.healthy, timeout=15)  # a write was tried and failed
        assert writer.written == 5
        assert len(writer.buffer) == CAPACITY  # full: the batch being retried counts

        proxy.restore()
        await wait_until(lambda: writer.healthy and not len(writer.buffer), timeout=30)
        # The buffer held exactly CAPACITY rows (the batch being retried among them): those are
        # written, every other row is counted, whichever batch was in flight when the database left.
        dropped = writer.dropped
        assert (writer.written, dropped) == (5 + CAPACITY, len(during) - CAPACITY)
        logged = [r[0] for r in h.sql("SELECT request_id FROM request_log ORDER BY started_at")]
        assert len(logged) == writer.written and logged[:5] == before
        kept = logged[5:]
        assert kept == [r for r in during if r in set(kept)]  # in order, nothing twice, nothing made up
        assert kept[-(CAPACITY // 2):] == during[-(CAPACITY // 2):]  # a batch is at most half the buffer
        metrics = (await (await client._client.get(h.base + "/metrics")).aread()).decode()  # type: ignore[attr-defined]
        assert f"shieldes_request_log_dropped_total {float(dropped)}" in metrics
        await client.close()
