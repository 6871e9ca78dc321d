"""A key listing filtered by team or by status (revoked, expired) reads only the keys the team or
status column names, not every key: the same keys, in the same order, as a walk over every key,
whether the keys are objects (a config folded from the log) or columns (a snapshot's) with
changes layered over them."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.projections.config import apply_config
from shieldes.projections.state import ConfigState, VirtualKey
from shieldes.views import key_status, listed_keys
from tests.unit.test_config_diff import event_for, snapshot_of

NOW = 3.0
steps = st.lists(st.tuples(st.sampled_from(("key", "key", "key_update", "revoke", "team", "limit")),
                           st.integers(0, 9), st.integers(0, 4)), max_size=40)
FILTERS = [(None, None), ("t1", None), ("t3", None), ("t9", None), (None, ("revoked",)), (None, ("expired",)),
           (None, ("revoked", "expired")), (None, ("active",)), ("t1", ("revoked",))]


def walk(state: ConfigState, statuses: tuple[str, ...] | None, team: str | None, search: str,
         after: str | None) -> list[VirtualKey]:
    """Every key read, by name: what the listing did for every filter."""
    return [k for k in sorted(state.keys.values(), key=lambda k: k.name)
            if (after is None or k.name > after) and search in k.name.lower()
            and (team is None or k.team_id == team) and (statuses is None or key_status(k, NOW) in statuses)]


@settings(max_examples=200, deadline=None)
@given(steps, steps, st.sampled_from(["", "key-1"]), st.sampled_from([None, "key-3"]))
def test_a_filtered_listing_is_the_walk_over_every_key(
    head: list[tuple[str, int, int]], tail: list[tuple[str, int, int]], search: str, after: str | None
) -> None:
    state = ConfigState()
    for n, (op, i, j) in enumerate(head):
        event = event_for(state, op, i, j, n)
        state = state if event is None else apply_config(state, event)
    columns = snapshot_of(state)  # keys as columns, with the tail's changes layered over them
    for n, (op, i, j) in enumerate(tail, start=len(head)):
        event = event_for(state, op, i, j, n)
        if event is not None:
            state, columns = apply_config(state, event), apply_config(columns, event)
    for team, statuses in FILTERS:
        expected = walk(state, statuses, team, search, after)
        for config in (state, columns):
            assert list(listed_keys(config, NOW, statuses=statuses, team_id=team, search=search,
                                    after=after)) == expected
