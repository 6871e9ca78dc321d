"""events/scope.py in SQL: the config events a key command reads, in one statement with the config
position they reach (one statement is one snapshot, so no transaction is needed to match them).

The literals match the partial indexes of migration 0009 (the planner uses a partial index only
for a clause it can prove implies the index's predicate); tests/integration/test_scoped_write.py
checks the plan uses them and that the rows are the ones the in-memory store selects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shieldes.events.scope import Scope
from shieldes.events.store import RecordedEvent

COLUMNS = "position, stream, type, version, data, metadata, recorded_at, prev_hash, hash"
_ENTITY = ("('virtual_key.created', 'virtual_key.updated', 'virtual_key.revoked', 'virtual_key.rotated',"
           " 'rate_limit.set', 'budget.set', 'budget.removed', 'team.created')")
_SUBJECT = "coalesce(data->>'id', data->>'key_id', data->>'subject_id')"

# the ids of the keys and teams the scope names (by id, name or key hash). A key's id and name are
# one scan with an OR (two indexes, one bitmap): each scan of `events` is planned over every
# partition, and the planning, not the few index lookups, is what this statement costs.
_IDS = (
    "SELECT data->>'id' AS id FROM events WHERE stream = 'config' AND type = 'virtual_key.created'"
    f" AND ({_SUBJECT} = ANY(%(keys)s) OR data->>'name' = ANY(%(keys)s))"
    " UNION SELECT data->>'id' FROM events WHERE stream = 'config'"
    " AND type IN ('virtual_key.created', 'virtual_key.rotated') AND data->>'key_hash' = ANY(%(hashes)s)"
    " UNION SELECT data->>'id' FROM events WHERE stream = 'config' AND type = 'team.created'"
    f" AND ({_SUBJECT} = ANY(%(teams)s) OR data->>'name' = ANY(%(teams)s))"
)


def _about(ids: str) -> str:
    return f"SELECT {COLUMNS} FROM events WHERE stream = 'config' AND type IN {_ENTITY} AND {_SUBJECT} = ANY({ids})"


# The shared config, the named entities' events, and the events of the teams their keys belong to
# (a key's printed row names its team), ascending; every row carries the config position (a log
# without config events gives one row of NULL events).
SCOPE_SQL = (
    f"WITH ids AS ({_IDS}),"
    f" named AS ({_about('ARRAY(SELECT id FROM ids)')}),"
    " teams AS (SELECT data->>'team_id' AS id FROM named"
    " WHERE type IN ('virtual_key.created', 'virtual_key.updated') AND data->>'team_id' <> ''"
    " EXCEPT SELECT id FROM ids)"
    " SELECT h.config_position, e.* FROM log_head h LEFT JOIN LATERAL ("
    f"SELECT {COLUMNS} FROM events WHERE stream = 'config' AND type NOT IN {_ENTITY}"
    " UNION ALL SELECT * FROM named"
    f" UNION ALL {_about('ARRAY(SELECT id FROM teams)')}"
    ") e ON true WHERE h.id = 1 ORDER BY e.position"
)


def scope_params(scope: Scope) -> dict[str, list[str]]:
    # a value with a NUL byte names nothing in the log (Postgres text cannot hold one): the
    # decision, not the database, says what is wrong with it
    def held(values: tuple[str, ...]) -> list[str]:
        return [v for v in values if "\x00" not in v]

    return {"keys": held(scope.keys), "hashes": held(scope.hashes), "teams": held(scope.teams)}


def scope_rows(rows: Sequence[Sequence[Any]]) -> tuple[list[RecordedEvent], int]:
    """SCOPE_SQL's rows: the events and the config position they reach."""
    events = [RecordedEvent(*r[1:10]) for r in rows if r[1] is not None]
    return events, int(rows[0][0]) if rows else 0
