"""A team's active key count: kept by the config fold per event, equal to counting the keys from
scratch, whether the config was folded live, replayed from the events, or loaded from a snapshot
(keys as objects or as columns) and then folded further."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.events.catalog import (
    BudgetSet,
    Event,
    RateLimitSet,
    TeamCreated,
    VirtualKeyCreated,
    VirtualKeyRevoked,
    VirtualKeyRotated,
    VirtualKeyUpdated,
)
from shieldes.events.codec import Codec
from shieldes.events.store import NewEvent
from shieldes.projections.config import apply_config
from shieldes.projections.keytable import KeyTable, columns_of, layered_key_maps
from shieldes.projections.pmap import LayeredMap
from shieldes.projections.projector import Projection
from shieldes.projections.state import ConfigState, VirtualKey
from shieldes.projections.team_keys import counted_team, moved, team_key_counts
from shieldes.snapshots import codec as snapcodec
from shieldes.snapshots import key_columns

TEAMS = [f"team_{i}" for i in range(3)]
OPS = ("create", "update", "revoke", "rotate", "limit", "budget")
ops = st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 7), st.one_of(st.none(), st.sampled_from(TEAMS))),
               max_size=60)


def naive(keys: Mapping[str, VirtualKey]) -> dict[str, int]:
    """The walk the counts replace: every key read, per team."""
    return dict(Counter(k.team_id for k in keys.values() if k.team_id is not None and not k.revoked))


def events_of(steps: list[tuple[str, int, str | None]], state: ConfigState | None = None) -> list[Event]:
    """The steps as events the fold accepts: a key is created once, and only created keys change."""
    state = state if state is not None else ConfigState()
    out: list[Event] = []
    for op, i, team in steps:
        kid = f"key_{i}"
        exists = kid in state.keys
        event: Event | None = None
        if op == "create" and not exists:
            event = VirtualKeyCreated(kid, f"k{i}", f"hash{i}", "sk-shd-0000", None, team, None)
        elif exists and op == "update":
            event = VirtualKeyUpdated(kid, None, team, None)
        elif exists and op == "revoke":
            event = VirtualKeyRevoked(kid)
        elif exists and op == "rotate":
            event = VirtualKeyRotated(kid, f"hash{i}-{len(out)}", "sk-shd-1111")
        elif exists and op == "limit":
            event = RateLimitSet(kid, 60, None)
        elif exists and op == "budget":
            event = BudgetSet("key", kid, 1.0, "1d")
        if event is not None:
            state = apply_config(state, event)
            out.append(event)
    return out


def fold(events: list[Event], state: ConfigState | None = None) -> ConfigState:
    state = state if state is not None else ConfigState()
    for e in events:
        state = apply_config(state, e)
    return state


def snapshot_round_trip(state: ConfigState, fmt: int) -> ConfigState:
    projection = Projection(state)
    projection.position, projection.config_tip = 3, (3, "ab" * 32)
    snap = snapcodec.encode(projection, fmt=fmt)
    return snapcodec.decode(snap.state, snap.checksum, snap.position).config


SETUP: list[Event] = [TeamCreated(t, t.replace("_", "-")) for t in TEAMS]


@settings(max_examples=150, deadline=None)
@given(ops)
def test_the_fold_keeps_the_counts_of_a_walk_over_every_key_after_each_event(
    steps: list[tuple[str, int, str | None]],
) -> None:
    state = fold(SETUP)
    for event in events_of(steps, state):
        state = apply_config(state, event)
        assert dict(state.team_keys) == naive(state.keys)
        assert all(n > 0 for n in state.team_keys.values())


@settings(max_examples=150, deadline=None)
@given(ops)
def test_replay_of_the_decoded_log_equals_the_live_fold(steps: list[tuple[str, int, str | None]]) -> None:
    events = SETUP + events_of(steps, fold(SETUP))
    live = fold(events)
    codec = Codec()
    replayed = fold([codec.decode(n.type, n.version, n.data) for n in (NewEvent.of(e, codec) for e in events)])
    assert replayed == live
    assert dict(replayed.team_keys) == dict(live.team_keys) == naive(live.keys)
    assert ConfigState(teams=live.teams, keys=live.keys).team_keys == live.team_keys  # derived when not given


@settings(max_examples=150, deadline=None)
@given(ops, ops, st.sampled_from([2, 3]))
def test_a_snapshot_then_the_tail_counts_as_the_live_fold(
    head: list[tuple[str, int, str | None]], tail: list[tuple[str, int, str | None]], fmt: int
) -> None:
    head_events = SETUP + events_of(head, fold(SETUP))
    at_snapshot = fold(head_events)
    tail_events = events_of(tail, at_snapshot)
    live = fold(tail_events, at_snapshot)

    restored = snapshot_round_trip(at_snapshot, fmt)
    assert dict(restored.team_keys) == dict(at_snapshot.team_keys)
    resumed = fold(tail_events, restored)
    assert dict(resumed.team_keys) == dict(live.team_keys) == naive(live.keys)
    # counted again from the loaded columns plus the keys changed since
    assert dict(team_key_counts(resumed.keys)) == naive(live.keys)
    # and from a snapshot of the resumed config (its columns merged with the changes)
    assert dict(snapshot_round_trip(resumed, fmt).team_keys) == naive(live.keys)


def key(team: str | None, revoked: bool = False) -> VirtualKey:
    return VirtualKey("key_1", "k1", "h", "sk-shd-0000", None, team, None, revoked)


def test_moved_changes_at_most_two_counts_and_drops_the_empty_ones() -> None:
    assert counted_team(key("t1", revoked=True)) is None and counted_team(None) is None
    counts = moved({}, None, key("t1"))
    assert dict(counts) == {"t1": 1}
    assert dict(moved(counts, key("t1"), key("t2"))) == {"t2": 1}  # moved to another team
    assert dict(moved(counts, key("t1"), key(None))) == {}  # left its team
    assert dict(moved(counts, key("t1"), key("t1", revoked=True))) == {}  # revoked
    assert moved(counts, key("t1"), key("t1")) is counts  # a rotation, a limit, a budget
    assert moved(counts, key("t1", revoked=True), key("t2", revoked=True)) is counts  # a revoked key counts nowhere
    assert dict(moved({"t1": 3}, key("t1"), key("t1", revoked=True))) == {"t1": 2}


def test_counts_from_columns_read_the_team_and_revoked_columns_sparse_or_dense() -> None:
    keys = {f"key_{i:02d}": VirtualKey(f"key_{i:02d}", f"k{i}", f"h{i}", "sk-shd-0000", None,
                                        TEAMS[i % 3] if i % 4 else None, None, i % 5 == 0) for i in range(40)}
    want = naive(keys)
    columns = columns_of(keys)
    assert KeyTable(columns).team_key_counts() == want
    plain = key_columns.to_plain(keys)
    assert "all" in plain["optional"]["team_id"]  # most keys have a team: written one value per key
    dense = key_columns.from_plain(plain)
    assert isinstance(dense.sparse["team_id"], key_columns.Dense)
    assert KeyTable(dense).team_key_counts() == want
    layered, _, _ = layered_key_maps(dense)
    assert isinstance(layered, LayeredMap)
    assert dict(team_key_counts(layered)) == want
