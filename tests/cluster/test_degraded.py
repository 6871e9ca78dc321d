"""Three nodes that cannot gossip (no SHIELDES_CLUSTER_SECRET): config still flows through the log,
and a rate limit degrades to each node's share of it, never N times the limit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from shieldes.projections.shared_commands import AddProvider
from tests import pg
from tests.cluster.harness import UPSTREAM_KEY_ENV, Cluster, burst, get_json, until

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def isolated(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    url = pg.fresh_database(pg_server)
    c = Cluster(url, tmp_path_factory.mktemp("isolated"), env_overrides={"SHIELDES_CLUSTER_SECRET": ""})
    try:
        c.start_upstream()
        c.admin(AddProvider("openai", "openai", c.upstream_url, f"env:{UPSTREAM_KEY_ENV}", ("gpt-4o-mini",)))
        for i in range(3):
            c.start(c.add_node(f"iso{i + 1}"))
        for node in c.nodes:
            c.wait_ready(node)
        until(lambda: all((get_json(n.base + "/ready")[1] or {}).get("cluster", {}).get("alive") == 3
                          for n in c.nodes), 15, "3 nodes alive (membership only)")
        yield c
    finally:
        c.stop_all()
        pg.drop_database(pg_server, url)


def test_without_gossip_each_node_keeps_to_its_share(isolated: Cluster) -> None:
    assert all(not (get_json(n.base + "/ready")[1] or {})["cluster"]["gossip"] for n in isolated.nodes)
    limit = 30
    secret, created = isolated.create_key("isolated", rpm=limit)
    isolated.wait_position(created, timeout=3.0)  # config still arrives through LISTEN/NOTIFY
    statuses = asyncio.run(burst([isolated.nodes[i % 3].base for i in range(limit * 3)], secret))
    assert set(statuses) <= {200, 429}
    assert statuses.count(200) <= limit  # each node: its share of 30 with 3 alive, not 30 each
    assert statuses.count(200) >= limit - 3
