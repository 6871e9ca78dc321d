"""Config writes start from the newest snapshot's config plus the config events after it, never
from position 0 when a usable snapshot exists; a snapshot that does not verify is not used."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool

from shieldes.config_writer import execute, load_config, write_config
from shieldes.events.codec import Codec
from shieldes.events.pg_store import PostgresEventStore
from shieldes.events.store import RecordedEvent
from shieldes.projections.commands import CreateKey, RevokeKey
from shieldes.snapshots import codec
from shieldes.snapshots.config_start import config_base, config_from_snapshot
from shieldes.snapshots.history import Point
from shieldes.snapshots.store import save_snapshot
from tests.cli import ok
from tests.integration.usage_log import UsageWriter, full_replay, seed_config

SECRET = "cluster-secret-for-tests"


class CountingStore:
    """The store, counting the config events each read returns (what a write had to fold)."""

    def __init__(self, store: PostgresEventStore) -> None:
        self.store = store
        self.read_events = 0

    async def read(self, after: int, limit: int, *, stream: str | None = None) -> Sequence[RecordedEvent]:
        page = await self.store.read(after, limit, stream=stream)
        self.read_events += len(page)
        return page

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_a_write_folds_only_the_config_after_the_snapshot(
    pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore
) -> None:
    key = codec.mac_key(SECRET)
    await seed_config(pg_store)
    await UsageWriter(pg_store).many(3)
    await save_snapshot(pool, await full_replay(pg_store), node_id="n1", keep=5, key=key)
    await execute(pg_store, RevokeKey("key-k3"), actor="admin")  # after the snapshot

    base = await config_from_snapshot(pool, key)
    assert base is not None and "k3" in base.state.keys and not base.state.keys["k3"].revoked
    counting = CountingStore(pg_store)
    done = await write_config(counting, CreateKey("k9", "key-k9", "hash-k9", "sk-shd-k9"),  # type: ignore[arg-type]
                              actor="admin", base=base)
    assert counting.read_events == 1  # the revocation (the write is not read back: the append returns it)
    full = await load_config(pg_store, Codec())
    assert done.state == full.state and done.state.keys["k3"].revoked and "k9" in done.state.keys
    assert done.events[-1].position == full.position


async def test_a_snapshot_that_does_not_verify_is_not_a_start(
    pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore
) -> None:
    key = codec.mac_key(SECRET)
    await seed_config(pg_store)
    snap = await save_snapshot(pool, await full_replay(pg_store), node_id="n1", keep=5, key=key)
    assert await config_from_snapshot(pool, None) is None  # sealed with a secret this reader lacks
    assert await config_from_snapshot(pool, codec.mac_key("another secret")) is None
    async with pool.connection() as conn:  # a config event the snapshot's recorded tip does not end at
        await conn.execute("UPDATE events SET hash = repeat('0', 64) WHERE position = %s",
                           (snap.position,))
    assert await config_from_snapshot(pool, key) is None


async def test_the_cli_writes_and_lists_from_the_snapshot(
    pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore, database_url: str
) -> None:
    env = {"SHIELDES_CLUSTER_SECRET": SECRET}
    await seed_config(pg_store)
    await save_snapshot(pool, await full_replay(pg_store), node_id="n1", keep=5, key=codec.mac_key(SECRET))
    # an event below the snapshot edited in place: a fold from position 0 would show the edit,
    # a start from the snapshot (whose recorded tip still matches the log) does not read it
    async with pool.connection() as conn:
        await conn.execute("UPDATE events SET data = jsonb_set(data, '{name}', '\"edited-in-the-log\"')"
                           " WHERE type = 'virtual_key.created' AND data->>'id' = 'k1'")
    made = await asyncio.to_thread(ok, database_url, "key", "create", "--name", "after", env=env)
    assert made["name"] == "after"
    listed = {k["name"] for k in await asyncio.to_thread(ok, database_url, "key", "list", env=env)}
    assert {"after", "key-k1", "key-k3"} <= listed and "edited-in-the-log" not in listed
    shown = await asyncio.to_thread(ok, database_url, "key", "show", "k1", env=env)
    assert shown["name"] == "key-k1"
    # without the key that seals the snapshot, the CLI folds from 0 and reads the edit
    listed = {k["name"] for k in await asyncio.to_thread(ok, database_url, "key", "list")}
    assert "edited-in-the-log" in listed and "key-k1" not in listed


async def test_a_look_at_a_point_starts_from_the_newest_snapshot_before_it(
    pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore, database_url: str
) -> None:
    """`config show --at`, `config diff` (and the admin API's `config?at=`, `config/diff`) fold from
    the newest snapshot the point includes whole, not from position 0: at a million keys that fold
    took longer than the read bound. The answers are the fold's."""
    key = codec.mac_key(SECRET)
    await seed_config(pg_store)
    first = await save_snapshot(pool, await full_replay(pg_store), node_id="n1", keep=5, key=key)
    revoked = (await execute(pg_store, RevokeKey("key-k3"), actor="admin"))[-1].position
    second = await save_snapshot(pool, await full_replay(pg_store), node_id="n1", keep=5, key=key)
    await execute(pg_store, CreateKey("k9", "key-k9", "hash-k9", "sk-shd-k9"), actor="admin")
    tip1 = (await config_from_snapshot(pool, key, up_to=first.position))
    tip2 = (await config_from_snapshot(pool, key, up_to=second.position))
    assert tip1 is not None and tip2 is not None and tip1.position < revoked <= tip2.position

    async def start(point: Point) -> int | None:
        base = await config_base(pg_store, pool, key, point)
        return None if base is None else base.position

    assert await start(Point(position=revoked - 1)) == tip1.position
    assert await start(Point(position=revoked)) == tip2.position
    assert await start(Point(position=await pg_store.head())) == tip2.position
    assert await start(Point(position=1)) is None  # before every snapshot: from 0
    when = (await pg_store.read(tip2.position - 1, 1))[0].recorded_at
    assert await start(Point(time=when)) == tip2.position
    # the newest is past it: the older snapshot kept is the start (it folded from 0)
    assert await start(Point(time=when - timedelta(microseconds=1))) == tip1.position
    when1 = (await pg_store.read(tip1.position - 1, 1))[0].recorded_at
    assert await start(Point(time=when1)) == tip1.position
    assert await start(Point(time=when1 - timedelta(microseconds=1))) is None  # before every snapshot: from 0
    assert await config_base(pg_store, pool, None, Point(position=revoked)) is None  # sealed: no key, no start

    for point in (revoked - 1, revoked, await pg_store.head()):  # the same config as a fold from 0
        counting = CountingStore(pg_store)
        base = await config_base(counting, pool, key, Point(position=point))  # type: ignore[arg-type]
        view = await load_config(counting, Codec(), upto=point, base=base)  # type: ignore[arg-type]
        assert view == await load_config(pg_store, Codec(), upto=point)
        assert counting.read_events <= 3

    # an event below the first snapshot edited in place: a fold from 0 shows the edit, a start from
    # a snapshot does not, so the CLI's answers show where they started
    async with pool.connection() as conn:
        await conn.execute("UPDATE events SET data = jsonb_set(data, '{name}', '\"edited-in-the-log\"')"
                           " WHERE type = 'virtual_key.created' AND data->>'id' = 'k1'")
    env = {"SHIELDES_CLUSTER_SECRET": SECRET}

    def key_names(shown: dict[str, Any]) -> set[str]:
        return {k["name"] for k in shown["keys"]}

    for at in (str(revoked - 1), str(revoked), when.isoformat()):
        shown = await asyncio.to_thread(ok, database_url, "config", "show", "--at", at, env=env)
        assert "key-k1" in key_names(shown) and "edited-in-the-log" not in key_names(shown), at
        assert key_names(await asyncio.to_thread(ok, database_url, "config", "show", "--at", at)) >= {
            "edited-in-the-log"}  # without the secret: from 0
    now = await asyncio.to_thread(ok, database_url, "config", "show", env=env)
    assert {"key-k1", "key-k9"} <= key_names(now)
    changed = await asyncio.to_thread(ok, database_url, "config", "diff", str(revoked - 1), str(revoked), env=env)
    assert changed["from"]["position"] == tip1.position and changed["to"]["position"] == revoked
    assert [(c["kind"], c["name"], c["fields"]) for c in changed["changes"]] == [
        ("key", "key-k3", {"revoked": {"from": False, "to": True}})]
    whole = await asyncio.to_thread(ok, database_url, "config", "diff", str(revoked), "2100-01-01T00:00:00Z",
                                    env=env)
    assert [(c["kind"], c["name"], c["change"]) for c in whole["changes"]] == [("key", "key-k9", "added")]
