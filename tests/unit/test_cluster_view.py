"""The cluster view (shieldes/cluster/view.py), the one merge production runs: a G-counter join
(idempotent, commutative, associative, blind to order and duplicates) in which a newer boot epoch
of a node supersedes every older one, and the read-outs the meter uses."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.cluster import delta
from shieldes.cluster.gossip_pb2 import State
from shieldes.cluster.view import (
    EMPTY,
    Health,
    NodeState,
    View,
    ViewCell,
    expire_orphans,
    fold,
    forget_silent,
    join,
    merge,
    observe_epochs,
    prune,
    regrouped,
    relayed,
    spend_by_subject,
    takeover,
)
from shieldes.cluster.view_reads import (
    ViewReads,
    deployment_open,
    not_serving,
    participants,
    pending_spend,
    reservations,
    spend_of,
    window_allowance,
    window_count,
)
from shieldes.cluster.wire import from_proto, to_proto
from shieldes.events.catalog import UsageDelta
from shieldes.projections.usage import UsageState

NODES = [("a", 1), ("a", 2), ("b", 7), ("c", 3)]
DAYS = range(100, 101)


# The strategies the composites below draw from, built once: built afresh in every example they
# cost more than the draws (Hypothesis's strategy cache churned), and the examples are the same.
SMALL = st.integers(0, 50)
NODE = st.sampled_from(NODES)
SEQ = st.integers(0, 20)
NODE_WINDOWS = st.dictionaries(st.tuples(st.sampled_from(["k:k1", "k:k2"]), st.just("rpm"), st.integers(0, 2)),
                               st.tuples(SMALL, SMALL, SMALL), max_size=4)
NODE_PENDING = {epoch: st.dictionaries(st.tuples(st.just(epoch), st.integers(1, 4), st.just("k:k1"), st.just(100)),
                                       st.tuples(SMALL, SMALL, SMALL), max_size=3) for _, epoch in NODES}
NODE_RESERVATIONS = st.dictionaries(st.just("k:k1"), st.tuples(SMALL, SMALL), max_size=1)
LOG_HEAD = st.integers(0, 9)


@st.composite
def node_states(draw: st.DrawFn) -> NodeState:
    node, epoch = draw(NODE)
    windows = draw(NODE_WINDOWS)
    pending = draw(NODE_PENDING[epoch])
    reservations = draw(NODE_RESERVATIONS)
    return NodeState(node, epoch, seq=draw(SEQ), log_head=draw(LOG_HEAD),
                     windows=windows, pending=pending, reservations=reservations)


def reserved_in_flight(view: View, subject: str, *, exclude: str | None = None) -> int:
    """nUSD peers hold reserved for `subject` (the admin API's read of it)."""
    return reservations(view, exclude=exclude).get(subject, 0)


def no_durable(_node: str, _epoch: int) -> int:
    return 0


@settings(max_examples=80, deadline=None)
@given(st.lists(node_states(), max_size=8), st.randoms(use_true_random=False))
def test_order_and_duplicates_do_not_matter(states: list[NodeState], rnd: random.Random) -> None:
    expected = fold(states)
    shuffled = states + rnd.sample(states, k=len(states) // 2)  # duplicates too
    rnd.shuffle(shuffled)
    assert fold(shuffled).components == expected.components
    assert fold(shuffled).epochs == expected.epochs


@settings(max_examples=80, deadline=None)
@given(node_states(), node_states(), node_states())
def test_join_laws(a: NodeState, b: NodeState, c: NodeState) -> None:
    va, vb, vc = fold([a]), fold([b]), fold([c])
    assert join(va, va) == va  # idempotent
    assert join(va, vb).components == join(vb, va).components  # commutative
    assert join(join(va, vb), vc).components == join(va, join(vb, vc)).components  # associative
    joined = join(va, vb)
    # of an older boot only what it admitted survives: no claims, reservations or pending usage
    for (node, epoch), state in joined.components.items():
        if epoch < joined.epochs[node]:
            assert not (state.pending or state.reservations or state.allowances)


def test_counting_across_nodes_and_a_newer_boot_supersedes_the_old_one() -> None:
    view = fold([
        NodeState("a", 1, seq=1, windows={("k:k", "rpm", 10): (5, 100, 0)}, reservations={"k:k": (9, 0)}),
        NodeState("a", 1, seq=2, windows={("k:k", "rpm", 10): (7, 150, 10)}),  # newer cumulative value
        NodeState("a", 1, seq=1, windows={("k:k", "rpm", 10): (5, 100, 0)}),  # replayed old message
        NodeState("b", 1, seq=1, windows={("k:k", "rpm", 10): (3, 30, 0), ("k:k", "rpm", 9): (50, 0, 0)}),
    ])
    assert window_count(view, "k:k", "rpm", [10]) == (10, 170)  # tokens net of released estimates
    assert window_count(view, "k:k", "rpm", [9, 10], exclude="a") == (53, 30)
    assert reserved_in_flight(view, "k:k") == 9
    # a restarted with the same node id: its old boot's reservation in flight died with it, but
    # what it admitted in the window still counts (those requests were served)
    view = merge(view, NodeState("a", 2, seq=1, windows={("k:k", "rpm", 10): (1, 10, 0)}))
    assert window_count(view, "k:k", "rpm", [10]) == (11, 180)
    assert reserved_in_flight(view, "k:k") == 0
    # a late or replayed message of the old boot brings no reservation back; its counts merge by max
    late = merge(view, NodeState("a", 1, seq=9, reservations={"k:k": (400, 0)},
                                 windows={("k:k", "rpm", 10): (5, 100, 0)}))
    assert late.components[("a", 1)].windows == view.components[("a", 1)].windows
    assert reserved_in_flight(late, "k:k") == 0
    pruned = prune(view, min_window_start={"rpm": 10}, durable=no_durable)
    assert ("k:k", "rpm", 9) not in pruned.components[("b", 1)].windows
    # once its windows ended, nothing of the old boot is left
    ended = prune(view, min_window_start={"rpm": 11}, durable=no_durable)
    assert ("a", 1) not in ended.components and ("a", 2) in ended.components


def test_replays_of_an_old_boot_are_refused_after_the_receiver_restarts() -> None:
    crashed = NodeState("a", 1, seq=5, reservations={"k:k": (4_000_000_000, 0)})  # $4 in flight
    # the receiver restarted: empty view, but it learns boot epochs from cluster_nodes and the log
    cell = ViewCell()
    cell.observe_epochs({"a": 2})
    assert not cell.accept(crashed, now=1.0)
    assert reserved_in_flight(cell.value, "k:k") == 0
    assert participants(cell.value, now=1.0, within=1.0, exclude="me") == []
    assert cell.accept(NodeState("a", 2, seq=1), now=1.0)


def test_an_outside_epoch_drops_the_old_boot_before_the_new_one_gossips() -> None:
    view = merge(EMPTY, NodeState("a", 1, seq=3, reservations={"k:k": (50, 0)},
                                  pending={(1, 1, "k:k", 100): (1, 1, 70)}), now=5.0)
    assert pending_spend(view, "k:k", DAYS, no_durable) == 50 + 70
    view = observe_epochs(view, {"a": 2})  # cluster_nodes shows a new boot of a
    # its reservation died with it; its settled usage counts until the log holds it (an orphan)
    assert pending_spend(view, "k:k", DAYS, no_durable) == 70
    assert pending_spend(view, "k:k", DAYS, lambda n, e: 1) == 0
    assert participants(view, now=5.0, within=1.0, exclude="me") == []  # the new boot is not heard yet


def test_pending_usage_stops_counting_once_the_log_holds_it() -> None:
    pending = {(5, 1, "k:k", 100): (2, 20, 300), (5, 2, "k:k", 100): (1, 5, 50)}
    view = merge(EMPTY, NodeState("a", 5, pending=pending))
    durable = {("a", 5): 0}

    def d(node: str, epoch: int) -> int:
        return durable.get((node, epoch), 0)

    assert pending_spend(view, "k:k", DAYS, d) == 350
    assert pending_spend(view, "k:k", range(101, 102), d) == 0  # another day
    durable[("a", 5)] = 1  # flush 1 reached the log: its share counts from the log now, not gossip
    assert pending_spend(view, "k:k", DAYS, d) == 50
    view = merge(view, NodeState("a", 5, pending={(5, 1, "k:k", 100): (2, 20, 300)}))  # late duplicate
    assert pending_spend(view, "k:k", DAYS, d) == 50
    durable[("a", 5)] = 2
    assert pending_spend(prune(view, min_window_start={}, durable=d), "k:k", DAYS, d) == 0


def test_reservations_are_a_pn_counter() -> None:
    view = fold([
        NodeState("a", 1, seq=1, reservations={"k:k": (100, 0)}),
        NodeState("a", 1, seq=3, reservations={"k:k": (150, 100)}),
        NodeState("a", 1, seq=2, reservations={"k:k": (150, 60)}),  # arrives late
        NodeState("b", 1, seq=1, reservations={"k:k": (40, 0)}),
    ])
    assert reserved_in_flight(view, "k:k") == 50 + 40
    assert reserved_in_flight(view, "k:k", exclude="b") == 50


def test_only_peers_that_gossip_take_part_in_a_split() -> None:
    view = fold([NodeState("b", 1, seq=1)])
    view = merge(view, NodeState("b", 1, seq=2), now=10.0)
    view = merge(view, NodeState("c", 4, seq=1), now=8.0)
    # "d" registered in cluster_nodes while starting but never gossiped: not a participant
    view = observe_epochs(view, {"d": 9})
    assert participants(view, now=10.5, within=1.0, exclude="a") == ["b"]  # c silent for 2.5 s
    # silent but still taking our pushes (only its messages are lost): it keeps its part
    assert participants(view, now=10.5, within=1.0, exclude="a", reachable=["c"]) == ["b", "c"]
    # a dead peer (its address refuses connections) leaves at once, even if heard recently
    assert participants(view, now=10.5, within=5.0, exclude="a", gone=["c"]) == ["b"]
    # one whose row says `starting` gossips (it hears its peers before it serves) but admits nothing yet
    assert participants(view, now=10.5, within=5.0, exclude="a", starting=["c"]) == ["b"]
    assert participants(view, now=10.5, within=1.0, exclude="a", reachable=["c"], starting=["c"]) == ["b"]
    # which peers are starting, from the rows last read: a row of the boot heard that says it serves
    assert not_serving(view, {"b": 1, "c": 4}) == set()
    assert not_serving(view, {"b": 1}) == {"c"}  # its row says `starting`, or was not read yet
    assert not_serving(view, {"b": 1, "c": 3}) == {"c"}  # a row of an older boot: this one registered since
    assert not_serving(view, None) == set()  # rows not read lately (the database away): gossip decides
    # forgotten after a long silence: components and reservations gone, epochs kept
    gone = forget_silent(view, now=30.0, after=21.0)
    assert set(gone.components) == {("b", 1)} and gone.epochs["c"] == 4


def test_a_silent_node_keeps_counting_what_it_admitted_until_the_window_ends() -> None:
    # c is partitioned away (or paused) longer than the forget timeout, inside one window
    view = merge(EMPTY, NodeState("c", 4, seq=3, windows={("k:k", "rpm", 10): (20, 0, 0)},
                                  reservations={"k:k": (70, 0)}, allowances={("k:k", "rpm", 10): 5}), now=1.0)
    gone = forget_silent(view, now=30.0, after=15.0)
    assert window_count(gone, "k:k", "rpm", [10]) == (20, 0)  # it used to drop to 0: L more let through
    assert reserved_in_flight(gone, "k:k") == 0 and not gone.components[("c", 4)].allowances
    later = forget_silent(prune(gone, min_window_start={"rpm": 11}, durable=no_durable), now=31.0, after=15.0)
    assert later.components == {}


def test_peers_tell_a_restarted_node_what_its_crashed_boot_admitted() -> None:
    w = ("k:k", "rpm", 10)
    # b holds a's crashed boot (20 admitted in the window) besides c and a's new boot
    b_view = fold([NodeState("a", 1, seq=4, windows={w: (20, 200, 0)}, reservations={"k:k": (9, 0)}),
                   NodeState("c", 1, windows={w: (5, 50, 10)}, seen={"a": (2, 1)}),
                   NodeState("a", 2, seq=1, windows={w: (2, 20, 0)}, seen={"c": (1, 0)})])
    relays = relayed(b_view)
    assert [(s.component, dict(s.windows), dict(s.reservations)) for s in relays] == [
        (("a", 1), {w: (20, 200, 0)}, {})]
    # a's new boot, from b's and c's messages: without the relay it misses its crashed boot's 20
    a_view = fold([NodeState("b", 1, windows={w: (3, 30, 0)}), NodeState("c", 1, windows={w: (5, 50, 10)})])
    assert window_count(a_view, "k:k", "rpm", [10], exclude="a", own_epoch=2) == (8, 70)
    cell = ViewCell()
    cell.value = a_view
    for old in relays + relays:  # relayed by b and by c: merged by max, never added up
        cell.accept_relayed(old, "a", 2)
    assert window_count(cell.value, "k:k", "rpm", [10], exclude="a", own_epoch=2) == (28, 270)
    assert window_count(cell.value, "k:k", "rpm", [10], exclude="a") == (8, 70)  # every boot of a left out
    assert participants(cell.value, now=0.0, within=1.0, exclude="a") == ["b", "c"]  # relays are not heard
    # a relay of the node's own current boot (a peer's stale view of it) is ignored: it counts itself
    cell.accept_relayed(NodeState("a", 2, windows={w: (50, 0, 0)}), "a", 2)
    assert window_count(cell.value, "k:k", "rpm", [10], exclude="a", own_epoch=2) == (28, 270)
    # a relayed boot ends with its windows
    assert relayed(prune(observe_epochs(cell.value, {"a": 2}), min_window_start={"rpm": 11},
                         durable=no_durable)) == []


def test_counts_of_a_node_a_peer_cannot_hear_are_relayed_to_it() -> None:
    w = ("k:k", "rpm", 10)
    # c's view: a and b gossip to c, but a stopped hearing b (a partial partition) at b's message 10
    view = fold([NodeState("a", 1, seq=50, windows={w: (7, 0, 0)}, seen={"b": (1, 10), "c": (1, 50)}),
                 NodeState("b", 1, seq=50, windows={w: (9, 0, 0)}, seen={"a": (1, 50), "c": (1, 50)},
                           allowances={w: 3})])
    relays = relayed(view)
    assert [(s.component, dict(s.windows), dict(s.allowances)) for s in relays] == [(("b", 1), {w: (9, 0, 0)}, {})]
    # what a makes of it: b's counts by max, b not heard (no say in splits), b's gauges untouched
    a = ViewCell()
    a.value = merge(EMPTY, NodeState("b", 1, seq=10, windows={w: (4, 0, 0)}, allowances={w: 5}), now=1.0)
    for r in relays:
        a.accept_relayed(r, "a", 1)
    assert window_count(a.value, "k:k", "rpm", [10], exclude="a") == (9, 0)
    assert a.value.components[("b", 1)].allowances == {w: 5} and a.value.heard == {"b": 1.0}
    # once a hears b again (its acknowledgements catch up), nothing more is relayed
    healed = merge(view, NodeState("a", 1, seq=51, seen={"b": (1, 48), "c": (1, 51)}))
    assert relayed(healed) == []


def test_a_dead_boots_unflushed_usage_is_an_orphan_until_the_log_holds_it() -> None:
    usage = (2, 20, 10, 300, 0, 0, 0, 0, 0, 0, 0)
    unflushed = {(1, 4, "k1", None, "dep", "m", 500): usage,
                 (1, 5, "k1", "t1", "dep", "m", 500): (1, 1, 1, 70, 0, 0, 0, 0, 0, 0, 0)}
    view = merge(EMPTY, NodeState("a", 1, seq=3, reservations={"k:k1": (50, 0)},
                                  pending={(1, 4, "k:k1", 100): (0, 0, 300), (1, 5, "k:k1", 100): (0, 0, 70)},
                                  unflushed=unflushed), now=5.0)
    assert takeover(view, no_durable) == []  # alive: its own flusher appends it
    view = observe_epochs(view, {"a": 2}, now=6.0)  # a restarted: boot 1 is dead
    assert not view.components[("a", 1)].holds_usage and view.orphaned_at == {("a", 1): 6.0}
    # its in-flight reservation died with it; its settled usage still counts until it is in the log
    assert reserved_in_flight(view, "k:k1") == 0 and pending_spend(view, "k:k1", DAYS, no_durable) == 370
    assert takeover(view, no_durable) == [("a", 1, 4, [("k1", None, "dep", "m", 500, usage)]),
                                          ("a", 1, 5, [("k1", "t1", "dep", "m", 500,
                                                        (1, 1, 1, 70, 0, 0, 0, 0, 0, 0, 0))])]

    def seq4(node: str, epoch: int) -> int:
        return 4 if (node, epoch) == ("a", 1) else 0

    assert [t[2] for t in takeover(view, seq4)] == [5]  # seq 4 is in the log: only 5 is left
    # a peer that is not the leader steps in only for boots dead for a while
    assert takeover(view, seq4, orphaned_before=6.0) == []
    assert [t[2] for t in takeover(view, seq4, orphaned_before=6.5)] == [5]
    assert pending_spend(view, "k:k1", DAYS, seq4) == 70
    view = prune(view, min_window_start={}, durable=lambda n, e: 5 if (n, e) == ("a", 1) else 0)
    assert view.orphans == {} and view.orphaned_at == {}
    # a late message of the dead boot does not bring its usage back
    late = merge(view, NodeState("a", 1, seq=9, unflushed=unflushed, pending={(1, 6, "k:k1", 100): (0, 0, 9)}))
    assert late.orphans == {} and takeover(late, no_durable) == []
    assert pending_spend(late, "k:k1", DAYS, no_durable) == 0


def test_a_silent_node_leaves_an_orphan_and_a_node_heard_again_takes_it_back() -> None:
    state = NodeState("b", 7, seq=1, unflushed={(7, 1, "k1", None, "dep", "m", 500): (1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0)},
                      windows={("k:k1", "rpm", 1): (1, 1, 0)})
    view = forget_silent(merge(EMPTY, state, now=1.0), now=10.0, after=3.0)
    assert [t[:3] for t in takeover(view, no_durable)] == [("b", 7, 1)]
    assert not view.components[("b", 7)].holds_usage  # what it admitted counts on, its usage is the orphan's
    assert forget_silent(view, now=11.0, after=3.0) == view  # forgetting again changes nothing
    back = merge(view, replace(state, seq=2), now=11.0)  # it was only paused: its own flusher appends it
    assert back.orphans == {} and takeover(back, no_durable) == []
    # nobody appended it (no leader, database down): it stops counting after a while
    assert expire_orphans(view, now=10.0 + 5, after=10.0) == view
    assert expire_orphans(view, now=10.0 + 11, after=10.0).orphans == {}


@settings(max_examples=60, deadline=None)
@given(st.lists(node_states(), max_size=6), st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(1, 9)))
def test_orphans_join_like_components(states: list[NodeState], epochs: dict[str, int]) -> None:
    va = observe_epochs(fold(states), epochs, now=1.0)
    assert join(va, va) == va
    vb = observe_epochs(fold(reversed(states)), epochs, now=1.0)
    assert join(va, vb).orphans == join(vb, va).orphans


SUBJECTS = ["k:k1", "k:k2", "t:t1"]


SPENDING_PENDING = {
    epoch: st.dictionaries(
        st.tuples(st.just(epoch), st.integers(1, 4), st.sampled_from(SUBJECTS), st.integers(99, 101)),
        st.tuples(st.just(1), st.just(1), st.integers(0, 90)), max_size=6)
    for _, epoch in NODES}
SPENDING_RESERVATIONS = st.dictionaries(st.sampled_from(SUBJECTS), st.tuples(st.integers(0, 50), st.integers(0, 50)),
                                        max_size=2)


@st.composite
def spending_states(draw: st.DrawFn) -> NodeState:
    """States with pending spend of several subjects over several days."""
    node, epoch = draw(NODE)
    pending = draw(SPENDING_PENDING[epoch])
    reservations = draw(SPENDING_RESERVATIONS)
    return NodeState(node, epoch, seq=draw(SEQ), pending=pending, reservations=reservations)


def scanned_spend(view: View, subject: str, days: range, durable: Callable[[str, int], int], exclude: str) -> int:
    """The definition, entry by entry over every state: what the index must always agree with."""
    total = 0
    for (node, _), state in [*view.components.items(), *view.orphans.items()]:
        if node != exclude:
            total += sum(v[2] for (epoch, seq, subj, day), v in state.pending.items()
                         if subj == subject and day in days and seq > durable(node, epoch))
            r = state.reservations.get(subject)
            total += max(0, r[0] - r[1]) if r else 0
    return total


Step = tuple[str, Any]


SPENDING = spending_states()
STEP_KIND = st.sampled_from(["msg", "msg", "msg", "delta", "delta", "replay", "relay", "join", "durable", "durable",
                             "epoch", "silent", "expire"])
JOINED = st.lists(SPENDING, max_size=3)
REPLAYED = st.integers(0, 50)
NODE_NAME = st.sampled_from(["a", "b", "c"])
DURABLE_SEQ = st.integers(0, 4)


@st.composite
def view_steps(draw: st.DrawFn) -> Step:
    """One thing that happens to a node's view: a message (whole, a delta on what is held, a
    replay of an earlier one, relayed counts, another node's view joined), flushes reaching the
    log and pruned, a new boot superseding an old one (its usage an orphan), a node falling
    silent, orphans expiring."""
    kind = draw(STEP_KIND)
    if kind in ("msg", "delta", "relay"):
        return kind, draw(SPENDING)
    if kind == "join":
        return kind, draw(JOINED)
    if kind == "replay":
        return kind, draw(REPLAYED)
    if kind == "durable":
        return kind, (draw(NODE_NAME), draw(DURABLE_SEQ))
    if kind == "epoch":
        return kind, draw(NODE)
    return kind, draw(NODE_NAME)


def grouped_states(view: View) -> list[NodeState]:
    return [*view.components.values(), *view.orphans.values()]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(view_steps(), st.booleans()), max_size=16), st.sampled_from(["a", "b", "me"]))
def test_a_node_long_spend_index_reads_what_a_scan_of_every_entry_reads(
        steps: list[tuple[Step, bool]], exclude: str) -> None:
    """The grouping by subject lives with each state and is kept entry by entry as the view changes
    under it (merges, deltas, replays, relays, joins, new boots leaving orphans, silent nodes,
    flushes reaching the log and pruned, orphans expiring): every read matches a full scan, and
    every state's grouping equals a fresh grouping of its entries, for states still in the view
    and for every state ever held, and none is held by two states (they are updated in place)."""
    cell, durable = ViewCell(), {"a": 0, "b": 0, "c": 0}
    sent: list[NodeState] = []
    ever: list[NodeState] = []

    def d(node: str, _epoch: int) -> int:
        return durable[node]

    for now, ((kind, arg), read) in enumerate(steps):
        if kind == "msg":
            sent.append(arg)
            cell.accept(arg, float(now))
        elif kind == "replay" and sent:  # a duplicate, late or reordered
            cell.accept(sent[arg % len(sent)], float(now))
        elif kind == "delta":  # what the sender changed since the message held, folded into it
            held = cell.value.components.get(arg.component)
            if held is not None and delta.can_apply(cell.value, arg.node_id, arg.boot_epoch, held.seq):
                applied = delta.apply(held, delta.Part(replace(arg, seq=held.seq + 1)))
                assert applied.grouping.groups is None or applied.grouping.groups == spend_by_subject(applied.pending)
                cell.accept(applied, float(now), whole=True)
        elif kind == "relay":
            cell.accept_relayed(arg, "me", 1)
        elif kind == "join":
            cell.value = join(cell.value, fold(arg))
        elif kind == "durable":  # node's flushes up to seq reach the log; prune what it now holds
            node, seq = arg
            durable[node] = max(durable[node], seq)
            cell.value = prune(cell.value, min_window_start={}, durable=d)
        elif kind == "epoch":
            cell.observe_epochs({arg[0]: arg[1]}, float(now))
        elif kind == "silent":
            cell.value = forget_silent(cell.value, now=float(now) + 100, after=50.0,
                                       keep=[n for n in "abc" if n != arg])
        elif kind == "expire":
            cell.value = expire_orphans(cell.value, now=float(now), after=2.0)
        ever.extend(grouped_states(cell.value))
        for state in grouped_states(cell.value):  # kept, not rebuilt: right whether or not it was read
            assert state.grouping.groups is None or state.grouping.groups == spend_by_subject(state.pending)
        owned(ever)
        if read:
            for subject in SUBJECTS:
                for days in (range(100, 101), range(99, 102)):
                    assert pending_spend(cell.value, subject, days, d, exclude=exclude) == \
                        scanned_spend(cell.value, subject, days, d, exclude)
    for state in ever:
        assert state.grouping.groups is None or state.grouping.groups == spend_by_subject(state.pending)


DEPLOYMENTS = ["d1", "d2"]


WINDOW_ID = st.tuples(st.sampled_from(SUBJECTS[:2]), st.sampled_from(["min", "tpm"]), st.integers(0, 2))
CLAIMING_WINDOWS = st.dictionaries(WINDOW_ID, st.tuples(SMALL, SMALL, SMALL), max_size=4)
CLAIMING_ALLOWANCES = st.dictionaries(WINDOW_ID, SMALL, max_size=3)
CLAIMING_HEALTH = st.dictionaries(st.sampled_from(DEPLOYMENTS), st.builds(Health, requests=SMALL, open=st.booleans()),
                                  max_size=2)


@st.composite
def claiming_states(draw: st.DrawFn) -> NodeState:
    """States with rate-window counts, unused claims and deployment health as well as pending spend."""
    state = draw(SPENDING)
    return replace(state, windows=draw(CLAIMING_WINDOWS), allowances=draw(CLAIMING_ALLOWANCES),
                   health=draw(CLAIMING_HEALTH))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["msg", "msg", "prune", "epoch", "log", "silent"]), claiming_states(),
                          st.booleans()), max_size=14),
       st.sampled_from(["a", "b", "me"]))
def test_memoised_reads_of_a_view_read_what_the_functions_read(
        steps: list[tuple[str, NodeState, bool]], me: str) -> None:
    """Requests read the view through ViewReads, renewed as the node renews it (`of` the current
    value) and kept while the value is the same: every read, repeated or not, equals the pure
    function on the current view, as messages, prunes, new boots and silent nodes change the view
    and the log takes flushes in (the projection's usage changes in place, its position moves on)."""
    cell, usage, position = ViewCell(), UsageState(), 0
    reads = ViewReads(cell.value, me, 2)
    for now, (kind, state, twice) in enumerate(steps):
        if kind == "msg":
            cell.accept(state, float(now))
        elif kind == "prune":
            cell.value = prune(cell.value, min_window_start={"min": 1, "tpm": 1}, durable=usage.durable_seq)
        elif kind == "epoch":
            cell.observe_epochs({state.node_id: state.boot_epoch + 1}, float(now))
        elif kind == "log":  # a flush reaches the log: the fold moves its watermark in place
            seqs = usage.node_seqs.setdefault(state.node_id, {})
            seqs[state.boot_epoch] = max(seqs.get(state.boot_epoch, 0), state.seq % 5)
            position += 1
        elif kind == "silent":
            cell.value = forget_silent(cell.value, now=float(now) + 100, after=50.0, keep=[])
        for _ in range(2 if twice else 1):
            reads = reads.of(cell.value)
            view = cell.value
            for subject in SUBJECTS[:2]:
                for name in ("min", "tpm"):
                    for start in range(3):
                        assert reads.window_allowance(subject, name, start) == \
                            window_allowance(view, subject, name, start, exclude=me)
                for start in range(3):
                    assert reads.window_count(subject, "min", start) == \
                        window_count(view, subject, "min", (start,), exclude=me, own_epoch=2)
            for subject in SUBJECTS:
                for days in (range(100, 101), range(99, 102)):
                    assert reads.pending_spend(subject, days, usage, position) == \
                        pending_spend(view, subject, days, usage.durable_seq, exclude=me)
            for deployment in DEPLOYMENTS:  # (the runtime's remote_open: a fresh peer in the memoised set)
                for fresh in (["a"], ["a", "b"], ["b", "c", "me"], []):
                    assert any(n in reads.opened_by(deployment) for n in fresh) == \
                        deployment_open(view, deployment, fresh)


def test_memoised_reads_are_bounded() -> None:
    reads = ViewReads(EMPTY, "me")
    for i in range(ViewReads.MAX_MEMO + 10):
        reads.window_allowance(f"k:{i}", "min", 0)
    assert len(reads.allowances) <= ViewReads.MAX_MEMO


def owned(states: list[NodeState]) -> None:
    """No two states hold the same grouping, nor the same list of a subject's entries: groupings
    are updated in place, so a shared one would go wrong for one of them."""
    distinct = {id(s): s for s in states}.values()
    groupings = [s.grouping.groups for s in distinct if s.grouping.groups is not None]
    assert len({id(g) for g in groupings}) == len(groupings)
    entries = [e for g in groupings for e in g.values()]
    assert len({id(e) for e in entries}) == len(entries)


PENDING_IDS = st.tuples(st.just(1), st.integers(1, 6), st.sampled_from([f"k:k{i}" for i in range(8)]),
                        st.integers(99, 101))
SPEND = st.tuples(st.just(0), st.just(0), st.integers(0, 90))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(PENDING_IDS, SPEND, max_size=80), st.dictionaries(PENDING_IDS, SPEND, max_size=12),
       st.data())
def test_a_grouping_kept_entry_by_entry_is_a_grouping_made_afresh(
        old: dict[tuple[int, int, str, int], tuple[int, int, int]],
        changes: dict[tuple[int, int, str, int], tuple[int, int, int]], data: st.DataObject) -> None:
    """regrouped, the step every change of a state's entries takes (updated entry by entry, or
    afresh when most of it changed): the result equals grouping the new entries afresh, and the
    grouping moves (the old state has none left; read again, it is grouped afresh)."""
    removable = sorted(old.keys() - changes.keys())
    removed = data.draw(st.lists(st.sampled_from(removable), unique=True, max_size=12) if removable else st.just([]))
    held = NodeState("a", 1, pending=old)
    spend_of(held)
    pending = {**{p: v for p, v in old.items() if p not in removed}, **changes}
    new = regrouped(NodeState("a", 1, pending=pending), held, list(changes), removed)
    assert new.grouping.groups == spend_by_subject(pending)
    assert all(entries for entries in (new.grouping.groups or {}).values())  # no subject left without entries
    assert held.grouping.groups is None and spend_of(held) == spend_by_subject(old)


def test_a_merge_hands_the_grouping_on_and_touches_only_the_entries_that_changed() -> None:
    """A budget read after a peer's new flush (or the prune once the log holds the old one) reads
    the grouping the merge kept: the same object, updated for the changed entries, nothing
    regrouped; the state it came from has none left."""
    first = {(1, 1, f"k:k{i}", 100): (0, 0, 10) for i in range(50)}
    view = merge(EMPTY, NodeState("a", 1, seq=1, pending=first))
    held = view.components[("a", 1)]
    assert pending_spend(view, "k:k7", DAYS, no_durable) == 10  # the first read groups it, once
    grouped = held.grouping.groups
    assert grouped is not None and grouped is spend_of(held)
    k8 = grouped["k:k8"]
    second = {(1, 2, "k:k7", 100): (0, 0, 5), (1, 2, "k:new", 100): (0, 0, 3)}
    view = merge(view, NodeState("a", 1, seq=2, pending={**first, **second}))
    state = view.components[("a", 1)]
    assert state.grouping.groups is grouped and grouped["k:k8"] is k8 and held.grouping.groups is None
    assert grouped == spend_by_subject(state.pending)
    assert pending_spend(view, "k:k7", DAYS, no_durable) == 15 and pending_spend(view, "k:new", DAYS, no_durable) == 3
    # a delta (what changed since the message held) carries it the same way
    part = delta.Part(NodeState("a", 1, seq=3, pending={(1, 2, "k:new", 100): (0, 0, 8)}))
    applied = delta.apply(state, part)
    assert applied.grouping.groups is grouped and grouped["k:new"] == {(1, 2, "k:new", 100): (0, 0, 8)}
    # the log holds flush 1: pruned (most entries dropped: what is left is grouped afresh)
    pruned = prune(merge(view, applied, whole=True), min_window_start={}, durable=lambda n, e: 1)
    after = pruned.components[("a", 1)].grouping.groups
    assert after is not None and after == spend_by_subject(pruned.components[("a", 1)].pending)
    assert set(after) == {"k:k7", "k:new"}
    # a new boot: the old one's usage is an orphan, with the grouping it had
    orphaned = observe_epochs(pruned, {"a": 2})
    assert orphaned.orphans[("a", 1)].grouping.groups is after
    assert pending_spend(orphaned, "k:new", DAYS, lambda n, e: 1) == 8
    # the states it came from have none left; read again, they are grouped afresh, rightly
    assert spend_of(held) == spend_by_subject(first) and spend_of(state) == spend_by_subject(state.pending)


def test_a_prune_that_drops_nothing_keeps_the_states_pending_entries_as_they_are() -> None:
    """A prune that finds nothing durable hands back the same mappings, and the same grouping by
    subject (nothing to regroup, nothing to copy)."""
    state = NodeState("a", 1, pending={(1, 3, "k:k1", 100): (1, 1, 5)}, unflushed={(1, 3, "k1", None, "p", "m", 9):
                                                                             (1, 1, 1, 5)})
    view = merge(EMPTY, state)
    grouped = spend_of(view.components[("a", 1)])
    pruned = prune(view, min_window_start={}, durable=no_durable)
    assert pruned.components[("a", 1)].pending is view.components[("a", 1)].pending
    assert pruned.components[("a", 1)].grouping.groups is grouped
    assert pruned.components[("a", 1)].unflushed is view.components[("a", 1)].unflushed
    assert not prune(view, min_window_start={}, durable=lambda n, e: 3).components[("a", 1)].pending


def test_unflushed_media_units_cross_the_wire_and_reach_the_takeover() -> None:
    """A dead boot's unflushed deltas carry their images, seconds, characters and hosted tool uses
    through gossip, so the flush the leader appends on its behalf records them as the boot would
    have; a message from a node of an earlier release (no such fields) reads as none of them."""
    tts = (3, 0, 0, 450, 0, 0, 30, 0, 0, 0, 0)
    searched = (2, 10, 5, 20_000_500, 0, 0, 0, 2, 0, 0, 20_000_000)  # two web searches at $0.01
    unflushed = {(1, 4, "k1", None, "dep", "tts-1", 500): tts,
                 (1, 4, "k1", None, "dep", "whisper-1", 500): (1, 0, 0, 600, 0, 6, 0, 0, 0, 0, 0),
                 (1, 4, "k1", None, "dep", "gpt-5", 500): searched}
    state = NodeState("a", 1, seq=3, unflushed=unflushed)
    sent = to_proto(state, sent_at_ms=1, gossip_address="a:7946")
    got = from_proto(State.FromString(sent.SerializeToString()))
    assert got.unflushed == unflushed
    view = observe_epochs(merge(EMPTY, got, now=5.0), {"a": 2}, now=6.0)
    [(_, _, seq, deltas)] = takeover(view, no_durable)
    made = [UsageDelta(k, t, p, m, h, *u) for k, t, p, m, h, u in deltas]  # as the leader builds them
    assert seq == 4 and [(d.model, d.characters, d.audio_seconds, d.web_searches, d.tools_nusd) for d in made] == [
        ("gpt-5", 0, 0, 2, 20_000_000), ("tts-1", 30, 0, 0, 0), ("whisper-1", 0, 6, 0, 0)]
    old = State.FromString(sent.SerializeToString())
    for u in old.unflushed:  # a peer of an earlier release sends none of the units
        for name in ("images", "audio_seconds", "characters", "web_searches", "file_searches", "containers",
                     "tools_nusd"):
            u.ClearField(name)
    assert set(from_proto(old).unflushed.values()) == {(3, 0, 0, 450, 0, 0, 0, 0, 0, 0, 0),
                                                        (1, 0, 0, 600, 0, 0, 0, 0, 0, 0, 0),
                                                        (2, 10, 5, 20_000_500, 0, 0, 0, 0, 0, 0, 0)}
