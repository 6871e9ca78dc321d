"""Cluster-wide routing on three real node processes (`shieldes serve`) and two fake upstreams:
adaptive weights move traffic away from a slow or failing deployment on every node and back after
it recovers, a deployment's --rpm quota holds for the whole cluster without one upstream 429, and
nodes prefer deployments of their own region, spilling over as docs/routing.md states.

Each request carries the id of the node it entered through, so what an upstream recorded gives
every node's traffic share. Measured times are printed (pytest -s) for docs/routing.md."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest

from shieldes.projections.commands import AddProvider
from tests import pg
from tests.cluster.harness import UPSTREAM_KEY_ENV, Cluster, NodeProc, get_json, until
from tests.cluster.routing_support import ThreadedUpstreams, drive, shares

pytestmark = pytest.mark.cluster
MODEL = "gpt-4o-mini"
REGIONS = {"node1": "eu", "node2": "eu", "node3": "us"}
SLOW = 0.3  # seconds an injected slowdown adds (the healthy one answers in a few ms)


class RegionalCluster(Cluster):
    def env(self, node: NodeProc) -> dict[str, str]:
        return {**super().env(node), "SHIELDES_REGION": REGIONS[node.node_id]}


@pytest.fixture(scope="module")
def upstreams() -> Iterator[ThreadedUpstreams]:
    ups = ThreadedUpstreams(a={"completion_tokens": 3}, b={"completion_tokens": 3},
                            capped={"completion_tokens": 3, "rpm": 30})
    try:
        yield ups
    finally:
        ups.close()


@pytest.fixture(scope="module")
def cluster(pg_server: str, tmp_path_factory: pytest.TempPathFactory,
            upstreams: ThreadedUpstreams) -> Iterator[RegionalCluster]:
    url = pg.fresh_database(pg_server)
    c = RegionalCluster(url, tmp_path_factory.mktemp("routing"), env_overrides={
        "SHIELDES_BREAKER_FAILURES": "1000",  # health moves the traffic here, not the circuit breaker
        "SHIELDES_RETRY_BACKOFF": "0",
    })
    key = f"env:{UPSTREAM_KEY_ENV}"
    try:
        c.admin(AddProvider("a", "openai", upstreams["a"].url, key, (MODEL,)),
                AddProvider("b", "openai", upstreams["b"].url, key, (MODEL,)))
        for i in range(3):
            c.start(c.add_node(f"node{i + 1}"))
        for node in c.nodes:
            c.wait_ready(node)
        until(lambda: all((get_json(n.base + "/ready")[1] or {}).get("cluster", {}).get("alive") == 3
                          for n in c.nodes), 15, "3 nodes alive everywhere")
        yield c
    finally:
        c.stop_all()
        pg.drop_database(pg_server, url)


def nodes(c: Cluster) -> list[tuple[str, str]]:
    return [(n.node_id, n.base) for n in c.nodes]


def round_shares(c: Cluster, ups: ThreadedUpstreams, key: str, model: str, per_node: int,
                 watched: str, names: tuple[str, ...] = ("a", "b")) -> dict[str, float]:
    """One round of traffic through every node; each node's share that went to `watched`."""
    before = {u: ups.received(u, model) for u in names}
    statuses = drive(nodes(c), key, model, per_node)
    assert statuses == Counter({200: per_node * len(c.nodes)}), statuses
    after = {u: ups.received(u, model) for u in names}
    return shares(before, after, watched, [n.node_id for n in c.nodes])


def rounds_until(c: Cluster, ups: ThreadedUpstreams, key: str, watched: str, ok: str, timeout: float,
                 per_node: int = 40) -> tuple[float, dict[str, float]]:
    """Rounds of traffic until every node's share to `watched` satisfies `ok` ("<x" or ">x");
    returns the seconds it took and the last round's shares."""
    bound = float(ok[1:])
    started = time.monotonic()
    while True:
        got = round_shares(c, ups, key, MODEL, per_node, watched)
        if all((s < bound) if ok[0] == "<" else (s > bound) for s in got.values()):
            return time.monotonic() - started, got
        assert time.monotonic() - started < timeout, f"shares to {watched} still {got} after {timeout}s"


def test_traffic_leaves_a_slow_or_failing_deployment_on_every_node_and_returns(
        cluster: RegionalCluster, upstreams: ThreadedUpstreams) -> None:
    key, created = cluster.create_key("adaptive")
    cluster.wait_position(created)
    warm = round_shares(cluster, upstreams, key, MODEL, 40, "b")
    assert all(0.2 < s < 0.8 for s in warm.values()), warm  # equal weights: both serve on every node

    b = upstreams["b"]
    upstreams.call(lambda: b.inject("/v1/chat/completions", delay=SLOW, times=None))
    took, got = rounds_until(cluster, upstreams, key, "b", "<0.15", 15)
    print(f"\nslow: every node under 15% to b after {took:.1f}s: {got}")
    upstreams.call(b.clear_faults)
    took, got = rounds_until(cluster, upstreams, key, "b", ">0.3", 20)
    print(f"recovered: every node over 30% to b after {took:.1f}s: {got}")

    upstreams.call(lambda: b.inject("/v1/chat/completions", status=500, rate=0.2, times=None))
    took, got = rounds_until(cluster, upstreams, key, "b", "<0.15", 15)
    print(f"20% errors: every node under 15% to b after {took:.1f}s: {got}")
    upstreams.call(b.clear_faults)
    took, got = rounds_until(cluster, upstreams, key, "b", ">0.3", 20)
    print(f"recovered: every node over 30% to b after {took:.1f}s: {got}")


def test_a_deployment_quota_holds_cluster_wide_without_upstream_429s(
        cluster: RegionalCluster, upstreams: ThreadedUpstreams) -> None:
    """`--rpm 30` on a deployment whose upstream itself throttles past 30 rpm; 4x that (120
    requests) through three nodes within the minute: it receives at most 30 + (3 - 1), answers
    none with 429, the other deployment serves the rest and every client gets its answer."""
    model = "gpt-4o"
    key, _ = cluster.create_key("quota")
    cluster.cli("provider", "add", "open", "--type", "openai", "--base-url", upstreams["a"].url,
                "--api-key-env", UPSTREAM_KEY_ENV, "--models", model)
    position = cluster.cli("provider", "add", "capped", "--type", "openai", "--base-url", upstreams["capped"].url,
                           "--api-key-env", UPSTREAM_KEY_ENV, "--models", model, "--rpm", "30")
    cluster.wait_position(position)
    statuses = drive(nodes(cluster), key, model, 40)
    assert statuses == Counter({200: 120}), statuses
    capped, other = upstreams.received("capped", model), upstreams.received("a", model)
    print(f"\nquota: capped received {sum(capped.values())} ({dict(capped)}), open {sum(other.values())}")
    assert sum(capped.values()) <= 30 + 2 and upstreams.call(lambda: upstreams["capped"].throttled) == 0
    assert all(n <= 10 for n in capped.values()), capped  # each node its ceil(30 / 3)
    assert sum(capped.values()) >= 24 and sum(other.values()) + sum(capped.values()) == 120


def test_nodes_prefer_their_region_and_spill_over(cluster: RegionalCluster, upstreams: ThreadedUpstreams) -> None:
    """eu nodes (node1, node2) use the eu deployment, the us node the us one; when the eu
    deployment fails, eu traffic spills over to us (clients see no error) and comes back after."""
    model = "gpt-4.1"
    key, _ = cluster.create_key("regions")
    cluster.cli("provider", "add", "eu-dep", "--type", "openai", "--base-url", upstreams["a"].url,
                "--api-key-env", UPSTREAM_KEY_ENV, "--models", model, "--region", "eu")
    position = cluster.cli("provider", "add", "us-dep", "--type", "openai", "--base-url", upstreams["b"].url,
                           "--api-key-env", UPSTREAM_KEY_ENV, "--models", model, "--region", "us")
    cluster.wait_position(position)

    def shares_to_us() -> dict[str, float]:
        return round_shares(cluster, upstreams, key, model, 20, "b")

    assert shares_to_us() == {"node1": 0.0, "node2": 0.0, "node3": 1.0}
    a = upstreams["a"]
    upstreams.call(lambda: a.inject("/v1/chat/completions", status=503, times=None))
    spilled = shares_to_us()
    # every eu request tried eu-dep first (503), then spilled over to us-dep
    assert spilled["node3"] == 1.0 and spilled["node1"] > 0.49 and spilled["node2"] > 0.49, spilled
    upstreams.call(a.clear_faults)
    assert shares_to_us() == {"node1": 0.0, "node2": 0.0, "node3": 1.0}
