"""Prometheus metrics on a per-node CollectorRegistry (never the global one), so several nodes in
one process keep separate numbers. Label values are bounded: routes are a fixed set, statuses
are classes, and provider/model labels come from the configuration, capped at MAX_SERIES values
per label (beyond that they read "other").

The per-request series (requests, latency, upstream latency, tokens, cost) are plain Python
numbers updated on the hot path and turned into metric families only when /metrics is scraped:
prometheus-client's own Counter/Histogram take a lock and run checks on every update, which costs
more than the rest of the accounting.

With tracing on, the latency histograms carry exemplars: each bucket the trace id of its latest
observation, so a dashboard goes from a slow bucket to a trace. Exemplars exist only in the
OpenMetrics format, which /metrics answers when the scraper asks for it (`Accept:
application/openmetrics-text`, as Prometheus does with exemplar storage on); the classic text
format, the default, has none."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

from shieldes.providers.base import TokenUsage
from shieldes.requestlog.filters import UNMATCHED  # the route label of paths no route serves; never the raw path
from shieldes.usage.units import Units

MAX_SERIES = 200


class WatchedCertificate(Protocol):
    """A port's certificate as metrics read it (gateway.tls.ServedCertificate, gossip_tls.GossipCertificates)."""

    expires_at: float
    loaded: int
    refused: int
CONTENT_TYPE = CONTENT_TYPE_LATEST
# Latency buckets reach SHIELDES_UPSTREAM_TIMEOUT's default (600 s): a reasoning model's answer (or
# its first token) takes minutes, and a quantile past the top bucket reads as the top bucket.
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
TPS_BUCKETS = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 5000)


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


class _Histogram:
    """Bucket counts (non-cumulative, the last one is +Inf) and a sum, per label tuple."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.series: dict[tuple[str, ...], list[float]] = {}  # labels -> [*bucket counts, sum]
        # id(a series' cells) -> bucket -> (trace id, value, time) of its latest traced observation
        # (series live as long as this); made Exemplars only when scraped
        self.exemplars: dict[int, dict[int, tuple[str, float, float]]] = {}

    def get(self, labels: tuple[str, ...]) -> list[float]:
        found = self.series.get(labels)
        if found is None:
            found = self.series[labels] = [0] * (len(self.bounds) + 2)
        return found

    def observe(self, cells: list[float], seconds: float, trace_id: str | None = None) -> None:
        bucket = bisect_left(self.bounds, seconds)  # le is inclusive: first bound >= value
        cells[bucket] += 1
        cells[-1] += seconds
        if trace_id is not None:
            self.exemplars.setdefault(id(cells), {})[bucket] = (trace_id, seconds, time.time())

    def family(self, name: str, doc: str, labelnames: list[str]) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(name, doc, labels=labelnames)
        les = [repr(float(b)) for b in self.bounds] + ["+Inf"]  # as prometheus prints them
        for labels, cells in sorted(self.series.items()):
            total, buckets = 0.0, []
            traced = self.exemplars.get(id(cells), {})
            for i, (le, n) in enumerate(zip(les, cells[:-1], strict=True)):
                total += n
                seen = traced.get(i)
                buckets.append((le, total) if seen is None else
                               (le, total, Exemplar({"trace_id": seen[0]}, seen[1], seen[2])))
            fam.add_metric(list(labels), buckets, cells[-1])
        return fam


class _HotSeries(Collector):
    """Exposes the plain-number series of one Metrics at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        requests = CounterMetricFamily("shieldes_requests", "HTTP requests", labels=["route", "status"])
        for (route, status), n in sorted(m._requests.items()):
            requests.add_metric([route, status], n)
        yield requests
        yield m._latency.family("shieldes_request_seconds",
                                "HTTP request latency (to the last byte for streams: stream=\"true\", whose "
                                "duration is the stream's, not a latency)", ["route", "stream"])
        yield m._upstream.family("shieldes_upstream_seconds", "upstream call latency (to headers for streams)",
                                 ["provider"])
        yield m._ttft.family("shieldes_time_to_first_token_seconds",
                             "streams: time from the request to the first content chunk relayed", ["provider"])
        yield m._tps.family("shieldes_tokens_per_second",
                            "streams: completion tokens per second after the first token", ["provider"])
        tokens = CounterMetricFamily("shieldes_tokens", "tokens accounted", labels=["provider", "model", "type"])
        cost = CounterMetricFamily("shieldes_cost_usd", "cost accounted in USD", labels=["provider", "model"])
        for (p, mo), (prompt, completion, nusd, read, write) in sorted(m._usage.items()):
            tokens.add_metric([p, mo, "prompt"], prompt)
            tokens.add_metric([p, mo, "completion"], completion)
            if read or write:  # parts of "prompt", priced apart
                tokens.add_metric([p, mo, "cache_read"], read)
                tokens.add_metric([p, mo, "cache_write"], write)
            cost.add_metric([p, mo], nusd / 1e9)
        yield tokens
        yield cost
        if m._units:
            units = CounterMetricFamily("shieldes_media_units", "media units accounted besides tokens",
                                        labels=["provider", "model", "unit"])
            for (p, mo), counts in sorted(m._units.items()):
                for unit, n in zip(("images", "audio_seconds", "characters"), counts, strict=True):
                    if n:
                        units.add_metric([p, mo, unit], n)
            yield units
        if m._request_log is not None:
            buffered, dropped, written = m._request_log
            yield GaugeMetricFamily("shieldes_request_log_buffered", "request log rows waiting to be written",
                                    value=buffered())
            yield CounterMetricFamily("shieldes_request_log_dropped", "request log rows dropped because the "
                                      "buffer was full (the oldest go first)", value=dropped())
            yield CounterMetricFamily("shieldes_request_log_written", "request log rows written", value=written())
        if m._stored_responses is not None:
            pending, pending_bytes, stalls, dropped = m._stored_responses
            yield GaugeMetricFamily("shieldes_stored_responses_pending",
                                    "stored responses waiting to be written to Postgres (served from memory meanwhile)",
                                    value=pending())
            yield GaugeMetricFamily("shieldes_stored_responses_pending_bytes",
                                    "their bytes of JSON; past SHIELDES_RESPONSES_PENDING_BYTES, requests with store: "
                                    "true get a 503 to retry", value=pending_bytes())
            yield CounterMetricFamily("shieldes_stored_responses_write_stalls",
                                      "stored-response writes cancelled past their bound (a stalled database) and "
                                      "retried", value=stalls())
            yield CounterMetricFamily("shieldes_stored_responses_dropped", "stored responses dropped unwritten (more "
                                      "than 100,000 waiting for the database)", value=dropped())
        if m._stored_histories is not None:
            continued, weight = m._stored_histories
            found = CounterMetricFamily("shieldes_stored_responses_continued",
                                        "continuations by previous_response_id read from the stored responses, by how "
                                        "the conversation before them was found: remembered (nothing of it read), "
                                        "extended (a remembered one and the turns after it read) or read (every turn)",
                                        labels=["history"])
            for how, n in sorted(continued().items()):
                found.add_metric([how], n)
            yield found
            yield GaugeMetricFamily("shieldes_stored_responses_histories_bytes",
                                    "JSON bytes of the stored responses' conversations the node remembers parsed "
                                    "(counted per response; bound: SHIELDES_RESPONSES_HISTORY_BYTES)", value=weight())
        if m._tls:
            expiry = GaugeMetricFamily("shieldes_tls_certificate_expiry_timestamp_seconds",
                                       "when the certificate a port gives new connections expires (Unix time; "
                                       "port: api (HTTPS) or gossip (mutual TLS))", labels=["port"])
            reloads = CounterMetricFamily("shieldes_tls_certificate_reloads", "changed certificate files: loaded "
                                          "and used for new connections, or refused (see the log)",
                                          labels=["port", "outcome"])
            for port, watched in sorted(m._tls.items()):
                expiry.add_metric([port], watched.expires_at)
                reloads.add_metric([port, "loaded"], watched.loaded)
                reloads.add_metric([port, "refused"], watched.refused)
            yield expiry
            yield reloads
        if m._background is not None:
            yield GaugeMetricFamily("shieldes_background_responses",
                                    "background responses this node runs (SHIELDES_RESPONSES_BACKGROUND_MAX at most)",
                                    value=m._background())


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # the process's own figures (process_open_fds against process_max_fds, memory, CPU), read
        # from /proc at scrape time: the open files bound the connections a node can take
        ProcessCollector(registry=r)
        self.in_flight = Gauge("shieldes_requests_in_flight", "requests being handled", registry=r)
        self.upstream_errors = Counter(
            "shieldes_upstream_errors", "failed upstream attempts", ["provider", "kind"], registry=r)
        self.usage_buffered = Gauge("shieldes_usage_unflushed_deltas", "usage deltas not yet in the log",
                                    registry=r)
        self.log_lag = Gauge("shieldes_log_lag_events", "events in the log not yet applied", registry=r)
        self.loop_lag = Histogram(
            "shieldes_event_loop_lag_seconds", "how late the event loop ran a timer that was due (every request "
            "and stream of the node waits as long)", buckets=LOOP_LAG_BUCKETS, registry=r)
        self.stream_drops = Counter(
            "shieldes_stream_drops", "streams that ended early: cause=upstream (the upstream failed mid-stream, "
            "also counted in shieldes_upstream_errors_total kind=mid_stream) or client (the client left)",
            ["provider", "cause"], registry=r)
        self.mcp_requests = Counter(
            "shieldes_mcp_requests", "requests on /mcp/{name}: server (\"unknown\" for names not registered), "
            "JSON-RPC method (the HTTP method for GET and DELETE), outcome ok, refused, rate_limited, "
            "upstream_error or error", ["server", "method", "outcome"], registry=r)
        self._mcp_servers = _Bounded(MAX_SERIES)
        self._routes = _Bounded(MAX_SERIES)
        self._request_log: tuple[Callable[[], float], Callable[[], float], Callable[[], float]] | None = None
        self._stored_responses: tuple[Callable[[], float], Callable[[], float], Callable[[], float],
                                      Callable[[], float]] | None = None
        self._stored_histories: tuple[Callable[[], dict[str, int]], Callable[[], float]] | None = None
        self._background: Callable[[], float] | None = None
        self._tls: dict[str, WatchedCertificate] = {}
        self._ttft = _Histogram(TTFT_BUCKETS)
        self._tps = _Histogram(TPS_BUCKETS)
        self._providers = _Bounded(MAX_SERIES)
        self._models = _Bounded(MAX_SERIES)
        self._requests: dict[tuple[str, str], int] = {}
        self._latency = _Histogram(REQUEST_BUCKETS)
        self._upstream = _Histogram(UPSTREAM_BUCKETS)
        # (provider, model) -> prompt, completion, nUSD, cache read, cache write
        self._usage: dict[tuple[str, str], list[int]] = {}
        # (provider, model) -> images, audio seconds, characters: what media calls are billed in besides tokens
        self._units: dict[tuple[str, str], list[int]] = {}
        # Hot-path caches: (path, status class) and provider/model resolved to their series once.
        self._req: dict[tuple[str, int, bool], tuple[tuple[str, str], list[float]]] = {}
        self._up: dict[str, list[float]] = {}
        self._ttft_of: dict[str, list[float]] = {}  # provider -> its series of each, as _up
        self._tps_of: dict[str, list[float]] = {}
        self._use: dict[tuple[str, str], list[int]] = {}
        r.register(_HotSeries(self))

    def count_in_flight(self, current: Callable[[], float]) -> None:
        """Read the in-flight gauge from the app's own counter at scrape time (no update per request)."""
        self.in_flight.set_function(current)

    def watch_log(self, unflushed: Callable[[], float], lag: Callable[[], float]) -> None:
        """Usage not yet in the event log and the events not yet applied, read at scrape time: a
        value set by the log poll would stand still while the database is away, when the usage
        buffer filling up is what the alert on it is for."""
        self.usage_buffered.set_function(unflushed)
        self.log_lag.set_function(lag)

    def observe_request(self, route: str, status: int, seconds: float, stream: bool = False,
                        trace_id: str | None = None) -> None:
        """`route`: the matched route's pattern (a bounded set), or UNMATCHED. `stream`: the answer
        was an event stream (its latency series apart: a stream lasts as long as its answer).
        `trace_id`: the request's trace (tracing on), its bucket's exemplar."""
        found = self._req.get((route, status // 100, stream))
        if found is None:
            label = self._routes(route)
            labels = (label, f"{status // 100}xx")
            found = (labels, self._latency.get((label, "true" if stream else "false")))
            self._req[(route, status // 100, stream)] = found
        labels, cells = found
        self._requests[labels] = self._requests.get(labels, 0) + 1
        if status >= 200:  # (a WebSocket's 101 lasts as long as its connection: no request's latency)
            self._latency.observe(cells, seconds, trace_id)

    def request_totals(self) -> dict[str, int]:
        """API requests answered since boot (health, readiness, metrics and admin calls left out)."""
        total = client = server = 0
        for (route, status), n in self._requests.items():
            if route in ("other", UNMATCHED, "/health", "/ready", "/metrics") or route.startswith(("/admin", "/ui")):
                continue
            total += n
            client += n if status == "4xx" else 0
            server += n if status == "5xx" else 0
        return {"total": total, "client_errors": client, "server_errors": server}

    def upstream_seconds(self, provider: str, seconds: float, trace_id: str | None = None) -> None:
        cells = self._up.get(provider)
        if cells is None:
            cells = self._up[provider] = self._upstream.get((self._providers(provider),))
        self._upstream.observe(cells, seconds, trace_id)

    def upstream_error(self, provider: str, kind: str) -> None:
        self.upstream_errors.labels(self._providers(provider), kind).inc()

    def stream_ended(self, provider: str, outcome: str, ttft: float | None, completion_tokens: int,
                     generating: float, trace_id: str | None = None) -> None:
        """A relayed stream's end: time to first token, tokens per second, early ends."""
        if ttft is not None:
            cells = self._ttft_of.get(provider)
            if cells is None:
                cells = self._ttft.get((self._providers(provider),))
                if len(self._ttft_of) < 4 * MAX_SERIES:
                    self._ttft_of[provider] = cells
            # _Histogram.observe's work, in line (once per stream: a call costs about as much)
            bucket = bisect_left(TTFT_BUCKETS, ttft)
            cells[bucket] += 1
            cells[-1] += ttft
            if trace_id is not None:
                self._ttft.exemplars.setdefault(id(cells), {})[bucket] = (trace_id, ttft, time.time())
            if completion_tokens > 1 and generating > 0:
                cells = self._tps_of.get(provider)
                if cells is None:
                    cells = self._tps.get((self._providers(provider),))
                    if len(self._tps_of) < 4 * MAX_SERIES:
                        self._tps_of[provider] = cells
                rate = completion_tokens / generating
                cells[bisect_left(TPS_BUCKETS, rate)] += 1
                cells[-1] += rate
        if outcome == "upstream_error":
            self.upstream_error(provider, "mid_stream")
            self.stream_drops.labels(self._providers(provider), "upstream").inc()
        elif outcome == "disconnected":
            self.stream_drops.labels(self._providers(provider), "client").inc()

    def mcp_request(self, server: str, method: str, outcome: str) -> None:
        from shieldes.mcp.jsonrpc import KNOWN_METHODS  # (the MCP routes' own: not imported by other routes)

        label = method if method in KNOWN_METHODS or method in ("GET", "DELETE", "POST") else "other"
        self.mcp_requests.labels(self._mcp_servers(server), label, outcome).inc()

    def watch_request_log(self, buffered: Callable[[], float], dropped: Callable[[], float],
                          written: Callable[[], float]) -> None:
        """Request-log buffer depth and counters, read at scrape time."""
        self._request_log = (buffered, dropped, written)

    def watch_stored_responses(self, pending: Callable[[], float], pending_bytes: Callable[[], float],
                               stalls: Callable[[], float], dropped: Callable[[], float]) -> None:
        """The stored-response writer's backlog (responses and bytes) and counters, read at scrape time."""
        self._stored_responses = (pending, pending_bytes, stalls, dropped)

    def watch_stored_histories(self, continued: Callable[[], dict[str, int]], weight: Callable[[], float]) -> None:
        """Continuations by how their history was found, and the remembered histories' weight."""
        self._stored_histories = (continued, weight)

    def watch_tls(self, port: str, served: WatchedCertificate) -> None:
        """A port's certificate (`api`: HTTPS, `gossip`: its mutual TLS) and its reloads, read at
        scrape time."""
        self._tls[port] = served

    def watch_background_responses(self, running: Callable[[], float]) -> None:
        """The background responses the node runs, read at scrape time."""
        self._background = running

    def usage(self, provider: str, model: str, usage: TokenUsage, nusd: int) -> None:
        cells = self._use.get((provider, model))
        if cells is None:
            key = (self._providers(provider), self._models(model))
            cells = self._usage.get(key)
            if cells is None:
                cells = self._usage[key] = [0, 0, 0, 0, 0]
            if len(self._use) < 4 * MAX_SERIES:
                self._use[(provider, model)] = cells
        cells[0] += usage.prompt_tokens
        cells[1] += usage.completion_tokens
        cells[2] += nusd
        if usage.cache_read_tokens or usage.cache_write_tokens:
            cells[3] += usage.cache_read_tokens
            cells[4] += usage.cache_write_tokens

    def media_units(self, provider: str, model: str, units: Units) -> None:
        """A media call's images, seconds of audio and characters (not per request on the chat path)."""
        key = (self._providers(provider), self._models(model))
        cells = self._units.get(key)
        if cells is None:
            cells = self._units[key] = [0, 0, 0]
        cells[0] += units.images
        cells[1] += units.audio_seconds
        cells[2] += units.characters

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def render_for(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition the scraper asked for, with its content type: OpenMetrics (exemplars
        included) when its Accept header names it, else the classic text format."""
        if accept is not None and "application/openmetrics-text" in accept:
            return openmetrics.generate_latest(self.registry), openmetrics.CONTENT_TYPE_LATEST  # type: ignore[no-untyped-call]
        return generate_latest(self.registry), CONTENT_TYPE
