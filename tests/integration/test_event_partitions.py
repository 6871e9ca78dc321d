"""`events` partitioned by position: appends create partitions ahead of the head, a database at the
previous revision upgrades in place keeping every event (and downgrades back), the views still read
the whole log."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from shieldes import db
from shieldes.events.partitions import partitions, ranges_to_create
from shieldes.events.pg_store import PostgresEventStore, open_pool
from tests.integration.usage_log import UsageWriter, full_replay, seed_config, usage_daily
from tests.pg import TEST_PARTITION_SIZE


def test_ranges_to_create_keep_one_partition_ahead() -> None:
    assert ranges_to_create(10, 100, 50) == []
    assert ranges_to_create(50, 100, 50) == [(100, 150)]
    assert ranges_to_create(260, 100, 50) == [(100, 150), (150, 200), (200, 250), (250, 300), (300, 350)]


async def test_appends_create_partitions_ahead_of_the_head(pool: AsyncConnectionPool[Any],
                                                           pg_store: PostgresEventStore) -> None:
    await seed_config(pg_store)
    w = UsageWriter(pg_store)
    head = await w.many(3 * TEST_PARTITION_SIZE)
    async with pool.connection() as conn:
        parts = await partitions(conn)
        cur = await conn.execute("SELECT partitions_end FROM log_head")
        end = (await cur.fetchone() or (0,))[0]
        cur = await conn.execute("SELECT tableoid::regclass::text, count(*) FROM events GROUP BY 1")
        used = dict(await cur.fetchall())
    assert [p.start for p in parts] == list(range(0, end, TEST_PARTITION_SIZE))
    assert parts[-1].end == end and end > head + TEST_PARTITION_SIZE - 1  # a whole partition ahead
    assert len(used) >= 4 and sum(used.values()) == head  # rows spread over the partitions


async def test_a_busy_events_table_defers_the_partition_ahead_not_the_append(
    database_url: str, pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore
) -> None:
    """ATTACH waits for a running ANALYZE (or a compaction swap): the partition ahead is left to a
    later append instead of holding this one up."""
    w = UsageWriter(pg_store)
    await w.many(TEST_PARTITION_SIZE - 5)
    async with await psycopg.AsyncConnection.connect(database_url) as busy:
        await busy.execute("LOCK TABLE events IN SHARE UPDATE EXCLUSIVE MODE")  # what ANALYZE holds
        t = time.perf_counter()
        head = await w.many(10)  # into the last partition: the one ahead cannot be attached now
        assert time.perf_counter() - t < 2.0
        async with pool.connection() as conn:
            assert [p.end for p in await partitions(conn)][-1] == 2 * TEST_PARTITION_SIZE > head
        await busy.rollback()
    await w.many(1)
    async with pool.connection() as conn:
        assert [p.end for p in await partitions(conn)][-1] == 3 * TEST_PARTITION_SIZE


def _sql(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


async def test_a_log_at_0007_upgrades_in_place_and_downgrades(empty_database_url: str) -> None:
    url = empty_database_url
    db.upgrade(url, "0007")
    # a log written by the previous release: config and usage rows straight into the plain table
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO events (position, stream, type, version, data, seq) "
            "SELECT p, 'usage:n1', 'usage.recorded', 1, jsonb_build_object('node_id', 'n1', 'epoch', 1, "
            "'seq', p, 'deltas', jsonb_build_array(jsonb_build_object('key_id', 'old' || (p % 7), "
            "'team_id', null, 'provider', 'openai', 'model', 'gpt-4o', 'hour', 490000 + p / 50, "
            "'requests', 1, 'prompt_tokens', p, 'completion_tokens', 2, 'cost_nusd', 1000 * p))), p "
            "FROM generate_series(1, 250) p")
        conn.execute("UPDATE log_head SET position = 250")
    before = _sql(url, "SELECT * FROM events ORDER BY position")
    daily = _sql(url, "SELECT * FROM usage_daily ORDER BY 1, 2, 3")

    db.upgrade(url)
    assert _sql(url, "SELECT * FROM events ORDER BY position") == before
    # deltas written before the media units (0017) and the hosted tool uses (0024) read as none of them
    assert _sql(url, "SELECT * FROM usage_daily ORDER BY 1, 2, 3") == [(*r, 0, 0, 0, 0, 0, 0, Decimal(0))
                                                                      for r in daily]
    assert _sql(url, "SELECT has_table_privilege('shieldes_audit', 'usage_daily', 'SELECT')") == [(True,)]
    pool = open_pool(url, size=2)
    await pool.open(wait=True)
    try:
        store = PostgresEventStore(pool)
        await seed_config(store)
        await UsageWriter(store).many(10)
        replayed = await full_replay(store)
        assert replayed.usage.totals["old3"].requests == sum(1 for p in range(1, 251) if p % 7 == 3)
        async with pool.connection() as conn:
            parts = await partitions(conn)
        assert [(p.name, p.start) for p in parts[:2]] == [("events_p0", 0), ("events_p100000", 100000)]
        daily_after = await usage_daily(pool)
    finally:
        await pool.close()
    everything = _sql(url, "SELECT * FROM events ORDER BY position")
    assert everything[:250] == before and len(everything) == replayed.position

    _alembic_downgrade(url, "0007")
    assert _sql(url, "SELECT relkind FROM pg_class WHERE relname = 'events'") == [("r",)]
    assert _sql(url, "SELECT * FROM events ORDER BY position") == everything
    assert _sql(url, "SELECT key_name, day, requests, prompt_tokens, completion_tokens, cost_usd "
                     "FROM usage_daily ORDER BY key_name, day") == [r[:6] for r in daily_after]
    db.upgrade(url)
    assert _sql(url, "SELECT count(*) FROM events") == [(len(everything),)]


def _alembic_downgrade(url: str, revision: str) -> None:
    from alembic.config import Config

    from alembic import command

    cfg = Config(str(db.REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(db.REPO_ROOT / "alembic"))
    cfg.attributes["database_url"] = url
    cfg.attributes["skip_logging"] = True
    command.downgrade(cfg, revision)
