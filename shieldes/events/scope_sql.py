"""events/scope.py in SQL: the config events a key command reads, in two statements.

The first finds, in `config_index` (one plain table, kept in step with `events` by triggers:
migration 0010), the positions of the events the scope selects and the config position they reach
(one statement is one snapshot). The second reads the events at those positions: with the
positions bound, the planner prunes `events` to the partitions holding them. A scan of `events`
by anything but position is planned over every partition and its indexes, 20-30 ms in a fresh
backend at 1M keys; these two plan in a few milliseconds. Events at a position never change once
committed (compaction keeps config events where they are), so the second statement needs no
shared snapshot with the first. tests/integration/test_scoped_write.py checks the rows are the
ones the in-memory store selects and the plans are index scans."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shieldes.events.scope import Scope
from shieldes.events.store import RecordedEvent

COLUMNS = "position, stream, type, version, data, metadata, recorded_at, prev_hash, hash"

# The ids of the keys and teams the scope names (by id, name or key hash; `subject` is the id in
# the events that create or rotate), the events about them, then the teams of those keys (a key's
# printed row names its team); with the shared config, ascending, and the config position.
POSITIONS_SQL = (
    "WITH ids AS ("
    "SELECT subject AS id FROM config_index WHERE type = 'virtual_key.created'"
    " AND (subject = ANY(%(keys)s) OR name = ANY(%(keys)s))"
    " UNION SELECT subject FROM config_index WHERE type IN ('virtual_key.created', 'virtual_key.rotated')"
    " AND key_hash = ANY(%(hashes)s)"
    " UNION SELECT subject FROM config_index WHERE type = 'team.created'"
    " AND (subject = ANY(%(teams)s) OR name = ANY(%(teams)s))),"
    " named AS (SELECT position, type, team_id FROM config_index WHERE subject = ANY(ARRAY(SELECT id FROM ids))),"
    " teams AS (SELECT team_id AS id FROM named WHERE type IN ('virtual_key.created', 'virtual_key.updated')"
    " AND team_id <> '' EXCEPT SELECT id FROM ids)"
    " SELECT h.config_position, ARRAY("
    "SELECT position FROM config_index WHERE shared"
    " UNION ALL SELECT position FROM named"
    " UNION ALL SELECT position FROM config_index WHERE subject = ANY(ARRAY(SELECT id FROM teams))"
    " ORDER BY 1) FROM log_head h WHERE h.id = 1"
)
EVENTS_SQL = f"SELECT {COLUMNS} FROM events WHERE position = ANY(%s) AND stream = 'config' ORDER BY position"


def scope_params(scope: Scope) -> dict[str, list[str]]:
    # a value with a NUL byte names nothing in the log (Postgres text cannot hold one): the
    # decision, not the database, says what is wrong with it
    def held(values: tuple[str, ...]) -> list[str]:
        return [v for v in values if "\x00" not in v]

    return {"keys": held(scope.keys), "hashes": held(scope.hashes), "teams": held(scope.teams)}


def scope_positions(row: Sequence[Any] | None) -> tuple[list[int], int]:
    """POSITIONS_SQL's row: the positions to read and the config position they reach."""
    assert row is not None, "log_head row missing: run `shieldes db upgrade`"
    return list(row[1]), int(row[0])


def scope_events(rows: Sequence[Sequence[Any]]) -> list[RecordedEvent]:
    return [RecordedEvent(*r) for r in rows]
