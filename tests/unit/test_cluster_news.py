"""Forwarded news (shieldes/cluster/news.py) and second pull sources (digest.sources), through the
production Gossip send and receive paths: news goes on once, whole, to targets that are neither its
origin nor its source, and is then held (no pull sends it again); news of a boot the receiver does
not take for alive brings only its windows. Convergence under loss, duplication, reordering,
restarts and rolling upgrades with forwarding on is the property test of
tests/unit/test_cluster_fanout.py."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shieldes.cluster import digest, fanout, gossip_pb2
from shieldes.cluster.gossip import Gossip, open_envelope
from shieldes.cluster.wire import pulled_from_proto
from tests.unit.test_cluster_fanout import SECRET, WINDOWS, Own, gossip

ONCE = fanout.Spread(hops=1, per_news=2, sources=1)


def _nodes(names: str, spread: fanout.Spread = ONCE) -> tuple[dict[str, Own], dict[str, Gossip]]:
    clock = [0.0]
    owns = {n: Own(n, 1) for n in names}
    return owns, {n: gossip(owns[n], clock, k=1, spread=spread) for n in names}


def _round(nodes: dict[str, Gossip], sender: str,
           targets: list[str]) -> dict[str, tuple[gossip_pb2.State, gossip_pb2.Ack]]:
    g = nodes[sender]
    g.pick([n for n in nodes if n != sender])  # k = 1: bounded fanout, digests, forwarding on
    seq, messages = g.prepare(targets)
    out = {}
    for target, (base, envelope) in messages.items():
        ack = nodes[target].receive(envelope)
        g.acknowledged(target, seq, base, ack)
        out[target] = (open_envelope(envelope, SECRET), ack)
    return out


def _push(nodes: dict[str, Gossip], sender: str, target: str) -> tuple[gossip_pb2.State, gossip_pb2.Ack]:
    return _round(nodes, sender, [target])[target]


def _news(msg: gossip_pb2.State) -> list[gossip_pb2.Counts]:
    return [c for c in msg.relayed if c.news]


def _change(own: Own) -> None:
    own.windows[WINDOWS[0]] = (7, 70, 0)
    own.reservations["k:k1"] = (500, 100)
    own.pending[(1, 1, "k:k1", 20000)] = (0, 0, 500)


def test_news_goes_on_once_whole_and_is_then_held_so_no_pull_sends_it_again() -> None:
    owns, nodes = _nodes("abcde")
    for _ in range(2):  # first contacts, then deltas: every link knows the others take digests
        for s in nodes:
            for t in nodes:
                if s != t:
                    _push(nodes, s, t)
    _change(owns["a"])
    msg, _ = _push(nodes, "a", "b")  # the origin's news, to b
    assert msg.gauges_only
    label = msg.seq
    sent = _round(nodes, "b", ["a", "c"])  # b's next round: forwarded, whole, with the origin's label
    assert not _news(sent["a"][0])  # never back to its origin
    told = _news(sent["c"][0])
    assert [(c.node_id, c.label, c.exact, c.hops) for c in told] == [("a", label, True, 0)]
    assert len(told[0].windows) == 1 and len(told[0].reservations) == 1 and len(told[0].pending) == 1
    held = nodes["c"].view.components[("a", 1)]
    assert (held.windows[WINDOWS[0]], held.reservations["k:k1"], held.pending[(1, 1, "k:k1", 20000)]) == (
        (7, 70, 0), (500, 100), (0, 0, 500))
    assert nodes["c"]._holdings.holds(("a", 1), label)
    assert not _news(_push(nodes, "b", "d")[0])  # once: taken in the round it went out
    assert not _news(_push(nodes, "c", "e")[0])  # hops spent: c does not forward it on
    _, ack = _push(nodes, "c", "b")  # c asks b about a: b answers nothing c holds
    answer = pulled_from_proto(open_envelope(ack.pulled, SECRET)) if ack.HasField("pulled") else []
    assert not any(p.state.windows or p.state.pending or p.state.reservations
                   for p in answer if p.state.component == ("a", 1))


def test_news_of_a_boot_the_receiver_does_not_take_for_alive_brings_only_its_windows() -> None:
    owns, nodes = _nodes("abcd")
    for _ in range(2):  # c never hears from a itself
        for s, t in [("a", "b"), ("b", "a"), ("a", "d"), ("d", "a"), ("b", "c"), ("c", "b")]:
            _push(nodes, s, t)
    _change(owns["a"])
    _push(nodes, "a", "b")
    msg, _ = _push(nodes, "b", "c")
    assert [c.node_id for c in _news(msg)] == ["a"]
    held = nodes["c"].view.components[("a", 1)]
    assert held.windows[WINDOWS[0]] == (7, 70, 0)  # what a admitted counts
    assert not held.reservations and not held.pending and "a" not in nodes["c"].view.heard
    assert not nodes["c"]._holdings.holds(("a", 1), msg.relayed[0].label)


def test_without_forwarding_news_stays_with_the_origins_targets() -> None:
    owns, nodes = _nodes("abc", spread=fanout.Spread())
    for _ in range(2):
        for s in nodes:
            for t in nodes:
                if s != t:
                    _push(nodes, s, t)
    _change(owns["a"])
    _push(nodes, "a", "b")
    assert not _news(_push(nodes, "b", "c")[0])


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(1, 3)), unique=True, max_size=12),
       st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=5, unique=True), st.integers(0, 999),
       st.integers(1, 3))
def test_each_component_is_asked_from_its_origin_or_from_distinct_targets(
        comps: list[tuple[str, int]], targets: list[str], salt: int, count: int) -> None:
    asks = digest.ask(comps, digest.Holdings(), targets, salt, "me", count)
    for comp in comps:
        asked_of = [t for t, asked in asks.items() if comp in asked]
        if comp[0] in targets:
            assert asked_of == [comp[0]]  # the freshest holder alone
        else:
            assert len(asked_of) == min(count, len(targets)) and digest.responsible(comp, targets, salt) in asked_of


def test_spread_forwards_about_a_cluster_of_copies_beyond_two_rotations_and_asks_two_sources_beyond_five() -> None:
    k = {n: fanout.fanout_for(n - 1, interval=0.15, timeout=5.0) for n in (3, 10, 30, 100)}
    spread = {n: fanout.spread_for(n - 1, k[n]) for n in k}
    assert spread[3] == spread[10] == fanout.Spread()  # k reaches half the cluster: nothing more
    assert spread[30] == fanout.Spread(1, 4, 1) and spread[100] == fanout.Spread(1, 9, 2)
    for n in (30, 100):  # the origin's k targets and their forwards: about N - 1 copies, never 2N
        assert min(n - 1 - k[n], k[n] ** 2) <= k[n] * spread[n].per_news < 2 * n  # at most k each

