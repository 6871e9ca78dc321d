"""Compaction keeps a newer release's counters: members of a usage delta this release does not know
(as the next release writes them, e.g. a hosted tool count added after this one) are summed per
group into the rollups when numeric, so that release reads its counts exact after this release's
leader compacted; members of a known-only log fold exactly as before."""

from __future__ import annotations

import random
from typing import Any

import pytest
from psycopg_pool import AsyncConnectionPool

from shieldes.events import compaction_sql as csql
from shieldes.events.catalog import UsageRecorded, UsageRolledUp, usage_stream
from shieldes.events.codec import DELTA_FIELDS, Codec
from shieldes.events.partitions import partitions
from shieldes.events.pg_store import PostgresEventStore
from shieldes.events.store import AppendOptions, NewEvent
from shieldes.snapshots.compaction import compact_once
from shieldes.snapshots.fencing import bump_epoch
from shieldes.snapshots.partition_replace import prepare
from shieldes.snapshots.rollups import MAX_ROLLUP_DELTAS, Folder, fold_deltas
from tests.integration.usage_log import (
    HOUR0,
    full_replay,
    random_deltas,
    seed_config,
    usage_daily,
    usage_per_key_projection,
    usage_per_key_sql,
)

NEWER = "code_runs"  # the member the simulated newer release knows and this one does not
Totals = dict[tuple[str, int], dict[str, Any]]


class NewerWriter:
    """Flushes as nodes of a newer release write them: this release's delta shape plus `code_runs`
    on some deltas, a fractional `gpu_seconds` on a few and a non-numeric `region` on others."""

    def __init__(self, store: PostgresEventStore, seed: int) -> None:
        self.store, self.rng = store, random.Random(seed)
        self.seqs: dict[str, int] = {}
        self.expected: Totals = {}  # (key, hour) -> the newer members' sums written
        self.known: dict[str, tuple[int, int, int, int]] = {}

    async def flush(self, node: str, deltas: int, hour: int) -> None:
        seq = self.seqs[node] = self.seqs.get(node, 0) + 1
        _, version, data = Codec().encode(UsageRecorded(node, 1, seq, random_deltas(self.rng, deltas, hour)))
        for d in data["deltas"]:
            t = self.known.get(d["key_id"], (0, 0, 0, 0))
            self.known[d["key_id"]] = (t[0] + d["requests"], t[1] + d["prompt_tokens"],
                                       t[2] + d["completion_tokens"], t[3] + d["cost_nusd"])
            roll = self.rng.random()
            more: dict[str, Any] = {}
            if roll < 0.4:
                more[NEWER] = self.rng.randint(1, 10**12)  # beyond int32: summed exactly
            if roll < 0.1:
                more["gpu_seconds"] = self.rng.choice((0.5, 0.25, 2.0))  # exact in binary and decimal
            if 0.3 < roll < 0.6:
                more["region"] = "eu"
            d.update(more)
            sums = self.expected.setdefault((d["key_id"], d["hour"]), {})
            for m, v in more.items():
                if m != "region":
                    sums[m] = sums.get(m, 0) + v
        await self.store.append(usage_stream(node), [NewEvent("usage.recorded", version, data)],
                                AppendOptions(metadata={"node_id": node}, idempotency_seq=seq))


async def newer_release_reads(store: PostgresEventStore) -> Totals:
    """What the newer release folds from the log, raw flushes and rollups alike: its members per
    (key, hour) (this release's codec drops them, so read the stored deltas as that release does)."""
    out: Totals = {}
    for e in await store.read(0, 1_000_000):
        if e.type in ("usage.recorded", "usage.rolled_up"):
            for d in e.data["deltas"]:
                assert "region" not in d or e.type == "usage.recorded", "a non-numeric member was summed"
                sums = out.setdefault((d["key_id"], d["hour"]), {})
                for m, v in d.items():
                    if m not in DELTA_FIELDS and m != "region":
                        sums[m] = sums.get(m, 0) + v
    return {k: v for k, v in out.items() if v}


async def _rollups(pool: AsyncConnectionPool[Any]) -> int:
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT count(*) FROM events WHERE type = 'usage.rolled_up'")).fetchone()
        return int(row[0]) if row else 0


@pytest.mark.parametrize("mode", ["partitions", "prepared", "delete"])
async def test_a_newer_releases_counters_survive_this_releases_compaction(
    mode: str, pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore
) -> None:
    """Whole partitions summed by the database (built now or prepared ahead), DELETE batches folded
    in Python, and the merge of one hour's rollups from different sets: each keeps the exact sums."""
    await seed_config(pg_store)
    w = NewerWriter(pg_store, seed=11)
    for i in range(300):  # ~5 partitions of 64 positions, hours spread over them (merged afterwards)
        await w.flush(("n1", "n2")[i % 2], deltas=6, hour=HOUR0 + i // 40)
    expected = {k: v for k, v in w.expected.items() if v}
    assert any("gpu_seconds" in v for v in expected.values()) and await newer_release_reads(pg_store) == expected
    daily = await usage_daily(pool)
    if mode == "prepared":
        async with pool.connection() as conn:
            epoch = await bump_epoch(conn, "t")
        assert (await prepare(pool, leader_epoch=epoch, node_id="t", max_deltas=MAX_ROLLUP_DELTAS)).prepared >= 3

    report = await compact_once(pool, holder="t", retain_seconds=0, node_timeout=5,
                                replace_partitions=mode != "delete")
    assert report.replaced_events == 298 and await _rollups(pool) >= 1  # each node's last flush stays raw
    assert (report.partitions_replaced >= 4) == (mode != "delete")
    assert (report.partitions_prepared >= 3) == (mode == "prepared")
    assert await newer_release_reads(pg_store) == expected
    # this release's own numbers are untouched by the members it carries
    assert await usage_daily(pool) == daily and await usage_per_key_sql(pool) == w.known
    assert usage_per_key_projection(await full_replay(pg_store)) == w.known

    # more flushes in hours already rolled up: a second run folds them and merges the hours' sets
    for i in range(70):
        await w.flush(("n1", "n2")[i % 2], deltas=6, hour=HOUR0 + i // 10)
    again = await compact_once(pool, holder="t", retain_seconds=0, node_timeout=5,
                               replace_partitions=mode != "delete")
    assert again.replaced_events > 0 and again.rollups_merged > 0
    assert await newer_release_reads(pg_store) == {k: v for k, v in w.expected.items() if v}
    assert usage_per_key_projection(await full_replay(pg_store)) == w.known


async def test_the_database_sums_unknown_members_as_the_python_fold(
    pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore
) -> None:
    """partition_extras (the whole-partition path) and Folder.add_data (DELETE batches, merges of
    older rollups) give the same sums per group; a partition of this release's shape has none."""
    w = NewerWriter(pg_store, seed=5)
    for i in range(20):
        await w.flush(("n1", "n2")[i % 2], deltas=8, hour=HOUR0 + i // 7)
    async with pool.connection() as conn:
        part = (await partitions(conn))[0]
        db = Folder()
        db.add_extras(await csql.partition_extras(conn, part, [], 1))
        raw = await pg_store.read(0, 1000)
    folder = Folder()
    for e in raw:
        if e.type == "usage.recorded" and e.position < part.end:
            folder.add_data(e.data["deltas"])
    assert db.extras == folder.extras and any(NEWER in v for v in db.extras.values())
    assert all(isinstance(v, int) for s in db.extras.values() for m, v in s.items() if m == NEWER)


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_log_of_known_members_rolls_up_as_before(
    seed: int, pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore
) -> None:
    """Random flushes of this release's shape, compacted (partitions, the DELETE batch of the cutoff's
    partition, the merge of hours): the rollups hold exactly the fold of the folded deltas (the
    Python reference, fold_deltas) in this release's stored shape, with no member added."""
    rng = random.Random(seed)
    flushes = []
    for i in range(230):
        event = UsageRecorded(("n1", "n2")[i % 2], 1, i // 2 + 1, random_deltas(rng, rng.randint(1, 8),
                                                                                   HOUR0 + rng.randint(1, 6)))
        flushes.append(event)
        await pg_store.append(usage_stream(event.node_id), [NewEvent.of(event, Codec())],
                              AppendOptions(metadata={"node_id": event.node_id}, idempotency_seq=event.seq))
    await compact_once(pool, holder="t", retain_seconds=0, node_timeout=5)
    folded = fold_deltas(d for e in flushes[:-2] for d in e.deltas)  # each node's last flush stays raw
    stored = [d for e in await pg_store.read(0, 10_000) if e.type == "usage.rolled_up" for d in e.data["deltas"]]
    assert sorted(stored, key=_order) == Codec().encode(UsageRolledUp(0, 0, 0, folded))[2]["deltas"]
    assert all(d.keys() <= DELTA_FIELDS for d in stored)


def _order(d: dict[str, Any]) -> tuple[Any, ...]:
    return (d["hour"], d["key_id"], d["provider"], d["model"], d["team_id"] or "")
