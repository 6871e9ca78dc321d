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
