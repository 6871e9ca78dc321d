"""The gossip merge is a G-counter: idempotent, commutative, associative, blind to order and duplicates."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.cluster.counters import (
    NodeState,
    fold,
    merge,
    merge_views,
    pending_usage,
    prune,
    reserved_in_flight,
    window_count,
)

NODES = [("a", 1), ("a", 2), ("b", 7), ("c", 3)]


@st.composite
def node_states(draw: st.DrawFn) -> NodeState:
    node, epoch = draw(st.sampled_from(NODES))
    small = st.integers(0, 50)
    windows = draw(st.dictionaries(st.tuples(st.sampled_from(["key:k1", "key:k2"]), st.just("rpm"),
                                             st.integers(0, 2)), st.tuples(small, small), max_size=4))
    pending_id = st.tuples(st.just(epoch), st.integers(1, 4), st.just("key:k1"), st.just(100))
    pending = draw(st.dictionaries(pending_id, st.tuples(small, small, small), max_size=3))
    reservations = draw(st.dictionaries(st.just("key:k1"), st.tuples(small, small), max_size=1))
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
    assert fold(shuffled) == expected


@settings(max_examples=80, deadline=None)
@given(node_states(), node_states(), node_states())
def test_merge_laws(a: NodeState, b: NodeState, c: NodeState) -> None:
    va, vb, vc = fold([a]), fold([b]), fold([c])
    assert merge_views(va, va) == va  # idempotent
    assert merge_views(va, vb) == merge_views(vb, va)  # commutative
    assert merge_views(merge_views(va, vb), vc) == merge_views(va, merge_views(vb, vc))  # associative
    # the join is an upper bound: counts never go down by merging
    joined = merge_views(va, vb)
    for s in (a, b):
        for w, v in s.windows.items():
            assert window_count(joined, w[0], w[1], w[2]) >= (0, 0)
            got = joined[s.component].windows[w]
            assert got[0] >= v[0] and got[1] >= v[1]


def test_counting_across_nodes_and_epochs() -> None:
    view = fold([
        NodeState("a", 1, seq=1, windows={("key:k", "rpm", 10): (5, 100)}),
        NodeState("a", 1, seq=2, windows={("key:k", "rpm", 10): (7, 150)}),  # newer cumulative value
        NodeState("a", 1, seq=1, windows={("key:k", "rpm", 10): (5, 100)}),  # replayed old message
        NodeState("a", 2, seq=1, windows={("key:k", "rpm", 10): (1, 10)}),  # a restarted, new component
        NodeState("b", 1, seq=1, windows={("key:k", "rpm", 10): (3, 30), ("key:k", "rpm", 9): (50, 0)}),
    ])
    assert window_count(view, "key:k", "rpm", 10) == (11, 190)
    assert window_count(view, "key:k", "rpm", 10, exclude="a") == (3, 30)
    pruned = prune(view, min_window_start={"rpm": 10}, durable=no_durable)
    assert ("key:k", "rpm", 9) not in pruned[("b", 1)].windows
    assert window_count(pruned, "key:k", "rpm", 10) == (11, 190)


def test_pending_usage_stops_counting_once_the_log_holds_it() -> None:
    pending = {(5, 1, "key:k", 9): (2, 20, 300), (5, 2, "key:k", 9): (1, 5, 50)}
    view = merge({}, NodeState("a", 1, pending=pending))
    durable = {("a", 5): 0}

    def d(node: str, epoch: int) -> int:
        return durable.get((node, epoch), 0)

    assert pending_usage(view, "key:k", d) == (3, 25, 350)
    durable[("a", 5)] = 1  # flush 1 reached the log: its share counts from the log now, not gossip
    assert pending_usage(view, "key:k", d) == (1, 5, 50)
    # a late duplicate of the old message cannot bring it back
    view = merge(view, NodeState("a", 1, pending={(5, 1, "key:k", 9): (2, 20, 300)}))
    assert pending_usage(view, "key:k", d) == (1, 5, 50)
    durable[("a", 5)] = 2
    assert pending_usage(prune(view, min_window_start={}, durable=d), "key:k", d) == (0, 0, 0)


def test_reservations_are_a_pn_counter() -> None:
    view = fold([
        NodeState("a", 1, seq=1, reservations={"key:k": (100, 0)}),
        NodeState("a", 1, seq=3, reservations={"key:k": (150, 100)}),
        NodeState("a", 1, seq=2, reservations={"key:k": (150, 60)}),  # arrives late
        NodeState("b", 1, seq=1, reservations={"key:k": (40, 0)}),
    ])
    assert reserved_in_flight(view, "key:k") == 50 + 40
    assert reserved_in_flight(view, "key:k", exclude="b") == 50
