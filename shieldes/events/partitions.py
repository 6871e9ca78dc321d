"""The event log's partitions: `events` is partitioned by position range.

Appends create partitions ahead of the head (one partition's worth): the append that first reaches
into the last partition creates the next one, under the append lock, so partitions are created one
at a time and a reader or an append never finds a position without one. Creating is a CREATE TABLE
of an empty table plus ATTACH PARTITION, which takes only SHARE UPDATE EXCLUSIVE on `events`: it
waits for neither readers nor writers (milliseconds, once per `log_head.partition_size` events).
It does wait for a running ANALYZE of `events` or a compaction swap: the partition ahead is then
left to the next append (50 ms at most), so no append waits for long.
Compaction replaces the content of partitions wholly below its cutoff (compaction_sql.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection

_BOUNDS = re.compile(r"FROM \('?(-?\d+)'?\) TO \('?(-?\d+)'?\)")


@dataclass(frozen=True, slots=True)
class Partition:
    """One partition of `events`: its table and the positions it holds."""

    name: str
    start: int  # first position it holds
    end: int  # first position it does not hold

    @property
    def last(self) -> int:
        return self.end - 1


def partition_name(start: int) -> str:
    return f"events_p{start}"


def ranges_to_create(last: int, end: int, size: int) -> list[tuple[int, int]]:
    """Ranges to add so that positions up to `last` plus one more partition's worth are covered,
    given partitions covering everything below `end`."""
    out = []
    while last + size >= end:
        out.append((end, end + size))
        end += size
    return out


async def _create(conn: AsyncConnection[Any], start: int, stop: int) -> None:
    name = partition_name(start)
    await conn.execute(f"CREATE TABLE {name} (LIKE events INCLUDING DEFAULTS)")
    await conn.execute(f"ALTER TABLE events ATTACH PARTITION {name} FOR VALUES FROM ({start}) TO ({stop})")


async def cover(conn: AsyncConnection[Any], last: int, end: int, size: int) -> int:
    """Create the partitions `ranges_to_create` asks for; returns the new end. Call it holding the
    append lock (it updates `log_head.partitions_end`). A partition this append writes into is
    created whatever the wait; the one ahead only if `events` lets it at once (ATTACH waits for a
    running ANALYZE or a compaction swap): otherwise the next append tries again."""
    created = end
    for start, stop in ranges_to_create(last, end, size):
        if start <= last:
            await _create(conn, start, stop)
        else:
            cur = await conn.execute("SELECT current_setting('lock_timeout')")
            row = await cur.fetchone()
            try:
                async with conn.transaction():  # a savepoint: a refused ATTACH leaves the append intact
                    await conn.execute("SET LOCAL lock_timeout = '50ms'")
                    await _create(conn, start, stop)
            except psycopg.errors.LockNotAvailable:
                break
            finally:
                await conn.execute("SELECT set_config('lock_timeout', %s, true)", (row[0] if row else "0",))
        created = stop
    if created != end:
        await conn.execute("UPDATE log_head SET partitions_end = %s WHERE id = 1", (created,))
    return created


async def ensure_covered(conn: AsyncConnection[Any], last: int) -> None:
    """`cover` for a writer that did not read log_head (bulk loaders); holds the append lock."""
    cur = await conn.execute("SELECT partitions_end, partition_size FROM log_head WHERE id = 1")
    row = await cur.fetchone()
    assert row is not None, "log_head row missing: run `shieldes db upgrade`"
    await cover(conn, last, int(row[0]), int(row[1]))


async def partitions(conn: AsyncConnection[Any]) -> list[Partition]:
    """Every partition of `events`, by position."""
    cur = await conn.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass"
    )
    out = []
    for name, bound in await cur.fetchall():
        m = _BOUNDS.search(bound or "")
        if m is not None:
            out.append(Partition(str(name), int(m.group(1)), int(m.group(2))))
    return sorted(out, key=lambda p: p.start)


async def relation_size(conn: AsyncConnection[Any]) -> int:
    """Bytes on disk of `events`: every partition with its indexes and TOAST."""
    cur = await conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('events') WHERE isleaf"
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0
