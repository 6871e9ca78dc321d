"""A teams-only read (`team list`, `budget show --team`): the teams part of the newest snapshot
that has one, continued with the config events after it.

The teams part (a few hundred kilobytes at ten thousand teams) is trusted on the same terms as a
whole snapshot's config (config_start.py): its seal checks with this process's key and the log's
config chain ends at its recorded tip. The config events after it are folded as
projections/teams_view.py says: team and key events only, with the events up to the snapshot of
the keys they move or revoke, read through the scoped read key writes use (events/scope_sql.py).
None when no snapshot has a usable teams part: the caller loads the whole config."""

from __future__ import annotations

import logging

from shieldes import db
from shieldes.events.catalog import CONFIG_STREAM
from shieldes.events.codec import Codec
from shieldes.events.connections import Connections
from shieldes.events.scope import ENTITY_TYPES, TEAM_CREATED, Scope, subject
from shieldes.events.store import EventStore, RecordedEvent
from shieldes.projections.teams_view import TeamsState, TeamsView, continued, keys_to_recall
from shieldes.snapshots.newest import newest_verified
from shieldes.snapshots.teams_part import decode_teams

log = logging.getLogger(__name__)
PAGE = 5000
# the newest snapshots that hold a teams part (NULL in those of a release before it), and that part
NEWEST_WITH_TEAMS = ("SELECT id, position, schema_version FROM snapshots WHERE teams IS NOT NULL "
                     "ORDER BY position DESC, id DESC")
TEAMS_OF = "SELECT teams, teams_checksum FROM snapshots WHERE id = %s"  # binary=True: bytea as bytes


async def teams_from_snapshot(pool: Connections, key: bytes | None) -> TeamsView | None:
    """The newest usable teams part, positioned at its config chain tip."""

    async def decode(data: bytes, checksum: str, position: int) -> tuple[TeamsState, tuple[int, str]]:
        return decode_teams(data, checksum, position, key)

    # a part written by a newer release is skipped: its events may be unknown here
    found = await newest_verified(pool, NEWEST_WITH_TEAMS, TEAMS_OF, lambda row: row[2] <= db.SCHEMA_HEAD, decode,
                                  "teams")
    return TeamsView(*found) if found is not None else None


async def load_teams(store: EventStore, codec: Codec, base: TeamsView) -> TeamsView:
    """`base` continued with every config event after it."""
    tail: list[RecordedEvent] = []
    while True:
        page = await store.read(tail[-1].position if tail else base.position, PAGE, stream=CONFIG_STREAM)
        tail += page
        if len(page) < PAGE:
            break
    events = [codec.decode(r.type, r.version, r.data) for r in tail]
    keys = keys_to_recall(events)
    recalled: list[RecordedEvent] = []
    if keys:
        scoped, _ = await store.read_scope(Scope(keys=tuple(sorted(keys))))
        recalled = [r for r in scoped if r.position <= base.position and r.type in ENTITY_TYPES
                    and r.type != TEAM_CREATED and subject(r.data) in keys]
    state = continued(base.state, (codec.decode(r.type, r.version, r.data) for r in recalled), events)
    return TeamsView(state, tail[-1].position if tail else base.position)
