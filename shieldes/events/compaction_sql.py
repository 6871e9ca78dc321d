"""Compaction's SQL on the event log (the decisions and the order of steps: snapshots/compaction.py).

Two ways raw usage leaves the log:
- a partition wholly at or below the cutoff is **replaced**: its kept rows (everything but the raw
  usage being folded) and the new rollups are written to a fresh table next to it, which is then
  swapped in for the old partition in one short transaction (detach the old one, attach the new
  one); the old one is dropped right after, so its files are unlinked and the disk goes back to
  the OS, and nothing is DELETEd;
- the raw usage at or below the cutoff in the partition the cutoff falls in (less than one
  partition's worth) is folded in batches that DELETE it.

The swap needs ACCESS EXCLUSIVE on `events` for a few catalog changes (milliseconds). It asks with
NOWAIT and retries: it never queues, so no append or read ever waits behind it, only while it is
held.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.types.json import Jsonb

from shieldes.events.catalog import ROLLUP_STREAM
from shieldes.events.codec import DELTA_FIELDS
from shieldes.events.partitions import Partition

RAW = "usage.recorded"
ROLLUP = "usage.rolled_up"
# replacement tables being built (events_c<start>_<token>) and the partitions they replaced, detached
# (events_c<start>_<token>_old) until dropped
STAGING_PREFIX = "events_c"
# replacements prepared ahead for sealed partitions (events_r<start>), marked with what they fit
READY_PREFIX = "events_r"
SUMS_PER_TURN = 2000
# a delta's fields, text in code point order (COLLATE "C"): grouping and sorting compare bytes, not
# locale rules, and the order is the one Python gives the same tuples
_DELTA_COLUMNS_C = ('key_id text COLLATE "C", team_id text COLLATE "C", provider text COLLATE "C", '
                    'model text COLLATE "C", hour bigint, requests bigint, prompt_tokens bigint, '
                    "completion_tokens bigint, cost_nusd bigint, images bigint, audio_seconds bigint, "
                    "characters bigint, web_searches bigint, file_searches bigint, containers bigint, "
                    "tools_nusd bigint")
# the sums of a group, in Folder's order (the media units and hosted tool uses are absent from most
# deltas: NULL, summed as 0)
_SUMS = ("sum(d.requests)::bigint, sum(d.prompt_tokens)::bigint, sum(d.completion_tokens)::bigint, "
         "sum(d.cost_nusd)::bigint, coalesce(sum(d.images), 0)::bigint, coalesce(sum(d.audio_seconds), 0)::bigint, "
         "coalesce(sum(d.characters), 0)::bigint, coalesce(sum(d.web_searches), 0)::bigint, "
         "coalesce(sum(d.file_searches), 0)::bigint, coalesce(sum(d.containers), 0)::bigint, "
         "coalesce(sum(d.tools_nusd), 0)::bigint, count(*) ")
# Members of the deltas this release does not know (a newer release's counters), summed per group
# when numeric: (hour, key, provider, model, team or "", member, sum as numeric). `x - known` is an
# empty object for every delta of this release's shape: the filter on it drops those before the
# per-member expansion (which would cost that of the sums query itself), so a log without such
# members costs one cheap pass over its deltas.
_EXTRAS = ("SELECT (x.delta->>'hour')::bigint, x.delta->>'key_id', x.delta->>'provider', x.delta->>'model', "
           "coalesce(x.delta->>'team_id', ''), m.key, sum(m.value::numeric) "
           "FROM {source} e CROSS JOIN LATERAL jsonb_array_elements(e.data->'deltas') AS x(delta) "
           "CROSS JOIN LATERAL jsonb_each(x.delta - %(known)s::text[]) AS m "
           "WHERE {where} AND x.delta - %(known)s::text[] <> '{{}}'::jsonb AND jsonb_typeof(m.value) = 'number' "
           "GROUP BY 1, 2, 3, 4, 5, 6")
_KNOWN = sorted(DELTA_FIELDS)
Row = tuple[Any, ...]
SUMS_WORK_MEM = "64MB"  # per sums query (one per partition being replaced)


async def last_position_before(conn: AsyncConnection[Any], retain_seconds: float) -> int:
    """The highest position recorded before now - retain, by binary search over the primary key:
    ~log2(head) index probes instead of walking back through the whole retention window.
    recorded_at ascends with position (appends are serialised), up to the few milliseconds an
    append may wait for the lock, which is immaterial against a retention window."""
    cur = await conn.execute(
        "SELECT position, now() - make_interval(secs => %s) FROM log_head WHERE id = 1", (retain_seconds,)
    )
    row = await cur.fetchone()
    assert row is not None, "log_head row missing: run `shieldes db upgrade`"
    lo, hi, limit = 0, int(row[0]), row[1]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        cur = await conn.execute(
            "SELECT position, recorded_at FROM events WHERE position >= %s ORDER BY position LIMIT 1", (mid,)
        )
        found = await cur.fetchone()
        if found is not None and found[1] < limit:
            lo = int(found[0])
        else:
            hi = mid - 1
    return lo


async def cutoff_terms(conn: AsyncConnection[Any], before: int, schema_head: str, formats: Iterable[int],
                       node_timeout: float) -> list[tuple[int, str]]:
    """The terms the cutoff is the minimum of (empty: no raw usage is old enough)."""
    cur = await conn.execute("SELECT max(position) FROM events WHERE type = %s AND position <= %s", (RAW, before))
    row = await cur.fetchone()
    if row is None or row[0] is None:
        return []
    terms = [(int(row[0]), "the retention window")]
    # Only snapshots this version can load count: a newer format must not pin (or enable) folding.
    cur = await conn.execute(
        "SELECT max(position) FROM snapshots WHERE schema_version <= %s AND format = ANY(%s)",
        (schema_head, list(formats)),
    )
    row = await cur.fetchone()
    if row and row[0] is not None:
        terms.append((int(row[0]), "the newest snapshot"))
    cur = await conn.execute(
        "SELECT node_id, position FROM cluster_nodes "
        "WHERE heartbeat_at > now() - make_interval(secs => %s) ORDER BY position, node_id LIMIT 1",
        (node_timeout,),
    )
    row = await cur.fetchone()
    if row is not None:
        terms.append((int(row[1]), f"node {row[0]}'s position"))
    return terms


async def delete_snapshots_below(conn: AsyncConnection[Any], cutoff: int) -> int:
    cur = await conn.execute("DELETE FROM snapshots WHERE position < %s", (cutoff,))
    return cur.rowcount


async def raw_batch(conn: AsyncConnection[Any], after: int, cutoff: int, limit: int) -> list[Row]:
    """(position, type, version, data as text, recorded_at) of raw usage in (after, cutoff]."""
    cur = await conn.execute(
        "SELECT position, type, version, data::text, recorded_at FROM events "
        "WHERE type = %s AND position > %s AND position <= %s ORDER BY position LIMIT %s",
        (RAW, after, cutoff, limit),
    )
    return await cur.fetchall()


async def delete_positions(conn: AsyncConnection[Any], positions: list[int]) -> None:
    await conn.execute("DELETE FROM events WHERE position = ANY(%s)", (positions,))


async def insert_rollups(conn: AsyncConnection[Any], rows: Sequence[tuple[int, int, dict[str, Any], dict[str, Any]]],
                         recorded_at: datetime, table: str = "events") -> None:
    """Rollup events (position, version, data, metadata) into `events` or a replacement table."""
    async with conn.cursor() as cur:
        await cur.executemany(
            f"INSERT INTO {table} (position, stream, type, version, data, metadata, recorded_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [(pos, ROLLUP_STREAM, ROLLUP, version, Jsonb(data), Jsonb(meta), recorded_at)
             for pos, version, data, meta in rows],
        )


async def hours_with_several_sets(conn: AsyncConnection[Any], cutoff: int) -> list[list[int]]:
    """Positions of the rollups of each hour at or below the cutoff held by more than one set."""
    cur = await conn.execute(
        "SELECT (metadata->>'hour')::bigint, array_agg(position ORDER BY position) FROM events "
        "WHERE type = %s AND position <= %s AND metadata ? 'hour' "
        "GROUP BY 1 HAVING count(DISTINCT metadata->>'set') > 1 ORDER BY 1",
        (ROLLUP, cutoff),
    )
    return [list(r[1]) for r in await cur.fetchall()]


async def take_rollups(conn: AsyncConnection[Any], positions: list[int]) -> list[Row]:
    """Delete the rollups at `positions`; (type, version, data as text, recorded_at) of each."""
    cur = await conn.execute(
        "DELETE FROM events WHERE position = ANY(%s) AND type = %s RETURNING type, version, data::text, recorded_at",
        (positions, ROLLUP),
    )
    return await cur.fetchall()


async def rollup_extras(conn: AsyncConnection[Any], positions: list[int]) -> list[Row]:
    """The unknown members' sums (_EXTRAS) of the rollups at `positions` (read before they are taken)."""
    where = "e.position = ANY(%(positions)s) AND e.type = %(type)s"
    cur = await conn.execute(_EXTRAS.format(source="events", where=where),
                             {"known": _KNOWN, "positions": positions, "type": ROLLUP})
    return await cur.fetchall()


async def rollup_heads(conn: AsyncConnection[Any], positions: list[int]) -> list[Row]:
    """(version, replaced events, first position, last position, recorded_at) of the rollups at
    `positions` (one pass over each rollup's data, not three)."""
    cur = await conn.execute(
        "SELECT e.version, r.replaced_events, r.first_position, r.last_position, e.recorded_at FROM events e "
        "CROSS JOIN LATERAL jsonb_to_record(e.data) AS r(replaced_events bigint, first_position bigint, "
        "last_position bigint) WHERE e.position = ANY(%s) AND e.type = %s",
        (positions, ROLLUP),
    )
    return await cur.fetchall()


async def take_rollup_sums(conn: AsyncConnection[Any], positions: list[int]) -> list[Row]:
    """Delete the rollups at `positions` (all of this release's version: see rollup_heads) and
    return the sums of their deltas as partition_sums does."""
    async with conn.cursor(binary=True) as cur:
        await cur.execute(
            "WITH taken AS (DELETE FROM events WHERE position = ANY(%s) AND type = %s RETURNING data) "
            "SELECT d.hour, d.key_id, d.provider, d.model, coalesce(d.team_id, ''), " + _SUMS +
            f"FROM taken e CROSS JOIN LATERAL jsonb_to_recordset(e.data->'deltas') AS d({_DELTA_COLUMNS_C}) "
            "GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5",
            (positions, ROLLUP),
        )
        return await cur.fetchall()


# --- whole partitions --------------------------------------------------------------------------

@dataclass(frozen=True)
class PartitionRaw:
    """The raw usage of one partition that is to be folded, and what identifies the partition's
    content (a prepared replacement fits only the content it was built from)."""

    count: int
    first: int  # positions (0 when count is 0)
    last: int
    newest: datetime | None
    other_versions: int  # events of another version than the current one (folded in Python)
    rows: int  # every row of the partition
    rollups: int  # rollups in the partition (a partition without any never gains one: merges reuse positions)


async def partition_raw(conn: AsyncConnection[Any], part: Partition, keep: list[int], version: int) -> PartitionRaw:
    folded = "type = %(raw)s AND position <> ALL(%(keep)s)"
    cur = await conn.execute(
        f"SELECT count(*) FILTER (WHERE {folded}), coalesce(min(position) FILTER (WHERE {folded}), 0), "
        f"coalesce(max(position) FILTER (WHERE {folded}), 0), max(recorded_at) FILTER (WHERE {folded}), "
        f"count(*) FILTER (WHERE {folded} AND version <> %(version)s), count(*), "
        f"count(*) FILTER (WHERE type = %(rollup)s) FROM {part.name}",
        {"raw": RAW, "rollup": ROLLUP, "keep": keep, "version": version},
    )
    row = await cur.fetchone()
    assert row is not None
    return PartitionRaw(int(row[0]), int(row[1]), int(row[2]), row[3], int(row[4]), int(row[5]), int(row[6]))


async def newest_raw_positions(conn: AsyncConnection[Any], part: Partition, keep: list[int], limit: int) -> list[int]:
    """The newest `limit` positions of the partition's raw usage being folded, ascending (the
    rollups take only those: rollups.chunks_wanted)."""
    cur = await conn.execute(
        f"SELECT position FROM {part.name} WHERE type = %s AND position <> ALL(%s) ORDER BY position DESC LIMIT %s",
        (RAW, keep, limit),
    )
    return sorted(int(r[0]) for r in await cur.fetchall())


async def partition_raw_counts(conn: AsyncConnection[Any], part: Partition, keep: list[int],
                               version: int) -> tuple[int, int]:
    """(raw usage events to fold, of them of another version than `version`)."""
    cur = await conn.execute(
        f"SELECT count(*), count(*) FILTER (WHERE version <> %s) FROM {part.name} "
        "WHERE type = %s AND position <> ALL(%s)",
        (version, RAW, keep),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def rows_in_turns(cur: psycopg.AsyncCursor[Any]) -> list[Row]:
    """Every row of `cur`'s result, made into Python values SUMS_PER_TURN at a time with a turn of
    the event loop between: the ~70k rows of a partition's sums made at once held the leader's
    loop ~30 ms (the bytes are already received; making the values is the cost)."""
    rows: list[Row] = []
    while part := await cur.fetchmany(SUMS_PER_TURN):
        rows.extend(part)
        await asyncio.sleep(0)
    return rows


async def partition_sums(conn: AsyncConnection[Any], part: Partition, keep: list[int], version: int, *,
                         parallel: bool = True) -> list[Row]:
    """The fold of the partition's raw usage of `version`, done by the database: per (hour, key,
    provider, model, team or ''), the exact sums (bigint: an overflow is an error, never a wrap)
    and the deltas counted, sorted as Python sorts the same tuples (COLLATE "C": code point order).
    `parallel=False` when other partitions are summed at the same time: on a few cores, parallel
    workers then only add their partial aggregates' merge. Enough memory that the ~70k groups of a
    100k-position partition neither spill the hash table nor sort on disk."""
    async with conn.transaction(), conn.cursor(binary=True) as cur:
        await cur.execute("SELECT set_config('work_mem', %s, true), "
                          "set_config('max_parallel_workers_per_gather', %s, true)",
                          (SUMS_WORK_MEM, "2" if parallel else "0"))
        await cur.execute(
            "SELECT d.hour, d.key_id, d.provider, d.model, coalesce(d.team_id, ''), " + _SUMS +
            f"FROM {part.name} e CROSS JOIN LATERAL jsonb_to_recordset(e.data->'deltas') AS d({_DELTA_COLUMNS_C}) "
            "WHERE e.type = %s AND e.version = %s AND e.position <> ALL(%s) GROUP BY 1, 2, 3, 4, 5 "
            "ORDER BY 1, 2, 3, 4, 5",
            (RAW, version, keep),
        )
        return await rows_in_turns(cur)


async def partition_extras(conn: AsyncConnection[Any], part: Partition, keep: list[int], version: int) -> list[Row]:
    """The unknown members' sums (_EXTRAS) of the partition's raw usage of `version`."""
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute("SELECT set_config('work_mem', %s, true)", (SUMS_WORK_MEM,))
        await cur.execute(
            _EXTRAS.format(source=part.name,
                           where="e.type = %(raw)s AND e.version = %(version)s AND e.position <> ALL(%(keep)s)"),
            {"known": _KNOWN, "raw": RAW, "version": version, "keep": keep},
        )
        return await cur.fetchall()


async def partition_other_versions(conn: AsyncConnection[Any], part: Partition, keep: list[int],
                                   version: int) -> list[Row]:
    """(type, version, data as text) of raw usage of older versions (upcast by the codec)."""
    cur = await conn.execute(
        f"SELECT type, version, data::text FROM {part.name} WHERE type = %s AND version <> %s "
        "AND position <> ALL(%s)",
        (RAW, version, keep),
    )
    return await cur.fetchall()


async def drop_leftover_replacements(conn: AsyncConnection[Any]) -> list[str]:
    """Replacement tables left by a run that stopped before its swap (crash, fencing), and old
    partitions a run detached but did not get to drop (prepared replacements stay)."""
    cur = await conn.execute(
        "SELECT relname FROM pg_class WHERE relkind = 'r' AND NOT relispartition AND (relname LIKE %s "
        "OR relname LIKE %s)",
        (STAGING_PREFIX.replace("_", "\\_") + "%", READY_PREFIX.replace("_", "\\_") + "%\\_old"),
    )
    names = [str(r[0]) for r in await cur.fetchall()]
    for name in names:
        await conn.execute(f"DROP TABLE IF EXISTS {name}")
    return names


def ready_name(part: Partition) -> str:
    return f"{READY_PREFIX}{part.start}"


async def ready_note(conn: AsyncConnection[Any], part: Partition) -> tuple[bool, str | None]:
    """(whether the partition's prepared replacement exists, the note it was marked with)."""
    cur = await conn.execute(
        "SELECT obj_description(oid, 'pg_class') FROM pg_class WHERE relname = %s AND relkind = 'r' "
        "AND NOT relispartition", (ready_name(part),),
    )
    row = await cur.fetchone()
    return (row is not None, row[0] if row else None)


async def mark_ready(conn: AsyncConnection[Any], table: str, note: str) -> None:
    await conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(sql.Identifier(table), sql.Literal(note)))


async def build_replacement(conn: AsyncConnection[Any], part: Partition, keep: list[int],
                            name: str | None = None) -> str:
    """A fresh table shaped like a partition of `events` holding the partition's rows except the raw
    usage being folded; returns its name (the caller inserts the rollups, then swaps it in)."""
    name = name or f"{STAGING_PREFIX}{part.start}_{uuid.uuid4().hex[:8]}"
    async with conn.transaction():
        await conn.execute(f"CREATE TABLE {name} (LIKE events INCLUDING DEFAULTS INCLUDING INDEXES)")
        # the partition bound as a constraint: ATTACH then skips its validating scan under the lock
        await conn.execute(f"ALTER TABLE {name} ADD CONSTRAINT {name}_bounds "
                           f"CHECK (position >= {part.start} AND position < {part.end})")
        await conn.execute(
            f"INSERT INTO {name} SELECT * FROM {part.name} WHERE type <> %s OR position = ANY(%s)", (RAW, keep)
        )
    try:  # rollups are large: lz4 compresses them several times faster than the default pglz
        async with conn.transaction():
            await conn.execute(f"ALTER TABLE {name} ALTER COLUMN data SET COMPRESSION lz4")
    except psycopg.errors.FeatureNotSupported:
        pass  # a server built without lz4
    return name


async def swap_in(conn: AsyncConnection[Any], part: Partition, replacement: str) -> str:
    """Inside the caller's (fenced) transaction: the replacement becomes the partition; returns the
    name the old partition now has, detached (drop it after commit: its files are unlinked by
    that DROP, outside this transaction's lock on `events`). Raises LockNotAvailable when `events`
    is in use at that instant (retry)."""
    old = f"{replacement}_old"
    await conn.execute(f"LOCK TABLE ONLY events, ONLY {part.name} IN ACCESS EXCLUSIVE MODE NOWAIT")
    await conn.execute(f"ALTER TABLE events DETACH PARTITION {part.name}")
    await conn.execute(f"ALTER TABLE {part.name} RENAME TO {old}")
    await conn.execute(
        f"ALTER TABLE events ATTACH PARTITION {replacement} FOR VALUES FROM ({part.start}) TO ({part.end})"
    )
    await conn.execute(f"ALTER TABLE {replacement} DROP CONSTRAINT {replacement}_bounds")
    await conn.execute(f"ALTER TABLE {replacement} RENAME TO {part.name}")
    return old


async def drop_table(conn: AsyncConnection[Any], name: str) -> None:
    await conn.execute(f"DROP TABLE IF EXISTS {name}")


LockNotAvailable = psycopg.errors.LockNotAvailable


async def log_position(conn: AsyncConnection[Any]) -> int:
    """The log's head: partitions wholly at or below it are sealed (no append reaches them again)."""
    cur = await conn.execute("SELECT position FROM log_head WHERE id = 1")
    row = await cur.fetchone()
    assert row is not None, "log_head row missing: run `shieldes db upgrade`"
    return int(row[0])
