"""What a node's gossip counters keep of peers that left (GossipStats.forget)."""

from __future__ import annotations

from shieldes.cluster.gossip_stats import GossipStats, PeerStats


def test_silent_peers_and_addresses_nobody_uses_are_forgotten() -> None:
    stats = GossipStats(peers={
        "old": PeerStats(last_seen=10.0, address="10.0.0.1:7946"),  # a container gone for good
        "cut": PeerStats(last_seen=10.0, address="10.0.0.2:7946"),  # silent, but heartbeating in Postgres
        "new": PeerStats(last_seen=99.0, address="10.0.0.3:7946"),
    })
    stats.pushed_ok.update({"10.0.0.1:7946": 9.0, "10.0.0.2:7946": 9.0, "10.0.0.3:7946": 99.0,
                            "10.0.0.4:7946": 50.0, "10.0.0.9:7946": 5.0})
    stats.refused.update({"10.0.0.1:7946": 12.0, "10.0.0.2:7946": 12.0, "10.0.0.9:7946": 6.0})
    stats.forget(100.0, 30.0, keep=["cut"], addresses=["10.0.0.3:7946", "10.0.0.4:7946"])
    assert sorted(stats.peers) == ["cut", "new"]
    # a target not heard from yet keeps its times; a kept peer's address too, so `gone` still sees it
    assert sorted(stats.pushed_ok) == ["10.0.0.2:7946", "10.0.0.3:7946", "10.0.0.4:7946"]
    assert sorted(stats.refused) == ["10.0.0.2:7946"]
    assert stats.gone(100.0, 30.0) == ["cut"]


def test_peers_heard_within_the_horizon_stay() -> None:
    stats = GossipStats(peers={"a": PeerStats(last_seen=71.0, address="h:1")})
    stats.pushed_ok["h:1"] = 71.0
    stats.forget(100.0, 30.0, keep=[], addresses=[])
    assert list(stats.peers) == ["a"] and list(stats.pushed_ok) == ["h:1"]
