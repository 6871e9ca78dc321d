"""Routing strategies, pure: adaptive weights from the merged health view, least latency, cost,
region preference and spill-over, and the cluster status table."""

from __future__ import annotations

import random
from collections import Counter

from shieldes.cluster.view import Health
from shieldes.projections.state import Deployment
from shieldes.routing.router import RouteTarget
from shieldes.routing.strategies import (
    DeploymentHealth,
    adaptive_factor,
    deployment_report,
    effective_weights,
    merge_health,
    merge_reports,
    order_targets,
)


def target(name: str, weight: float = 1.0, region: str | None = None, model: str = "m") -> RouteTarget:
    options = {"region": region} if region else {}
    return RouteTarget(Deployment(name, "openai", "http://x", None, (model,), weight, options=options), model, weight)


def first_picks(targets: list[RouteTarget], strategy: str, health: dict[str, DeploymentHealth],
                region: str | None = None, n: int = 2000) -> Counter[str]:
    rng = random.Random(7)
    return Counter(order_targets(targets, strategy, health, lambda m: 0.0, region, rng)[0].name for _ in range(n))


def test_merge_weights_each_node_by_its_requests() -> None:
    merged = merge_health([{"a": Health(100.0, 0.0, 90, False, ttft_ms=40.0)}, {"a": Health(200.0, 0.5, 10, True)}])
    assert round(merged["a"].latency_ms) == 110 and round(merged["a"].error_rate, 2) == 0.05
    assert merged["a"].ttft_ms == 40.0  # only views that measured streams count
    assert merged["a"].requests == 100 and merged["a"].open


def test_adaptive_cuts_errors_and_slowness_but_keeps_probing() -> None:
    assert adaptive_factor(DeploymentHealth(100, 0.0, 50), 100) == 1.0
    assert adaptive_factor(DeploymentHealth(100, 0.2, 3), 100) == 1.0  # too few samples to judge
    assert 0.05 < adaptive_factor(DeploymentHealth(100, 0.06, 50), 100) < 0.7
    assert adaptive_factor(DeploymentHealth(100, 0.5, 50), 100) == 0.05
    assert adaptive_factor(DeploymentHealth(200, 0.0, 50), 100) == 0.05  # > 1.5x the best: rested
    assert adaptive_factor(DeploymentHealth(9, 0.0, 50), 2) == 1.0  # 4.5x, but only 7 ms: jitter
    assert adaptive_factor(DeploymentHealth(60, 0.0, 50), 2) == 0.05  # 30x and 58 ms slower
    health = {"good": DeploymentHealth(100, 0.0, 50), "bad": DeploymentHealth(100, 0.2, 50)}
    picks = first_picks([target("good"), target("bad")], "adaptive", health)
    assert picks["good"] > 0.9 * 2000 and picks["bad"] > 0  # shifted away, still probed
    even = first_picks([target("good"), target("bad")], "weighted", health)
    assert 800 < even["good"] < 1200  # static weights ignore health
    assert effective_weights([target("good"), target("bad")], "weighted", health) == {"good": 1.0, "bad": 1.0}


def test_least_latency_prefers_the_faster_of_two_choices() -> None:
    health = {"fast": DeploymentHealth(50, 0, 50), "slow": DeploymentHealth(500, 0, 50)}
    assert first_picks([target("fast"), target("slow")], "least-latency", health)["fast"] == 2000


def test_cost_picks_the_cheapest_model() -> None:
    cheap, dear = target("a", model="mini"), target("b", model="big")
    order = order_targets([dear, cheap], "cost", {}, {"mini": 1.0, "big": 9.0}.__getitem__, None, random.Random(1))
    assert [t.name for t in order] == ["a", "b"]


def test_same_region_first_then_spill_over() -> None:
    targets = [target("eu1", region="eu"), target("us1", region="us"), target("us2", region="us")]
    for _ in range(50):
        order = order_targets(targets, "weighted", {}, lambda m: 0.0, "eu", random.Random())
        assert order[0].name == "eu1" and {t.name for t in order[1:]} == {"us1", "us2"}
    assert set(first_picks(targets, "weighted", {}, region=None)) == {"eu1", "us1", "us2"}


def dep(name: str, region: str | None = None, **options: str) -> Deployment:
    return Deployment(name, "openai", "http://x", None, ("m",), 1.0,
                      options={**options, **({"region": region} if region else {})})


def test_status_table_merges_node_reports() -> None:
    from shieldes.routing.quota import Traffic

    health = {"a": DeploymentHealth(100, 0.0, 30), "b": DeploymentHealth(100, 0.3, 10)}
    report = deployment_report([dep("a"), dep("b", rpm="30")], health,
                               {"a": Traffic(9, 900, 2), "b": Traffic(3, 300, 0)})
    assert report["a"]["healthy"] and not report["b"]["healthy"] and report["b"]["weight"] == 0.05
    assert report["b"]["rpm"] == 30 and report["a"]["in_flight"] == 2
    rows = merge_reports([report, report])
    assert [(r["name"], r["traffic_share"]) for r in rows] == [("a", 0.75), ("b", 0.25)]  # of the last 60 s
    assert [r["requests_60s"] for r in rows] == [18, 6] and rows[0]["in_flight"] == 4
    assert rows[1]["quota"] == {"rpm": 30, "tpm": None, "rpm_used": 0.2, "tpm_used": None}
    assert rows[0]["quota"]["rpm_used"] is None


def test_deployment_quota_share_and_sliding_window() -> None:
    from shieldes.routing.quota import DeploymentQuotas, share

    now = [0.0]
    q = DeploymentQuotas(clock=lambda: now[0])
    opts = {"rpm": "10", "tpm": "1000"}
    assert share(10, 3) == 4 and share(10, 0) == 10 and share(1, 5) == 1
    for _ in range(4):
        assert q.allows("d", opts, nodes=3)
        q.sent("d")
    assert not q.allows("d", opts, nodes=3)  # this node's share of 10 across 3 nodes is used
    assert q.allows("d", opts, nodes=1)  # alone it may use the whole quota
    assert q.allows("other", opts, nodes=3) and q.allows("d", {}, nodes=3)
    now[0] = 61.0  # the window slides: the old sends no longer count
    assert q.allows("d", opts, nodes=3)
    q.answered("d", 400)
    assert not q.allows("d", opts, nodes=3)  # tokens: 400 >= ceil(1000 / 3)
    assert q.usage("d") == (0, 400)
    q.sent("d")  # five calls sent, none returned yet
    assert q.traffic()["d"].in_flight == 5 and q.traffic()["d"].requests == 1  # one in the last minute
    q.returned("d")
    assert q.traffic()["d"].in_flight == 4
