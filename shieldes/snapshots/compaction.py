"""Leader-run compaction: old raw `usage.recorded` events fold into `usage.rolled_up` events.

Why it is safe (see docs/snapshots.md for the long form):
- cutoff = min(newest snapshot position, lowest position reported by alive nodes, newest raw usage
  event older than the retention window). Only raw usage events at or below the cutoff fold.
- Each rollup is written AT the position of the newest raw event it replaces, and those raw rows
  are deleted in the same transaction. Every live reader is past the cutoff, so it never sees the
  rollup (it already folded the raw events); a replay from scratch sees the rollup instead of them.
- Snapshots below the cutoff would count the rollups twice: they are deleted first, in the
  transaction that fixes the cutoff, so no consistent view ever pairs one with a rollup.
- The newest raw event of every (node, boot epoch) is kept: it carries the flush-sequence
  watermark gossip relies on; without it a replay would forget what that node already made durable.
- Every transaction re-checks the leader epoch (fencing): a deposed leader stops at its next batch.
- Batches are short transactions that never take the append lock: appends only write positions
  above the log head and the `log_head` row, compaction only rewrites positions at or below the
  cutoff, so the two never wait on each other. Config events are never read or written here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
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
from shieldes.snapshots.codec import FORMAT as SNAPSHOT_FORMAT
from shieldes.snapshots.fencing import LEADER_LOCK, MAINTENANCE_LOCK, bump_epoch, check_epoch

log = logging.getLogger(__name__)
# Raw events per transaction. Bigger batches fold better (a rollup only merges deltas of its own
# batch) and cost nothing to appends (no shared lock); 5000 keeps a transaction well under 1 s.
BATCH_EVENTS = 5000
YIELD_EVERY = 250  # rows decoded between yields to the event loop (~5 ms of CPU)

GroupKey = tuple[str, str | None, str, str, int]


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
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "notes"}


def _order(k: GroupKey) -> tuple[int, str, str, str, str]:
    return (k[4], k[0], k[2], k[3], k[1] or "")


class Folder:
    """Sums deltas per (key, team, deployment, model, hour), fed in slices so the caller can yield."""

    def __init__(self) -> None:
        self.acc: dict[GroupKey, list[int]] = {}
        self.count = 0

    def add(self, deltas: Iterable[UsageDelta]) -> None:
        acc = self.acc
        for d in deltas:
            self.count += 1
            k = (d.key_id, d.team_id, d.provider, d.model, d.hour)
            s = acc.get(k)
            if s is None:
                acc[k] = [d.requests, d.prompt_tokens, d.completion_tokens, d.cost_nusd]
            else:
                s[0] += d.requests
                s[1] += d.prompt_tokens
                s[2] += d.completion_tokens
                s[3] += d.cost_nusd

    def result(self) -> tuple[UsageDelta, ...]:
        """Sorted so the output is deterministic."""
        acc = self.acc
        return tuple(UsageDelta(k[0], k[1], k[2], k[3], k[4], *acc[k]) for k in sorted(acc, key=_order))


def fold_deltas(deltas: Iterable[UsageDelta]) -> tuple[UsageDelta, ...]:
    folder = Folder()
    folder.add(deltas)
    return folder.result()


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
        "SELECT max(position) FROM snapshots WHERE schema_version = %s AND format = %s",
        (db.SCHEMA_HEAD, SNAPSHOT_FORMAT),
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


async def _watermark_positions(conn: psycopg.AsyncConnection[Any], cutoff: int) -> set[int]:
    """Positions of the highest-seq raw event of each (node, epoch), at or below the cutoff."""
    cur = await conn.execute(
        "SELECT position FROM (SELECT DISTINCT ON (data->>'node_id', data->>'epoch') position "
        "  FROM events WHERE type = 'usage.recorded' "
        "  ORDER BY data->>'node_id', data->>'epoch', (data->>'seq')::bigint DESC, position DESC) w "
        "WHERE position <= %s",
        (cutoff,),
    )
    return {int(r[0]) for r in await cur.fetchall()}


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
        event = codec.decode(type_, version, orjson.loads(text))
        assert isinstance(event, UsageRecorded)
        replaced.append(position)
        folder.add(event.deltas)
        newest = max(newest, recorded_at)
    await asyncio.sleep(0)
    return replaced, folder.count, folder.result(), newest


async def _merge_parts(rows: list[tuple[Any, ...]], codec: Codec) -> UsageRolledUp:
    folder = Folder()
    replaced, first, last = 0, None, None
    for t, v, text, _ in rows:
        part = codec.decode(t, v, orjson.loads(text))
        assert isinstance(part, UsageRolledUp)
        replaced += part.replaced_events
        first = part.first_position if first is None else min(first, part.first_position)
        last = part.last_position if last is None else max(last, part.last_position)
        folder.add(part.deltas)
        await asyncio.sleep(0)
    assert first is not None and last is not None
    return UsageRolledUp(replaced, first, last, folder.result())


async def _fold_batch(
    conn: psycopg.AsyncConnection[Any], codec: Codec, *, epoch: int, after: int, cutoff: int,
    keep: set[int], batch: int, metadata: dict[str, Any], report: CompactionReport,
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
            for position, hour, part in place_by_hour(folded, replaced):
                rollup = UsageRolledUp(len(replaced), replaced[0], replaced[-1], part)
                await _insert_rollup(conn, codec, rollup, position, hour, metadata, newest)
                report.rollup_events += 1
            report.replaced_events += len(replaced)
            report.deltas_in += n_in
            report.deltas_out += len(folded)
        report.batches += 1
        last = int(rows[-1][0])
    report.max_batch_seconds = max(report.max_batch_seconds, time.perf_counter() - started)
    return last


def place_by_hour(
    folded: tuple[UsageDelta, ...], positions: list[int]
) -> list[tuple[int, int | None, tuple[UsageDelta, ...]]]:
    """Split a batch's rollup into one event per hour, each at a distinct replaced position (the
    newest ones), so later runs can merge same-hour rollups. If there are more hours than
    positions (a few flushes straddling many hours), keep one mixed rollup (hour None)."""
    by_hour: dict[int, list[UsageDelta]] = {}
    for d in folded:
        by_hour.setdefault(d.hour, []).append(d)
    if len(by_hour) > len(positions):
        return [(positions[-1], None, folded)]
    slots = sorted(positions)[-len(by_hour):]
    return [(slot, hour, tuple(by_hour[hour])) for slot, hour in zip(slots, sorted(by_hour), strict=True)]


async def _insert_rollup(
    conn: psycopg.AsyncConnection[Any], codec: Codec, rollup: UsageRolledUp, position: int, hour: int | None,
    metadata: dict[str, Any], recorded_at: datetime,
) -> None:
    type_, version, data = codec.encode(rollup)
    # The hour sits in metadata (small, never TOASTed) so same-hour rollups are found without
    # reading their deltas.
    meta = {**metadata, "hour": hour} if hour is not None else metadata
    await conn.execute(
        "INSERT INTO events (position, stream, type, version, data, metadata, recorded_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (position, ROLLUP_STREAM, type_, version, Jsonb(data), Jsonb(meta), recorded_at),
    )


async def _merge_hours(
    conn: psycopg.AsyncConnection[Any], codec: Codec, *, epoch: int, cutoff: int,
    metadata: dict[str, Any], report: CompactionReport,
) -> None:
    """Merge rollups of the same hour (from different batches or runs) into one, at the newest of
    their positions, one short transaction per hour: history ends up one rollup per hour."""
    cur = await conn.execute(
        "SELECT (metadata->>'hour')::bigint, array_agg(position ORDER BY position) FROM events "
        "WHERE type = 'usage.rolled_up' AND position <= %s AND metadata ? 'hour' "
        "GROUP BY 1 HAVING count(*) > 1 ORDER BY 1",
        (cutoff,),
    )
    for hour, positions in await cur.fetchall():
        async with conn.transaction():
            await check_epoch(conn, epoch)
            cur = await conn.execute(
                "DELETE FROM events WHERE position = ANY(%s) AND type = 'usage.rolled_up' "
                "RETURNING type, version, data::text, recorded_at",
                (positions,),
            )
            rows = await cur.fetchall()
            merged = await _merge_parts(rows, codec)
            newest = max(r[3] for r in rows)
            await _insert_rollup(conn, codec, merged, max(positions), hour, metadata, newest)
            report.rollups_merged += len(rows) - 1


async def compact(
    pool: AsyncConnectionPool[Any],
    *,
    leader_epoch: int,
    retain_seconds: float,
    node_timeout: float,
    node_id: str,
    batch: int = BATCH_EVENTS,
    codec: Codec | None = None,
) -> CompactionReport:
    """Fold raw usage older than `retain_seconds`; raises Fenced if `leader_epoch` is stale."""
    started = time.perf_counter()
    codec = codec or Codec()
    report = CompactionReport(leader_epoch=leader_epoch)
    metadata = {"actor": "compaction", "node_id": node_id, "leader_epoch": leader_epoch}
    async with pool.connection() as conn:
        # Session lock: snapshot inserts wait while a compaction is half-way (store.save_encoded).
        await conn.execute("SELECT pg_advisory_lock(%s)", (MAINTENANCE_LOCK,))
        try:
            async with conn.transaction():
                await check_epoch(conn, leader_epoch)
                report.cutoff, report.limited_by = await _choose_cutoff(conn, retain_seconds, node_timeout)
                cur = await conn.execute("DELETE FROM snapshots WHERE position < %s", (report.cutoff,))
                report.snapshots_deleted = cur.rowcount
            if report.cutoff > 0:
                keep = await _watermark_positions(conn, report.cutoff)
                report.kept_watermarks = len(keep)
                after: int | None = 0
                while after is not None:
                    after = await _fold_batch(
                        conn, codec, epoch=leader_epoch, after=after, cutoff=report.cutoff, keep=keep,
                        batch=batch, metadata=metadata, report=report,
                    )
                await _merge_hours(conn, codec, epoch=leader_epoch, cutoff=report.cutoff,
                                   metadata=metadata, report=report)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MAINTENANCE_LOCK,))
    report.seconds = time.perf_counter() - started
    log.info(
        "compaction (epoch %d): cutoff %d (%s), %d raw events -> %d rollups in %.2fs",
        leader_epoch, report.cutoff, report.limited_by, report.replaced_events, report.rollup_events,
        report.seconds,
    )
    return report


async def compact_once(
    pool: AsyncConnectionPool[Any], *, holder: str, retain_seconds: float, node_timeout: float,
    batch: int = BATCH_EVENTS,
) -> CompactionReport:
    """The CLI's compaction: take the leader lock itself (refusing if a node holds it), take a new
    epoch so any stale leader is fenced, compact, release."""
    async with pool.connection() as lock_conn:
        cur = await lock_conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,))
        row = await cur.fetchone()
        if not row or not row[0]:
            cur = await lock_conn.execute("SELECT epoch, node_id FROM leader_epoch WHERE id = 1")
            lead = await cur.fetchone()
            who = f"node {lead[1]} (epoch {lead[0]})" if lead and lead[1] else "another process"
            raise LeaderActive(
                f"{who} holds the leader lock and compacts on its own schedule "
                "(SHIELDES_COMPACT_INTERVAL, retention SHIELDES_COMPACT_RETAIN_SECONDS); "
                "run `shieldes compact` only when no node is leader"
            )
        try:
            epoch = await bump_epoch(lock_conn, holder)
            return await compact(
                pool, leader_epoch=epoch, retain_seconds=retain_seconds, node_timeout=node_timeout,
                node_id=holder, batch=batch,
            )
        finally:
            await lock_conn.execute("SELECT pg_advisory_unlock(%s)", (LEADER_LOCK,))
