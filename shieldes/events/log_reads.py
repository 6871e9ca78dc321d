"""Small reads of the event log for the parts outside this package that need one: the events after
a position (a snapshot load's tail), the highest compaction rollup (below which no snapshot may
stand), the head position, the config chain's tip as `audit verify` checks it, and whether usage up
to a position carries a delta field (a snapshot of an older layout leaves it out)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from psycopg import AsyncConnection

from shieldes.events.pg_store import row_to_event
from shieldes.events.scope_sql import COLUMNS
from shieldes.events.store import RecordedEvent

# The config chain's tip as recorded with the last config append.
CONFIG_TIP_SQL = "SELECT config_position, config_hash FROM log_head WHERE id = 1"
# One snapshot: a legitimate append moves log_head in the same transaction as its rows.
BEYOND_TIP_SQL = """
    SELECT min(position) AS position FROM events
    WHERE stream = 'config' AND position > (SELECT config_position FROM log_head WHERE id = 1)
"""


async def tail_pages(conn: AsyncConnection[Any], after: int, page: int) -> AsyncGenerator[list[RecordedEvent]]:
    """The events after position `after`, ascending, `page` at a time from a server-side cursor."""
    async with conn.cursor(name="shieldes_tail") as cur:
        await cur.execute(f"SELECT {COLUMNS} FROM events WHERE position > %s ORDER BY position", (after,))
        while rows := await cur.fetchmany(page):
            yield [row_to_event(r) for r in rows]


async def rollup_floor(conn: AsyncConnection[Any]) -> int:
    """The highest position holding a compaction rollup: a snapshot below it would count twice."""
    cur = await conn.execute("SELECT coalesce(max(position), 0) FROM events WHERE type = 'usage.rolled_up'")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def head_position(conn: AsyncConnection[Any]) -> int:
    """The position of the newest event (0 in an empty log)."""
    row = await (await conn.execute("SELECT position FROM log_head WHERE id = 1")).fetchone()
    return int(row[0]) if row else 0


async def usage_carries(conn: AsyncConnection[Any], fields: tuple[str, ...], up_to: int) -> bool:
    """Whether a usage delta (raw or rolled up) at or below `up_to` holds one of `fields` (the
    optional ones, absent when zero: codec.UNIT_FIELDS, codec.TOOL_FIELDS)."""
    if not fields:
        return False
    test = " || ".join(f"exists(@.{f})" for f in fields)  # field names are ours, never the user's
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM events WHERE type IN ('usage.recorded', 'usage.rolled_up') "
        "AND position <= %s AND jsonb_path_exists(data, %s::jsonpath))",
        (up_to, f"$.deltas[*] ? ({test})"),
    )
    row = await cur.fetchone()
    return bool(row and row[0])
