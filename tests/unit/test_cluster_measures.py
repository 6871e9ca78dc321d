"""Measured cluster figures, pure: gossip rates, convergence time, and the status summary built
from `cluster_nodes` rows (what `shieldes cluster status`, the admin API and /metrics show)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from shieldes.cluster.gauges import cluster_families, node_families
from shieldes.cluster.measures import Convergence, Rates
from shieldes.cluster.membership import NodeRecord, superseded_by
from shieldes.cluster.status import node_status, summarize


def test_rates_cover_the_last_window() -> None:
    now = [0.0]
    r = Rates(window=10.0, clock=lambda: now[0])
    r.sample((0, 0))
    assert r.per_second() is None
    for t in range(1, 31):
        now[0] = float(t)
        r.sample((t * 20, t * 1000 if t < 25 else 24_000))
    rates = r.per_second()
    assert rates is not None and rates[0] == 20.0
    assert rates[1] == (24_000 - 20_000) / 10  # only the last 10 s count


def test_convergence_is_send_to_last_acknowledgement() -> None:
    now = [0.0]
    c = Convergence(window=10.0, clock=lambda: now[0])
    c.sent(1)
    now[0] = 0.1
    c.sent(2)
    c.acked("p1", 2)
    c.settle(["p1", "p2"])
    assert c.seconds() is None  # p2 has not seen anything yet
    now[0] = 0.25
    c.acked("p2", 1)
    c.settle(["p1", "p2"])
    assert c.seconds() == 0.25  # message 1 known everywhere 0.25 s after it was sent
    now[0] = 0.3
    c.acked("p2", 2)
    c.settle(["p1", "p2"])
    assert c.seconds() == 0.25  # message 2 took 0.2 s; the longest in the window stands
    now[0] = 20.0
    c.settle(["p1", "p2"])
    assert c.seconds() is None  # older than the window
    c.sent(3)
    c.settle([])  # alone: nothing pending, nothing measured
    assert c.seconds() is None


def node(node_id: str, alive: bool = True, region: str | None = None, **deployments: dict[str, Any]) -> NodeRecord:
    info = {"listener": "listening", "region": region, "deployments": deployments,
            "gossip": {"messages_per_s": 40.0, "bytes_per_s": 8000.0, "convergence_ms": 120.0 if alive else 900.0}}
    now = datetime.now(UTC)
    return NodeRecord(node_id, "h:1", "h:2", "0", 1, now, now, 10, info, alive, 0.1)


def test_a_node_not_listening_on_http_yet_or_draining_is_not_counted_as_serving() -> None:
    """What a node heartbeats of its HTTP side (`state`) is what `cluster status` shows: a node that
    registered and gossips but whose socket does not listen yet is `starting`, not healthy and not
    failed; one draining after SIGTERM is `draining`; a row of a release before `state` serves."""
    rows = [node("up"), node("new"), node("going"), node("old"), node("first"), node("gone", alive=False)]
    rows[1].info["state"] = "starting"
    rows[2].info["state"] = "draining"
    rows[0].info["state"] = "serving"
    rows[4].info.clear()
    rows[4].info["starting"] = True  # the row as claim_boot_epoch writes it, before membership starts
    assert [node_status(n) for n in rows] == ["alive", "starting", "draining", "alive", "starting", "dead"]
    s = summarize(rows, head=10)
    assert [r["status"] for r in s["nodes"]] == ["alive", "starting", "draining", "alive", "starting", "dead"]
    assert (s["nodes_total"], s["nodes_alive"], s["nodes_healthy"], s["nodes_starting"], s["nodes_draining"],
            s["nodes_failed"]) == (6, 5, 2, 2, 1, 1)


def test_a_boot_is_superseded_only_by_a_newer_boot_holding_its_row() -> None:
    row = node("b")  # boot epoch 1
    assert superseded_by(1, row) is None  # its own row
    assert superseded_by(2, row) is None  # an older boot's row (taken over at registration)
    assert superseded_by(1, None) is None  # no row: it registers again
    assert superseded_by(0, row) is None  # not registered yet
    newer = dataclasses.replace(row, boot_epoch=7)
    assert superseded_by(1, newer) == 7


def test_summary_counts_nodes_regions_load_and_gossip() -> None:
    eu = {"requests": 10, "requests_60s": 30, "region": "eu", "weight": 1.0}
    us = {"requests": 10, "requests_60s": 10, "region": "us", "weight": 1.0}
    s = summarize([node("n1", region="eu", eu=eu, us=us), node("n2", region="us", eu={**eu, "requests_60s": 0}, us=us),
                   node("n3", alive=False)], head=10)
    assert (s["nodes_total"], s["nodes_alive"], s["nodes_healthy"], s["nodes_failed"]) == (3, 2, 2, 1)
    assert s["gossip_messages_per_s"] == 40.0 and s["gossip_bytes_per_s"] == 8000.0  # each message seen twice
    assert s["convergence_ms"] == 120.0  # alive nodes only
    assert s["regions"] == [
        {"region": "eu", "requests_60s": 30, "from_other_regions_60s": 0, "traffic_share": 0.6},
        {"region": "us", "requests_60s": 20, "from_other_regions_60s": 10, "traffic_share": 0.4}]
    assert s["load"] == [{"node_id": "n1", "requests_60s": 40, "share": 0.8},
                         {"node_id": "n2", "requests_60s": 10, "share": 0.2}]

    class Families(Collector):
        def collect(self) -> Any:
            yield from cluster_families(s)
            yield from node_families({"eu": {"weight": 0.05, "requests_60s": 3, "in_flight": 1}}, (5.0, 900.0), 0.2)

    registry = CollectorRegistry()
    registry.register(Families())
    text = generate_latest(registry).decode()
    for line in ('shieldes_cluster_nodes{state="failed"} 1.0',
                 'shieldes_cluster_region_spillover_60s{region="us"} 10.0',
                 'shieldes_cluster_deployment_traffic_share{deployment="eu"} 0.6',
                 'shieldes_cluster_node_load_share{node="n1"} 0.8', "shieldes_cluster_convergence_seconds 0.12",
                 'shieldes_deployment_effective_weight{deployment="eu"} 0.05',
                 "shieldes_gossip_convergence_seconds 0.2"):
        assert line in text, line


def test_figures_nothing_measured_are_none_and_still_0_in_the_metrics() -> None:
    idle = {"requests": 0, "requests_60s": 0, "region": "eu", "weight": 1.0}
    s = summarize([node("n1", region="eu", idle=idle)], head=10)
    row = s["deployments"][0]
    assert (row["latency_ms"], row["ttft_ms"], row["error_rate"], row["traffic_share"]) == (None, None, None, None)
    assert s["regions"][0]["traffic_share"] is None and s["load"][0]["share"] is None

    class Families(Collector):
        def collect(self) -> Any:
            yield from cluster_families(s)

    registry = CollectorRegistry()
    registry.register(Families())
    text = generate_latest(registry).decode()
    for line in ('shieldes_cluster_deployment_weight{deployment="idle"} 1.0',
                 'shieldes_cluster_deployment_latency_seconds{deployment="idle"} 0.0',
                 'shieldes_cluster_deployment_traffic_share{deployment="idle"} 0.0',
                 'shieldes_cluster_region_traffic_share{region="eu"} 0.0',
                 'shieldes_cluster_node_load_share{node="n1"} 0.0'):
        assert line in text, line
