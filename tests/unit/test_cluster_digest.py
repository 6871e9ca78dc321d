"""Digest pulls (shieldes/cluster/digest.py) with bounded fanout: each component is asked from one
target per round, an answer carries only what the asker lacks, so a change crosses each link about
once (relays carried it about k times); a pull never brings back what the asker must not count.
Convergence under loss, duplication, reordering and restarts is the property test of
tests/unit/test_cluster_fanout.py (digests, relays, and a rolling upgrade of both)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from shieldes.cluster import digest, view
from shieldes.cluster.gossip import Gossip, open_envelope
from shieldes.cluster.view import NodeState
from shieldes.cluster.wire import pulled_from_proto
from tests.unit.test_cluster_fanout import SECRET, WINDOWS, Own, gossip

HOT = ("k:hot", "min", 5)


@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(1, 3)), unique=True, max_size=12),
       st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=4, unique=True), st.integers(0, 999))
def test_each_component_is_asked_from_one_target_and_answered_by_one(
        comps: list[tuple[str, int]], targets: list[str], salt: int) -> None:
    holdings = digest.Holdings()
    asks = digest.ask(comps, holdings, targets, salt, "me")
    assert sorted(c for asked in asks.values() for c in asked) == sorted(comps)
    for comp in comps:
        if comp[0] in targets:
            assert comp in asks[comp[0]]  # the origin itself, when it is a target
    # a component the asker does not hold at all falls to exactly one target
    v = view.fold(NodeState(n, e, seq=1, windows={HOT: (1, 0, 0)}) for n, e in comps)
    answered: list[tuple[str, int]] = []
    for t in targets:
        pulled = digest.answer(v, holdings, me=t, asked={}, targets=targets, salt=salt, asker="me",
                               own=(t, 99), own_seq=0, own_labels=digest.Labels(), own_values={})
        answered.extend(p.state.component for p in pulled)
    assert sorted(answered) == sorted(comps)


def test_labels_find_what_may_be_newer_than_a_version() -> None:
    labels = digest.Labels()
    labels.set(("w", 1), digest.code(5, True))
    labels.set(("w", 2), digest.code(5, False))  # at most message 5's value
    labels.set(("w", 3), digest.code(7, True))
    assert sorted(labels.above(4)) == [("w", 1), ("w", 2), ("w", 3)]
    assert sorted(labels.above(5)) == [("w", 3)]
    labels.set(("w", 3), digest.code(4, True))
    labels.drop(("w", 1))
    assert sorted(labels.above(3)) == [("w", 2), ("w", 3)] and labels.above(5) == []


def _cluster(names: list[str], k: int, digests: bool,
             forward: bool = True) -> tuple[dict[str, Own], dict[str, Gossip], list[float]]:
    clock = [0.0]
    owns = {n: Own(n, 1) for n in names}
    return owns, {n: gossip(owns[n], clock, k=k, digests=digests, forward=forward) for n in names}, clock


def _copies_of_one_change(digests: bool, forward: bool = True) -> tuple[dict[str, int], int]:
    """12 nodes, 3 targets per round, a reliable network: how often each node receives one change
    of one origin (in pushes, relays or answers) until every node holds it, and the rounds taken."""
    names = [f"n{i:02d}" for i in range(12)]
    owns, nodes, clock = _cluster(names, 3, digests, forward)
    received = {n: 0 for n in names}
    watching = [False]

    def count(target: str, state: object) -> None:
        for c in [state, *getattr(state, "relayed", [])]:
            if getattr(c, "node_id", "") == "n00":
                received[target] += sum(1 for w in getattr(c, "windows", []) if w.subject == HOT[0])

    def round_() -> None:
        clock[0] += 0.15
        for name in names:
            g = nodes[name]
            seq, messages = g.prepare(g.pick([t for t in names if t != name]))
            for target, (base, envelope) in messages.items():
                if watching[0]:
                    count(target, open_envelope(envelope, SECRET))
                ack = nodes[target].receive(envelope)
                if watching[0] and ack.HasField("pulled"):
                    count(name, open_envelope(ack.pulled, SECRET))
                g.acknowledged(target, seq, base, ack)

    for name in names:  # some load everywhere, then first contacts (whole states) are over
        owns[name].windows[WINDOWS[0]] = (1, 0, 0)
    for _ in range(8):
        round_()
    owns["n00"].windows[HOT] = (1, 10, 0)
    watching[0] = True
    rounds = 0
    while any(nodes[n].view.components[("n00", 1)].windows.get(HOT) != (1, 10, 0) for n in names[1:]):
        round_()
        rounds += 1
        assert rounds < 12
    for _ in range(6):  # and nothing more comes afterwards
        round_()
    return received, rounds


def test_a_change_crosses_each_link_about_once_with_digests_and_about_k_times_with_relays() -> None:
    pulled, rounds = _copies_of_one_change(digests=True, forward=False)  # the release before forwarded news
    forwarded, rounds_forwarded = _copies_of_one_change(digests=True)  # news forwarded once (news.py)
    relayed, _ = _copies_of_one_change(digests=False)
    others = [n for n in pulled if n != "n00"]
    assert all(pulled[n] >= 1 and forwarded[n] >= 1 for n in others)
    assert max(pulled.values()) <= 2 and sum(pulled.values()) <= len(others) + 3  # news targets: one more
    # forwarding: about one more copy for half the nodes (k·per_news = 6 forwards to 11 nodes), a round less
    assert max(forwarded.values()) <= 2 and sum(forwarded.values()) <= 1.5 * len(others) + 3
    assert rounds_forwarded < rounds <= 4  # ceil(11 / 3) rounds of rotation bound it
    assert sum(relayed.values()) >= 2 * sum(forwarded.values())


def test_a_pull_brings_no_reservation_of_a_boot_the_asker_never_heard_from() -> None:
    owns, nodes, clock = _cluster(["a", "b", "c"], 1, True)
    a, b, c = nodes["a"], nodes["b"], nodes["c"]

    def push(sender: Gossip, target: Gossip) -> None:
        sender.pick([n for n in nodes if n != sender.node_id])
        seq, messages = sender.prepare([target.node_id])
        base, envelope = messages[target.node_id]
        sender.acknowledged(target.node_id, seq, base, target.receive(envelope))

    owns["c"].windows[WINDOWS[0]] = (4, 40, 0)
    owns["c"].reservations["k:k1"] = (900, 0)
    for s, t in [(a, b), (b, a), (c, b), (b, c), (a, c), (c, a)]:  # first contacts: every link known
        push(s, t)
    fresh = gossip(Own("a", 2), clock, k=1)  # a restarts: it has heard from nobody yet
    nodes["a"] = fresh
    push(b, fresh)
    push(fresh, b)  # fresh's first pushes: whole states; the Acks say fanout and digests
    push(fresh, c)
    push(fresh, b)  # k = 1 of 2 peers: fresh pulls from b, which answers what fresh lacks, c's boot too
    held = fresh.view.components[("c", 1)]
    assert held.windows[WINDOWS[0]] == (4, 40, 0)  # what c admitted counts
    assert not held.reservations and "c" not in fresh.view.heard  # no reservation, c not taken for alive
    push(c, fresh)  # c's own word: a delta on a message of a's boot before (fresh answers need_full),
    push(c, fresh)  # then its whole state, reservations included
    assert fresh.view.components[("c", 1)].reservations == {"k:k1": (900, 0)}


def test_an_answer_to_an_earlier_boot_is_ignored() -> None:
    owns, nodes, clock = _cluster(["a", "b", "c"], 1, True)

    def push(s: Gossip, t: Gossip) -> None:
        s.pick([n for n in nodes if n != s.node_id])
        seq, messages = s.prepare([t.node_id])
        s.acknowledged(t.node_id, seq, messages[t.node_id][0], t.receive(messages[t.node_id][1]))

    for s in nodes.values():
        for t in nodes.values():
            if s is not t:
                push(s, t)
    owns["c"].windows[WINDOWS[0]] = (4, 40, 0)
    push(nodes["c"], nodes["b"])  # c's message with the change: its answers hold it from now on
    a = nodes["a"]
    a.pick(["b", "c"])
    seq, messages = a.prepare(["c"])
    ack = nodes["c"].receive(messages["c"][1])
    answer = pulled_from_proto(open_envelope(ack.pulled, SECRET))
    assert [p.state.windows for p in answer if p.state.node_id == "c"] == [{WINDOWS[0]: (4, 40, 0)}]
    restarted = gossip(Own("a", 2), clock, k=1)
    restarted.acknowledged("c", seq, messages["c"][0], ack)  # the answer names boot 1's push
    assert ("c", 1) not in restarted.view.components
    a.acknowledged("c", seq, messages["c"][0], ack)
    assert a.view.components[("c", 1)].windows[WINDOWS[0]] == (4, 40, 0)


def test_an_answer_after_a_whole_state_carries_only_what_the_asker_lacks() -> None:
    """A whole state gives each entry the message it last changed in: its receiver answers an asker
    that holds the boot as of an earlier version only the entries changed since, not every entry
    the whole state brought (which the asker holds)."""
    owns, nodes, clock = _cluster(["a", "b", "c", "o"], 1, True)
    keys = [(f"k:{i}", "min", 5) for i in range(10)]
    for i, wid in enumerate(keys):
        owns["o"].windows[wid] = (i + 1, 10 * i, 0)

    def push(s: Gossip, t: Gossip) -> None:
        s.pick([n for n in nodes if n != s.node_id])
        seq, messages = s.prepare([t.node_id])
        s.acknowledged(t.node_id, seq, messages[t.node_id][0], t.receive(messages[t.node_id][1]))

    for _ in range(2):  # first contacts, then every node takes the others for peers that answer pulls
        for s in list(nodes.values()):
            for t in list(nodes.values()):
                if s is not t:
                    push(s, t)
    a, o = nodes["a"], nodes["o"]
    owns["o"].windows[keys[0]] = (50, 0, 0)  # a change a has not heard of
    b = nodes["b"] = gossip(Own("b", 2), clock, k=1)  # b restarts: it holds nothing of o
    push(o, b)  # a delta: b lacks its base and asks for the whole state
    push(o, b)  # the whole state: every entry of o, many rounds after a heard o last
    for _ in range(2):  # a's push to b's new boot (need_full), then its whole state with the digest
        a.pick(["b", "c", "o"])
        seq, messages = a.prepare(["b"])
        ack = b.receive(messages["b"][1])
        if ack.HasField("pulled"):
            answer = [p for p in pulled_from_proto(open_envelope(ack.pulled, SECRET)) if p.state.node_id == "o"]
        a.acknowledged("b", seq, messages["b"][0], ack)
    held = a.view.components[("o", 1)]
    answered = {e: v for p in answer for e, v in digest.entries(p.state).items()}
    assert answered == {("w", keys[0]): (50, 0, 0)}, answered  # only the change: a held every other entry
    assert held.windows[keys[0]] == (50, 0, 0)


def test_a_whole_state_tightens_the_labels_of_entries_held_under_a_looser_one() -> None:
    comp, wid = ("o", 1), ("k:1", "min", 5)
    state = NodeState("o", 1, windows={wid: (3, 30, 0)})
    holdings = digest.Holdings()
    holdings.learn(comp, None, state, state, digest.UNKNOWN)  # relayed by an older release: any message's
    assert holdings.held[comp].labels.above(9) == [("w", wid)]  # answered to every asker
    whole = NodeState("o", 1, seq=7, windows={wid: (3, 30, 0)})
    holdings.whole(comp, state, state, whole, 7)  # a whole state of an older release: at most message 7's
    assert holdings.held[comp].labels.above(6) == [("w", wid)] and holdings.held[comp].labels.above(7) == []
    holdings.whole(comp, state, state, replace(whole, seq=8), 8, given={("w", wid): 2})  # last changed in 2
    assert holdings.held[comp].labels.above(2) == [] and holdings.held[comp].labels.above(1) == [("w", wid)]
    holdings.whole(comp, state, state, replace(whole, seq=9), 9)  # a looser label never replaces it
    assert holdings.held[comp].labels.above(2) == []
