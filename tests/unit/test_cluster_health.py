"""Deployment health gossiped to peers: error rate, breaker state and observed latency."""

from __future__ import annotations

from shieldes.cluster.health import ClusterBreaker


def test_health_carries_a_moving_latency_and_error_rate() -> None:
    now = [0.0]
    breaker = ClusterBreaker(failures=2, cooldown=10.0, clock=lambda: now[0])
    breaker.success("a", 0.100)
    assert breaker.health()["a"].latency_ms == 100.0
    breaker.success("a", 0.200)
    h = breaker.health()["a"]
    assert 100.0 < h.latency_ms < 200.0  # moves toward the newest sample without jumping to it
    assert h.error_rate == 0.0 and h.requests == 2 and not h.open
    breaker.failure("a")
    breaker.failure("a")
    h = breaker.health()["a"]
    assert h.open and h.error_rate > 0.0 and h.requests == 4


def test_a_peer_resting_a_deployment_rests_it_here_too() -> None:
    breaker = ClusterBreaker(failures=5, cooldown=10.0, remote_open=lambda name: name == "b")
    assert breaker.is_open("b") and not breaker.is_open("a")
    assert not breaker.locally_open("b")


def test_a_stream_counts_when_it_ends_and_broken_ones_in_a_row_rest_the_deployment() -> None:
    """A stream's opening feeds the latency only; its end is its one outcome. Streams that open and
    are then broken are failures in a row: the breaker rests the deployment as it would one
    answering 500s (each opening would otherwise have closed it again)."""
    breaker = ClusterBreaker(failures=3, cooldown=10.0, clock=lambda: 0.0)
    for n in range(3):
        breaker.opened("cut", 0.050)
        seen = breaker.health()
        assert (seen["cut"].requests if "cut" in seen else 0) == n  # (the opening is no outcome)
        breaker.stream_ended("cut", broke=True)
    h = breaker.health()["cut"]
    assert h.open and h.requests == 3 and h.error_rate > 0.4 and h.latency_ms == 50.0
    for _ in range(3):  # completed streams, or ones whose client left: successes
        breaker.opened("fine", 0.020)
        breaker.stream_ended("fine", broke=False)
    h = breaker.health()["fine"]
    assert not h.open and h.requests == 3 and h.error_rate == 0.0
