"""Leader-run compaction: old raw `usage.recorded` events fold into `usage.rolled_up` events.
Its SQL is in events/compaction_sql.py.

Why it is safe (see docs/snapshots.md for the long form):
- cutoff = min(newest snapshot position, lowest position reported by alive nodes, newest raw usage
  event older than the retention window). Only raw usage events at or below the cutoff fold.
- Rollups are written AT positions of raw events they replace (the newest ones), and those raw
  rows go in the same transaction. Every live reader is past the cutoff, so it never sees the
  rollup (it already folded the raw events); a replay from scratch sees the rollup instead of them.
- Two ways of replacing, same positions: a partition of `events` wholly at or below the cutoff is
  rebuilt beside it (its kept rows plus the rollups of its raw usage, summed by the database) and
  swapped in, in one transaction (detach the old partition, attach the new one), then the old one
  is dropped: the disk goes back to the OS, nothing is DELETEd. The leader prepares those
  replacements as partitions fill (partition_replace.py); one that still fits is swapped in as is.
  The raw usage at or below the cutoff in the partition the cutoff falls in is folded in batches
  that delete it.
- Snapshots below the cutoff would count the rollups twice: they are deleted first, in the
  transaction that fixes the cutoff, so no consistent view ever pairs one with a rollup.
- The highest-seq raw event of each node's newest boots (BOOTS_KEPT) being folded is kept: it
  carries the flush-sequence watermark gossip relies on; without it a replay would forget what that
  node already made durable. Older boots' last flushes fold like the rest (events/watermarks.py).
- Every transaction that writes re-checks the leader epoch (fencing): a deposed leader stops at its
  next batch or swap; a replacement built but not swapped in is dropped (or, after a crash, by the
  next run).
- Appends never wait on compaction: it never takes the append lock (appends only write positions
  above the log head and the `log_head` row, compaction only positions at or below the cutoff) and
  config events are never read or written here. Batches are short transactions on rows no append
  touches. The swap needs ACCESS EXCLUSIVE on `events` for a few catalog changes; it asks with
  NOWAIT and retries, so it is granted only at an instant when no append or read holds `events`,
  and it never sits in the lock queue where they would queue behind it. Appends and readers that
  arrive during the swap wait for its milliseconds (`max_swap_seconds` in the report).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg
from psycopg_pool import AsyncConnectionPool

from shieldes import db
from shieldes.errors import ShieldesError
from shieldes.events import compaction_sql as csql
from shieldes.events.catalog import UsageRecorded, UsageRolledUp
from shieldes.events.codec import Codec
from shieldes.events.locks import LockBusy, dedicated_connection, session_lock
from shieldes.events.partitions import Partition, partitions
from shieldes.events.pg_store import raise_horizon
from shieldes.events.watermarks import watermark_positions
from shieldes.projections.usage import BOOTS_KEPT
from shieldes.snapshots.codec import formats_at_head
from shieldes.snapshots.fencing import LEADER_LOCK, MAINTENANCE_LOCK, bump_epoch, check_epoch
from shieldes.snapshots.partition_replace import build, ready, write_rollups
from shieldes.snapshots.rollups import MAX_ROLLUP_DELTAS, Extras, Folder, SumRow

log = logging.getLogger(__name__)
# Raw events per transaction. Bigger batches fold better (a rollup only merges deltas of its own
# batch) and cost nothing to appends (no shared lock); 5000 keeps a transaction well under 1 s.
BATCH_EVENTS = 5000
YIELD_EVERY = 250  # rows decoded between yields to the event loop (~5 ms of CPU)
SWAP_PATIENCE = 10.0  # seconds a partition swap keeps retrying while `events` is in use
SWAP_RETRY = 0.02
PARALLEL_PARTITIONS = 2


class LeaderActive(ShieldesError):
    status = 409
    code = "leader_active"


@dataclass
class CompactionReport:
    cutoff: int = 0
    limited_by: str = "nothing to compact"
    replaced_events: int = 0
    rollup_events: int = 0
    deltas_in: int = 0
    deltas_out: int = 0
    rollups_merged: int = 0
    kept_watermarks: int = 0
    snapshots_deleted: int = 0
    batches: int = 0
    max_batch_seconds: float = 0.0
    partitions_replaced: int = 0
    partitions_busy: int = 0  # left for the next run: `events` stayed in use for SWAP_PATIENCE
    partitions_prepared: int = 0  # of those replaced, found prepared (partition_replace.prepare)
    max_swap_seconds: float = 0.0
    seconds: float = 0.0
    leader_epoch: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in self.__dict__.items()}


async def _choose_cutoff(
    conn: psycopg.AsyncConnection[Any], retain_seconds: float, node_timeout: float
) -> tuple[int, str]:
    before = await csql.last_position_before(conn, retain_seconds)
    # (a snapshot of an older layout written at this schema is not loaded: it must not pin folding)
    terms = await csql.cutoff_terms(conn, before, db.SCHEMA_HEAD, formats_at_head(), node_timeout)
    return min(terms) if terms else (0, "no raw usage event is older than the retention window")


async def _fold_rows(
    rows: list[tuple[Any, ...]], keep: set[int], codec: Codec
) -> tuple[list[int], int, list[SumRow], Extras, datetime]:
    """CPU part of a batch: positions replaced, deltas in, folded, unknown members' sums, newest
    time. It yields to the event loop every YIELD_EVERY rows, so a leader keeps serving requests (a
    thread would not help: it would fight the loop for the GIL)."""
    replaced: list[int] = []
    folder = Folder()
    newest: datetime = rows[0][4]
    for i, (position, type_, version, text, recorded_at) in enumerate(rows):
        if i % YIELD_EVERY == YIELD_EVERY - 1:
            await asyncio.sleep(0)
        if position in keep:
            continue
        data = orjson.loads(text)
        if version == UsageRecorded.VERSION:
            folder.add_data(data["deltas"])
        else:  # an older shape: upcast through the codec
            event = codec.decode(type_, version, data)
            assert isinstance(event, UsageRecorded)
            folder.add(event.deltas)
        replaced.append(position)
        newest = max(newest, recorded_at)
    await asyncio.sleep(0)
    return replaced, folder.count, folder.rows(), folder.extras, newest


async def _merge_parts(
    rows: list[tuple[Any, ...]], codec: Codec
) -> tuple[int, int, int, list[SumRow], Extras]:
    """(replaced events, first position, last position, folded deltas, unknown members' sums) of
    several rollups."""
    folder = Folder()
    replaced, first, last = 0, None, None
    for t, v, text, _ in rows:
        data = orjson.loads(text)
        if v != UsageRolledUp.VERSION:
            part = codec.decode(t, v, data)
            assert isinstance(part, UsageRolledUp)
            data = codec.encode(part)[2]
        replaced += int(data["replaced_events"])
        first = int(data["first_position"]) if first is None else min(first, int(data["first_position"]))
        last = int(data["last_position"]) if last is None else max(last, int(data["last_position"]))
        folder.add_data(data["deltas"])
        await asyncio.sleep(0)
    assert first is not None and last is not None
    return replaced, first, last, folder.rows(), folder.extras


async def _fold_batch(
    conn: psycopg.AsyncConnection[Any], codec: Codec, *, epoch: int, after: int, cutoff: int,
    keep: set[int], batch: int, max_deltas: int, metadata: dict[str, Any], report: CompactionReport,
) -> int | None:
    """One short transaction; returns the last position scanned, or None when done."""
    started = time.perf_counter()
    async with conn.transaction():
        await check_epoch(conn, epoch)
        # data as text: parsed in _fold_rows in slices, not all at once inside fetchall
        rows = await csql.raw_batch(conn, after, cutoff, batch)
        if not rows:
            return None
        replaced, n_in, folded, extras, newest = await _fold_rows(rows, keep, codec)
        if replaced:
            await csql.delete_positions(conn, replaced)
            report.rollup_events += await write_rollups(
                conn, codec, folded, replaced, (len(replaced), replaced[0], replaced[-1]), metadata, newest,
                max_deltas=max_deltas, extras=extras,
            )
            report.replaced_events += len(replaced)
            report.deltas_in += n_in
            report.deltas_out += len(folded)
        report.batches += 1
        last = int(rows[-1][0])
    report.max_batch_seconds = max(report.max_batch_seconds, time.perf_counter() - started)
    return last


async def _merge_hours(
    conn: psycopg.AsyncConnection[Any], codec: Codec, *, epoch: int, cutoff: int, max_deltas: int,
    metadata: dict[str, Any], report: CompactionReport,
) -> None:
    """Merge rollups of the same hour from different sets (batches, partitions or runs) into one
    set on their own positions, one short transaction per hour: history converges to one set per
    hour. The database sums rollups of this release's version; older ones go through the codec."""
    for positions in await csql.hours_with_several_sets(conn, cutoff):
        async with conn.transaction():
            await check_epoch(conn, epoch)
            heads = await csql.rollup_heads(conn, positions)
            if all(h[0] == UsageRolledUp.VERSION for h in heads):
                carried = Folder()  # read before take_rollup_sums deletes them
                carried.add_extras(await csql.rollup_extras(conn, positions))
                extras = carried.extras
                folded = await csql.take_rollup_sums(conn, positions)
                replaced, first, last = sum(h[1] for h in heads), min(h[2] for h in heads), max(h[3] for h in heads)
            else:
                replaced, first, last, folded, extras = await _merge_parts(
                    await csql.take_rollups(conn, positions), codec)
            written = await write_rollups(conn, codec, folded, positions, (replaced, first, last), metadata,
                                           max(h[4] for h in heads), max_deltas=max_deltas, extras=extras)
            report.rollups_merged += len(heads) - written


async def _replace_partition(
    conn: psycopg.AsyncConnection[Any], codec: Codec, part: Partition, *, epoch: int, keep: list[int],
    max_deltas: int, metadata: dict[str, Any], report: CompactionReport, parallel: bool = True,
) -> None:
    """Replace a partition wholly at or below the cutoff by its kept rows plus the rollups of its
    raw usage: the replacement prepared for it if it still fits, else one built now; swapped in."""
    raw = await csql.partition_raw(conn, part, keep, UsageRecorded.VERSION)
    built = await ready(conn, part, raw)
    if not raw.count:
        return
    if built is None:
        built = await build(conn, codec, part, raw, keep, max_deltas=max_deltas, metadata=metadata,
                            parallel=parallel)
    else:
        report.partitions_prepared += 1
    try:
        if not await _swap(conn, part, built.table, epoch=epoch, report=report):
            return
    finally:
        await csql.drop_table(conn, built.table)  # gone already once swapped in (renamed)
    report.partitions_replaced += 1
    report.rollup_events += built.rollups
    report.replaced_events += raw.count
    report.deltas_in += built.deltas_in
    report.deltas_out += built.deltas_out


async def _replace_partitions(
    pool: AsyncConnectionPool[Any], conn: psycopg.AsyncConnection[Any], codec: Codec, whole: list[Partition], *,
    epoch: int, keep: list[int], max_deltas: int, metadata: dict[str, Any], report: CompactionReport,
) -> None:
    """PARALLEL_PARTITIONS partitions at a time: one on `conn`, the others each on a dedicated
    connection (not the pool's: those serve requests). The first error stops the others."""
    queue = list(reversed(whole))
    extra = max(0, min(PARALLEL_PARTITIONS, len(whole)) - 1)

    async def work(c: psycopg.AsyncConnection[Any]) -> None:
        while queue:
            await _replace_partition(c, codec, queue.pop(), epoch=epoch, keep=keep, max_deltas=max_deltas,
                                     metadata=metadata, report=report, parallel=not extra)

    async def worker() -> None:
        async with dedicated_connection(pool) as c:
            await work(c)

    tasks = [asyncio.ensure_future(work(conn)), *(asyncio.ensure_future(worker()) for _ in range(extra))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _swap(conn: psycopg.AsyncConnection[Any], part: Partition, replacement: str, *, epoch: int,
                report: CompactionReport) -> bool:
    """The fenced swap, retried while `events` is in use (it never waits in the lock queue, where
    appends would queue behind it); False if it stayed busy for SWAP_PATIENCE seconds."""
    deadline = time.monotonic() + SWAP_PATIENCE
    while True:
        started = time.perf_counter()
        try:
            async with conn.transaction():
                await check_epoch(conn, epoch)
                old = await csql.swap_in(conn, part, replacement)
        except csql.LockNotAvailable:
            if time.monotonic() > deadline:
                report.partitions_busy += 1
                log.warning("compaction: %s stayed in use for %.0f s; its raw usage is left for the next run",
                            part.name, SWAP_PATIENCE)
                return False
            await asyncio.sleep(SWAP_RETRY)
            continue
        report.max_swap_seconds = max(report.max_swap_seconds, time.perf_counter() - started)
        await csql.drop_table(conn, old)  # the disk goes back here
        return True


async def compact(
    pool: AsyncConnectionPool[Any],
    *,
    leader_epoch: int,
    retain_seconds: float,
    node_timeout: float,
    node_id: str,
    batch: int = BATCH_EVENTS,
    max_deltas: int = MAX_ROLLUP_DELTAS,
    codec: Codec | None = None,
    replace_partitions: bool = True,
) -> CompactionReport:
    """Fold raw usage older than `retain_seconds`; raises Fenced if `leader_epoch` is stale.
    `replace_partitions=False` folds everything in DELETE batches (the path before partitions; the
    benchmark's baseline)."""
    started = time.perf_counter()
    codec = codec or Codec()
    report = CompactionReport(leader_epoch=leader_epoch)
    metadata = {"actor": "compaction", "node_id": node_id, "leader_epoch": leader_epoch}
    # Session lock on its own connection: snapshot inserts wait while a compaction is half-way
    # (store.save_encoded), and the lock cannot outlive this call (events/locks.py).
    async with session_lock(pool, MAINTENANCE_LOCK), pool.connection() as conn:
        await csql.drop_leftover_replacements(conn)
        async with conn.transaction():
            await check_epoch(conn, leader_epoch)
            report.cutoff, report.limited_by = await _choose_cutoff(conn, retain_seconds, node_timeout)
            # stored before any fold: a node below it (lapsed, paused) reloads instead of reading on
            await raise_horizon(conn, report.cutoff)
            report.snapshots_deleted = await csql.delete_snapshots_below(conn, report.cutoff)
        if report.cutoff > 0:
            keep = await watermark_positions(conn, report.cutoff, BOOTS_KEPT)
            report.kept_watermarks = len(keep)
            whole = [p for p in await partitions(conn) if p.last <= report.cutoff and replace_partitions]
            await _replace_partitions(pool, conn, codec, whole, epoch=leader_epoch, keep=sorted(keep),
                                      max_deltas=max_deltas, metadata=metadata, report=report)
            # the rest, in the partition the cutoff falls in: batches that DELETE (< one partition)
            after: int | None = whole[-1].last if whole else 0
            while after is not None:
                after = await _fold_batch(
                    conn, codec, epoch=leader_epoch, after=after, cutoff=report.cutoff, keep=keep,
                    batch=batch, max_deltas=max_deltas, metadata=metadata, report=report,
                )
            await _merge_hours(conn, codec, epoch=leader_epoch, cutoff=report.cutoff,
                               max_deltas=max_deltas, metadata=metadata, report=report)
    report.seconds = time.perf_counter() - started
    log.info(
        "compaction (epoch %d): cutoff %d (%s), %d raw events -> %d rollups (%d partitions replaced) in %.2fs",
        leader_epoch, report.cutoff, report.limited_by, report.replaced_events, report.rollup_events,
        report.partitions_replaced, report.seconds,
    )
    return report


async def compact_once(
    pool: AsyncConnectionPool[Any], *, holder: str, retain_seconds: float, node_timeout: float,
    batch: int = BATCH_EVENTS, max_deltas: int = MAX_ROLLUP_DELTAS, replace_partitions: bool = True,
) -> CompactionReport:
    """The CLI's compaction: take the leader lock itself (refusing if a node holds it), take a new
    epoch so any stale leader is fenced, compact, release."""
    try:
        async with session_lock(pool, LEADER_LOCK, try_only=True) as lock_conn:
            epoch = await bump_epoch(lock_conn, holder)
            return await compact(
                pool, leader_epoch=epoch, retain_seconds=retain_seconds, node_timeout=node_timeout,
                node_id=holder, batch=batch, max_deltas=max_deltas, replace_partitions=replace_partitions,
            )
    except LockBusy:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT epoch, node_id FROM leader_epoch WHERE id = 1")
            lead = await cur.fetchone()
        who = f"node {lead[1]} (epoch {lead[0]})" if lead and lead[1] else "another process"
        raise LeaderActive(
            f"{who} holds the leader lock and compacts on its own schedule "
            "(SHIELDES_COMPACT_INTERVAL, retention SHIELDES_COMPACT_RETAIN_SECONDS); "
            "run `shieldes compact` only when no node is leader"
        ) from None
