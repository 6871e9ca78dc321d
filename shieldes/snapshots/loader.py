"""Startup: the newest compatible snapshot that verifies, plus the tail of the log.

Everything is read inside one REPEATABLE READ transaction, so the snapshot and the tail come from
one consistent view of the log even if compaction commits batches meanwhile (a paged read across
transactions could see a rollup whose raw events it had already folded). A snapshot that is
corrupt, of another schema/format, or below the newest rollup is skipped with a log line; with no
usable snapshot the whole log is replayed as a replay from 0 does it: the usage folded by the
database, the other events one by one (events/folded_read.py).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Iterator
from contextlib import aclosing, contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from shieldes import db
from shieldes.cluster.membership import loading_heartbeat, register_loading
from shieldes.events.codec import Codec
from shieldes.events.compat import reads_of
from shieldes.events.folded_read import folded_usage, read_head, unfolded_pages
from shieldes.events.log_reads import rollup_floor, tail_pages, usage_carries
from shieldes.events.pg_store import config_tip_mismatch
from shieldes.projections.projector import Projection, apply_in_turns
from shieldes.snapshots import codec as snapcodec
from shieldes.snapshots.prefetch import Prefetched, SnapshotPrefetch
from shieldes.snapshots.store import NEWEST_FIRST, STATE_OF
from shieldes.tasks import cancel_and_wait, wait_event

log = logging.getLogger(__name__)
FETCH = 5000
KEEP_ALIVE_STOP = 10.0  # seconds a heartbeat in flight may take to finish once the load is done


@dataclass(frozen=True)
class LoadReport:
    snapshot_id: int | None  # None: full replay
    snapshot_position: int
    tail_events: int
    skipped: tuple[str, ...]  # one reason per skipped snapshot
    seconds: float


async def load_projection(
    pool: AsyncConnectionPool[Any], *, codec: Codec | None = None, node_id: str | None = None,
    snapshot_key: bytes | None = None, prefetch: SnapshotPrefetch | None = None,
) -> Projection:
    """The projection at the log head as of one consistent view. With `node_id`, the node is
    registered in `cluster_nodes` at position 0 first and its heartbeat kept fresh while loading,
    and the row ends at the loaded position: compaction never folds past a node still loading
    (which would make it count rollups of events it already folded). Membership heartbeats take
    the row over afterwards. `prefetch`: the newest snapshot, already being decoded (prefetch.py);
    used if it is the one this read starts from."""
    projection, _ = await load_projection_report(pool, codec=codec, node_id=node_id, snapshot_key=snapshot_key,
                                                 prefetch=prefetch)
    return projection


async def _register(pool: AsyncConnectionPool[Any], node_id: str, position: int, codec: Codec) -> None:
    # what this release reads is advertised from the first row on: writers check it while we load; and
    # the row says `starting` (with no HTTP address: membership.register_loading)
    await register_loading(pool, node_id, position, {"reads": reads_of(codec), "state": "starting"})


async def _keep_alive(pool: AsyncConnectionPool[Any], node_id: str, every: float, stop: asyncio.Event) -> None:
    """Heartbeats until `stop` is set. Stopped by the event, not cancelled: a cancellation that lands
    while the heartbeat's query runs can be absorbed by the driver, and the loop then went on
    beating while the load waited for it to end, so the node never started."""
    while True:
        await wait_event(stop, every)
        if stop.is_set():
            return
        await loading_heartbeat(pool, node_id)


async def load_projection_report(
    pool: AsyncConnectionPool[Any], *, codec: Codec | None = None, node_id: str | None = None,
    heartbeat_every: float = 1.0, snapshot_key: bytes | None = None, prefetch: SnapshotPrefetch | None = None,
) -> tuple[Projection, LoadReport]:
    if node_id is None:
        return await _load(pool, codec or Codec(), snapshot_key, prefetch)
    await _register(pool, node_id, 0, codec or Codec())
    stop = asyncio.Event()
    beat = asyncio.create_task(_keep_alive(pool, node_id, heartbeat_every, stop))
    try:
        projection, report = await _load(pool, codec or Codec(), snapshot_key, prefetch)
    finally:
        stop.set()
        await asyncio.wait({beat}, timeout=KEEP_ALIVE_STOP)
        await cancel_and_wait(beat)  # only a heartbeat stuck on an unresponsive database is left
    await _register(pool, node_id, projection.position, codec or Codec())
    return projection, report


async def _decoded(conn: psycopg.AsyncConnection[Any], snap_id: int, position: int, key: bytes | None,
                   prefetched: Prefetched | None) -> Projection | None:
    """Snapshot `snap_id` decoded: the prefetched one if it is this row (a row never changes; the
    seal is compared in case the table was restored), else read and decoded now. None: gone."""
    if prefetched is not None and prefetched.snapshot_id == snap_id and prefetched.key == key:
        cur = await conn.execute("SELECT checksum FROM snapshots WHERE id = %s", (snap_id,))
        row = await cur.fetchone()
        if row is not None and row[0] == prefetched.checksum and prefetched.projection.position == position:
            return prefetched.projection
    # binary: bytea as bytes, not hex text of twice the size to transfer and decode
    cur = await conn.execute(STATE_OF, (snap_id,), binary=True)
    row = await cur.fetchone()
    if row is None:
        return None
    return await asyncio.to_thread(snapcodec.decode, bytes(row[0]), row[1], position, key)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Replay builds millions of long-lived, acyclic objects: with the cyclic GC on, its full
    collections rescan them again and again (measured: per-event cost grows with the state). Paused
    for the load, then the loaded state is frozen out of every later collection."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.freeze()


async def _replay_tail(conn: psycopg.AsyncConnection[Any], projection: Projection) -> int:
    """The events after a snapshot, one by one (a tail is short: compaction and new snapshots
    keep it so)."""
    tail = 0
    async with aclosing(tail_pages(conn, projection.position, FETCH)) as pages:
        async for page in pages:
            await apply_in_turns(projection, page)  # (a reload runs on a serving node)
            tail += len(page)
            await asyncio.sleep(0)  # let the heartbeat (and anything else) run during a long replay
    return tail


async def _replay_folded(conn: psycopg.AsyncConnection[Any], projection: Projection) -> int:
    """The whole log as a replay from 0 reads it (events/folded_read.py): the events the database
    does not fold one by one, in pages, then the usage the database folded; the state a one-by-one
    replay reaches (the replay == live property covers both). Returns the events applied."""
    head, horizon = await read_head(conn)
    applied = 0
    async for page in unfolded_pages(conn, 0, head, FETCH):
        await apply_in_turns(projection, page)
        applied += len(page)
        await asyncio.sleep(0)
    usage = await folded_usage(conn, 0, head, horizon)
    projection.apply_folded(usage)
    return applied + usage.folded_events


async def _load(
    pool: AsyncConnectionPool[Any], codec: Codec, key: bytes | None, prefetch: SnapshotPrefetch | None
) -> tuple[Projection, LoadReport]:
    with _gc_paused():
        return await _load_state(pool, codec, key, prefetch)


async def _load_state(
    pool: AsyncConnectionPool[Any], codec: Codec, key: bytes | None, prefetch: SnapshotPrefetch | None
) -> tuple[Projection, LoadReport]:
    started = time.perf_counter()
    skipped: list[str] = []
    prefetched = await prefetch.result() if prefetch is not None else None
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        floor = await rollup_floor(conn)
        cur = await conn.execute(
            NEWEST_FIRST
        )
        candidates = await cur.fetchall()
        projection: Projection | None = None
        used: int | None = None
        for snap_id, position, schema_version, fmt in candidates:
            reason = None
            if not snapcodec.is_compatible(schema_version, fmt):
                reason = (f"schema {schema_version} format {fmt}, this shieldes reads "
                          f"schema {db.SCHEMA_HEAD} format {snapcodec.FORMAT}")
                if fmt in snapcodec.READABLE_FORMATS and schema_version <= db.SCHEMA_HEAD:
                    reason += " (an older format written once usage carried media units leaves them out)"
            elif position < floor:
                reason = f"position {position} is below the newest compaction rollup {floor}"
            elif await usage_carries(conn, snapcodec.left_out(fmt), position):
                reason = (f"format {fmt} leaves out {', '.join(snapcodec.left_out(fmt))}, which usage up to its "
                          "position holds (a node of an older release wrote it after the database was migrated)")
            else:
                try:
                    projection = await _decoded(conn, snap_id, position, key, prefetched)
                    if projection is None:
                        continue
                    reason = await config_tip_mismatch(conn, projection.config_tip, position)
                except snapcodec.SnapshotCorrupt as exc:
                    reason = f"corrupt ({exc})"
                if reason is not None:
                    projection = None
            if reason is not None:
                log.warning("skipping snapshot %d at position %d: %s", snap_id, position, reason)
                skipped.append(f"snapshot {snap_id}: {reason}")
                continue
            used = snap_id
            break
        if projection is None:
            projection = Projection(codec=codec)
            log.info("no usable snapshot: replaying the whole log (usage folded by the database)")
        projection.codec = codec
        base = projection.position
        tail = await (_replay_folded(conn, projection) if used is None else _replay_tail(conn, projection))
    report = LoadReport(used, base, tail, tuple(skipped), time.perf_counter() - started)
    log.info(
        "projection loaded at position %d from %s plus %d tail events in %.2fs",
        projection.position, f"snapshot {used}" if used else "an empty state", tail, report.seconds,
    )
    return projection, report
