"""The replacement of one partition: its kept rows plus the rollups of its raw usage, in a fresh
table beside it (SQL in events/compaction_sql.py; swapping it in is compaction.py's).

Compaction builds it when it replaces the partition, unless it finds one prepared: the leader
prepares the replacement of each sealed partition (every position below the log's head, so no
append reaches it again) in the background, as soon as it fills, so compaction only checks that it
still fits and swaps it in. A prepared replacement keeps every row but the partition's raw usage,
so it fits only while (a) none of the partition's raw events is kept as a watermark, (b) the
partition's content is what it was built from and (c) the schema is too; compaction checks all
three (the note the table is marked with) and rebuilds otherwise. Content changes only by
compaction folding raw usage (DELETE batches in the partition the cutoff falls in, which also adds
rollups): a partition without rollups is prepared, and one with any is not used.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg_pool import AsyncConnectionPool

from shieldes import db
from shieldes.events import compaction_sql as csql
from shieldes.events.catalog import UsageRecorded, UsageRolledUp
from shieldes.events.codec import Codec, delta_data
from shieldes.events.locks import LockBusy, session_lock
from shieldes.events.partitions import Partition, partitions
from shieldes.snapshots.fencing import MAINTENANCE_LOCK, check_epoch
from shieldes.snapshots.rollups import SUMS, Extras, Folder, SumRow, chunks_wanted, plan_chunks

YIELD_ROWS = 2000  # sums turned into rollup JSON between yields to the event loop


@dataclass(frozen=True)
class Built:
    table: str
    rollups: int
    deltas_in: int
    deltas_out: int


@dataclass
class PrepareReport:
    prepared: int = 0
    raw_events: int = 0
    busy: bool = False  # a compaction held the maintenance lock: nothing prepared this time


async def write_rollups(
    conn: psycopg.AsyncConnection[Any], codec: Codec, folded: list[SumRow], positions: list[int],
    span: tuple[int, int, int], metadata: dict[str, Any], recorded_at: datetime, *, max_deltas: int,
    table: str = "events", extras: Extras | None = None,
) -> int:
    """Lay `folded` (sorted SumRows) out on `positions` (plan_chunks) and insert the rollups.
    `span` = (replaced events, first, last position); the count is carried by the first rollup of
    the set only, so summing `replaced_events` stays meaningful. Metadata holds the hour and a set
    id (small, never TOASTed): same-hour rollups from different sets are found for merging without
    reading their deltas. The deltas go from rows to their stored shape directly (no UsageDelta
    objects: a partition folds to ~70k of them), yielding to the event loop between slices. `extras`
    (members this release does not know, summed per group) join their group's delta."""
    chunks = plan_chunks([r[0] for r in folded], positions, max_deltas)
    if not chunks:  # flushes without deltas: an empty rollup still takes their newest position
        chunks = [(span[2], None, 0, 0)]
    set_id = max(c[0] for c in chunks)
    rows = []
    for i, (position, hour, first, stop) in enumerate(chunks):
        _, version, data = codec.encode(UsageRolledUp(span[0] if i == 0 else 0, span[1], span[2], ()))
        deltas = data["deltas"] = []
        for a in range(first, stop, YIELD_ROWS):
            deltas.extend(delta_data(r[1], r[4] or None, r[2], r[3], r[0], *r[5:5 + SUMS])
                          for r in folded[a:min(stop, a + YIELD_ROWS)])
            if extras:
                for r, d in zip(folded[a:min(stop, a + YIELD_ROWS)], deltas[a - first:], strict=True):
                    more = extras.get((r[0], r[1], r[2], r[3], r[4]))
                    if more:
                        d.update(more)
            await asyncio.sleep(0)
        rows.append((position, version, data,
                     {**metadata, "set": set_id, **({"hour": hour} if hour is not None else {})}))
    await csql.insert_rollups(conn, rows, recorded_at, table)
    return len(chunks)


async def _fold(
    conn: psycopg.AsyncConnection[Any], codec: Codec, part: Partition, raw: csql.PartitionRaw, keep: list[int], *,
    parallel: bool,
) -> tuple[int, list[SumRow], Extras]:
    """(deltas in, folded SumRows, unknown members' sums) of a partition's raw usage: the database
    sums the current version's deltas; older versions are upcast by the codec."""
    sums = await csql.partition_sums(conn, part, keep, UsageRecorded.VERSION, parallel=parallel)
    folder = Folder()
    folder.add_extras(await csql.partition_extras(conn, part, keep, UsageRecorded.VERSION))
    if not raw.other_versions:
        return sum(r[5 + SUMS] for r in sums), sums, folder.extras
    folder.add_sums(sums)
    for type_, version, text in await csql.partition_other_versions(conn, part, keep, UsageRecorded.VERSION):
        event = codec.decode(type_, version, orjson.loads(text))
        assert isinstance(event, UsageRecorded)
        folder.add(event.deltas)
    return folder.count, folder.rows(), folder.extras


async def build(
    conn: psycopg.AsyncConnection[Any], codec: Codec, part: Partition, raw: csql.PartitionRaw, keep: list[int], *,
    max_deltas: int, metadata: dict[str, Any], parallel: bool, name: str | None = None,
) -> Built:
    """The replacement of `part` (raw.count > 0): a table the caller swaps in or drops."""
    assert raw.newest is not None
    deltas_in, folded, extras = await _fold(conn, codec, part, raw, keep, parallel=parallel)
    # only the newest positions the rollups can take (not the partition's 100k)
    slots = await csql.newest_raw_positions(conn, part, keep, chunks_wanted([r[0] for r in folded], max_deltas))
    table = await csql.build_replacement(conn, part, keep, name)
    try:
        rollups = await write_rollups(conn, codec, folded, slots, (raw.count, raw.first, raw.last), metadata,
                                      raw.newest, max_deltas=max_deltas, table=table, extras=extras)
    except BaseException:
        with contextlib.suppress(psycopg.Error):  # inside an aborted transaction its rollback drops it
            await csql.drop_table(conn, table)
        raise
    return Built(table, rollups, deltas_in, len(folded))


def _note(raw: csql.PartitionRaw) -> dict[str, int | str]:
    """What a prepared replacement fits: the schema, and the partition's content."""
    return {"schema": db.SCHEMA_HEAD, "raw": raw.count, "first": raw.first, "last": raw.last, "rows": raw.rows,
            "rollups_in_partition": raw.rollups}


async def ready(conn: psycopg.AsyncConnection[Any], part: Partition, raw: csql.PartitionRaw) -> Built | None:
    """The partition's prepared replacement if it fits `raw` (the partition now, with this run's
    kept watermarks excluded); one that does not fit is dropped."""
    exists, text = await csql.ready_note(conn, part)
    if not exists:
        return None
    try:
        note = orjson.loads(text or "null")
        fits = raw.count > 0 and {k: note[k] for k in _note(raw)} == _note(raw)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        fits = False
    if not fits:
        await csql.drop_table(conn, csql.ready_name(part))
        return None
    return Built(csql.ready_name(part), int(note["rollup_events"]), int(note["deltas_in"]), int(note["deltas_out"]))


async def prepare(
    pool: AsyncConnectionPool[Any], *, leader_epoch: int, node_id: str, max_deltas: int, codec: Codec | None = None,
) -> PrepareReport:
    """Prepare the replacement of every sealed partition that holds raw usage (of this release's
    version only, no rollups) and has none yet, one at a time. Skipped while a compaction runs (it
    holds the maintenance lock); raises Fenced if `leader_epoch` is stale."""
    codec = codec or Codec()
    report = PrepareReport()
    metadata = {"actor": "compaction", "node_id": node_id, "leader_epoch": leader_epoch}
    try:
        async with session_lock(pool, MAINTENANCE_LOCK, try_only=True), pool.connection() as conn:
            head = await csql.log_position(conn)
            for part in await partitions(conn):
                if part.last > head:
                    break
                if (await csql.ready_note(conn, part))[0]:
                    continue
                raw = await csql.partition_raw(conn, part, [], UsageRecorded.VERSION)
                if not raw.count or raw.rollups or raw.other_versions:
                    continue
                async with conn.transaction():  # a crash half-way leaves no table behind
                    await check_epoch(conn, leader_epoch)
                    built = await build(conn, codec, part, raw, [], max_deltas=max_deltas, metadata=metadata,
                                        parallel=False, name=csql.ready_name(part))
                    note = {**_note(raw), "rollup_events": built.rollups, "deltas_in": built.deltas_in,
                            "deltas_out": built.deltas_out}
                    await csql.mark_ready(conn, built.table, orjson.dumps(note).decode())
                report.prepared += 1
                report.raw_events += raw.count
    except LockBusy:
        report.busy = True
    return report
