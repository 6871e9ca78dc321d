"""The config's teams and their active key counts without its keys: what `team list` and
`budget show --team` read.

A snapshot stores this part apart from the whole state (snapshots/codec.py). To bring it up to
date, the config events after the snapshot are folded into it, the team and key events only: a
team created or given a budget, a key created, moved or revoked. Moving or revoking a key that
existed at the snapshot changes its old team's count, which the teams part does not hold, so
those keys' own events up to the snapshot are folded first (a few keys, however many the config
holds). The result equals the whole fold's teams and counts (tests/unit/test_teams_view.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shieldes.events.catalog import (
    BudgetRemoved,
    BudgetSet,
    Event,
    TeamCreated,
    VirtualKeyCreated,
    VirtualKeyRevoked,
    VirtualKeyUpdated,
)
from shieldes.projections.config import apply_config
from shieldes.projections.state import ConfigState, Team, by_name_or_id


@dataclass(frozen=True)
class TeamsState:
    """Every team by id, the name index, and each team's active keys (teams with none left out)."""

    teams: Mapping[str, Team]
    team_ids_by_name: Mapping[str, str]
    team_keys: Mapping[str, int]

    def find_team(self, name_or_id: str) -> Team | None:
        return by_name_or_id(self.teams, self.team_ids_by_name, name_or_id)


@dataclass(frozen=True)
class TeamsView:
    """The teams as of the config event at `position` (the newest one folded)."""

    state: TeamsState
    position: int


def teams_of(state: ConfigState) -> TeamsState:
    return TeamsState(state.teams, state.team_ids_by_name, state.team_keys)


def moves_teams(event: Event) -> bool:
    """Whether `event` changes a team or a team's count (a rotation, a rate limit or a key's budget
    changes neither)."""
    if isinstance(event, BudgetSet | BudgetRemoved):
        return event.subject_kind == "team"
    return isinstance(event, TeamCreated | VirtualKeyCreated | VirtualKeyUpdated | VirtualKeyRevoked)


def keys_to_recall(tail: Iterable[Event]) -> set[str]:
    """The keys `tail` moves or revokes that it did not create: their state before `tail` is needed."""
    created: set[str] = set()
    named: set[str] = set()
    for event in tail:
        if isinstance(event, VirtualKeyCreated):
            created.add(event.id)
        elif isinstance(event, VirtualKeyUpdated | VirtualKeyRevoked) and event.id not in created:
            named.add(event.id)
    return named


def continued(base: TeamsState, recalled: Iterable[Event], tail: Iterable[Event]) -> TeamsState:
    """`base` (the teams as of some config position) after `tail` (the config events after it, in
    order). `recalled`: every event up to that position about the keys `keys_to_recall(tail)` names
    (more is harmless), in order."""
    keys = ConfigState()
    for event in recalled:
        keys = apply_config(keys, event)
    # the recalled keys are already in base's counts: the fold moves them from there
    state = ConfigState(teams=base.teams, team_ids_by_name=base.team_ids_by_name, keys=keys.keys,
                        team_keys=base.team_keys)
    for event in tail:
        if moves_teams(event):
            state = apply_config(state, event)
    return teams_of(state)
