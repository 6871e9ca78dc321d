"""The bound on failed admin sign-ins (pure: times are given) and the client address behind a
trusted proxy."""

from __future__ import annotations

import pytest

from shieldes.client_address import client_address, parse_networks
from shieldes.gateway.admin.sign_in_limit import MAX_ADDRESSES, SignInLimit


def test_an_address_gets_its_failures_then_waits_until_one_refills() -> None:
    limit = SignInLimit(per_address=10, total=100)
    emptied = [limit.fail("203.0.113.5", 0.0) for _ in range(10)]
    assert emptied == [False] * 9 + [True]  # one log line, when the bound is reached
    assert limit.wait("203.0.113.5", 0.0) == pytest.approx(6.0)  # a minute / 10
    assert limit.wait("198.51.100.7", 0.0) is None  # another address is not held back
    assert limit.wait("203.0.113.5", 3.0) == pytest.approx(3.0)
    assert limit.wait("203.0.113.5", 6.0) is None  # never locked out for longer than that
    limit.fail("203.0.113.5", 6.0)
    assert limit.wait("203.0.113.5", 6.0) == pytest.approx(6.0)


def test_the_node_bound_holds_across_addresses() -> None:
    limit = SignInLimit(per_address=10, total=20)
    for i in range(20):
        limit.fail(f"10.0.0.{i}", 0.0)
    assert limit.wait("192.0.2.1", 0.0) == pytest.approx(3.0)  # a minute / 20
    assert limit.wait("192.0.2.1", 3.0) is None


def test_zero_means_no_bound_and_the_addresses_followed_are_bounded() -> None:
    off = SignInLimit(per_address=0, total=0)
    for _ in range(1000):
        off.fail("203.0.113.5", 0.0)
    assert off.wait("203.0.113.5", 0.0) is None
    many = SignInLimit(per_address=10, total=0)
    for i in range(MAX_ADDRESSES + 50):
        many.fail(f"a{i}", float(i) / 1000)
    assert len(many._addresses) <= MAX_ADDRESSES


def test_the_client_is_named_by_a_trusted_proxy_only() -> None:
    lb = parse_networks("10.0.0.0/8, 192.168.1.7")
    assert client_address("10.1.2.3", "198.51.100.7", lb) == "198.51.100.7"
    assert client_address("10.1.2.3", "1.1.1.1, 198.51.100.7, 10.9.9.9", lb) == "198.51.100.7"  # right to left
    assert client_address("198.51.100.7", "10.1.1.1", lb) == "198.51.100.7"  # not a proxy: its header means nothing
    assert client_address("10.1.2.3", "not-an-ip", lb) == "10.1.2.3"
    assert client_address("10.1.2.3", None, lb) == "10.1.2.3"
    assert client_address("::ffff:192.168.1.7", "203.0.113.5", lb) == "203.0.113.5"
    assert client_address("10.1.2.3", "203.0.113.5", ()) == "10.1.2.3"  # nothing trusted: the peer
    with pytest.raises(ValueError, match="SHIELDES_TRUSTED_PROXIES"):
        parse_networks("10.0.0.0/33")


@pytest.mark.parametrize("nodes", [1, 3])
def test_the_cluster_wide_bound_is_nodes_times_the_node_bound(nodes: int) -> None:
    """An attacker spreading guesses over every node behind a load balancer, one address: in a
    minute, N x SHIELDES_ADMIN_SIGN_IN_FAILURES guesses are compared, the bound docs/security.md states."""
    limits = [SignInLimit(per_address=10, total=100) for _ in range(nodes)]
    compared, t = 0, 0.0
    while t < 60.0:  # a guess every 10 ms, round robin over the nodes
        limit = limits[int(t * 100) % nodes]
        if limit.wait("203.0.113.5", t) is None:
            compared += 1
        limit.fail("203.0.113.5", t)
        t += 0.01
    # the first minute's burst of each node's bucket plus what refilled meanwhile (held at 0 while guessed)
    assert compared == pytest.approx(nodes * 10, abs=nodes)
