"""Prometheus metrics on a per-node CollectorRegistry (never the global one), so several nodes in
one process keep separate numbers. Label values are bounded: routes are a fixed set, statuses
are classes, and provider/model labels come from the configuration, capped at MAX_SERIES values
per label (beyond that they read "other")."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MAX_SERIES = 200
ROUTES = frozenset({
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/v1/messages",
    "/health", "/ready", "/metrics",
})
CONTENT_TYPE = CONTENT_TYPE_LATEST


class _Bounded:
    """Remembers up to `cap` distinct values; later new values map to "other"."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self.seen:
            return value
        if len(self.seen) >= self.cap:
            return "other"
        self.seen.add(value)
        return value


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("shieldes_requests", "HTTP requests", ["route", "status"], registry=r)
        self.latency = Histogram(
            "shieldes_request_seconds", "HTTP request latency (to the last byte for streams)", ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.in_flight = Gauge("shieldes_requests_in_flight", "requests being handled", registry=r)
        self.upstream_errors = Counter(
            "shieldes_upstream_errors", "failed upstream attempts", ["provider", "kind"], registry=r)
        self.upstream_latency = Histogram(
            "shieldes_upstream_seconds", "upstream call latency (to headers for streams)", ["provider"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=r,
        )
        self.tokens = Counter("shieldes_tokens", "tokens accounted", ["provider", "model", "type"],
                              registry=r)
        self.cost = Counter("shieldes_cost_usd", "cost accounted in USD", ["provider", "model"], registry=r)
        self.usage_buffered = Gauge("shieldes_usage_unflushed_deltas", "usage deltas not yet in the log",
                                    registry=r)
        self.log_lag = Gauge("shieldes_log_lag_events", "events in the log not yet applied", registry=r)
        self._providers = _Bounded(MAX_SERIES)
        self._models = _Bounded(MAX_SERIES)
        # Resolved label children, so the hot path skips prometheus' label lookup.
        self._req: dict[tuple[str, int], tuple[Any, Any]] = {}
        self._use: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        self._up: dict[str, Any] = {}

    def route(self, path: str) -> str:
        return path if path in ROUTES else "other"

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        route = self.route(path)
        key = (route, status // 100)
        children = self._req.get(key)
        if children is None:
            children = self._req[key] = (self.requests.labels(route, f"{status // 100}xx"),
                                         self.latency.labels(route))
        children[0].inc()
        children[1].observe(seconds)

    def upstream_seconds(self, provider: str, seconds: float) -> None:
        child = self._up.get(provider)
        if child is None:
            child = self._up[provider] = self.upstream_latency.labels(self._providers(provider))
        child.observe(seconds)

    def upstream_error(self, provider: str, kind: str) -> None:
        self.upstream_errors.labels(self._providers(provider), kind).inc()

    def usage(self, provider: str, model: str, prompt: int, completion: int, nusd: int) -> None:
        p, m = self._providers(provider), self._models(model)
        children = self._use.get((p, m))
        if children is None:
            children = self._use[(p, m)] = (self.tokens.labels(p, m, "prompt"),
                                            self.tokens.labels(p, m, "completion"), self.cost.labels(p, m))
        if prompt:
            children[0].inc(prompt)
        if completion:
            children[1].inc(completion)
        if nusd:
            children[2].inc(nusd / 1e9)

    def render(self) -> bytes:
        return generate_latest(self.registry)
