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


def test_a_streams_end_observes_its_first_token_and_its_rate() -> None:
    """Time to first token in its bucket (a traced stream's exemplar on it), tokens per second
    after it only for a stream of more than one token."""
    m = Metrics()
    m.stream_ended("openai", "done", 0.3, 21, 0.5, trace_id="ab" * 16)
    m.stream_ended("openai", "done", 0.02, 1, 0.0)
    m.stream_ended("anthropic", "done", 0.02, 1, 0.0)
    families = {f.name: f for f in text_string_to_metric_families(m.render().decode())}
    ttft = {(s.labels["provider"], s.labels.get("le")): s.value
            for s in families["shieldes_time_to_first_token_seconds"].samples if s.name.endswith("_bucket")}
    assert ttft[("openai", "0.025")] == 1 and ttft[("openai", "0.5")] == 2 and ttft[("anthropic", "0.025")] == 1
    counts = {s.labels["provider"]: s.value for s in families["shieldes_tokens_per_second"].samples
              if s.name.endswith("_count")}
    assert counts == {"openai": 1}  # 42 tokens a second; no series for the one-token streams
    rate = {s.labels["le"]: s.value for s in families["shieldes_tokens_per_second"].samples
            if s.name.endswith("_bucket")}
    assert rate["20.0"] == 0 and rate["50.0"] == 1
    exposition = m.render_for("application/openmetrics-text")[0].decode()
    traced = [line for line in exposition.splitlines() if "trace_id" in line]
    assert len(traced) == 1 and "shieldes_time_to_first_token_seconds_bucket" in traced[0]
    assert 'le="0.5"' in traced[0] and "ab" * 16 in traced[0]
