"""Routing strategies: in which order to try a route's targets, from the cluster's shared view of
deployment health. Pure: the health view, prices, region and random source are passed in.

- `weighted`: static weights (a weighted shuffle).
- `adaptive` (default): static weight scaled by health. A deployment whose error rate is above
  2.5% loses weight in proportion (from 12.5% on it keeps only the floor); one whose latency is
  above 1.5x the best healthy peer's (and at least 50 ms above it) is treated as briefly broken
  (the floor). The floor (5%) keeps probing it, and since the health figures are moving averages,
  weight comes back gradually as it recovers.
- `least-latency`: power of two choices on the moving latency (an unmeasured target is tried first).
- `cost`: the cheapest target (input + output price of its model), static weight breaking ties.

Regions: targets whose deployment has this node's region come first; the others follow and take
traffic only when every same-region target is resting (circuit open) or has failed this request.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shieldes.cluster.view import Health
from shieldes.projections.state import Deployment
from shieldes.routing.quota import Traffic, quota_of
from shieldes.routing.router import RouteTarget, weighted_order

STRATEGIES = ("weighted", "adaptive", "least-latency", "cost")
DEFAULT_STRATEGY = "adaptive"
ERROR_RATE_THRESHOLD = 0.025
ERROR_RATE_ZERO = 0.125  # error rate at which an adaptive weight reaches the floor
LATENCY_FACTOR = 1.5
# ...and at least this much slower: a few milliseconds of jitter between two fast deployments (a
# cold connection, a busy event loop) is not a slowdown worth resting one for
LATENCY_MIN_GAP_MS = 50.0
WEIGHT_FLOOR = 0.05
MIN_SAMPLES = 5  # below this many observed requests a deployment keeps its static weight


@dataclass(frozen=True, slots=True)
class DeploymentHealth:
    """One deployment as the cluster sees it: request-weighted averages over every node's view."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    requests: int = 0
    open: bool = False  # some node's breaker rests it
    ttft_ms: float = 0.0  # streams' time to first token (0: none measured)


def merge_health(views: Iterable[Mapping[str, Health]]) -> dict[str, DeploymentHealth]:
    """The cluster's view from each node's (its own and what peers gossiped)."""
    sums: dict[str, list[float]] = {}
    for view in views:
        for name, h in view.items():
            s = sums.setdefault(name, [0.0] * 7)
            weight = max(1, h.requests)
            s[0] += h.latency_ms * weight if h.latency_ms > 0 else 0.0
            s[1] += weight if h.latency_ms > 0 else 0.0
            s[2] += h.error_rate * weight
            s[3] += weight
            s[4] = max(s[4], 1.0 if h.open else 0.0)
            s[5] += h.ttft_ms * weight if h.ttft_ms > 0 else 0.0
            s[6] += weight if h.ttft_ms > 0 else 0.0
    return {
        name: DeploymentHealth(
            latency_ms=s[0] / s[1] if s[1] else 0.0, error_rate=s[2] / s[3] if s[3] else 0.0,
            requests=int(s[3]), open=bool(s[4]), ttft_ms=s[5] / s[6] if s[6] else 0.0,
        )
        for name, s in sums.items()
    }


def baseline_latency(names: Iterable[str], health: Mapping[str, DeploymentHealth]) -> float:
    """The best latency among measured, healthy deployments (0: none measured)."""
    measured = [h.latency_ms for n in names if (h := health.get(n)) is not None and h.requests >= MIN_SAMPLES
                and h.latency_ms > 0 and h.error_rate <= ERROR_RATE_THRESHOLD]
    return min(measured, default=0.0)


def adaptive_factor(h: DeploymentHealth | None, baseline_ms: float) -> float:
    """How much of its static weight a deployment keeps under `adaptive`."""
    if h is None or h.requests < MIN_SAMPLES:
        return 1.0
    factor = 1.0
    if h.error_rate > ERROR_RATE_THRESHOLD:
        span = ERROR_RATE_ZERO - ERROR_RATE_THRESHOLD
        factor *= max(WEIGHT_FLOOR, 1.0 - (h.error_rate - ERROR_RATE_THRESHOLD) / span)
    if baseline_ms > 0 and h.latency_ms > max(LATENCY_FACTOR * baseline_ms, baseline_ms + LATENCY_MIN_GAP_MS):
        factor = WEIGHT_FLOOR
    return max(WEIGHT_FLOOR, factor)


def effective_weights(
    targets: Sequence[RouteTarget], strategy: str, health: Mapping[str, DeploymentHealth]
) -> dict[str, float]:
    """The weight each target's deployment gets under `strategy` (what `cluster status` shows)."""
    if strategy != "adaptive":
        return {t.name: t.weight for t in targets}
    base = baseline_latency((t.name for t in targets), health)
    return {t.name: t.weight * adaptive_factor(health.get(t.name), base) for t in targets}


def _ordered(targets: Sequence[RouteTarget], strategy: str, health: Mapping[str, DeploymentHealth],
             price: Callable[[str], float], rng: random.Random) -> list[RouteTarget]:
    if strategy == "cost":
        return sorted(targets, key=lambda t: (price(t.model), -t.weight, t.name))
    if strategy == "least-latency":
        def latency(t: RouteTarget) -> float:
            h = health.get(t.name)
            return h.latency_ms if h is not None and h.requests else 0.0

        rest = list(targets)
        rng.shuffle(rest)
        if len(rest) >= 2:  # power of two choices: the better of two random picks goes first
            first = min(rest[:2], key=latency)
            rest.remove(first)
            return [first, *sorted(rest, key=latency)]
        return rest
    weights = effective_weights(targets, strategy, health)
    scaled = [RouteTarget(t.deployment, t.model, max(1e-9, weights[t.name])) for t in targets]
    by_name = {t.name: t for t in targets}
    return [by_name[t.name] for t in weighted_order(scaled, rng)]


def order_targets(
    targets: Sequence[RouteTarget], strategy: str, health: Mapping[str, DeploymentHealth],
    price: Callable[[str], float], region: str | None, rng: random.Random,
) -> list[RouteTarget]:
    """Every target once, best first: same-region targets (ordered by `strategy`), then the rest."""
    if region:
        local = [t for t in targets if t.deployment.options.get("region") == region]
        remote = [t for t in targets if t.deployment.options.get("region") != region]
        if local and remote:
            return (_ordered(local, strategy, health, price, rng)
                    + _ordered(remote, strategy, health, price, rng))
    return _ordered(targets, strategy, health, price, rng)


def deployment_report(
    deployments: Iterable[Deployment], health: Mapping[str, DeploymentHealth], traffic: Mapping[str, Traffic],
) -> dict[str, dict[str, Any]]:
    """Per deployment: the merged health, the `adaptive` weight it gets against the best healthy
    deployment serving one of its models, and what this node sent it. What each node publishes in
    `cluster_nodes.info`; `merge_reports` makes the cluster's table of them."""
    deps = list(deployments)
    out: dict[str, dict[str, Any]] = {}
    for d in deps:
        peers = [p.name for p in deps if set(p.models) & set(d.models)]
        h = health.get(d.name, DeploymentHealth())
        t = traffic.get(d.name, Traffic())
        factor = adaptive_factor(h, baseline_latency(peers, health))
        out[d.name] = {
            "latency_ms": round(h.latency_ms, 3), "ttft_ms": round(h.ttft_ms, 3),
            "error_rate": round(h.error_rate, 4), "requests": h.requests,
            "open": h.open, "weight": round(d.weight * factor, 4),
            "healthy": not h.open and (h.requests < MIN_SAMPLES or h.error_rate <= ERROR_RATE_THRESHOLD),
            "requests_60s": t.requests, "tokens_60s": t.tokens, "in_flight": t.in_flight,
            "region": d.options.get("region"), "rpm": quota_of(d.options, "rpm"), "tpm": quota_of(d.options, "tpm"),
        }
    return out


def merge_reports(reports: Iterable[Mapping[str, Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """The cluster's table from each alive node's report: request-weighted latency and error rate,
    the mean effective weight, each deployment's share of the requests every node sent in the
    last 60 seconds, its quotas' use (that traffic / the quota), healthy unless a node says
    otherwise."""
    rows: dict[str, dict[str, Any]] = {}
    for report in reports:
        for name, r in report.items():
            row = rows.setdefault(name, {"name": name, "_lat": 0.0, "_err": 0.0, "requests": 0, "_w": [],
                                         "healthy": True, "requests_60s": 0, "tokens_60s": 0, "in_flight": 0,
                                         "_ttft": 0.0, "_ttft_n": 0})
            n = int(r.get("requests", 0))
            if float(r.get("ttft_ms") or 0.0) > 0:
                row["_ttft"] += float(r["ttft_ms"]) * max(1, n)
                row["_ttft_n"] += max(1, n)
            row["_lat"] += float(r.get("latency_ms", 0.0)) * n
            row["_err"] += float(r.get("error_rate", 0.0)) * n
            row["requests"] += n
            row["_w"].append(float(r.get("weight", 0.0)))
            row["healthy"] = row["healthy"] and bool(r.get("healthy", True))
            for k in ("requests_60s", "tokens_60s", "in_flight"):
                row[k] += int(r.get(k) or 0)
            for k in ("region", "rpm", "tpm"):  # configuration: the same on every node once caught up
                row[k] = r.get(k)
    total = sum(r["requests_60s"] for r in rows.values())
    out = []
    for name in sorted(rows):
        r = rows[name]
        n = r["requests"]
        rpm, tpm = r.get("rpm"), r.get("tpm")
        # None (null, `-`): nothing measured (no request; a latency of 0: none answered yet; no stream)
        out.append({"name": name, "latency_ms": round(r["_lat"] / n, 3) if n and r["_lat"] else None,
                    "ttft_ms": round(r["_ttft"] / r["_ttft_n"], 3) if r["_ttft_n"] else None,
                    "error_rate": round(r["_err"] / n, 4) if n else None,
                    "weight": round(sum(r["_w"]) / len(r["_w"]), 4), "requests": n,
                    "requests_60s": r["requests_60s"], "tokens_60s": r["tokens_60s"], "in_flight": r["in_flight"],
                    "traffic_share": round(r["requests_60s"] / total, 4) if total else None, "healthy": r["healthy"],
                    "region": r.get("region"),
                    "quota": {"rpm": rpm, "tpm": tpm,
                              "rpm_used": round(r["requests_60s"] / rpm, 4) if rpm else None,
                              "tpm_used": round(r["tokens_60s"] / tpm, 4) if tpm else None}})
    return out
