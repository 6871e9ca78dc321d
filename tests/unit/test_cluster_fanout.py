"""Bounded fanout (shieldes/cluster/fanout.py) through the production Gossip send and receive paths:
each node pushes to a few peers per round and pulls what it lacks by digest (digest.py), or with a
peer of the release before digests, relays what it learns; over a transport that loses, duplicates
and reorders messages and acks (which carry the answers to digests), with nodes that restart,
every node ends with the same view as full-state gossip to every peer would give; neither pulls
nor relays keep a stopped node alive."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.cluster import delta, digest, fanout, gossip_pb2, view, view_reads
from shieldes.cluster.gossip import Gossip, open_envelope
from shieldes.cluster.view import Health, NodeState, WindowId

SECRET = b"s3cret"
WINDOWS: list[WindowId] = [("k:k1", "min", 5), ("k:k2", "min", 5), ("t:t1", "min", 6)]
NAMES = ["n0", "n1", "n2", "n3", "n4", "n5"]


@dataclass
class Own:
    """One boot's own state, changed step by step: counts only grow, gauges come and go."""

    name: str
    epoch: int
    windows: dict[WindowId, tuple[int, int, int]] = field(default_factory=dict)
    allowances: dict[WindowId, int] = field(default_factory=dict)
    health: dict[str, Health] = field(default_factory=dict)
    reservations: dict[str, tuple[int, int]] = field(default_factory=dict)
    pending: dict[Any, tuple[int, int, int]] = field(default_factory=dict)

    def snapshot(self) -> NodeState:
        return NodeState(self.name, self.epoch, windows=dict(self.windows), allowances=dict(self.allowances),
                         health=dict(self.health), reservations=dict(self.reservations), pending=dict(self.pending))


def gossip(own: Own, clock: list[float], k: int | None = 2, digests: bool = True, forward: bool = True,
           spread: fanout.Spread | None = None, exact: bool = True) -> Gossip:
    return Gossip(node_id=own.name, secret=SECRET, host="127.0.0.1", port=0, boot_epoch=lambda: own.epoch,
                  snapshot=own.snapshot, clock=lambda: clock[0], fanout=k, interval=0.15, node_timeout=5.0,
                  digests=digests, forward=forward, exact_labels=exact,
                  spread=fanout.spread_for if spread is None else lambda _peers, _k: spread)


def entries(state: NodeState) -> dict[Any, Any]:
    """What a state says, acknowledgements and the empty windows a claim leaves behind left out."""
    return {e: v for e, v in delta.flatten(state).items() if v != (0, 0, 0, 0) and e[0] != "s"}


def change(draw: st.DrawFn, s: Own) -> None:
    kind = draw(st.sampled_from(["count", "count", "claim", "health", "reserve", "spend"]))
    wid = draw(st.sampled_from(WINDOWS))
    if kind == "count":
        r, t, rel = s.windows.get(wid, (0, 0, 0))
        s.windows[wid] = (r + draw(st.integers(1, 3)), t + draw(st.integers(0, 50)), rel)
    elif kind == "claim":
        value = draw(st.integers(0, 4))
        if value:
            s.allowances[wid] = value
        else:
            s.allowances.pop(wid, None)
    elif kind == "health":
        if draw(st.booleans()):
            s.health["d1"] = Health(draw(st.integers(1, 99)), 0.0, draw(st.integers(0, 9)), draw(st.booleans()))
        else:
            s.health.pop("d1", None)
    elif kind == "reserve":
        res, rel = s.reservations.get("k:k1", (0, 0))
        s.reservations["k:k1"] = (res + draw(st.integers(0, 9)), rel + draw(st.integers(0, 9)))
    else:
        pid = (s.epoch, draw(st.integers(1, 3)), "k:k1", 20000)
        s.pending[pid] = (0, 0, s.pending.get(pid, (0, 0, 0))[2] + draw(st.integers(1, 9)))


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_bounded_fanout_converges_to_the_full_state_view(data: st.DataObject) -> None:
    draw = data.draw
    clock = [0.0]
    owns = {n: Own(n, 1) for n in NAMES}
    # digest pulls with exact labels in whole states and forwarded news (any hops, targets per news, sources
    # per boot) everywhere, forwarded news as the release before exact labels, digest pulls as the release
    # before forwarding, relays as the release before digests, or rolling upgrades
    spread = fanout.Spread(draw(st.integers(0, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    release = draw(st.sampled_from(["exact", "forward", "digests", "relays", "mixed", "mixed3", "mixed4"]))
    kinds = {"exact": ["exact"], "forward": ["forward"], "digests": ["digests"], "relays": ["relays"],
             "mixed": ["exact", "forward"], "mixed3": ["exact", "digests", "relays"],
             "mixed4": ["exact", "forward", "digests", "relays"]}[release]
    kind = {n: kinds[i % len(kinds)] for i, n in enumerate(NAMES)}
    pulls = {n: kind[n] != "relays" for n in NAMES}
    forwards = {n: kind[n] in ("exact", "forward") for n in NAMES}
    exact = {n: kind[n] == "exact" for n in NAMES}

    def start(n: str) -> Gossip:
        return gossip(owns[n], clock, digests=pulls[n], forward=forwards[n], spread=spread, exact=exact[n])

    nodes = {n: start(n) for n in NAMES}
    sent: dict[tuple[str, int], dict[int, dict[Any, Any]]] = {}  # boot -> seq -> its monotone entries then
    in_flight: list[tuple[str, str, int, int, gossip_pb2.Envelope]] = []  # (from, to, seq, base, envelope)
    stale_boots: set[tuple[str, int]] = set()

    def deliver(sender: str, target: str, seq: int, base: int, envelope: gossip_pb2.Envelope,
                ack_lost: bool = False) -> None:
        ack = nodes[target].receive(envelope)
        if not ack_lost:
            nodes[sender].acknowledged(target, seq, base, ack)

    def round_(name: str, reliable: bool = False) -> None:
        g = nodes[name]
        seq, messages = g.prepare(g.pick([t for t in NAMES if t != name]))
        sent.setdefault((name, owns[name].epoch), {})[seq] = digest.entries(owns[name].snapshot())
        assert len(messages) <= len(NAMES) - 1
        for target, (base, envelope) in messages.items():
            if reliable:
                deliver(name, target, seq, base, envelope)
            else:
                in_flight.append((name, target, seq, base, envelope))

    for _ in range(draw(st.integers(1, 25))):
        clock[0] += 0.15
        for name in NAMES:
            for _ in range(draw(st.integers(0, 2))):
                change(draw, owns[name])
        if draw(st.integers(0, 15)) == 0:  # a node restarts: a new boot, counting from zero
            name = draw(st.sampled_from(NAMES))
            stale_boots.add((name, owns[name].epoch))
            owns[name] = Own(name, owns[name].epoch + 1)
            nodes[name] = start(name)
        reliable = draw(st.booleans())  # some rounds arrive whole and in order: news is forwarded on
        for name in NAMES:
            round_(name, reliable)
        for _ in range(draw(st.integers(0, 12))):  # deliver some of what is in flight, in any order
            if not in_flight:
                break
            i = draw(st.integers(0, len(in_flight) - 1))
            fate = draw(st.sampled_from(["deliver", "deliver", "lose", "duplicate", "ack_lost"]))
            msg = in_flight[i] if fate == "duplicate" else in_flight.pop(i)
            if fate != "lose":
                deliver(*msg, ack_lost=fate == "ack_lost")
        for g in nodes.values():
            labels_hold(g, sent)
    for msg in in_flight:  # late arrivals: refused as stale, or applied
        if draw(st.booleans()):
            deliver(*msg)
    # then quiet rounds over reliable links: a few rotations (every peer directly every 3 rounds)
    for _ in range(12):
        clock[0] += 0.15
        for name in NAMES:
            round_(name, reliable=True)

    for name, g in nodes.items():
        v = g.view
        for other, own in owns.items():
            if other == name:
                continue
            held = v.components[(other, own.epoch)]
            assert entries(held) == entries(own.snapshot()), (name, other)
        for comp in stale_boots:  # an older boot: only what it admitted, nothing relayed brings back
            state = v.components.get(comp)
            if state is not None and comp[0] != name:
                assert not (state.reservations or state.pending or state.allowances), (name, comp)


def labels_hold(g: Gossip, sent: dict[tuple[str, int], dict[int, dict[Any, Any]]]) -> None:
    """Every label a node holds is true: an exact one, the value that boot had in that message (so an
    answer may leave it out for an asker that holds that message); any other, at most that value."""
    for comp, held in g._holdings.held.items():
        state = g.view.components.get(comp)
        if state is None:
            continue
        values = digest.entries(state)
        for entry, c in held.labels.of.items():
            label = c >> 1
            if label >= digest.UNKNOWN or entry not in values:
                continue
            then = sent[comp][label].get(entry)
            then = then[:3] if then is not None and entry[0] == "w" else then
            assert then is not None, (g.node_id, comp, entry, c)
            if c & 1 == 0:
                assert values[entry] == then, (g.node_id, comp, entry, label, values[entry], then)
            else:
                assert all(x <= y for x, y in zip(values[entry], then, strict=True)), (g.node_id, comp, entry, c)


def test_without_digests_a_change_reaches_a_peer_the_origin_never_pushes_to_by_relay_once() -> None:
    clock = [0.0]
    owns = {n: Own(n, 1) for n in ("a", "b", "c")}
    nodes = {n: gossip(owns[n], clock, k=1, digests=False) for n in owns}

    def push(sender: str, target: str) -> gossip_pb2.State:
        nodes[sender].pick([n for n in nodes if n != sender])  # k = 1 of 2 peers: relays on
        seq, messages = nodes[sender].prepare([target])
        base, envelope = messages[target]
        nodes[sender].acknowledged(target, seq, base, nodes[target].receive(envelope))
        return open_envelope(envelope, SECRET)

    for s, t in [("a", "b"), ("b", "a"), ("b", "c"), ("c", "b"), ("a", "c"), ("c", "a")]:  # first contacts
        push(s, t)
    owns["a"].windows[WINDOWS[0]] = (7, 70, 0)
    owns["a"].reservations["k:k1"] = (500, 100)
    push("a", "b")  # a talks to b only
    msg = push("b", "c")  # b relays what grew in its view of a
    assert {c.node_id for c in msg.relayed} == {"a"}
    held = nodes["c"].view.components[("a", 1)]
    assert held.windows[WINDOWS[0]] == (7, 70, 0) and held.reservations["k:k1"] == (500, 100)
    assert nodes["c"].stats.peers["a"].received == 1  # c heard a itself only at first contact
    assert not push("b", "c").relayed  # relayed once: nothing grew since


@pytest.mark.parametrize("digests", [True, False], ids=["pulls", "relays"])
def test_a_stopped_node_is_not_kept_alive_by_pulls_or_relays(digests: bool) -> None:
    clock = [0.0]
    owns = {n: Own(n, 1) for n in ("a", "b", "c")}
    nodes = {n: gossip(owns[n], clock, k=1, digests=digests) for n in owns}

    def push(sender: str, target: str) -> None:
        nodes[sender].pick([n for n in nodes if n != sender])
        seq, messages = nodes[sender].prepare([target])
        base, envelope = messages[target]
        nodes[sender].acknowledged(target, seq, base, nodes[target].receive(envelope))

    for s in owns:
        for t in owns:
            if s != t:
                push(s, t)
    stopped_at = clock[0]
    owns["a"].windows[WINDOWS[0]] = (3, 30, 0)
    push("a", "b")  # a's last message, then a stops
    for _ in range(60):  # 9 s: b and c keep gossiping, relaying what they hold of a
        clock[0] += 0.15
        owns["b"].windows[WINDOWS[1]] = (round(clock[0] * 10), 0, 0)
        push("b", "c")
        push("c", "b")
    for name in ("b", "c"):
        v = nodes[name].view
        assert v.components[("a", 1)].windows[WINDOWS[0]] == (3, 30, 0)  # its counts still count
        assert v.heard["a"] <= stopped_at + 0 * clock[0]  # only a's own messages make it heard
        assert "a" not in view_reads.participants(v, now=clock[0], within=5.0, exclude=name)
        assert "a" not in nodes[name].recently_seen(5.0)
        assert "b" in view_reads.participants(nodes["c"].view, now=clock[0], within=5.0, exclude="c")


def test_rotation_reaches_every_peer_every_ceil_n_over_k_rounds() -> None:
    peers = [f"10.0.0.{i}:7946" for i in range(37)]
    order = fanout.rotation("me:7946", peers)
    assert sorted(order) == sorted(peers) and order != fanout.rotation("other:7946", peers)
    k, cursor, last = 5, 0, {p: 0 for p in peers}
    gaps = []
    for r in range(1, 60):
        chosen, cursor = fanout.pick(order, cursor, k)
        assert len(set(chosen)) == k
        for p in chosen:
            gaps.append(r - last[p])
            last[p] = r
    assert max(gaps[len(peers):]) == math.ceil(len(peers) / k)


def test_fanout_grows_with_the_log_of_the_cluster_and_keeps_every_peer_in_direct_reach() -> None:
    k = {n: fanout.fanout_for(n - 1, interval=0.15, timeout=5.0) for n in (2, 3, 10, 30, 100, 1000)}
    assert k == {2: 1, 3: 2, 10: 5, 30: 6, 100: 9, 1000: 91}
    for n, fan in k.items():  # every peer gets a direct push within a third of the timeout
        assert math.ceil((n - 1) / fan) * 0.15 <= 5.0 / 3


def test_a_peer_of_an_older_release_gets_every_round_with_acknowledgements() -> None:
    clock = [0.0]
    owns = {n: Own(n, 1) for n in ("a", "old", "b", "c", "d")}
    a = gossip(owns["a"], clock, k=1)
    peers = {n: Gossip(node_id=n, secret=SECRET, host="127.0.0.1", port=0, boot_epoch=lambda: 1,
                       relays=n != "old") for n in ("old", "b", "c", "d")}
    counts = {n: 0 for n in peers}
    for _ in range(6):
        targets = a.pick(list(peers))
        seq, messages = a.prepare(targets)
        for t, (base, envelope) in messages.items():
            counts[t] += 1
            msg = open_envelope(envelope, SECRET)
            assert bool(msg.seen) == (t == "old" and seq > 1)  # first contacts: taken to take fanout
            if t == "old" and seq == 2:  # what it took without `seen` is followed by the whole state
                assert base == 0 and msg.seen
            ack = peers[t].receive(envelope)
            assert ack.fanout == (t != "old") and ack.node_id == ("" if t == "old" else t)
            a.acknowledged(t, seq, base, ack)
        for g in peers.values():  # so that a has something new to acknowledge to the older peer
            pseq, back = g.prepare(["a"])
            g.acknowledged("a", pseq, back["a"][0], a.receive(back["a"][1]))
    assert counts["old"] == 6 and counts["b"] + counts["c"] + counts["d"] == 3 + 5


def test_relays_bring_no_reservation_of_a_boot_this_node_does_not_take_for_alive() -> None:
    state = NodeState("x", 2, windows={WINDOWS[0]: (4, 0, 0)}, reservations={"k:k1": (900, 0)},
                      pending={(2, 1, "k:k1", 1): (0, 0, 900)})
    v = view.merge_admitted(view.EMPTY, state)  # never heard from x
    assert v.components[("x", 2)].windows and not v.components[("x", 2)].reservations
    v = view.merge(view.EMPTY, NodeState("x", 2, seq=1), now=1.0)
    live = view.merge_admitted(v, state)
    assert live.components[("x", 2)].reservations == {"k:k1": (900, 0)}
    forgotten = view.forget_silent(v, now=100.0, after=5.0)
    assert not view.merge_admitted(forgotten, state).components[("x", 2)].reservations
    superseded = view.observe_epochs(v, {"x": 3})
    assert not view.merge_admitted(superseded, state).components[("x", 2)].pending


@pytest.mark.parametrize(("fanout_from", "per_round"), [(7, 5), (6, 1), (1, 1)], ids=["below", "at", "always"])
def test_automatic_fanout_from_a_cluster_size_pushes_to_every_peer_below_it(fanout_from: int, per_round: int) -> None:
    clock = [0.0]
    owns = {n: Own(n, 1) for n in NAMES}  # a cluster of 6
    nodes = {n: Gossip(node_id=n, secret=SECRET, host="127.0.0.1", port=0, boot_epoch=lambda: 1,
                       snapshot=owns[n].snapshot, clock=lambda: clock[0], fanout=1, fanout_from=fanout_from)
             for n in NAMES}
    for _ in range(3):  # first contacts: every link learns the others take bounded fanout
        for name, g in nodes.items():
            seq, messages = g.prepare(g.pick([t for t in NAMES if t != name]))
            for target, (base, envelope) in messages.items():
                g.acknowledged(target, seq, base, nodes[target].receive(envelope))
    assert len(nodes["n0"].pick([t for t in NAMES if t != "n0"])) == per_round


def test_a_cluster_starting_with_bounded_fanout_sends_no_seen_and_relays_no_counts() -> None:
    """Peers not heard from yet are taken to take fanout: no first round with `seen`, which each
    peer would keep until the sender's rotation reached it, making the sender seem to lag on the
    others and every whole state of theirs relay its peers' counts (view.relayed)."""
    clock = [0.0]
    names = [f"n{i}" for i in range(9)]
    owns = {n: Own(n, 1, windows={(f"k:{n}", "min", 5): (3, 0, 0)}) for n in names}
    nodes = {n: gossip(owns[n], clock, k=2) for n in names}
    for r in range(12):  # past a whole rotation (8 peers, 2 a round) and the lag view.relayed allows
        clock[0] = 0.15 * r
        for name, g in nodes.items():
            seq, messages = g.prepare(g.pick([t for t in names if t != name]))
            for target, (base, envelope) in messages.items():
                msg = open_envelope(envelope, SECRET)
                assert not msg.seen, (r, name, target)
                assert not [c for c in msg.relayed if not c.news], (r, name, target)  # no relayed counts
                g.acknowledged(target, seq, base, nodes[target].receive(envelope))
        for g in nodes.values():
            assert not view.relayed(g.view)
    for name, g in nodes.items():  # and every count reached every node
        for other in names:
            if other != name:
                assert g.view.components[(other, 1)].windows == owns[other].windows


def test_with_bounded_fanout_a_peer_gets_the_whole_state_once_per_forty_of_its_pushes() -> None:
    """Anti-entropy counts the pushes a peer gets, not rounds: every 40 rounds would be every 40 / (N - 1) * k
    pushes, a whole state every few pushes in a large cluster (its bytes growing with N, not log N)."""
    clock = [0.0]
    names = ["a", "b", "c", "d", "e"]
    owns = {n: Own(n, 1, windows={(f"k:{n}", "min", 5): (3, 0, 0)}) for n in names}
    nodes = {n: gossip(owns[n], clock, k=1) for n in names}
    a, rounds = nodes["a"], 4 * delta.ANTI_ENTROPY_ROUNDS + 12  # each peer: a push every 4 rounds
    pushes, wholes = {n: 0 for n in names[1:]}, {n: 0 for n in names[1:]}
    for r in range(rounds):
        clock[0] = 0.15 * r
        owns["a"].windows[("k:a", "min", 5)] = (4 + r, 0, 0)
        seq, messages = a.prepare(a.pick(names[1:]))
        for target, (base, envelope) in messages.items():
            pushes[target] += 1
            wholes[target] += base == 0
            a.acknowledged(target, seq, base, nodes[target].receive(envelope))
    assert all(p >= delta.ANTI_ENTROPY_ROUNDS + 3 for p in pushes.values()), pushes
    assert wholes == {n: 2 for n in names[1:]}  # the first contact, then one after 40 pushes
    for n in names[1:]:  # and each holds a's count as of its last push (every 4 rounds)
        assert nodes[n].view.components[("a", 1)].windows[("k:a", "min", 5)][0] >= 4 + rounds - 1 - 4


def test_unreached_names_the_targets_no_push_reached_for_longer_than_the_window() -> None:
    from shieldes.cluster.gossip_stats import unreached

    ok = {"a": 9.5, "b": 4.0}  # last push each took
    tried = {"a": 1.0, "b": 1.0, "c": 3.0, "d": 9.0}  # first push to each
    assert unreached(ok, tried, ["a", "b", "c", "d"], now=10.0, within=2.0) == ["b", "c"]
    # a target pushed to for the first time now is not yet unreached
    assert unreached(ok, {}, ["e"], now=10.0, within=2.0) == []
