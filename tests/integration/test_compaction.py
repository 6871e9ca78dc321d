"""Compaction: usage per key per day identical before and after (SQL view and projection), config
events untouched, the hash chain verifies, snapshots stay consistent, fencing and the CLI's lock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from shieldes.events.catalog import UsageDelta
from shieldes.events.locks import session_lock
from shieldes.events.pg_store import PostgresEventStore
from shieldes.projections.projector import Projector
from shieldes.settings import Settings
from shieldes.snapshots.compaction import compact, compact_once
from shieldes.snapshots.fencing import LEADER_LOCK, Fenced
from shieldes.snapshots.loader import load_projection, load_projection_report
from shieldes.snapshots.rollups import fold_deltas, plan_rollups
from shieldes.snapshots.scheduler import CompactionScheduler
from shieldes.snapshots.store import SnapshotRefused, list_snapshots, save_snapshot
from tests.integration.usage_log import (
    UsageWriter,
    cli_json,
    config_rows,
    full_replay,
    random_deltas,
    run_cli,
    seed_config,
    usage_daily,
    usage_per_key_cli,
    usage_per_key_projection,
    usage_per_key_sql,
    verify_chain,
)


async def _count(pool: AsyncConnectionPool[Any], where: str) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(f"SELECT count(*) FROM events WHERE {where}")
        row = await cur.fetchone()
        return int(row[0]) if row else 0


def test_fold_deltas_preserves_totals() -> None:
    import random

    deltas = random_deltas(random.Random(3), 500)
    folded = fold_deltas(deltas)
    assert len(folded) < len(deltas)
    for attr in ("requests", "prompt_tokens", "completion_tokens", "cost_nusd"):
        assert sum(getattr(d, attr) for d in folded) == sum(getattr(d, attr) for d in deltas)
    assert fold_deltas(reversed(deltas)) == folded  # order-independent, deterministic


async def test_compact_all_keeps_every_number(database_url: str, pool: AsyncConnectionPool[Any],
                                              pg_store: PostgresEventStore) -> None:
    await seed_config(pg_store)
    w = UsageWriter(pg_store)
    await w.many(80)  # nodes n1, n2; epochs 1, 2
    daily_before = await usage_daily(pool)
    config_before = await config_rows(pool)
    before = await full_replay(pg_store)
    assert await usage_per_key_sql(pool) == usage_per_key_projection(before)
    cli_before = usage_per_key_cli(database_url)

    report = cli_json(database_url, "compact", "--retain", "0s")
    assert report["cutoff"] == before.position and report["limited_by"] == "the retention window"
    # the highest-seq flush of each (node, epoch) stays raw: it carries the gossip watermark
    assert report["kept_watermarks"] == 4 and report["replaced_events"] == 76
    assert report["rollup_events"] >= 1 and report["deltas_out"] < report["deltas_in"]
    assert await _count(pool, "type = 'usage.recorded'") == 4
    # one rollup per hour once same-hour rollups of different batches are merged
    assert await _count(pool, "type = 'usage.rolled_up'") == (
        report["rollup_events"] - report["rollups_merged"]
    )
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(DISTINCT metadata->>'hour'), count(*) FROM events "
                                 "WHERE type = 'usage.rolled_up'")
        row = await cur.fetchone()
        assert row is not None and row[0] == row[1]

    assert await usage_daily(pool) == daily_before
    assert await config_rows(pool) == config_before
    assert await verify_chain(pg_store) == len(config_before)
    after = await full_replay(pg_store)
    assert after.usage == before.usage  # totals, per-day costs and flush watermarks
    assert after.config == before.config and after.position == before.position
    assert await usage_per_key_sql(pool) == usage_per_key_projection(after)
    assert usage_per_key_cli(database_url) == cli_before  # `shieldes usage --json` where it exists

    again = cli_json(database_url, "compact", "--retain", "0s")  # idempotent: nothing left to fold
    assert again["replaced_events"] == 0 and again["leader_epoch"] == report["leader_epoch"] + 1
    assert await usage_daily(pool) == daily_before

    # more usage in the same hours, folded in small batches: same-hour rollups merge into one
    await w.many(30)
    daily_mid, mid = await usage_daily(pool), await full_replay(pg_store)
    r2 = await compact_once(pool, holder="t", retain_seconds=0, node_timeout=5, batch=7,
                            max_deltas=4)
    assert r2.replaced_events == 30 and r2.rollups_merged > 0
    assert await usage_daily(pool) == daily_mid
    assert (await full_replay(pg_store)).usage == mid.usage
    async with pool.connection() as conn:  # each hour: one set of rollups (chunked), none mixed
        cur = await conn.execute(
            "SELECT count(*), count(DISTINCT metadata->>'hour'), count(DISTINCT (metadata->>'hour', "
            "metadata->>'set')), count(*) FILTER (WHERE NOT metadata ? 'hour') FROM events "
            "WHERE type = 'usage.rolled_up'")
        rollups, hours, sets, mixed = await cur.fetchone() or (0, 0, 0, 0)
    assert rollups > hours == sets > 30 and mixed == 0


async def test_cutoff_respects_snapshots_nodes_and_retention(
    pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore
) -> None:
    await seed_config(pg_store)
    w = UsageWriter(pg_store)
    await w.many(20)
    old_snap = await save_snapshot(pool, await full_replay(pg_store), node_id="n1", keep=5)
    await w.many(20)
    snap = await save_snapshot(pool, await full_replay(pg_store), node_id="n1", keep=5)
    await w.many(20)
    before = await full_replay(pg_store)
    daily_before = await usage_daily(pool)
    async with pool.connection() as conn:
        # everything but the last 10 usage events is "old"; a live node reports it is at old_snap-3
        await conn.execute("UPDATE events SET recorded_at = now() - interval '2 hours' "
                           "WHERE stream <> 'config' AND position <= %s", (before.position - 10,))
        await conn.execute("INSERT INTO cluster_nodes (node_id, position) VALUES ('n9', %s)",
                           (old_snap.position - 3,))
        await conn.execute("INSERT INTO cluster_nodes (node_id, position, heartbeat_at) "
                           "VALUES ('gone', 1, now() - interval '1 hour')")  # dead: ignored

    r = await compact(pool, leader_epoch=0, retain_seconds=3600, node_timeout=5, node_id="n1")
    assert (r.cutoff, r.limited_by) == (old_snap.position - 3, "node n9's position")
    assert r.snapshots_deleted == 0
    assert await _count(pool, f"position > {r.cutoff} AND type = 'usage.rolled_up'") == 0

    async with pool.connection() as conn:
        await conn.execute("DELETE FROM cluster_nodes")
    r = await compact(pool, leader_epoch=0, retain_seconds=3600, node_timeout=5, node_id="n1")
    assert (r.cutoff, r.limited_by) == (snap.position, "the newest snapshot")
    assert r.snapshots_deleted == 1  # old_snap would count the rollups twice
    assert [s.id for s in await list_snapshots(pool)] == [snap.id]
    with pytest.raises(SnapshotRefused):  # a stale state below the rollups cannot be stored later
        await save_snapshot(pool, await _replay_upto(pg_store, old_snap.position), node_id="x", keep=5)

    loaded, report = await load_projection_report(pool)
    assert report.snapshot_id == snap.id
    after = await full_replay(pg_store)
    assert loaded.usage == after.usage == before.usage
    assert await usage_daily(pool) == daily_before


async def _replay_upto(store: PostgresEventStore, position: int) -> Any:
    from shieldes.projections.projector import Projection

    p = Projection()
    p.apply_all(e for e in await store.read(0, 100_000) if e.position <= position)
    return p


async def test_stale_epoch_is_fenced(pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore) -> None:
    await seed_config(pg_store)
    await UsageWriter(pg_store).many(10)
    async with pool.connection() as conn:
        await conn.execute("UPDATE leader_epoch SET epoch = 7, node_id = 'n2' WHERE id = 1")
    with pytest.raises(Fenced, match=r"epoch 6 is stale: epoch 7 \(n2\)"):
        await compact(pool, leader_epoch=6, retain_seconds=0, node_timeout=5, node_id="n1")
    assert await _count(pool, "type = 'usage.rolled_up'") == 0
    assert await _count(pool, "type = 'usage.recorded'") == 10


async def test_cli_refuses_while_a_node_is_leader(database_url: str, pool: AsyncConnectionPool[Any],
                                                  pg_store: PostgresEventStore) -> None:
    await seed_config(pg_store)
    await UsageWriter(pg_store).many(4)
    async with pool.connection() as leader:
        await leader.execute("UPDATE leader_epoch SET epoch = 3, node_id = 'gw-1' WHERE id = 1")
        await leader.execute("SELECT pg_advisory_lock(%s)", (LEADER_LOCK,))
        try:
            r = run_cli(database_url, "compact", "--retain", "0s")
        finally:
            await leader.execute("SELECT pg_advisory_unlock(%s)", (LEADER_LOCK,))
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "node gw-1 (epoch 3) holds the leader lock" in r.stderr
    assert await _count(pool, "type = 'usage.recorded'") == 4
    bad = run_cli(database_url, "compact", "--retain", "soon")
    assert bad.returncode != 0 and "malformed --retain 'soon'" in bad.stderr


async def test_compaction_beside_live_appends_a_tailer_and_a_starting_node(
    pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore
) -> None:
    """Appends keep flowing, a registered tailer keeps catching up and a node starts (loader with
    node_id) while compaction runs repeatedly in small batches: nobody double counts or loses usage."""
    await seed_config(pg_store)
    w = UsageWriter(pg_store)
    await w.many(40)
    tailer = Projector(pg_store)
    async with pool.connection() as conn:
        await conn.execute("INSERT INTO cluster_nodes (node_id, position) VALUES ('tail', 0)")
    done = asyncio.Event()
    runs: list[int] = []

    async def append() -> None:
        await w.many(150)
        done.set()

    async def tail() -> None:
        while not done.is_set():
            position = await tailer.catch_up()
            async with pool.connection() as conn:
                await conn.execute("UPDATE cluster_nodes SET position = %s, heartbeat_at = now() "
                                   "WHERE node_id = 'tail'", (position,))
            await asyncio.sleep(0)

    async def compactor() -> None:
        while not done.is_set():
            r = await compact(pool, leader_epoch=0, retain_seconds=0, node_timeout=30, node_id="n1", batch=7)
            runs.append(r.replaced_events)
            await asyncio.sleep(0)

    async def late_start() -> Projector:
        await asyncio.sleep(0)
        starting = Projector(pg_store, await load_projection(pool, node_id="late"))
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT position FROM cluster_nodes WHERE node_id = 'late'")
            row = await cur.fetchone()
        assert row is not None and row[0] == starting.position
        return starting

    async with asyncio.timeout(60):
        *_, starting = await asyncio.gather(append(), tail(), compactor(), late_start())
    await tailer.catch_up()
    await starting.catch_up()
    assert sum(runs) > 0 and await _count(pool, "type = 'usage.rolled_up'") > 0
    replayed = await full_replay(pg_store)
    assert usage_per_key_projection(replayed) == w.expected
    assert tailer.usage == replayed.usage
    assert starting.usage == replayed.usage
    assert await usage_per_key_sql(pool) == w.expected


def test_plan_rollups_uses_distinct_replaced_positions_and_bounded_chunks() -> None:
    hk = ((5, "a"), (3, "a"), (5, "a"), (4, "a"), (5, "b"))
    folded = fold_deltas(UsageDelta(k, None, "p", "m", h, 1, 1, 1, 1) for h, k in hk)
    assert [(f.hour, f.key_id, f.requests) for f in folded] == [(3, "a", 1), (4, "a", 1), (5, "a", 2),
                                                                (5, "b", 1)]
    assert plan_rollups(folded, [10, 11, 12, 13, 14]) == [
        (12, 3, folded[0:1]), (13, 4, folded[1:2]), (14, 5, folded[2:4])
    ]
    assert plan_rollups(folded, [10, 11, 12, 13], max_deltas=1) == [
        (10, 3, folded[0:1]), (11, 4, folded[1:2]), (12, 5, folded[2:3]), (13, 5, folded[3:4])
    ]
    assert plan_rollups(folded, [10, 11, 12], max_deltas=1) == [  # too few slots for chunks: per hour
        (10, 3, folded[0:1]), (11, 4, folded[1:2]), (12, 5, folded[2:4])
    ]
    assert plan_rollups(folded, [10, 11]) == [(11, None, folded)]  # more hours than slots: one mixed


async def test_compaction_scheduler_runs_and_stops_when_fenced(pool: AsyncConnectionPool[Any],
                                                               pg_store: PostgresEventStore) -> None:
    await seed_config(pg_store)
    await UsageWriter(pg_store).many(10)
    settings = Settings(compact_interval=0.05, compact_retain_seconds=0)
    sched = CompactionScheduler(pool, settings=settings, node_id="n1", leader_epoch=0, first_delay=0)
    await sched.start()
    try:
        async with asyncio.timeout(10):
            while sched.last is None:
                await asyncio.sleep(0.01)
        assert sched.last.replaced_events == 8  # 10 flushes minus one watermark per (node, epoch)
        async with pool.connection() as conn:  # another node takes over: the next run is refused
            await conn.execute("UPDATE leader_epoch SET epoch = 1 WHERE id = 1")
        async with asyncio.timeout(10):
            while sched.running:
                await asyncio.sleep(0.01)
    finally:
        await sched.stop()


async def test_a_cancelled_compaction_never_leaves_its_lock_behind(pool: Any) -> None:
    """However a compaction is left (cancelled twice, the second time inside its own cleanup), its
    session lock goes with its dedicated connection: the next snapshot write does not wait."""
    from shieldes.events.locks import session_lock
    from shieldes.snapshots.fencing import MAINTENANCE_LOCK

    async def held_lock_count() -> int:
        async with pool.connection() as conn:
            cur = await conn.execute(  # this database's only: pg_locks is the whole server's, shared by tests
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = %s"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                (MAINTENANCE_LOCK & 0xFFFF_FFFF,))
            row = await cur.fetchone()
            return int(row[0])

    entered = asyncio.Event()

    async def stuck_job() -> None:
        async with session_lock(pool, MAINTENANCE_LOCK):
            entered.set()
            try:
                await asyncio.sleep(3600)
            finally:
                await asyncio.sleep(3600)  # a cleanup that is itself cancelled

    task = asyncio.create_task(stuck_job())
    await asyncio.wait_for(entered.wait(), 10)
    assert await held_lock_count() == 1
    for _ in range(2):
        task.cancel()
        await asyncio.sleep(0.01)
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = asyncio.get_running_loop().time() + 10
    while await held_lock_count():
        assert asyncio.get_running_loop().time() < deadline, "the lock outlived its job"
        await asyncio.sleep(0.02)


async def test_compaction_folds_the_last_flushes_of_boots_no_longer_needed(
        pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore) -> None:
    """A node restarted five times used to leave one raw flush per boot forever; the fold keeps
    watermarks for each node's two newest boots only, and compaction keeps just those raw flushes."""
    w = UsageWriter(pg_store)
    for epoch in range(1, 6):
        for _ in range(3):
            await w.flush(node="n1", epoch=epoch)
    await w.flush(node="n2", epoch=9)
    before = await full_replay(pg_store)
    assert before.usage.node_seqs == {"n1": {4: 12, 5: 15}, "n2": {9: 1}}
    report = await compact_once(pool, holder="test", retain_seconds=0, node_timeout=5)
    assert report.kept_watermarks == 3
    assert await _count(pool, "type = 'usage.recorded'") == 3
    after = await full_replay(pg_store)
    assert after.usage.node_seqs == before.usage.node_seqs
    assert usage_per_key_projection(after) == usage_per_key_projection(before)
    snapshot = await load_projection(pool)  # and the same through the loader
    assert snapshot.usage.node_seqs == before.usage.node_seqs


async def test_a_released_session_lock_is_free_at_once(pool: AsyncConnectionPool[Any]) -> None:
    """The maintenance jobs take their lock one after another (a fenced prepare, then the next one):
    a lock let go is free for the next taker at once, not once the old session's server process
    has gone."""
    for _ in range(500):
        async with session_lock(pool, 0x5348_5445, try_only=True):  # raises LockBusy if still held
            pass
