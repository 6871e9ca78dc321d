"""Cluster-wide routing on three real node processes (`shieldes serve`) and two fake upstreams:
adaptive weights move traffic away from a slow or failing deployment on every node and back after
it recovers, a deployment's --rpm quota holds for the whole cluster without one upstream 429,
nodes prefer deployments of their own region, spilling over as docs/routing.md states, and every
strategy takes effect live. The routing figures are read back from `shieldes cluster status`,
GET /admin/v1/cluster and every node's /metrics.

Each request carries the id of the node it entered through, so what an upstream recorded gives
every node's traffic share. Measured times are printed (pytest -s) for docs/routing.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shieldes.projections.shared_commands import AddProvider, SetModelAlias, SetPricing, SetRouting
from shieldes.projections.state import AliasTarget
from tests import pg
from tests.cluster.harness import ROOT, UPSTREAM_KEY_ENV, Cluster, NodeProc, get_json, until
from tests.cluster.routing_support import ThreadedUpstreams, drive, shares

pytestmark = pytest.mark.cluster
MODEL = "gpt-4o-mini"
SWITCHED = "gpt-4o-switched"  # served by deployments of its own (health is per deployment): any test order works
REGIONS = {"node1": "eu", "node2": "eu", "node3": "us"}
SLOW = 0.3  # seconds an injected slowdown adds (the healthy one answers in a few ms)
ADMIN = "routing-test-admin-token-0123456789"


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
        "SHIELDES_ADMIN_TOKEN": ADMIN,
    })
    key = f"env:{UPSTREAM_KEY_ENV}"
    try:
        a, b = upstreams["a"].url, upstreams["b"].url
        c.admin(AddProvider("a", "openai", a, key, (MODEL,)), AddProvider("b", "openai", b, key, (MODEL,)),
                AddProvider("sw-a", "openai", a, key, (SWITCHED,)), AddProvider("sw-b", "openai", b, key, (SWITCHED,)),
                AddProvider("open", "openai", a, key, ("gpt-4o",)),  # next to the quota's, added by the CLI
                AddProvider("eu-dep", "openai", a, key, ("gpt-4.1",), options={"region": "eu"}),
                AddProvider("us-dep", "openai", b, key, ("gpt-4.1",), options={"region": "us"}),
                SetPricing("small-x", 0.15, 0.15), SetPricing("big-x", 2.5, 2.5),
                AddProvider("lite", "openai", a, key, ("small-x",)), AddProvider("pro", "openai", b, key, ("big-x",)),
                SetModelAlias("assistant", (AliasTarget("lite", "small-x"), AliasTarget("pro", "big-x"))))
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


def metric(node: NodeProc, name: str, **labels: str) -> float | None:
    """One sample of a node's /metrics (None: not exposed)."""
    with urllib.request.urlopen(node.base + "/metrics", timeout=5) as resp:
        text = resp.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def status_cli(c: Cluster, as_json: bool = True) -> Any:
    """`shieldes --json cluster status` (or the table), as an operator runs it."""
    env = {**os.environ, "SHIELDES_DATABASE_URL": c.database_url, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "shieldes", *(["--json"] if as_json else []), "cluster", "status"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if as_json else done.stdout


def status_api(node: NodeProc) -> dict[str, Any]:
    req = urllib.request.Request(node.base + "/admin/v1/cluster", headers={"Authorization": f"Bearer {ADMIN}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        out: dict[str, Any] = json.loads(resp.read())
    return out


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
                 per_node: int = 40, model: str = MODEL) -> tuple[float, dict[str, float]]:
    """Rounds of traffic until every node's share to `watched` satisfies `ok` ("<x" or ">x");
    returns the seconds it took and the last round's shares."""
    bound = float(ok[1:])
    started = time.monotonic()
    while True:
        got = round_shares(c, ups, key, model, per_node, watched)
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
    # every node gives the two the same effective weights: b at the floor (5% of its weight)
    until(lambda: all(metric(n, "shieldes_deployment_effective_weight", deployment="b") == 0.05
                      and metric(n, "shieldes_deployment_effective_weight", deployment="a") == 1.0
                      for n in cluster.nodes), 5, "b at the floor on every node")
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

    def quota_seen(status: dict[str, Any]) -> dict[str, Any] | None:
        rows = {d["name"]: d for d in status["deployments"]}
        row = rows.get("capped")
        full = row is not None and row["quota"]["rpm_used"] == sum(capped.values()) / 30
        return status if full and status["convergence_ms"] is not None else None

    # the same figures from the admin API, the CLI and every node's /metrics (each node's heartbeat)
    until(lambda: quota_seen(status_api(cluster.nodes[1])), 10, "quota use in GET /admin/v1/cluster")
    status = quota_seen(status_cli(cluster))
    assert status is not None
    rows = {d["name"]: d for d in status["deployments"]}
    assert (status["nodes_total"], status["nodes_healthy"], status["nodes_failed"]) == (3, 3, 0)
    assert rows["capped"]["quota"]["rpm"] == 30 and rows["capped"]["requests_60s"] == sum(capped.values())
    assert 0 < rows["capped"]["traffic_share"] < rows["open"]["traffic_share"]
    assert status["gossip_messages_per_s"] > 0 and status["gossip_bytes_per_s"] > 0
    assert 0 < status["convergence_ms"] < 5000  # gossip every 50 ms here; a sanity bound on 2 busy cores
    assert sorted(n["share"] > 0 for n in status["load"]) == [True, True, True]
    print(f"cluster: convergence {status['convergence_ms']} ms, gossip {status['gossip_messages_per_s']} msg/s, "
          f"{status['gossip_bytes_per_s']} B/s")
    table = status_cli(cluster, as_json=False)
    print(table)
    assert "convergence" in table and "rpm 100%" in table.split("capped", 1)[1].splitlines()[0]
    for n in cluster.nodes:
        until(lambda n=n: metric(n, "shieldes_cluster_deployment_quota_used_ratio", deployment="capped",
                                 quota="rpm") == sum(capped.values()) / 30, 10, f"quota gauge on {n.node_id}")
        assert metric(n, "shieldes_cluster_nodes", state="healthy") == 3.0
        assert (metric(n, "shieldes_cluster_convergence_seconds") or 0) > 0


def test_nodes_prefer_their_region_and_spill_over(cluster: RegionalCluster, upstreams: ThreadedUpstreams) -> None:
    """eu nodes (node1, node2) use the eu deployment, the us node the us one; when the eu
    deployment fails, eu traffic spills over to us (clients see no error) and comes back after;
    the same when it is at its quota."""
    model = "gpt-4.1"
    key, _ = cluster.create_key("regions")
    # as an operator sets it (the fixture added both with their regions)
    cluster.wait_position(cluster.cli("provider", "update", "eu-dep", "--region", "eu"))

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
    # a stream's time to first token joins the deployment's figures
    client = openai.OpenAI(base_url=cluster.nodes[0].base + "/v1", api_key=key, max_retries=0, timeout=10)
    assert "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "stream"}], stream=True) if c.choices)
    until(lambda: ({d["name"]: d for d in status_api(cluster.nodes[0])["deployments"]}["eu-dep"]["ttft_ms"] or 0) > 0,
          10, "time to first token in cluster status")
    # per-region traffic of the last 60 s: eu 3 x 40 attempts + the stream, us 3 x 20 + 40 spilled from eu
    # (the figures come with each node's next heartbeat)
    until(lambda: metric(cluster.nodes[0], "shieldes_cluster_region_spillover_60s", region="us") == 40.0, 10,
          "spill-over in the region gauges")

    def regions() -> list[tuple[str, int, int]]:
        return [(r["region"], r["requests_60s"], r["from_other_regions_60s"])
                for r in status_api(cluster.nodes[2])["regions"] if r["region"] != "none"]

    until(lambda: regions() == [("eu", 121, 0), ("us", 100, 40)], 10, "region figures in cluster status")

    # a home deployment at its quota spills over too: eu-dep's 3 rpm (1 per node) is used up already
    cluster.wait_position(cluster.cli("provider", "update", "eu-dep", "--rpm", "3"))
    assert shares_to_us() == {"node1": 1.0, "node2": 1.0, "node3": 1.0}


def test_each_strategy_switched_live_with_routing_set(cluster: RegionalCluster, upstreams: ThreadedUpstreams) -> None:
    """With `b` 100 ms slower: `least-latency` sends (nearly) everything to `a`, `weighted` splits
    evenly regardless; `cost` sends an alias's traffic to its cheapest model, and on to the
    dearer one while the cheap one fails."""
    key, created = cluster.create_key("strategies")
    cluster.wait_position(created)
    b = upstreams["b"]
    upstreams.call(lambda: b.inject("/v1/chat/completions", delay=0.1, times=None))
    try:
        cluster.wait_position(cluster.cli("routing", "set", SWITCHED, "--strategy", "least-latency"))
        took, got = rounds_until(cluster, upstreams, key, "b", "<0.1", 10, per_node=30, model=SWITCHED)
        print(f"\nleast-latency: every node under 10% to the slower b after {took:.1f}s: {got}")
        cluster.wait_position(cluster.admin(SetRouting(SWITCHED, "weighted")))
        got = round_shares(cluster, upstreams, key, SWITCHED, 40, "b")
        print(f"weighted: shares to the slower b {got}")
        assert all(0.2 < s < 0.8 for s in got.values()), got  # static weights ignore health
    finally:
        upstreams.call(b.clear_faults)

    # alias `assistant`: lite/small-x ($0.15 per 1M tokens) and pro/big-x ($2.50), set up by the fixture
    cluster.wait_position(cluster.admin(SetRouting("assistant", "cost")))

    def cost_round() -> tuple[Counter[str], Counter[str]]:
        before = upstreams.received("a", "small-x"), upstreams.received("b", "big-x")
        statuses = drive(nodes(cluster), key, "assistant", 20)
        assert statuses == Counter({200: 60}), statuses
        return (upstreams.received("a", "small-x") - before[0], upstreams.received("b", "big-x") - before[1])

    cheap, dear = cost_round()
    assert cheap == Counter({"node1": 20, "node2": 20, "node3": 20}) and not dear, (cheap, dear)
    a = upstreams["a"]
    upstreams.call(lambda: a.inject("/v1/chat/completions", status=503, times=None))
    try:
        cheap, dear = cost_round()  # every request tries the cheap model first, the dear one answers
        assert dear == Counter({"node1": 20, "node2": 20, "node3": 20}), dear
    finally:
        upstreams.call(a.clear_faults)
