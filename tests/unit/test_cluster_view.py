"""The cluster view (shieldes/cluster/view.py), the one merge production runs: a G-counter join
(idempotent, commutative, associative, blind to order and duplicates) in which a newer boot epoch
of a node supersedes every older one, and the read-outs the meter uses."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.cluster.view import (
    EMPTY,
    NodeState,
    ViewCell,
    fold,
    forget_silent,
    join,
    merge,
    observe_epochs,
    participants,
    pending_spend,
    prune,
    reserved_in_flight,
    window_count,
)

NODES = [("a", 1), ("a", 2), ("b", 7), ("c", 3)]
DAYS = range(100, 101)


@st.composite
def node_states(draw: st.DrawFn) -> NodeState:
    node, epoch = draw(st.sampled_from(NODES))
    small = st.integers(0, 50)
    windows = draw(st.dictionaries(st.tuples(st.sampled_from(["k:k1", "k:k2"]), st.just("rpm"),
                                             st.integers(0, 2)), st.tuples(small, small, small), max_size=4))
    pending_id = st.tuples(st.just(epoch), st.integers(1, 4), st.just("k:k1"), st.just(100))
    pending = draw(st.dictionaries(pending_id, st.tuples(small, small, small), max_size=3))
    reservations = draw(st.dictionaries(st.just("k:k1"), st.tuples(small, small), max_size=1))
    return NodeState(node, epoch, seq=draw(st.integers(0, 20)), log_head=draw(st.integers(0, 9)),
                     windows=windows, pending=pending, reservations=reservations)


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
    # only the newest boot of each node survives
    for node in {s.node_id for s in (a, b)}:
        assert {e for n, e in joined.components if n == node} == {joined.epochs[node]}


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
    # a restarted with the same node id: its old boot's reservation in flight died with it
    view = merge(view, NodeState("a", 2, seq=1, windows={("k:k", "rpm", 10): (1, 10, 0)}))
    assert window_count(view, "k:k", "rpm", [10]) == (4, 40)
    assert reserved_in_flight(view, "k:k") == 0
    # a late or replayed message of the old boot changes nothing
    late = merge(view, NodeState("a", 1, seq=9, reservations={"k:k": (400, 0)}))
    assert late == view
    pruned = prune(view, min_window_start={"rpm": 10}, durable=no_durable)
    assert ("k:k", "rpm", 9) not in pruned.components[("b", 1)].windows


def test_replays_of_an_old_boot_are_refused_after_the_receiver_restarts() -> None:
    crashed = NodeState("a", 1, seq=5, reservations={"k:k": (4_000_000_000, 0)})  # $4 in flight
    # the receiver restarted: empty view, but it learns boot epochs from cluster_nodes and the log
    cell = ViewCell()
    cell.observe_epochs({"a": 2})
    assert not cell.accept(crashed, now=1.0)
    assert reserved_in_flight(cell.value, "k:k") == 0
    assert cell.accept(NodeState("a", 2, seq=1), now=1.0)


def test_an_outside_epoch_drops_the_old_boot_before_the_new_one_gossips() -> None:
    view = merge(EMPTY, NodeState("a", 1, seq=3, reservations={"k:k": (50, 0)},
                                  pending={(1, 1, "k:k", 100): (1, 1, 70)}), now=5.0)
    assert pending_spend(view, "k:k", DAYS, no_durable) == 50 + 70
    view = observe_epochs(view, {"a": 2})  # cluster_nodes shows a new boot of a
    assert pending_spend(view, "k:k", DAYS, no_durable) == 0
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
    # forgotten after a long silence: components and reservations gone, epochs kept
    gone = forget_silent(view, now=30.0, after=21.0)
    assert set(gone.components) == {("b", 1)} and gone.epochs["c"] == 4
