"""Adaptive routing from the shared health view, on three in-process nodes with real gossip: a
deployment that turns slow loses its traffic on every node within seconds and wins it back after
recovering; `shieldes routing set` switches a model to static weights live; `cluster status`
shows the deployments' latency, weight and traffic share. The same on real node processes, with
errors, quotas and regions: test_routing_nodes.py."""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter

import openai
import pytest

from shieldes.config_writer import execute
from shieldes.projections.commands import AddProvider, SetRouting
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, UPSTREAM_KEY_ENV
from tests.resilience.support import InProcessCluster, in_process_cluster

pytestmark = pytest.mark.cluster
MODEL = "gpt-4o-mini"


PATH = "/v1/chat/completions"


async def traffic(c: InProcessCluster, second: FakeUpstream, key: str, per_node: int) -> Counter[str]:
    """`per_node` requests on every node, 4 at a time each; how many each deployment served (as
    its upstream recorded them)."""
    before = (len(c.upstream.requests_to(PATH)), len(second.requests_to(PATH)))

    async def node(i: int) -> None:
        client = openai.AsyncOpenAI(base_url=c.base(i) + "/v1", api_key=key, max_retries=0, timeout=20)
        gate = asyncio.Semaphore(4)

        async def one() -> None:
            async with gate:
                await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])

        try:
            await asyncio.gather(*(one() for _ in range(per_node)))
        finally:
            await client.close()

    await asyncio.gather(*(node(i) for i in range(len(c.nodes))))
    return Counter({"openai": len(c.upstream.requests_to(PATH)) - before[0],
                    "second": len(second.requests_to(PATH)) - before[1]})


async def test_a_slow_deployment_loses_traffic_everywhere_and_wins_it_back(database_url: str) -> None:
    os.environ[UPSTREAM_KEY_ENV] = UPSTREAM_KEY
    async with FakeUpstream(completion_tokens=3, api_key=UPSTREAM_KEY, models=(MODEL,)) as second, \
            in_process_cluster(database_url, 3) as c:
        await execute(c.store, AddProvider("second", "openai", second.url, "env:" + UPSTREAM_KEY_ENV, (MODEL,)),
                      actor="test")
        key = await c.create_key("app")
        warm = await traffic(c, second, key, 30)
        assert warm["openai"] > 15 and warm["second"] > 15  # equal weights: both serve

        second.inject(PATH, delay=0.3, times=None)  # 'second' turns slow
        await traffic(c, second, key, 40)  # every node learns it (its own calls and its peers' gossip)
        shifted = await traffic(c, second, key, 40)
        assert shifted["second"] < 0.15 * sum(shifted.values()), shifted

        second.clear_faults()
        recovered: Counter[str] = Counter()
        for _ in range(20):  # probes at the floor weight bring its moving latency back down
            recovered = await traffic(c, second, key, 30)
            if recovered["second"] > 0.3 * sum(recovered.values()):
                break
        assert recovered["second"] > 0.3 * sum(recovered.values()), recovered

        await execute(c.store, SetRouting(MODEL, "weighted"), actor="test")
        second.inject(PATH, delay=0.3, times=None)
        for n in c.nodes:
            assert n.projector is not None
            await n.projector.wait_for(await c.store.head(), 10)
        static = await traffic(c, second, key, 20)
        assert static["second"] > 0.25 * sum(static.values())  # static weights ignore health

        from shieldes.cluster.status import cluster_status

        status = await asyncio.to_thread(cluster_status, database_url, 5.0)
        rows = {d["name"]: d for d in status["deployments"]}
        assert set(rows) >= {"openai", "second"} and status["nodes_total"] == 3
        assert rows["openai"]["traffic_share"] > 0 and rows["openai"]["latency_ms"] > 0
        json.dumps(status)
