"""A teams-only read (`team list`, `budget show --team`): a snapshot's teams part plus the config
events after it gives the same teams, name index and active key counts as the whole config
folded from position 0, whatever the snapshot's position and whatever the tail does (teams
created and budgeted, keys created, moved, revoked, rotated, limited)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.events.catalog import (
    CONFIG_STREAM,
    BudgetRemoved,
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
from shieldes.events.memory_store import InMemoryEventStore
from shieldes.events.scope import subject
from shieldes.events.store import AppendOptions, NewEvent
from shieldes.projections.config import apply_config
from shieldes.projections.projector import Projection
from shieldes.projections.state import ConfigState
from shieldes.projections.teams_view import TeamsState, TeamsView, continued, keys_to_recall, teams_of
from shieldes.snapshots import codec as snapcodec
from shieldes.snapshots.teams_start import load_teams

OPS = ("create", "update", "revoke", "rotate", "limit", "budget", "team", "team_budget")
steps_of = st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 7), st.integers(0, 4)), max_size=50)
Steps = list[tuple[str, int, int]]


def events_of(steps: Steps, state: ConfigState) -> list[Event]:
    """The steps as events a decision could have made: a key or team is created once, only existing
    ones change, a key's team exists (or is none)."""
    out: list[Event] = []
    for op, i, t in steps:
        kid, tid = f"key_{i}", f"team_{t}"
        team = tid if tid in state.teams and i % 3 else None  # some keys in no team
        exists = kid in state.keys
        event: Event | None = None
        if op == "create" and not exists:
            event = VirtualKeyCreated(kid, f"k{i}", f"hash{i}", "sk-shd-0000", None, team, None)
        elif op == "team" and tid not in state.teams:
            event = TeamCreated(tid, f"team-{t}")
        elif op == "team_budget" and tid in state.teams:
            event = BudgetSet("team", tid, float(i), "30d") if i % 4 else BudgetRemoved("team", tid)
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


# teams 0-2 exist from the start (so most keys are in one); the steps may create teams 3 and 4
SETUP: list[Event] = [TeamCreated(f"team_{t}", f"team-{t}") for t in range(3)]


def fold(events: Sequence[Event], state: ConfigState | None = None) -> ConfigState:
    state = state if state is not None else ConfigState()
    for e in events:
        state = apply_config(state, e)
    return state


def plain(teams: TeamsState) -> tuple[dict[str, object], dict[str, str], dict[str, int]]:
    return dict(teams.teams), dict(teams.team_ids_by_name), dict(teams.team_keys)


def teams_part(state: ConfigState, position: int = 7, key: bytes | None = None) -> TeamsState:
    """`state`'s teams through a snapshot's teams part: encoded, sealed, verified, decoded."""
    projection = Projection(state)
    projection.position, projection.config_tip = position, (position, "ab" * 32)
    snap = snapcodec.encode(projection, key)
    assert snap.teams is not None and snap.teams_checksum is not None
    decoded, tip = snapcodec.decode_teams(snap.teams, snap.teams_checksum, position, key)
    assert tip == (position, "ab" * 32)
    return decoded


@settings(max_examples=200, deadline=None)
@given(steps_of, steps_of)
def test_the_teams_part_then_the_tail_equals_the_whole_fold(head: Steps, tail: Steps) -> None:
    head_events = SETUP + events_of(head, fold(SETUP))
    at_snapshot = fold(head_events)
    tail_events = events_of(tail, at_snapshot)
    live = fold(tail_events, at_snapshot)

    base = teams_part(at_snapshot)
    assert plain(base) == plain(teams_of(at_snapshot))  # the part holds what the whole state holds
    keys = keys_to_recall(tail_events)
    # the recalled keys' events up to the snapshot (the read selects those; any more is harmless)
    recalled = [e for e in head_events if not isinstance(e, TeamCreated) and subject(e.__dict__) in keys]
    assert plain(continued(base, recalled, tail_events)) == plain(teams_of(live))
    assert plain(continued(base, head_events, tail_events)) == plain(teams_of(live))


@settings(max_examples=60, deadline=None)
@given(steps_of, steps_of)
def test_load_teams_reads_the_tail_and_the_recalled_keys_from_the_store(head: Steps, tail: Steps) -> None:
    """Through the event store's own reads (the in-memory twin of the Postgres one): the tail after
    the snapshot's config position and the scoped read of the keys the tail moves or revokes."""
    codec = Codec()

    async def go() -> None:
        store = InMemoryEventStore()
        head_events = SETUP + events_of(head, fold(SETUP))
        at_snapshot = fold(head_events)
        tail_events = events_of(tail, at_snapshot)
        for events in (head_events, tail_events):
            if events:
                await store.append(CONFIG_STREAM, [NewEvent.of(e, codec) for e in events],
                                   AppendOptions(metadata={"actor": "t"}))
            if events is head_events:
                position = await store.config_head()
        view = await load_teams(store, codec, TeamsView(teams_part(at_snapshot, position), position))
        assert plain(view.state) == plain(teams_of(fold(tail_events, at_snapshot)))
        assert view.position == await store.config_head()

    asyncio.run(go())


def test_a_tail_that_revokes_and_moves_keys_of_the_snapshot_moves_their_old_teams_counts() -> None:
    setup: list[Event] = [TeamCreated("team_a", "a"), TeamCreated("team_b", "b")]
    setup += [VirtualKeyCreated(f"key_{i}", f"k{i}", f"h{i}", "sk-shd-0000", None, "team_a", None) for i in range(3)]
    at_snapshot = fold(setup)
    tail: list[Event] = [VirtualKeyRevoked("key_0"), VirtualKeyUpdated("key_1", None, "team_b", None),
                         VirtualKeyCreated("key_9", "k9", "h9", "sk-shd-0000", None, "team_b", None),
                         VirtualKeyRevoked("key_9"), BudgetSet("team", "team_b", 5.0, "1d")]
    assert keys_to_recall(tail) == {"key_0", "key_1"}  # key_9 is created by the tail itself
    recalled = [e for e in setup if isinstance(e, VirtualKeyCreated) and e.id in ("key_0", "key_1")]
    got = continued(teams_part(at_snapshot), recalled, tail)
    assert dict(got.team_keys) == {"team_a": 1, "team_b": 1}
    b = got.find_team("b")
    assert b is not None and b.budget is not None and b.budget.amount_usd == 5.0
    assert got.find_team("team_a") is got.teams["team_a"] and got.find_team("nope") is None


def test_a_teams_part_that_does_not_verify_is_refused() -> None:
    state = fold([TeamCreated("team_a", "a")])
    projection = Projection(state)
    projection.position, projection.config_tip = 4, (4, "cd" * 32)
    key = snapcodec.mac_key("secret")
    snap = snapcodec.encode(projection, key)
    assert snap.teams is not None and snap.teams_checksum is not None
    assert snapcodec.decode_teams(snap.teams, snap.teams_checksum, 4, key)[0].teams["team_a"].name == "a"
    with pytest.raises(snapcodec.SnapshotCorrupt):
        snapcodec.decode_teams(snap.teams, snap.teams_checksum, 4, snapcodec.mac_key("another"))
    with pytest.raises(snapcodec.SnapshotCorrupt):
        snapcodec.decode_teams(snap.teams, snap.teams_checksum, 4, None)  # sealed: needs the secret
    with pytest.raises(snapcodec.SnapshotCorrupt):
        snapcodec.decode_teams(snap.teams, snap.teams_checksum, 5, key)  # another snapshot's position
    with pytest.raises(snapcodec.SnapshotCorrupt):
        snapcodec.decode_teams(snap.teams[:-1] + b"\0", snap.teams_checksum, 4, key)
    forged = snapcodec.seal(b"{}", 4, key, teams_json=b'{"format": 99, "position": 4}')
    assert forged.teams is not None and forged.teams_checksum is not None
    with pytest.raises(snapcodec.SnapshotCorrupt, match="format 99"):
        snapcodec.decode_teams(forged.teams, forged.teams_checksum, 4, key)
