"""Delta-state gossip (shieldes/cluster/delta.py) through the production Gossip send and receive
paths (encoding, signature, acks), over a transport that loses, duplicates and reorders messages
and acks, with a receiver that restarts: the delta receiver ends with exactly the view of a peer
that got every whole state, and of the sender's own state."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.cluster import delta, gossip_pb2
from shieldes.cluster.gossip import Gossip, open_envelope
from shieldes.cluster.view import Health, NodeState, WindowId

SECRET = b"s3cret"
WINDOWS: list[WindowId] = [("k:k1", "min", 5), ("k:k2", "min", 5), ("k:k1", "min", 6), ("t:t1", "min", 6)]


class Sender:
    """Node "a"'s own state, changed step by step: counts only grow, gauges come and go."""

    def __init__(self) -> None:
        self.windows: dict[WindowId, tuple[int, int, int]] = {}
        self.allowances: dict[WindowId, int] = {}
        self.health: dict[str, Health] = {}
        self.reservations: dict[str, tuple[int, int]] = {}
        self.head = 0

    def snapshot(self) -> NodeState:
        return NodeState("a", 10, log_head=self.head, windows=dict(self.windows), allowances=dict(self.allowances),
                         health=dict(self.health), reservations=dict(self.reservations))


def receiver(deltas: bool = True) -> Gossip:
    return Gossip(node_id="b" if deltas else "c", secret=SECRET, host="127.0.0.1", port=0, deltas=deltas,
                  boot_epoch=lambda: 20)


def entries(state: NodeState) -> dict[Any, Any]:
    """What a state says, with the empty windows a claim leaves behind (they count nothing) left out."""
    return {**{e: v for e, v in delta.flatten(state).items() if v != (0, 0, 0, 0)}, "head": state.log_head}


def own_entries(g: Gossip) -> dict[Any, Any]:
    return entries(g.view.components[("a", 10)])


def change(draw: st.DrawFn, s: Sender) -> None:
    kind = draw(st.sampled_from(["count", "claim", "health", "reserve", "head"]))
    wid = draw(st.sampled_from(WINDOWS))
    if kind == "count":
        r, t, rel = s.windows.get(wid, (0, 0, 0))
        s.windows[wid] = (r + draw(st.integers(1, 3)), t + draw(st.integers(0, 50)), rel + draw(st.integers(0, 5)))
    elif kind == "claim":
        value = draw(st.integers(0, 4))
        if value:
            s.allowances[wid] = value
        else:
            s.allowances.pop(wid, None)
    elif kind == "health":
        name = draw(st.sampled_from(["d1", "d2"]))
        if draw(st.booleans()):
            s.health[name] = Health(draw(st.floats(0, 100)), 0.0, draw(st.integers(0, 9)), draw(st.booleans()))
        else:
            s.health.pop(name, None)
    elif kind == "reserve":
        res, rel = s.reservations.get("k:k1", (0, 0))
        s.reservations["k:k1"] = (res + draw(st.integers(0, 9)), rel + draw(st.integers(0, 9)))
    else:
        s.head += 1


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_delta_gossip_converges_to_the_full_state_view(data: st.DataObject) -> None:
    draw = data.draw
    s = Sender()
    a = Gossip(node_id="a", secret=SECRET, host="127.0.0.1", port=0, boot_epoch=lambda: 10, snapshot=s.snapshot)
    peers = {"b": receiver(), "c": receiver(deltas=False)}  # c: an older release, every message, in order
    in_flight: list[tuple[int, int, gossip_pb2.Envelope]] = []  # to b: (seq, base, envelope)

    def deliver(seq: int, base: int, envelope: gossip_pb2.Envelope, ack_lost: bool = False) -> None:
        ack = peers["b"].receive(envelope)
        if not ack_lost:
            a.acknowledged("b", seq, base, ack)

    for _ in range(draw(st.integers(1, 30))):
        for _ in range(draw(st.integers(0, 3))):
            change(draw, s)
        if draw(st.integers(0, 12)) == 0:
            peers["b"] = receiver()  # b restarts with the same node id: it holds nothing of a
        seq, messages = a.prepare(["b", "c"])
        a.acknowledged("c", seq, messages["c"][0], peers["c"].receive(messages["c"][1]))
        assert messages["c"][0] == 0  # an older release only ever gets the whole state
        in_flight.append((seq, *messages["b"]))
        for _ in range(draw(st.integers(0, 3))):  # deliver some of what is in flight, in any order
            if not in_flight:
                break
            i = draw(st.integers(0, len(in_flight) - 1))
            fate = draw(st.sampled_from(["deliver", "lose", "duplicate", "ack_lost"]))
            msg = in_flight[i] if fate == "duplicate" else in_flight.pop(i)
            if fate != "lose":
                deliver(*msg, ack_lost=fate == "ack_lost")
    for msg in in_flight:  # late arrivals: refused as stale, or applied
        if draw(st.booleans()):
            deliver(*msg)
    for _ in range(3):  # then a few quiet rounds over a reliable link
        seq, messages = a.prepare(["b", "c"])
        for name in ("b", "c"):
            base, envelope = messages[name]
            a.acknowledged(name, seq, base, peers[name].receive(envelope))

    expected = entries(s.snapshot())
    assert own_entries(peers["c"]) == expected
    b_entries = own_entries(peers["b"])
    b_entries.pop(("s", "c"), None)
    assert {e: v for e, v in b_entries.items() if e[0] != "s"} == expected
    assert a.stats.full_sent == 0  # prepare() alone counts nothing: the transport counts what went


def test_an_idle_round_carries_only_acknowledgements_and_a_vanished_gauge_is_sent() -> None:
    s = Sender()
    for i in range(500):
        s.windows[(f"k:{i}", "min", 5)] = (i + 1, 10 * i, 0)
    s.allowances[("k:1", "min", 5)] = 3
    s.health["d1"] = Health(12.0, 0.1, 4, True)
    a = Gossip(node_id="a", secret=SECRET, host="127.0.0.1", port=0, boot_epoch=lambda: 10, snapshot=s.snapshot)
    b = receiver()

    def round_() -> tuple[int, gossip_pb2.State]:
        seq, messages = a.prepare(["b"])
        base, envelope = messages["b"]
        a.acknowledged("b", seq, base, b.receive(envelope))
        return len(envelope.payload), open_envelope(envelope, SECRET)

    full, first = round_()
    assert first.base_seq == 0 and len(first.windows) == 500
    idle, second = round_()
    assert second.base_seq == first.seq and len(second.windows) == 0 and idle < 100 < full
    s.allowances.clear()
    s.health.clear()
    s.windows[("k:7", "min", 5)] = (99, 70, 0)
    _, third = round_()
    assert {(w.subject, w.requests, w.allowance) for w in third.windows} == {("k:1", 2, 0), ("k:7", 99, 0)}
    assert list(third.health_removed) == ["d1"]
    held = b.view.components[("a", 10)]
    assert not held.allowances and not held.health and held.windows[("k:7", "min", 5)] == (99, 70, 0)


def test_a_receiver_without_the_base_asks_for_the_whole_state() -> None:
    s = Sender()
    s.windows[WINDOWS[0]] = (1, 1, 0)
    a = Gossip(node_id="a", secret=SECRET, host="127.0.0.1", port=0, boot_epoch=lambda: 10, snapshot=s.snapshot)
    b = receiver()
    seq, messages = a.prepare(["b"])
    a.acknowledged("b", seq, messages["b"][0], b.receive(messages["b"][1]))
    b = receiver()  # restarted
    seq, messages = a.prepare(["b"])
    assert messages["b"][0] == seq - 1
    ack = b.receive(messages["b"][1])
    assert ack.need_full and not ack.accepted and b.stats.need_full == 1
    a.acknowledged("b", seq, messages["b"][0], ack)
    seq, messages = a.prepare(["b"])
    assert messages["b"][0] == 0 and b.receive(messages["b"][1]).accepted
    assert b.view.components[("a", 10)].windows == {WINDOWS[0]: (1, 1, 0)}


def test_anti_entropy_reaches_every_target_within_its_period_spread_over_rounds() -> None:
    every = delta.ANTI_ENTROPY_ROUNDS
    targets = [f"10.0.0.{i}:7946" for i in range(30)]
    links = {t: delta.Link(phase=delta.phase_of(t)) for t in targets}
    fulls: dict[str, list[int]] = {t: [] for t in targets}
    per_round = []
    for seq in range(1, 8 * every):
        n = 0
        for t in targets:
            base = delta.base_for(links[t], seq, floor=0)
            if base == 0:
                fulls[t].append(seq)
                n += 1
            links[t] = delta.acknowledged(links[t], seq, base, accepted=True, deltas=True, need_full=False)
        per_round.append(n)
    assert per_round[0] == len(targets)  # first contact: the whole state to everyone
    assert max(per_round[every:]) <= len(targets) // 3  # afterwards spread over rounds
    for seqs in fulls.values():
        assert max(b - a for a, b in itertools.pairwise(seqs)) <= every
