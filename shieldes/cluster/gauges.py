"""Routing and cluster gauges on /metrics, read at scrape time.

Two kinds: this node's own figures (`shieldes_deployment_*`, `shieldes_gossip_*_per_second`,
`shieldes_gossip_convergence_seconds`), and the cluster's (`shieldes_cluster_*`): the table
`shieldes cluster status` shows, made by the same function (cluster/status.py `summarize`) from
the `cluster_nodes` rows this node reads every heartbeat, so every node reports the same cluster
figures within a heartbeat of each other. Label sets are bounded: deployments and regions come
from the configuration, nodes from `cluster_nodes`, each capped at MAX_SERIES values.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shieldes.cluster.status import summarize

if TYPE_CHECKING:
    from shieldes.cluster.runtime import ClusterRuntime

MAX_SERIES = 200


def _float(value: Any) -> float:
    """A figure nothing measured (None in `cluster status`) is 0 here, as it always was: a share of
    no traffic, a latency before any answer; dashboards and alerts keep their series."""
    return 0.0 if value is None else float(value)


def _gauge(name: str, doc: str, labels: list[str], rows: list[tuple[list[str], float | None]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in rows[:MAX_SERIES]:
        if value is not None:
            family.add_metric(values, value)
    return family


def node_families(report: dict[str, dict[str, Any]], rates: tuple[float, ...] | None,
                  convergence: float | None) -> Iterator[Metric]:
    """This node's figures: `report` is its deployment report (runtime.deployment_report)."""
    items = sorted(report.items())
    yield _gauge("shieldes_deployment_effective_weight",
                 "the weight this node's adaptive routing gives each deployment (static weight x health factor)",
                 ["deployment"], [([n], float(r["weight"])) for n, r in items])
    yield _gauge("shieldes_deployment_requests_60s", "requests this node sent each deployment in the last 60 s",
                 ["deployment"], [([n], float(r["requests_60s"])) for n, r in items])
    yield _gauge("shieldes_deployment_in_flight", "calls this node is waiting on, per deployment",
                 ["deployment"], [([n], float(r["in_flight"])) for n, r in items])
    yield _gauge("shieldes_gossip_messages_per_second", "gossip messages sent + received, over the last 10 s",
                 [], [([], rates[0] if rates else None)])
    yield _gauge("shieldes_gossip_bytes_per_second", "gossip bytes sent + received, over the last 10 s",
                 [], [([], rates[1] if rates else None)])
    yield _gauge("shieldes_gossip_convergence_seconds",
                 "longest time in the last 10 s from this node sending gossip to every peer acknowledging it",
                 [], [([], convergence)])


def cluster_families(summary: dict[str, Any]) -> Iterator[Metric]:
    """The cluster's figures, from `summarize` (what `shieldes cluster status` shows)."""
    yield _gauge("shieldes_cluster_nodes", "cluster nodes by state (healthy: serving, listening, caught up;"
                 " starting: not listening on HTTP yet; draining: stopped accepting on SIGTERM)",
                 ["state"], [([k], float(summary[f"nodes_{k}"]))
                             for k in ("total", "alive", "healthy", "failed", "starting", "draining")])
    deps = summary["deployments"]
    per_dep: list[tuple[str, str, str, Any]] = [
        ("latency_seconds", "request-weighted moving latency over every node", "latency_ms", 0.001),
        ("ttft_seconds", "streams: request-weighted moving time to first token over every node", "ttft_ms", 0.001),
        ("error_rate", "request-weighted moving error rate over every node (0-1)", "error_rate", 1.0),
        ("weight", "effective adaptive weight, the mean over nodes", "weight", 1.0),
        ("traffic_share", "share of the requests every node sent in the last 60 s", "traffic_share", 1.0),
        ("requests_60s", "requests every node sent in the last 60 s", "requests_60s", 1.0),
        ("in_flight", "calls in flight on every node", "in_flight", 1.0),
    ]
    for suffix, doc, field, scale in per_dep:
        yield _gauge(f"shieldes_cluster_deployment_{suffix}", doc, ["deployment"],
                     [([d["name"]], _float(d[field]) * scale) for d in deps])
    yield _gauge("shieldes_cluster_deployment_healthy",
                 "1 unless a node rests the deployment or its error rate is above 2.5%", ["deployment"],
                 [([d["name"]], 1.0 if d["healthy"] else 0.0) for d in deps])
    yield _gauge("shieldes_cluster_deployment_quota_used_ratio",
                 "what every node sent in the last 60 s / the deployment's quota (--rpm, --tpm)",
                 ["deployment", "quota"],
                 [([d["name"], q], d["quota"][f"{q}_used"]) for d in deps for q in ("rpm", "tpm")])
    yield _gauge("shieldes_cluster_gossip_messages_per_second", "gossip messages per second, the whole cluster",
                 [], [([], summary["gossip_messages_per_s"])])
    yield _gauge("shieldes_cluster_gossip_bytes_per_second", "gossip bytes per second, the whole cluster",
                 [], [([], summary["gossip_bytes_per_s"])])
    ms = summary["convergence_ms"]
    yield _gauge("shieldes_cluster_convergence_seconds",
                 "the longest gossip convergence any node measured in the last 10 s", [],
                 [([], ms / 1000.0 if ms is not None else None)])
    yield _gauge("shieldes_cluster_region_traffic_share", "share of the last 60 s of requests per deployment region",
                 ["region"], [([r["region"]], _float(r["traffic_share"])) for r in summary["regions"]])
    yield _gauge("shieldes_cluster_region_requests_60s", "requests to each deployment region in the last 60 s",
                 ["region"], [([r["region"]], float(r["requests_60s"])) for r in summary["regions"]])
    yield _gauge("shieldes_cluster_region_spillover_60s",
                 "requests in the last 60 s sent to a region by nodes of another region", ["region"],
                 [([r["region"]], float(r["from_other_regions_60s"])) for r in summary["regions"]])
    yield _gauge("shieldes_cluster_node_load_share", "each alive node's share of the requests sent in the last 60 s",
                 ["node"], [([n["node_id"]], _float(n["share"])) for n in summary["load"]])


class RoutingGauges(Collector):
    def __init__(self, runtime: ClusterRuntime) -> None:
        self.rt = runtime

    def collect(self) -> Iterator[Metric]:
        rt = self.rt
        yield from node_families(rt.deployment_report(), rt.gossip_rates.per_second(), rt.convergence.seconds())
        if rt.membership.nodes:
            head = max(rt.projector.position, rt.projector.known_head)
            yield from cluster_families(summarize(rt.membership.nodes, head))
