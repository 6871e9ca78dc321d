"""Quiet rounds (shieldes/cluster/quiet.py) through the production Gossip send and receive paths: two
idle nodes with every-peer gossip stop trading acknowledgements, news still goes out the next round
and is acknowledged by the peer's next round (what ends a limit round), a keepalive goes at least
every `keepalive` seconds and is answered, whole states (anti-entropy) and failed pushes still go."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from shieldes.cluster import delta, gossip_pb2, quiet
from shieldes.cluster.gossip import Gossip
from shieldes.cluster.view import NodeState, WindowId

SECRET = b"s3cret"
WID: WindowId = ("k:k1", "min", 5)
KEEPALIVE = 1.0


@dataclass
class Own:
    name: str
    windows: dict[WindowId, tuple[int, int, int]] = field(default_factory=dict)
    allowances: dict[WindowId, int] = field(default_factory=dict)
    head: int = 0

    def snapshot(self) -> NodeState:
        return NodeState(self.name, 1, log_head=self.head, windows=dict(self.windows),
                         allowances=dict(self.allowances))


class Pair:
    """Nodes a and b on a manual clock; `round(x)` is one round of x's loop, delivered at once."""

    def __init__(self) -> None:
        self.clock = [0.0]
        self.owns = {n: Own(n) for n in "ab"}
        self.nodes = {n: Gossip(node_id=n, secret=SECRET, host="127.0.0.1", port=0, boot_epoch=lambda: 1,
                                snapshot=self.owns[n].snapshot, clock=lambda: self.clock[0], interval=0.15,
                                keepalive=KEEPALIVE, wall_ms=lambda: int(self.clock[0] * 1000)) for n in "ab"}
        self.sent: dict[str, list[tuple[int, bool]]] = {"a": [], "b": []}  # (seq, asking) of what went out

    def round(self, sender: str, deliver: bool = True) -> bool:
        """Whether a message went out."""
        node = self.nodes[sender]
        target = "b" if sender == "a" else "a"
        seq, messages = node.prepare([target], quiet_ok=True)
        self.clock[0] += 0.15
        if not messages:
            return False
        self.sent[sender].append((seq, node.asking))
        base, envelope = messages[target]
        if deliver:
            node.acknowledged(target, seq, base, self.nodes[target].receive(envelope))
        node._retry = not deliver  # what Gossip.push_once notes of a push not taken
        return True

    def both(self) -> tuple[bool, bool]:
        return self.round("a"), self.round("b")

    def seen(self, by: str, of: str) -> int:
        """The newest message of `of` that `by` acknowledged in its latest message `of` holds."""
        return self.nodes[of].view.components[(by, 1)].seen[of][1]


def settled() -> Pair:
    p = Pair()
    assert p.both() == (True, True)  # first contacts: whole states
    assert p.both() == (True, False)  # a acknowledges b's (b's acknowledgement of a's asks for nothing)
    assert p.both() == (False, False)  # nothing but acknowledgements: both idle
    return p


def test_idle_nodes_leave_rounds_out_and_keep_alive_every_keepalive() -> None:
    p = settled()
    out = [p.both() for _ in range(30)]  # 4.5 s of rounds
    messages = sum(a + b for a, b in out)
    # a keepalive from each side at most every KEEPALIVE s, each answered once; without quiet rounds: 60
    assert 0 < messages <= 4 * (30 * 0.15 / KEEPALIVE + 1), out
    assert all(p.nodes[n].view.components[(m, 1)] for n, m in ("ab", "ba"))  # heard both ways
    # the two sides hear from each other within the keepalive and a round, however they are phased
    gaps = [i for i, (a, b) in enumerate(out) if a or b]
    assert max(y - x for x, y in itertools.pairwise(gaps)) * 0.15 <= KEEPALIVE + 0.15


def test_news_goes_next_round_and_the_peer_acknowledges_it_in_its_next_round() -> None:
    p = settled()
    p.owns["a"].allowances[WID] = 5  # a claim
    p.owns["a"].windows[WID] = (1, 10, 0)
    assert p.round("a")
    seq, asking = p.sent["a"][-1]
    assert asking
    assert p.nodes["b"].view.components[("a", 1)].allowances[WID] == 5
    assert p.round("b")  # answered by b's next round, which acknowledges it
    assert p.seen("b", "a") == seq
    assert p.round("a")  # b's answer followed quiet rounds of b's: a acknowledges it in turn,
    assert not p.sent["a"][-1][1]  # right after its previous round: a bare answer, which asks for nothing
    assert p.both() == (False, False)  # and the exchange ends there

    p.owns["a"].head = 9  # a moved log head is news too (peers catch up on it)
    assert p.round("a") and p.round("b")
    assert p.nodes["b"].view.components[("a", 1)].log_head == 9
    assert (False, False) in [p.both(), p.both()]  # (a answers b's answer if b had been quiet before it)


def test_a_keepalive_is_answered_and_the_answer_acknowledged() -> None:
    p = settled()
    turns = ["a", "b"] * 20
    while not p.round(turns[0]):
        turns.pop(0)
    first, other = turns[0], turns[1]
    seq, asking = p.sent[first][-1]
    assert asking and p.clock[0] <= 3 * 0.3 + KEEPALIVE  # after quiet rounds: a keepalive asks for an answer
    assert p.round(other)
    assert p.seen(other, first) == seq and p.sent[other][-1][1]  # the answer followed quiet rounds too
    assert p.round(first)
    assert p.seen(first, other) == p.sent[other][-1][0] and not p.sent[first][-1][1]
    assert p.round(other) is False and p.both() == (False, False)


def test_a_failed_push_and_the_anti_entropy_whole_state_still_go_out() -> None:
    p = settled()
    p.owns["a"].windows[WID] = (2, 20, 0)
    assert p.round("a", deliver=False)  # lost
    assert p.round("a")  # the next round goes out though nothing changed since
    assert p.nodes["b"].view.components[("a", 1)].windows[WID] == (2, 20, 0)
    start, full_at = p.clock[0], p.nodes["a"]._links["b"].full_at
    while p.nodes["a"]._links["b"].full_at == full_at and p.clock[0] - start < 60:
        p.both()
    # anti-entropy: the whole state within its period (40 rounds' time), though rounds were left out
    assert p.clock[0] - start <= delta.ANTI_ENTROPY_ROUNDS * 0.15 + 0.3
    seq = p.nodes["a"]._links["b"].full_at
    assert (seq, True) in p.sent["a"]  # a whole state asks for an answer
    assert p.nodes["a"]._seq == p.sent["a"][-1][0]  # sequences count messages sent, not rounds


def test_without_keepalive_every_round_goes_out() -> None:
    p = Pair()
    for node in p.nodes.values():
        node.keepalive = 0.0
    assert all(all(p.both()) for _ in range(10))


def test_what_calls_for_an_answer() -> None:
    ack_only = gossip_pb2.State(node_id="a", boot_epoch=1, seq=8, base_seq=7, log_head=3)
    ack_only.seen.add(node_id="b", boot_epoch=1, seq=4)
    ack_only.sent_at_ms = 1300
    assert not quiet.calls_for_answer(ack_only, 1150, held_head=3, pause_ms=300)
    assert quiet.calls_for_answer(ack_only, 900, held_head=3, pause_ms=300)  # after quiet rounds
    assert quiet.calls_for_answer(ack_only, None, held_head=3, pause_ms=300)  # the first heard
    assert quiet.calls_for_answer(ack_only, 1150, held_head=None, pause_ms=300)  # a boot not held
    assert quiet.calls_for_answer(ack_only, 1150, held_head=2, pause_ms=300)  # the log head moved
    whole = gossip_pb2.State(node_id="a", boot_epoch=1, seq=8, log_head=3, sent_at_ms=1300)
    assert quiet.calls_for_answer(whole, 1150, held_head=3, pause_ms=300)
    counted = gossip_pb2.State(node_id="a", boot_epoch=1, seq=8, base_seq=7, log_head=3, sent_at_ms=1300)
    counted.windows.add(subject="k:k1", window="min", start=5, requests=1)
    assert quiet.calls_for_answer(counted, 1150, held_head=3, pause_ms=300)
