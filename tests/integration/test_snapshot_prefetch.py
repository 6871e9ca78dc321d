"""A node's start overlaps its imports with the newest snapshot's fetch and decode (prefetch.py):
the loader takes the prefetched state only when it is the snapshot its own consistent read starts
from, verified with the same key; otherwise it reads as without a prefetch, to the same state."""

from __future__ import annotations

from typing import Any

from psycopg_pool import AsyncConnectionPool

from shieldes.config_writer import execute
from shieldes.events.pg_store import PostgresEventStore
from shieldes.projections.commands import CreateKey
from shieldes.snapshots import codec
from shieldes.snapshots.loader import load_projection
from shieldes.snapshots.prefetch import SnapshotPrefetch
from shieldes.snapshots.store import save_snapshot

KEY = codec.mac_key("prefetch-test-secret")


async def _keys(store: PostgresEventStore, *names: str) -> None:
    for n in names:
        await execute(store, CreateKey(f"key_{n}", n, f"hash-{n}", "sk-shd-x"), actor="t")


async def test_the_loader_takes_the_prefetched_snapshot_only_if_it_is_the_one_it_starts_from(
    pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore, database_url: str,
) -> None:
    await _keys(pg_store, "a", "b")
    await save_snapshot(pool, await load_projection(pool), node_id="t", keep=3, key=KEY)
    await _keys(pg_store, "c")  # the tail

    prefetch = SnapshotPrefetch(database_url, KEY)
    prefetched = await prefetch.result()
    assert prefetched is not None
    loaded = await load_projection(pool, snapshot_key=KEY, prefetch=prefetch)
    assert loaded is prefetched.projection  # used, and the tail applied to it
    fresh = await load_projection(pool, snapshot_key=KEY)
    assert fresh is not loaded and fresh.position == loaded.position and fresh.config == loaded.config

    # a snapshot written since the prefetch is the newest: the prefetched one is not used
    stale = SnapshotPrefetch(database_url, KEY)
    stale_state = await stale.result()
    await save_snapshot(pool, fresh, node_id="t", keep=3, key=KEY)
    await _keys(pg_store, "d")
    loaded = await load_projection(pool, snapshot_key=KEY, prefetch=stale)
    assert stale_state is not None and loaded is not stale_state.projection
    assert sorted(loaded.config.key_ids_by_name) == ["a", "b", "c", "d"]

    # verified with another key than the loader's: not used
    other = SnapshotPrefetch(database_url, None)
    assert await other.result() is None  # a sealed snapshot does not verify without the key
    elsewhere = SnapshotPrefetch(database_url, codec.mac_key("another-secret"))
    assert await elsewhere.result() is None
    loaded = await load_projection(pool, snapshot_key=KEY, prefetch=other)
    assert sorted(loaded.config.key_ids_by_name) == ["a", "b", "c", "d"]


async def test_a_prefetch_that_cannot_reach_the_database_is_no_error(
    pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore,
) -> None:
    await _keys(pg_store, "a")
    prefetch = SnapshotPrefetch("postgresql://nobody@127.0.0.1:9/none", KEY)
    assert await prefetch.result() is None
    loaded = await load_projection(pool, snapshot_key=KEY, prefetch=prefetch)
    assert sorted(loaded.config.key_ids_by_name) == ["a"]
