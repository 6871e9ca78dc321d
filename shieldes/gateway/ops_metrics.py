"""Gauges the alert rules and dashboard (deploy/prometheus, deploy/grafana) need beyond the request
series: deployment health, budget use, usage buffer headroom, gossip freshness, leader elections.

All are read at scrape time from state the node already keeps (nothing is updated per request);
label sets are bounded: deployments come from the configuration, budgets are capped at
MAX_BUDGET_SERIES (the fullest ones), peers are the cluster's nodes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from shieldes.cluster.view import Health
from shieldes.projections.keytable import keys_with
from shieldes.usage.admission import NUSD

if TYPE_CHECKING:
    from shieldes.cluster.runtime import ClusterRuntime
    from shieldes.gateway.service import Gateway

MAX_BUDGET_SERIES = 200


@dataclass(frozen=True)
class BudgetUse:
    kind: str  # "key" | "team"
    name: str
    spent_usd: float
    limit_usd: float

    @property
    def ratio(self) -> float:
        return self.spent_usd / self.limit_usd if self.limit_usd > 0 else 1.0


@dataclass
class OpsSources:
    deployment_health: Callable[[], Mapping[str, Health]]
    budgets: Callable[[], list[BudgetUse]]
    buffer_max: int
    peer_ages: Callable[[], Mapping[str, float]]  # alive peer -> seconds since its last gossip
    leader_elections: Callable[[], int]


def fullest(budgets: list[BudgetUse], cap: int = MAX_BUDGET_SERIES) -> list[BudgetUse]:
    """The `cap` budgets closest to (or over) their limit: the ones an alert is about."""
    return sorted(budgets, key=lambda b: (-b.ratio, b.kind, b.name))[:cap]


class OpsCollector(Collector):
    def __init__(self, sources: OpsSources) -> None:
        self.s = sources

    def describe(self) -> Iterator[Metric]:
        """The families without samples: registering must not compute them (the budget scan
        reads every key with a budget)."""
        return self._families(values=False)

    def collect(self) -> Iterator[Metric]:
        return self._families(values=True)

    def _families(self, *, values: bool) -> Iterator[Metric]:
        s = self.s
        errors = GaugeMetricFamily("shieldes_deployment_error_rate",
                                   "moving share of failed upstream calls per deployment (0-1)", labels=["deployment"])
        latency = GaugeMetricFamily("shieldes_deployment_latency_seconds",
                                    "moving latency of successful upstream calls per deployment", labels=["deployment"])
        opened = GaugeMetricFamily("shieldes_deployment_circuit_open",
                                   "1 while this node's circuit breaker rests the deployment", labels=["deployment"])
        for name, h in sorted(s.deployment_health().items() if values else ()):
            errors.add_metric([name], h.error_rate)
            latency.add_metric([name], h.latency_ms / 1000.0)
            opened.add_metric([name], 1.0 if h.open else 0.0)
        yield errors
        yield latency
        yield opened

        ratio = GaugeMetricFamily("shieldes_budget_used_ratio",
                                  "spend in the current period / the budget (reserved spend included)",
                                  labels=["kind", "name"])
        limit = GaugeMetricFamily("shieldes_budget_limit_usd", "budget per period in USD", labels=["kind", "name"])
        for b in fullest(s.budgets() if values else []):
            ratio.add_metric([b.kind, b.name], b.ratio)
            limit.add_metric([b.kind, b.name], b.limit_usd)
        yield ratio
        yield limit

        yield GaugeMetricFamily("shieldes_usage_buffer_max_deltas",
                                "unflushed usage deltas a node holds before refusing requests",
                                value=s.buffer_max if values else 0)
        ages = GaugeMetricFamily("shieldes_gossip_peer_age_seconds",
                                 "seconds since the last gossip from each peer alive in cluster_nodes",
                                 labels=["peer"])
        for peer, age in sorted(s.peer_ages().items() if values else ()):
            ages.add_metric([peer], round(age, 3))
        yield ages
        yield CounterMetricFamily("shieldes_cluster_leader_elections", "times this node became the leader",
                                  value=s.leader_elections() if values else 0)


def peer_ages(alive: list[str], last_seen: Mapping[str, float], since: float,
              now: float | None = None) -> dict[str, float]:
    """Age of each alive peer's last gossip (monotonic clock); a peer never heard from counts from
    `since` (this node's start), so a peer that heartbeats but never gossips shows up as ageing."""
    now = time.monotonic() if now is None else now
    return {p: now - (last_seen.get(p) or since) for p in alive}


def budget_uses(gateway: Gateway, today: int) -> list[BudgetUse]:
    """Every live key and team with a budget, with its spend as admission sees it."""
    config, usage, meter = gateway.state.config, gateway.state.usage, gateway.meter
    out = [BudgetUse("key", k.name, meter.spent_nusd(usage, "k:" + k.id, k.budget, today) / NUSD,
                     k.budget.amount_usd) for k in keys_with(config.keys, "budget") if k.budget and not k.revoked]
    out += [BudgetUse("team", t.name, meter.spent_nusd(usage, "t:" + t.id, t.budget, today) / NUSD,
                      t.budget.amount_usd) for t in config.teams.values() if t.budget is not None]
    return out


def register(registry: CollectorRegistry, gateway: Gateway, cluster: ClusterRuntime, buffer_max: int) -> None:
    """Wire the gauges to a running node's gateway and cluster parts."""
    started = time.monotonic()
    elections = [0]

    async def elected(_epoch: int) -> None:
        elections[0] += 1

    cluster.leader.on_elected(elected)

    def ages() -> dict[str, float]:
        gossip = cluster.gossip
        if gossip is None:
            return {}
        alive = [n.node_id for n in cluster.membership.alive_peers()]
        return peer_ages(alive, {n: p.last_seen for n, p in gossip.stats.peers.items()}, started)

    registry.register(OpsCollector(OpsSources(
        deployment_health=lambda: cluster.breaker.health() if cluster.breaker is not None else {},
        budgets=lambda: budget_uses(gateway, int(time.time() // 86400)),
        buffer_max=buffer_max,
        peer_ages=ages,
        leader_elections=lambda: elections[0],
    )))
