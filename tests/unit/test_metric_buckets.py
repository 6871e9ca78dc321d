"""The latency histograms reach minutes: a reasoning model's answer, or its first token, may take
as long as SHIELDES_UPSTREAM_TIMEOUT allows, and a quantile beyond the top finite bucket reads as
that bucket (a 5-minute p99 would show as the top bound)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from shieldes.gateway.metrics import Metrics
from shieldes.settings import Settings

LATENCIES = ("shieldes_request_seconds", "shieldes_upstream_seconds", "shieldes_time_to_first_token_seconds")


def test_latency_histograms_reach_the_upstream_timeout() -> None:
    m = Metrics()
    m.observe_request("/v1/chat/completions", 200, 400.0)
    m.upstream_seconds("openai", 400.0)
    m.stream_ended("openai", "done", 200.0, 10, 5.0)
    timeout = Settings.model_fields["upstream_timeout"].default
    buckets = {f.name: [s for s in f.samples if s.name.endswith("_bucket")]
               for f in text_string_to_metric_families(m.render().decode()) if f.name in LATENCIES}
    assert set(buckets) == set(LATENCIES)
    for name, samples in buckets.items():
        finite = [s for s in samples if s.labels["le"] != "+Inf"]
        assert float(finite[-1].labels["le"]) >= timeout, name
        # the slow observation sits in a finite bucket of minutes, not only in +Inf
        assert any(s.value == 1 and float(s.labels["le"]) <= timeout for s in finite), name
        assert finite[-1].value == 1 and float(finite[0].labels["le"]) <= 0.01, name


def test_streams_are_apart_in_request_latency() -> None:
    """A stream's duration (to its last byte) is the answer's length, not a latency: its series
    carries stream="true", so the latency alert and panels read JSON answers alone."""
    m = Metrics()
    m.observe_request("/v1/chat/completions", 200, 0.2)
    m.observe_request("/v1/chat/completions", 200, 300.0, stream=True)
    m.observe_request("/v1/chat/completions", 200, 0.3)
    counts = {(s.labels["route"], s.labels["stream"]): s.value
              for f in text_string_to_metric_families(m.render().decode()) if f.name == "shieldes_request_seconds"
              for s in f.samples if s.name == "shieldes_request_seconds_count"}
    assert counts == {("/v1/chat/completions", "false"): 2, ("/v1/chat/completions", "true"): 1}
    requests = [s.value for f in text_string_to_metric_families(m.render().decode()) if f.name == "shieldes_requests"
                for s in f.samples if s.name == "shieldes_requests_total"]
    assert requests == [3]  # one count of requests per route and status, streamed or not
