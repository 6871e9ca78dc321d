"""Snapshots: snapshot + tail == full replay, corrupt/incompatible ones skipped, pruning, the
scheduler, the floor below compaction rollups, and `shieldes snapshot create|list`."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from shieldes.config_writer import execute
from shieldes.events.pg_store import PostgresEventStore
from shieldes.events.store import RecordedEvent
from shieldes.projections import projector as projector_module
from shieldes.projections.commands import CreateKey, RevokeKey
from shieldes.projections.projector import Projection, Projector
from shieldes.projections.shared_commands import SetPricing
from shieldes.projections.state import VirtualKey
from shieldes.settings import Settings
from shieldes.snapshots import codec
from shieldes.snapshots.fencing import Fenced
from shieldes.snapshots.loader import load_projection, load_projection_report
from shieldes.snapshots.scheduler import SnapshotScheduler, snapshot_due
from shieldes.snapshots.store import list_snapshots, save_snapshot
from tests.integration.usage_log import UsageWriter, cli_json, full_replay, seed_config


async def _set_epoch(pool: AsyncConnectionPool[Any], epoch: int) -> None:
    async with pool.connection() as conn:
        await conn.execute("UPDATE leader_epoch SET epoch = %s, node_id = 'n1' WHERE id = 1", (epoch,))


async def test_snapshot_plus_tail_equals_full_replay(pool: AsyncConnectionPool[Any],
                                                     pg_store: PostgresEventStore) -> None:
    await seed_config(pg_store)
    w = UsageWriter(pg_store)
    await w.many(30)
    first = await save_snapshot(pool, await full_replay(pg_store), node_id="n1", keep=3)
    await w.many(25)
    await execute(pg_store, RevokeKey("key-k3"), actor="admin")
    await execute(pg_store, SetPricing("gpt-4o", 3.0, 12.0), actor="admin")
    await w.many(5)

    loaded, report = await load_projection_report(pool)
    replayed = await full_replay(pg_store)
    assert (report.snapshot_id, report.snapshot_position) == (first.id, first.position)
    assert report.tail_events == replayed.position - first.position
    assert loaded.position == replayed.position
    assert loaded.config == replayed.config
    assert loaded.usage == replayed.usage
    assert loaded.config.keys["k3"].revoked
    # deterministic encoding: same state, same bytes, same checksum
    assert codec.encode(loaded).checksum == codec.encode(replayed).checksum


async def test_corrupt_and_incompatible_snapshots_are_skipped(
    pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    await seed_config(pg_store)
    w = UsageWriter(pg_store)
    await w.many(10)
    good = await save_snapshot(pool, await full_replay(pg_store), node_id="n1", keep=5)
    await w.many(10)
    alien = await save_snapshot(pool, await full_replay(pg_store), node_id="n1", keep=5)
    await w.many(10)
    newest = await save_snapshot(pool, await full_replay(pg_store), node_id="n1", keep=5)
    await w.many(3)
    async with pool.connection() as conn:
        # flip bytes in the middle of the newest one; the middle one claims a future format
        await conn.execute("UPDATE snapshots SET state = overlay(state placing '\\xdeadbeef'::bytea from 40) "
                           "WHERE id = %s", (newest.id,))
        await conn.execute("UPDATE snapshots SET format = 99 WHERE id = %s", (alien.id,))
    with caplog.at_level(logging.WARNING, logger="shieldes.snapshots.loader"):
        loaded, report = await load_projection_report(pool)
    assert report.snapshot_id == good.id
    assert len(report.skipped) == 2
    assert "corrupt" in report.skipped[0] and "format 99" in report.skipped[1]
    assert sum("skipping snapshot" in r.message for r in caplog.records) == 2
    replayed = await full_replay(pg_store)
    assert loaded.position == replayed.position
    assert (loaded.config, loaded.usage) == (replayed.config, replayed.usage)

    async with pool.connection() as conn:  # nothing usable: full replay, still right
        await conn.execute("UPDATE snapshots SET checksum = repeat('0', 64)")
    loaded, report = await load_projection_report(pool)
    assert report.snapshot_id is None and len(report.skipped) == 3
    assert loaded.usage == replayed.usage


async def test_keeps_only_the_newest_n(pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore) -> None:
    await seed_config(pg_store)
    w = UsageWriter(pg_store)
    positions = []
    for _ in range(4):
        await w.many(2)
        info = await save_snapshot(pool, await full_replay(pg_store), node_id="n", keep=2)
        positions.append(info.position)
    assert [s.position for s in await list_snapshots(pool)] == positions[:1:-1]


async def test_fenced_snapshot_is_refused(pool: AsyncConnectionPool[Any],
                                          pg_store: PostgresEventStore) -> None:
    await seed_config(pg_store)
    await _set_epoch(pool, 4)
    projection = await full_replay(pg_store)
    await save_snapshot(pool, projection, node_id="n1", keep=3, leader_epoch=4)
    await _set_epoch(pool, 5)
    with pytest.raises(Fenced, match="stale"):
        await save_snapshot(pool, projection, node_id="n1", keep=3, leader_epoch=4)
    assert len(await list_snapshots(pool)) == 1


def test_snapshot_due_rule() -> None:
    assert not snapshot_due(10, 10, 999.0, every_events=5, every_seconds=1.0)  # nothing new
    assert snapshot_due(15, 10, 0.0, every_events=5, every_seconds=60.0)
    assert not snapshot_due(14, 10, 0.0, every_events=5, every_seconds=60.0)
    assert snapshot_due(11, 10, 60.0, every_events=5, every_seconds=60.0)


async def test_scheduler_writes_every_n_events_and_stops(pool: AsyncConnectionPool[Any],
                                                        pg_store: PostgresEventStore) -> None:
    await seed_config(pg_store)
    await _set_epoch(pool, 1)
    projection = await full_replay(pg_store)
    settings = Settings(snapshot_every_events=10, snapshot_every_seconds=3600, snapshots_kept=2)
    sched = SnapshotScheduler(pool, lambda: projection, settings=settings, node_id="n1", leader_epoch=1,
                              check_interval=0.05)
    await sched.start()
    try:
        w = UsageWriter(pg_store)
        await w.many(12)
        projection.apply_all(await pg_store.read(projection.position, 1000))
        sched.poke()
        async with asyncio.timeout(10):
            while not (snaps := await list_snapshots(pool)):
                await asyncio.sleep(0.02)
        assert snaps[0].position == projection.position and snaps[0].leader_epoch == 1
    finally:
        await sched.stop()
    assert (await load_projection(pool)).usage == (await full_replay(pg_store)).usage


async def test_cli_snapshot_create_and_list(database_url: str, pg_store: PostgresEventStore) -> None:
    await seed_config(pg_store)
    await UsageWriter(pg_store).many(6)
    head = await pg_store.head()
    created = cli_json(database_url, "snapshot", "create")
    assert created["position"] == head and created["size_bytes"] > 0
    assert created["built_from_snapshot"] is None
    listed = cli_json(database_url, "snapshot", "list")
    assert [s["id"] for s in listed] == [created["id"]] and listed[0]["compatible"] is True


class _NotingKeys(Mapping[str, VirtualKey]):
    """A key map that notes the thread each walk over it runs in."""

    def __init__(self, keys: Mapping[str, VirtualKey], threads: list[int]) -> None:
        self._keys, self._threads = keys, threads

    def __getitem__(self, key_id: str) -> VirtualKey:
        return self._keys[key_id]

    def __iter__(self) -> Iterator[str]:
        self._threads.append(threading.get_ident())
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


async def test_a_serving_nodes_snapshot_is_one_positions_state_encoded_off_the_event_loop(
        pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """From a Projector, the usage is read a slice at a time with the loop turning between (one key a
    slice here), events that arrive meanwhile wait (the snapshot is the state of one position), and
    the config is encoded in a thread, not on the event loop (a million keys held it 3.6-5 s)."""
    monkeypatch.setattr(codec, "USAGE_SLICE", 1)
    await seed_config(pg_store)
    w = UsageWriter(pg_store)
    await w.many(20)
    projector = Projector(pg_store)
    await projector.catch_up()
    at, expected = projector.position, codec.usage_to_plain(projector.usage)
    assert len(expected["totals"]) > 2  # several slices
    await w.many(6)  # in the log, not applied yet
    threads: list[int] = []
    config = projector.projection.config
    projector.projection.config = replace(config, keys=_NotingKeys(config.keys, threads), team_keys=config.team_keys)

    saving = asyncio.create_task(save_snapshot(pool, projector, node_id="n1", keep=3))
    catching = asyncio.create_task(projector.catch_up())  # runs at the save's first turn of the loop
    info = await saving
    await catching
    assert info.position == at < projector.position
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT state, checksum FROM snapshots WHERE id = %s", (info.id,))
        state, checksum = await cur.fetchone() or (None, None)
    snapped = codec.decode(bytes(state), checksum, info.position)
    assert codec.usage_to_plain(snapped.usage) == expected
    assert sorted(snapped.config.keys) == sorted(config.keys)
    assert threads and threading.get_ident() not in threads


async def test_a_tail_is_folded_with_the_loop_turning_between_events(
        pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload (a node below the compaction horizon, or after a failover) folds the tail on a
    serving node: a page of it in one step held every request (80-140 ms at 100k-1M keys)."""
    await seed_config(pg_store)
    snap = await save_snapshot(pool, await full_replay(pg_store), node_id="n1", keep=3)
    for i in range(6):
        await execute(pg_store, CreateKey(f"tail{i}", f"key-tail{i}", f"hash-tail{i}", "sk-shd-tail"), actor="admin")
    notes: list[str] = []
    fold = Projection.apply

    def noted(self: Projection, recorded: RecordedEvent) -> Any:
        notes.append("event")
        return fold(self, recorded)

    monkeypatch.setattr(projector_module, "TURN_EVERY", 0.0)
    monkeypatch.setattr(Projection, "apply", noted)
    stop = asyncio.Event()

    async def turns() -> None:
        while not stop.is_set():
            notes.append("turn")
            await asyncio.sleep(0)

    ticking = asyncio.create_task(turns())
    try:
        loaded, report = await load_projection_report(pool)
    finally:
        stop.set()
        await ticking
    assert (report.snapshot_id, report.tail_events) == (snap.id, 6)
    assert all(k in loaded.config.keys for k in (f"tail{i}" for i in range(6)))
    folded = [i for i, n in enumerate(notes) if n == "event"]
    assert len(folded) == 6 and all(b - a > 1 for a, b in itertools.pairwise(folded)), notes
