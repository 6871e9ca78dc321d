"""Compaction replaces whole partitions of folded usage: every number stays (per key, team and day;
the SQL views agree), config events and watermarks stay, the relation shrinks on disk, appends and
readers never queue behind the swap, and replay from 0 (a Projector's, and a node's start without
a snapshot) equals the live fold before and after."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from psycopg.types.string import TextBinaryLoader
from psycopg_pool import AsyncConnectionPool

from shieldes.events import compaction_sql as csql
from shieldes.events.catalog import UsageDelta, UsageRecorded
from shieldes.events.codec import Codec
from shieldes.events.partitions import partitions, relation_size
from shieldes.events.pg_store import PostgresEventStore, open_pool
from shieldes.events.store import AppendOptions, NewEvent
from shieldes.projections.projector import Projection, Projector
from shieldes.snapshots.compaction import compact_once
from shieldes.snapshots.fencing import Fenced
from shieldes.snapshots.loader import load_projection_report
from shieldes.snapshots.partition_replace import prepare
from shieldes.snapshots.rollups import MAX_ROLLUP_DELTAS, Folder
from tests import pg
from tests.integration.usage_log import (
    HOUR0,
    UsageWriter,
    config_rows,
    full_replay,
    seed_config,
    usage_daily,
    usage_per_key_projection,
    usage_per_key_sql,
    verify_chain,
)
from tests.strategies import run_steps, steps


async def _rows(pool: AsyncConnectionPool[Any], query: str) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(query)
        return await cur.fetchall()


PER_TEAM_DAY = ("SELECT team_id, (hour AT TIME ZONE 'UTC')::date, sum(requests), sum(prompt_tokens), "
                "sum(completion_tokens), sum(cost_nusd) FROM usage_deltas GROUP BY 1, 2 ORDER BY 1, 2")
HEAP = ("SELECT sum(pg_relation_size(relid))::bigint FROM pg_partition_tree('events') WHERE isleaf "
        "AND relid::regclass::text IN ('events_p0', 'events_p64', 'events_p128', 'events_p192')")
CONFIG_INDEX = "SELECT * FROM config_index ORDER BY position"
RAW = "SELECT position, data FROM events WHERE type = 'usage.recorded' ORDER BY position"


async def test_whole_partitions_are_replaced_keeping_every_number(
    pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore
) -> None:
    await seed_config(pg_store)
    w = UsageWriter(pg_store)
    for i in range(300):  # ~5 partitions of 64 positions; big flushes so the heap dominates
        await w.flush(node=("n1", "n2")[i % 2], epoch=1 + (i // 150), deltas=25, hour=HOUR0 + i // 20)
    before = await full_replay(pg_store)
    daily, teams, config = await usage_daily(pool), await _rows(pool, PER_TEAM_DAY), await config_rows(pool)
    index = await _rows(pool, CONFIG_INDEX)
    async with pool.connection() as conn:
        size_before, parts_before = await relation_size(conn), await partitions(conn)
    heap_before = await _rows(pool, HEAP)

    report = await compact_once(pool, holder="t", retain_seconds=0, node_timeout=5)
    assert report.cutoff == before.position
    assert report.partitions_replaced == len([p for p in parts_before if p.last <= report.cutoff]) >= 4
    assert report.kept_watermarks == 4 and report.replaced_events == 296 and report.partitions_busy == 0
    # the highest-seq flush of each (node, epoch) is kept raw, nothing else
    raw = await _rows(pool, RAW)
    assert sorted((d["node_id"], d["epoch"], d["seq"]) for _, d in raw) == [
        ("n1", 1, 75), ("n1", 2, 150), ("n2", 1, 75), ("n2", 2, 150)]

    assert await usage_daily(pool) == daily
    assert await _rows(pool, PER_TEAM_DAY) == teams
    assert await config_rows(pool) == config
    # config events stay at their positions, so what the scoped reads look up by stays true
    assert await _rows(pool, CONFIG_INDEX) == index and len(index) == len(config)
    assert await verify_chain(pg_store) == len(config)
    after = await full_replay(pg_store)
    assert after.usage == before.usage and after.config == before.config and after.position == before.position
    assert usage_per_key_projection(after) == w.expected == await usage_per_key_sql(pool)
    async with pool.connection() as conn:
        size_after, parts_after = await relation_size(conn), await partitions(conn)
        leftovers = await conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'events\\_c%%' AND relkind = 'r'")
        assert (await leftovers.fetchone() or (1,))[0] == 0
    assert [(p.name, p.start, p.end) for p in parts_after] == [(p.name, p.start, p.end) for p in parts_before]
    # the files of the replaced partitions are gone: the relation shrinks (each partition keeps its
    # indexes' empty overhead), the
    # heap of what was replaced to a fraction
    assert size_after < size_before * 0.9, (size_before, size_after)
    heap_after = await _rows(pool, HEAP)
    assert heap_after[0][0] < heap_before[0][0] * 0.4, (heap_before, heap_after)

    # a second run has nothing left to replace; rollups of one hour from different partitions merged
    again = await compact_once(pool, holder="t", retain_seconds=0, node_timeout=5)
    assert again.replaced_events == 0 and again.partitions_replaced == 0
    assert await usage_daily(pool) == daily
    hours = await _rows(pool, "SELECT count(DISTINCT metadata->>'hour'), count(DISTINCT (metadata->>'hour', "
                              "metadata->>'set')) FROM events WHERE type = 'usage.rolled_up'")
    assert hours[0][0] == hours[0][1]


async def test_the_swap_never_makes_appends_or_readers_queue(
    database_url: str, pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore
) -> None:
    """A long reader holds `events`: the swap keeps retrying (NOWAIT) instead of queueing, so an
    append and a tail read meanwhile go through at once; the swap lands when the reader is done."""
    await seed_config(pg_store)
    w = UsageWriter(pg_store)
    await w.many(150)
    before = await full_replay(pg_store)
    async with await psycopg.AsyncConnection.connect(database_url) as reader:
        await reader.execute("SELECT count(*) FROM events")  # holds ACCESS SHARE until it commits
        run = asyncio.create_task(compact_once(pool, holder="t", retain_seconds=0, node_timeout=5))
        while not run.done():  # until the first swap attempt has been refused
            cur = await reader.execute(
                "SELECT count(*) FROM pg_class WHERE relname LIKE 'events\\_c%%' AND NOT relispartition")
            if (await cur.fetchone() or (0,))[0]:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        t = time.perf_counter()
        await w.flush(node="n3")
        await pg_store.read(before.position - 3, 10)
        waited = time.perf_counter() - t
        assert not run.done()
        await reader.rollback()
    report = await run
    assert waited < 0.5, waited
    assert report.partitions_replaced >= 1 and report.partitions_busy == 0
    assert usage_per_key_projection(await full_replay(pg_store)) == w.expected


async def test_the_database_sums_sort_as_the_python_fold(
    pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore
) -> None:
    """partition_sums groups and sorts in the database (COLLATE "C"): taken as they come, its rows
    are the sums the Python fold of the same events gives, in the same order, with or without
    parallel workers."""
    w = UsageWriter(pg_store)
    for i in range(60):
        await w.flush(node=("n1", "n2")[i % 2], deltas=12, hour=HOUR0 + i // 25)
    await pg_store.append("usage:n3", [NewEvent.of(UsageRecorded("n3", 1, 1, (
        UsageDelta("Key-Ä", None, "openai", "gpt-4o", HOUR0, 1, 1, 1, 1),
        UsageDelta("key_a", "t", "openai", "gpt-4o", HOUR0, 1, 1, 1, 1),
        UsageDelta("KEY-z", None, "Open", "gpt-4o", HOUR0, 1, 1, 1, 1),
        UsageDelta("key_a", "t", "openai", "tts-1", HOUR0, 1, 0, 0, 1, characters=20),
        UsageDelta("key_a", "t", "openai", "whisper-1", HOUR0, 1, 0, 0, 1, audio_seconds=7),
        UsageDelta("key_a", "t", "openai", "dall-e-2", HOUR0, 1, 2, 0, 1, images=3),
        UsageDelta("key_a", "t", "openai", "gpt-5", HOUR0, 1, 2, 0, 50_000_001, web_searches=2, file_searches=4,
                   containers=1, tools_nusd=50_000_000))), Codec())], AppendOptions())
    async with pool.connection() as conn:
        part = (await partitions(conn))[0]
        rows = await csql.partition_sums(conn, part, [], 1)
        serial = await csql.partition_sums(conn, part, [], 1, parallel=False)
        raw = await pg_store.read(0, 1000)
    folder = Folder()
    for e in raw:
        if e.type == "usage.recorded" and e.position < part.end:
            folder.add_data(e.data["deltas"])
    assert [r[:-1] for r in rows] == folder.rows() and sum(r[-1] for r in rows) == folder.count
    assert any(r[3] == "gpt-5" and r[12:16] == (2, 4, 1, 50_000_000) for r in rows)
    assert serial == rows


async def test_the_sums_are_made_a_slice_at_a_time_with_the_loop_turning_between(
    pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partition's sums (~70k rows) made into Python values at once held the leader's event loop
    ~30 ms: at most SUMS_PER_TURN rows are made between two turns of the loop."""
    w = UsageWriter(pg_store)
    for i in range(20):
        await w.flush(node=("n1", "n2")[i % 2], deltas=12, hour=HOUR0)
    monkeypatch.setattr(csql, "SUMS_PER_TURN", 3)
    notes: list[str] = []

    class NotedText(TextBinaryLoader):
        def load(self, data: Any) -> str:
            notes.append("value")
            return super().load(data)

    stop = asyncio.Event()

    async def turns() -> None:
        while not stop.is_set():
            notes.append("turn")
            await asyncio.sleep(0)

    async with pool.connection() as conn:
        part = (await partitions(conn))[0]
        plain = await csql.partition_sums(conn, part, [], 1)
        conn.adapters.register_loader("text", NotedText)
        ticking = asyncio.create_task(turns())
        try:
            rows = await csql.partition_sums(conn, part, [], 1)
        finally:
            stop.set()
            await ticking
            conn.adapters.register_loader("text", TextBinaryLoader)
    assert rows == plain and len(rows) > 3 * 3
    per_row = notes.count("value") // len(rows)
    longest = run = 0
    for note in notes:
        run = run + 1 if note == "value" else 0
        longest = max(longest, run)
    assert per_row >= 1 and longest == 3 * per_row, (per_row, longest)


async def test_prepared_replacements_are_swapped_in_only_while_they_fit(
    pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore
) -> None:
    """The leader prepares each sealed partition's replacement ahead; compaction swaps in those that
    still fit and rebuilds the others (here: the partitions holding a kept watermark); every number
    stays. A stale leader prepares nothing."""
    await seed_config(pg_store)
    w = UsageWriter(pg_store)
    for i in range(300):  # ~5 partitions of 64 positions; boots 1 then 2 of n1 and n2
        await w.flush(node=("n1", "n2")[i % 2], epoch=1 + (i // 150), deltas=5, hour=HOUR0 + i // 20)
    before = await full_replay(pg_store)
    daily, teams = await usage_daily(pool), await _rows(pool, PER_TEAM_DAY)
    with pytest.raises(Fenced):
        await prepare(pool, leader_epoch=7, node_id="stale", max_deltas=MAX_ROLLUP_DELTAS)
    prepared = await prepare(pool, leader_epoch=0, node_id="t", max_deltas=MAX_ROLLUP_DELTAS)
    async with pool.connection() as conn:
        parts = await partitions(conn)
    sealed = [p for p in parts if p.last <= before.position]
    raw_sealed = await _rows(pool, "SELECT count(*) FROM events WHERE type = 'usage.recorded' AND position <= "
                                   f"{sealed[-1].last}")
    assert prepared.prepared == len(sealed) >= 4 and prepared.raw_events == raw_sealed[0][0]
    assert (await prepare(pool, leader_epoch=0, node_id="t", max_deltas=MAX_ROLLUP_DELTAS)).prepared == 0
    ready = await _rows(pool, "SELECT count(*) FROM pg_class WHERE relname LIKE 'events\\_r%%' AND relkind = 'r'")
    assert ready[0][0] == len(sealed)

    report = await compact_once(pool, holder="t", retain_seconds=0, node_timeout=5)
    kept = await _rows(pool, RAW)
    with_kept = {p.start for p in sealed for position, _ in kept if p.start <= position <= p.last}
    assert report.partitions_replaced == len(sealed) and with_kept
    assert report.partitions_prepared == len(sealed) - len(with_kept)
    assert report.replaced_events == 296
    assert await usage_daily(pool) == daily and await _rows(pool, PER_TEAM_DAY) == teams
    after = await full_replay(pg_store)
    assert after.usage == before.usage and after.config == before.config
    assert usage_per_key_projection(after) == w.expected == await usage_per_key_sql(pool)
    assert await _rows(pool, "SELECT relname FROM pg_class WHERE relname LIKE 'events\\_r%%' AND relkind = 'r'") == []


async def test_a_replacement_left_by_an_interrupted_run_is_dropped(
    pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore
) -> None:
    await seed_config(pg_store)
    await UsageWriter(pg_store).many(10)
    async with pool.connection() as conn:
        await conn.execute("CREATE TABLE events_c0_deadbeef (LIKE events)")
        await conn.execute("CREATE TABLE events_r0_old (LIKE events)")  # detached from a prepared swap
    await compact_once(pool, holder="t", retain_seconds=0, node_timeout=5)
    assert await _rows(pool, "SELECT relname FROM pg_class WHERE relname IN ('events_c0_deadbeef', "
                             "'events_r0_old')") == []


async def _event_count(pool: AsyncConnectionPool[Any]) -> int:
    return int((await _rows(pool, "SELECT count(*) FROM events"))[0][0])


async def _replay_equals_live_across_compaction(url: str, sequence: list[Any]) -> None:
    pool = open_pool(url, size=3)
    await pool.open(wait=True)
    try:
        store = PostgresEventStore(pool)
        live, _ = await run_steps(store, sequence)
        for _ in range(2):  # before compaction, then after it
            # usage folded by the database (a replay from 0), and event by event
            for replay in (Projector(store, Projection()), Projector(store, Projection(), fold_in_store=False)):
                await replay.catch_up()
                assert replay.position == live.position == await store.head()
                assert replay.config == live.config
                assert replay.usage == live.usage
            # a node's start without a snapshot: the loader folds the usage in the database too
            loaded, report = await load_projection_report(pool)
            assert report.snapshot_id is None and report.tail_events == await _event_count(pool)
            assert loaded.position == live.position and loaded.config == live.config and loaded.usage == live.usage
            # the leader prepares sealed partitions ahead (compaction swaps in those that still fit)
            epoch = (await _rows(pool, "SELECT epoch FROM leader_epoch"))[0][0]
            await prepare(pool, leader_epoch=epoch, node_id="prop", max_deltas=MAX_ROLLUP_DELTAS)
            await compact_once(pool, holder="prop", retain_seconds=0, node_timeout=5)
    finally:
        await pool.close()


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps)
def test_replay_equals_live_over_partitions_before_and_after_compaction(pg_server: str,
                                                                          sequence: list[Any]) -> None:
    url = pg.fresh_database(pg_server)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            pg.repartition_empty(conn, 4)  # a 40-step log spans several partitions
        asyncio.run(_replay_equals_live_across_compaction(url, sequence))
    finally:
        pg.drop_database(pg_server, url)
