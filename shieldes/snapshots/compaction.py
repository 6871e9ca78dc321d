"""Leader-run compaction: old raw `usage.recorded` events fold into `usage.rolled_up` events.

Why it is safe (see docs/snapshots.md for the long form):
- cutoff = min(newest snapshot position, lowest position reported by alive nodes, newest raw usage
  event older than the retention window). Only raw usage events at or below the cutoff fold.
- Rollups are written AT positions of raw events they replace (the newest ones), and those raw
  rows are deleted in the same transaction. Every live reader is past the cutoff, so it never sees the
  rollup (it already folded the raw events); a replay from scratch sees the rollup instead of them.
- Snapshots below the cutoff would count the rollups twice: they are deleted first, in the
  transaction that fixes the cutoff, so no consistent view ever pairs one with a rollup.
- The highest-seq raw event of each node's newest boots (BOOTS_KEPT) being folded is kept: it
  carries the flush-sequence watermark gossip relies on; without it a replay would forget what that
  node already made durable. Older boots' last flushes fold like the rest (events/watermarks.py).
- Every transaction re-checks the leader epoch (fencing): a deposed leader stops at its next batch.
- Batches are short transactions that never take the append lock: appends only write positions
  above the log head and the `log_head` row, compaction only rewrites positions at or below the
  cutoff, so the two never wait on each other. Config events are never read or written here.
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
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from shieldes import db
from shieldes.errors import ShieldesError
from shieldes.events.catalog import ROLLUP_STREAM, UsageDelta, UsageRecorded, UsageRolledUp
from shieldes.events.codec import Codec
from shieldes.events.locks import LockBusy, session_lock
from shieldes.events.pg_store import raise_horizon
from shieldes.events.watermarks import watermark_positions
from shieldes.projections.usage import BOOTS_KEPT
from shieldes.snapshots.codec import READABLE_FORMATS
from shieldes.snapshots.fencing import LEADER_LOCK, MAINTENANCE_LOCK, bump_epoch, check_epoch
from shieldes.snapshots.rollups import MAX_ROLLUP_DELTAS, Folder, Plan, plan_rollups

log = logging.getLogger(__name__)
# Raw events per transaction. Bigger batches fold better (a rollup only merges deltas of its own
# batch) and cost nothing to appends (no shared lock); 5000 keeps a transaction well under 1 s.
BATCH_EVENTS = 5000
YIELD_EVERY = 250  # rows decoded between yields to the event loop (~5 ms of CPU)


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
    seconds: float = 0.0
    leader_epoch: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in self.__dict__.items()}


async def _last_position_before(conn: psycopg.AsyncConnection[Any], retain_seconds: float) -> int:
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


async def _choose_cutoff(
    conn: psycopg.AsyncConnection[Any], retain_seconds: float, node_timeout: float
) -> tuple[int, str]:
    before = await _last_position_before(conn, retain_seconds)
    cur = await conn.execute(
        "SELECT max(position) FROM events WHERE type = 'usage.recorded' AND position <= %s", (before,)
    )
    row = await cur.fetchone()
    if row is None or row[0] is None:
        return 0, "no raw usage event is older than the retention window"
    terms = [(int(row[0]), "the retention window")]
    # Only snapshots this version can load count: a newer format must not pin (or enable) folding.
    cur = await conn.execute(
        "SELECT max(position) FROM snapshots WHERE schema_version <= %s AND format = ANY(%s)",
        (db.SCHEMA_HEAD, list(READABLE_FORMATS)),
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
    return min(terms)


async def _fold_rows(
    rows: list[tuple[Any, ...]], keep: set[int], codec: Codec
) -> tuple[list[int], int, tuple[UsageDelta, ...], datetime]:
    """CPU part of a batch: positions replaced, deltas in, folded, newest time. It yields to the
    event loop every YIELD_EVERY rows, so a leader keeps serving requests (a thread would not
    help: it would fight the loop for the GIL)."""
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
    return replaced, folder.count, await folder.result_async(), newest


async def _merge_parts(
    rows: list[tuple[Any, ...]], codec: Codec
) -> tuple[int, int, int, tuple[UsageDelta, ...]]:
    """(replaced events, first position, last position, folded deltas) of several rollups."""
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
    return replaced, first, last, await folder.result_async()


async def _fold_batch(
    conn: psycopg.AsyncConnection[Any], codec: Codec, *, epoch: int, after: int, cutoff: int,
    keep: set[int], batch: int, max_deltas: int, metadata: dict[str, Any], report: CompactionReport,
) -> int | None:
    """One short transaction; returns the last position scanned, or None when done."""
    started = time.perf_counter()
    async with conn.transaction():
        await check_epoch(conn, epoch)
        # data as text: parsed in _fold_rows in slices, not all at once inside fetchall
        cur = await conn.execute(
            "SELECT position, type, version, data::text, recorded_at FROM events "
            "WHERE type = 'usage.recorded' AND position > %s AND position <= %s ORDER BY position LIMIT %s",
            (after, cutoff, batch),
        )
        rows = await cur.fetchall()
        if not rows:
            return None
        replaced, n_in, folded, newest = await _fold_rows(rows, keep, codec)
        if replaced:
            await conn.execute("DELETE FROM events WHERE position = ANY(%s)", (replaced,))
            plan = plan_rollups(folded, replaced, max_deltas)
            report.rollup_events += await _write_plan(
                conn, codec, plan, (len(replaced), replaced[0], replaced[-1]), metadata, newest
            )
            report.replaced_events += len(replaced)
            report.deltas_in += n_in
            report.deltas_out += len(folded)
        report.batches += 1
        last = int(rows[-1][0])
    report.max_batch_seconds = max(report.max_batch_seconds, time.perf_counter() - started)
    return last


async def _write_plan(
    conn: psycopg.AsyncConnection[Any], codec: Codec, plan: Plan, span: tuple[int, int, int],
    metadata: dict[str, Any], recorded_at: datetime,
) -> int:
    """Insert the planned rollups. `span` = (replaced events, first, last position); the count is
    carried by the first rollup of the set only, so summing `replaced_events` stays meaningful.
    Metadata holds the hour and a set id (small, never TOASTed): same-hour rollups from different
    sets are found for merging without reading their deltas."""
    set_id = max(p[0] for p in plan)
    for i, (position, hour, part) in enumerate(plan):
        rollup = UsageRolledUp(span[0] if i == 0 else 0, span[1], span[2], part)
        type_, version, data = codec.encode(rollup)
        meta = {**metadata, "set": set_id, **({"hour": hour} if hour is not None else {})}
        await conn.execute(
            "INSERT INTO events (position, stream, type, version, data, metadata, recorded_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (position, ROLLUP_STREAM, type_, version, Jsonb(data), Jsonb(meta), recorded_at),
        )
        await asyncio.sleep(0)
    return len(plan)


async def _merge_hours(
    conn: psycopg.AsyncConnection[Any], codec: Codec, *, epoch: int, cutoff: int, max_deltas: int,
    metadata: dict[str, Any], report: CompactionReport,
) -> None:
    """Merge rollups of the same hour from different sets (batches or runs) into one set on their
    own positions, one short transaction per hour: history converges to one set per hour."""
    cur = await conn.execute(
        "SELECT (metadata->>'hour')::bigint, array_agg(position ORDER BY position) FROM events "
        "WHERE type = 'usage.rolled_up' AND position <= %s AND metadata ? 'hour' "
        "GROUP BY 1 HAVING count(DISTINCT metadata->>'set') > 1 ORDER BY 1",
        (cutoff,),
    )
    for _hour, positions in await cur.fetchall():
        async with conn.transaction():
            await check_epoch(conn, epoch)
            cur = await conn.execute(
                "DELETE FROM events WHERE position = ANY(%s) AND type = 'usage.rolled_up' "
                "RETURNING type, version, data::text, recorded_at",
                (positions,),
            )
            rows = await cur.fetchall()
            replaced, first, last, folded = await _merge_parts(rows, codec)
            plan = plan_rollups(folded, positions, max_deltas)
            written = await _write_plan(conn, codec, plan, (replaced, first, last), metadata,
                                        max(r[3] for r in rows))
            report.rollups_merged += len(rows) - written


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
) -> CompactionReport:
    """Fold raw usage older than `retain_seconds`; raises Fenced if `leader_epoch` is stale."""
    started = time.perf_counter()
    codec = codec or Codec()
    report = CompactionReport(leader_epoch=leader_epoch)
    metadata = {"actor": "compaction", "node_id": node_id, "leader_epoch": leader_epoch}
    # Session lock on its own connection: snapshot inserts wait while a compaction is half-way
    # (store.save_encoded), and the lock cannot outlive this call (events/locks.py).
    async with session_lock(pool, MAINTENANCE_LOCK), pool.connection() as conn:
        async with conn.transaction():
            await check_epoch(conn, leader_epoch)
            report.cutoff, report.limited_by = await _choose_cutoff(conn, retain_seconds, node_timeout)
            # stored before any fold: a node below it (lapsed, paused) reloads instead of reading on
            await raise_horizon(conn, report.cutoff)
            cur = await conn.execute("DELETE FROM snapshots WHERE position < %s", (report.cutoff,))
            report.snapshots_deleted = cur.rowcount
        if report.cutoff > 0:
            keep = await watermark_positions(conn, report.cutoff, BOOTS_KEPT)
            report.kept_watermarks = len(keep)
            after: int | None = 0
            while after is not None:
                after = await _fold_batch(
                    conn, codec, epoch=leader_epoch, after=after, cutoff=report.cutoff, keep=keep,
                    batch=batch, max_deltas=max_deltas, metadata=metadata, report=report,
                )
            await _merge_hours(conn, codec, epoch=leader_epoch, cutoff=report.cutoff,
                               max_deltas=max_deltas, metadata=metadata, report=report)
    report.seconds = time.perf_counter() - started
    log.info(
        "compaction (epoch %d): cutoff %d (%s), %d raw events -> %d rollups in %.2fs",
        leader_epoch, report.cutoff, report.limited_by, report.replaced_events, report.rollup_events,
        report.seconds,
    )
    return report


async def compact_once(
    pool: AsyncConnectionPool[Any], *, holder: str, retain_seconds: float, node_timeout: float,
    batch: int = BATCH_EVENTS, max_deltas: int = MAX_ROLLUP_DELTAS,
) -> CompactionReport:
    """The CLI's compaction: take the leader lock itself (refusing if a node holds it), take a new
    epoch so any stale leader is fenced, compact, release."""
    try:
        async with session_lock(pool, LEADER_LOCK, try_only=True) as lock_conn:
            epoch = await bump_epoch(lock_conn, holder)
            return await compact(
                pool, leader_epoch=epoch, retain_seconds=retain_seconds, node_timeout=node_timeout,
                node_id=holder, batch=batch, max_deltas=max_deltas,
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
