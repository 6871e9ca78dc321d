"""A snapshot's config is trusted only when it matches the log: the attack of re-sealing an older
state under a newer position (un-revoking a key) is refused by the loader and by `audit verify`."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import orjson
import zstandard
from psycopg_pool import AsyncConnectionPool

from shieldes.config_writer import execute
from shieldes.events.pg_store import PostgresEventStore
from shieldes.projections.commands import RevokeKey
from shieldes.snapshots import codec
from shieldes.snapshots.loader import load_projection_report
from shieldes.snapshots.store import save_snapshot
from tests.cli import invoke
from tests.integration.usage_log import UsageWriter, full_replay, seed_config

SECRET = "cluster-secret-for-tests"


def _plain(state: bytes) -> dict[str, Any]:
    return orjson.loads(zstandard.ZstdDecompressor().decompress(state))  # type: ignore[no-any-return]


def _reseal(plain: dict[str, Any]) -> tuple[bytes, str]:
    """What an attacker with write access to the table (and the documented format) can do."""
    state = zstandard.ZstdCompressor(level=3).compress(orjson.dumps(plain, option=orjson.OPT_SORT_KEYS))
    return state, hashlib.sha256(state).hexdigest()


async def _two_snapshots(pool: AsyncConnectionPool[Any], store: PostgresEventStore,
                         key: bytes | None) -> tuple[Any, Any]:
    await seed_config(store)
    await UsageWriter(store).many(5)
    old = await save_snapshot(pool, await full_replay(store), node_id="n1", keep=5, key=key)
    await execute(store, RevokeKey("key-k3"), actor="admin")
    new = await save_snapshot(pool, await full_replay(store), node_id="n1", keep=5, key=key)
    return old, new


async def _replace_newest(pool: AsyncConnectionPool[Any], new_id: int, state: bytes, checksum: str) -> None:
    async with pool.connection() as conn:
        await conn.execute("UPDATE snapshots SET state = %s, checksum = %s WHERE id = %s", (state, checksum, new_id))


async def _state_of(pool: AsyncConnectionPool[Any], snap_id: int) -> bytes:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT state FROM snapshots WHERE id = %s", (snap_id,))
        row = await cur.fetchone()
        assert row is not None
        return bytes(row[0])


async def test_old_state_resealed_under_a_newer_position_is_refused(
    pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore, database_url: str
) -> None:
    old, new = await _two_snapshots(pool, pg_store, None)
    stale = _plain(await _state_of(pool, old.id))
    stale["position"] = new.position
    await _replace_newest(pool, new.id, *_reseal(stale))

    loaded, report = await load_projection_report(pool)
    assert report.snapshot_id == old.id  # the forged one is skipped, the genuine older one used
    assert "config chain reaches" in report.skipped[0]
    assert loaded.config.keys["k3"].revoked

    # the attacker also moves the recorded tip forward: the loader cannot tell without a key, but
    # `audit verify` replays the config and names the snapshot's position
    stale["config_tip"] = _plain(await _state_of(pool, old.id))["config_tip"]
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT position, hash FROM events WHERE stream = 'config' "
                                 "ORDER BY position DESC LIMIT 1")
        row = await cur.fetchone()
        assert row is not None
    stale["config_tip"] = [row[0], row[1]]
    await _replace_newest(pool, new.id, *_reseal(stale))
    result = await asyncio.to_thread(invoke, database_url, "audit", "verify")
    assert result.exit_code != 0
    assert f"snapshot at position {new.position}" in result.stderr
    assert "Traceback" not in result.stderr


async def test_with_a_cluster_secret_a_forged_seal_is_refused(
    pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore, database_url: str
) -> None:
    key = codec.mac_key(SECRET)
    old, new = await _two_snapshots(pool, pg_store, key)
    genuine = _plain(await _state_of(pool, new.id))
    forged = _plain(await _state_of(pool, old.id))
    forged["position"], forged["config_tip"] = new.position, genuine["config_tip"]
    await _replace_newest(pool, new.id, *_reseal(forged))

    loaded, report = await load_projection_report(pool, snapshot_key=key)
    assert report.snapshot_id == old.id
    assert "not sealed with the cluster secret" in report.skipped[0]
    assert loaded.config.keys["k3"].revoked
    result = await asyncio.to_thread(invoke, database_url, "audit", "verify",
                                     env={"SHIELDES_CLUSTER_SECRET": SECRET})
    assert result.exit_code != 0 and f"snapshot at position {new.position}" in result.stderr


async def test_genuine_snapshots_verify(pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore,
                                        database_url: str) -> None:
    key = codec.mac_key(SECRET)
    await _two_snapshots(pool, pg_store, key)
    _, report = await load_projection_report(pool, snapshot_key=key)
    assert report.skipped == () and report.snapshot_id is not None
    result = await asyncio.to_thread(invoke, database_url, "--json", "audit", "verify",
                                     env={"SHIELDES_CLUSTER_SECRET": SECRET})
    assert result.exit_code == 0, result.stderr
    assert '"snapshots_checked": 2' in result.stdout
