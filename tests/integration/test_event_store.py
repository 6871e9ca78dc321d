"""One contract, every event store: Postgres and the in-memory twin."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from shieldes.errors import CommandRejected, ConcurrentChange
from shieldes.events.catalog import CONFIG_STREAM
from shieldes.events.codec import GENESIS_HASH, chain_hash
from shieldes.events.memory_store import InMemoryEventStore
from shieldes.events.pg_store import APPEND_LOCK, PostgresEventStore, horizon, open_pool, raise_horizon
from shieldes.events.scope import Scope
from shieldes.events.store import AppendOptions, EventStore, NewEvent, RecordedEvent


@pytest.fixture(params=["postgres", "memory"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[EventStore]:
    if request.param == "memory":
        yield InMemoryEventStore()
        return
    pool = open_pool(request.getfixturevalue("database_url"), size=10)
    await pool.open(wait=True)
    yield PostgresEventStore(pool)
    await pool.close()


def ev(i: int) -> NewEvent:
    return NewEvent("pricing.set", 1, {"model": f"m{i}", "input_per_1m": 1.5, "output_per_1m": 2.0})


async def test_append_read_head(store: EventStore) -> None:
    assert await store.head() == 0
    r1 = await store.append(CONFIG_STREAM, [ev(1), ev(2)], AppendOptions(metadata={"actor": "t"}))
    r2 = await store.append("usage:n1", [ev(3)], AppendOptions())
    assert (r1.first_position, r1.last_position, r2.first_position) == (1, 2, 3)
    assert await store.head() == 3
    assert await store.config_head() == 2
    events = await store.read(0)
    assert [e.position for e in events] == [1, 2, 3]
    assert events[0].data == {"model": "m1", "input_per_1m": 1.5, "output_per_1m": 2.0}
    assert events[0].metadata == {"actor": "t"}
    assert [e.position for e in await store.read(1, limit=1)] == [2]
    assert [e.position for e in await store.read(0, stream="usage:n1")] == [3]


async def test_the_config_position_at_a_point_and_the_keys_that_named_a_team(store: EventStore) -> None:
    """What `config diff` reads instead of the whole config: where a point's config ends, and
    the keys a team ever held."""
    def key(i: int, team: str | None, kind: str = "created") -> NewEvent:
        if kind == "updated":
            return NewEvent("virtual_key.updated", 1, {"id": f"k{i}", "models": None, "team_id": team,
                                                       "expires_at": None})
        return NewEvent("virtual_key.created", 1, {"id": f"k{i}", "name": f"n{i}", "key_hash": f"h{i}",
                                                   "prefix": "sk", "models": None, "team_id": team})

    await store.append(CONFIG_STREAM, [ev(1), key(1, "t1")], AppendOptions())  # 1, 2
    await store.append("usage:n1", [ev(3), ev(4)], AppendOptions())  # 3, 4
    first = (await store.read(0))[0].recorded_at
    await store.append(CONFIG_STREAM, [key(2, None), key(3, "t2"), key(2, "t1", "updated")], AppendOptions())  # 5-7
    assert [await store.config_position_at(p) for p in (0, 1, 2, 4, 6, 7, 99)] == [0, 1, 2, 2, 6, 7, 7]
    later = (await store.read(4, 1))[0].recorded_at
    assert await store.first_config_after(later) is None
    if later > first:  # the in-memory store's clock may give both appends one time
        assert await store.first_config_after(first) == 5
    assert await store.keys_naming_teams(["t1"]) == {"k1", "k2"}
    assert await store.keys_naming_teams(["t2", "t9"]) == {"k3"}
    assert await store.keys_naming_teams([]) == set()


async def test_config_events_form_a_hash_chain(store: EventStore) -> None:
    await store.append(CONFIG_STREAM, [ev(1)], AppendOptions())
    await store.append("usage:n1", [ev(2)], AppendOptions())
    await store.append(CONFIG_STREAM, [ev(3)], AppendOptions())
    prev = GENESIS_HASH
    config = [e for e in await store.read(0) if e.is_config]
    for e in config:
        assert e.prev_hash == prev
        assert e.hash == chain_hash(prev, position=e.position, stream=e.stream, type_=e.type, version=e.version,
                                    data=e.data, metadata=e.metadata, recorded_at=e.recorded_at)
        prev = e.hash
    usage = [e for e in await store.read(0) if not e.is_config]
    assert usage[0].hash is None



async def test_an_append_returns_its_events_as_a_read_gives_them(store: EventStore) -> None:
    """A writer applies its own events from the append's result instead of reading them back: they
    must be what the log holds (positions, chain hashes, the commit's clock, data as stored)."""
    await store.append("usage:n1", [ev(0)], AppendOptions())
    created = NewEvent("virtual_key.created", 1, {"id": "key_1", "name": "a", "key_hash": "h", "prefix": "sk-",
                                                    "models": ["gpt-4o", "o1"], "team_id": None, "expires_at": 1.5e9})
    result = await store.append(CONFIG_STREAM, [created, ev(1)], AppendOptions(metadata={"actor": "t"}))
    assert len(result.events) == 2
    assert list(result.events) == await store.read(0, 10, stream=CONFIG_STREAM)
    usage = await store.append("usage:n1", [ev(2)], AppendOptions(idempotency_seq=4))
    assert list(usage.events) == await store.read(3, 10)
    again = await store.append("usage:n1", [ev(2)], AppendOptions(idempotency_seq=4))
    assert again.duplicate and again.events == ()


async def test_a_page_carries_the_head_and_the_event_at_its_cursor(store: EventStore) -> None:
    await store.append(CONFIG_STREAM, [ev(1), ev(2)], AppendOptions())
    await store.append("usage:n1", [ev(3)], AppendOptions())
    page = await store.read_page(2, 10)
    at_two = (await store.read(1, 1))[0]
    assert (page.head, [e.position for e in page.events]) == (3, [3])
    assert page.at_cursor is not None and (page.at_cursor.stream, page.at_cursor.type, page.at_cursor.recorded_at) \
        == (at_two.stream, at_two.type, at_two.recorded_at)
    assert (await store.read_page(0, 10)).at_cursor is None and (await store.read_page(3, 10)).events == []

async def test_expected_config_position_refuses_stale_writer(store: EventStore) -> None:
    await store.append(CONFIG_STREAM, [ev(1)], AppendOptions())
    await store.append(CONFIG_STREAM, [ev(2)], AppendOptions(expected_config_position=1))
    with pytest.raises(ConcurrentChange):
        await store.append(CONFIG_STREAM, [ev(3)], AppendOptions(expected_config_position=1))
    assert await store.head() == 2


async def test_a_scoped_append_decides_on_its_scope_and_appends_nothing_on_refusal(store: EventStore) -> None:
    team = NewEvent("team.created", 1, {"id": "team_a", "name": "a"})
    await store.append(CONFIG_STREAM, [team, NewEvent("team.created", 1, {"id": "team_b", "name": "b"}), ev(1)],
                       AppendOptions())
    await store.append("usage:n1", [ev(2)], AppendOptions())  # usage does not move the config position
    seen: list[list[int]] = []

    def refuse(events: Sequence[RecordedEvent]) -> list[NewEvent]:
        seen.append([e.position for e in events])
        raise CommandRejected("refused")

    with pytest.raises(CommandRejected):
        await store.append_scoped(Scope(teams=("a",)), refuse, AppendOptions())
    assert seen == [[1, 3]] and await store.head() == 4  # team a and the shared config; nothing appended
    read, result = await store.append_scoped(Scope(teams=("a",)), lambda events: [ev(5)],
                                             AppendOptions(metadata={"actor": "t"}))
    assert [e.position for e in read] == [1, 3] and await store.read(4) == list(result.events)
    assert (result.first_position, await store.config_head()) == (5, 5)


async def test_a_scoped_append_is_refused_if_the_config_moved_after_its_read(pg_store: PostgresEventStore,
                                                                             database_url: str) -> None:
    """The scope is read before the append lock is taken; a config write that commits in between
    makes the head the lock reveals differ from the read's, and the write is refused, not appended."""
    import psycopg

    await pg_store.append(CONFIG_STREAM, [ev(1)], AppendOptions())
    async with await psycopg.AsyncConnection.connect(database_url) as holder:  # a transaction holding the lock
        await holder.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK,))
        write = asyncio.create_task(pg_store.append_scoped(Scope(), lambda events: [ev(2)], AppendOptions()))
        # this database's waiters only: pg_locks is the whole server's, which other tests share
        waiting = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                   " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())")
        while (await (await holder.execute(waiting)).fetchall()) == [(0,)]:  # until it waits for the lock
            await asyncio.sleep(0.005)
        await holder.execute("UPDATE log_head SET config_position = config_position + 1")  # as an append does
        await holder.commit()
    with pytest.raises(ConcurrentChange):
        await write
    assert await pg_store.head() == 1


async def test_idempotent_append_by_sequence(store: EventStore) -> None:
    first = await store.append("usage:n1", [ev(1)], AppendOptions(idempotency_seq=7))
    again = await store.append("usage:n1", [ev(1)], AppendOptions(idempotency_seq=7))
    assert again.duplicate and again.first_position == first.first_position
    other = await store.append("usage:n2", [ev(1)], AppendOptions(idempotency_seq=7))
    assert not other.duplicate
    assert await store.head() == 2


async def test_concurrent_writers_never_let_a_tailing_reader_skip(store: EventStore) -> None:
    """8 writers append concurrently while a reader tails by position: the reader must see every
    position exactly once, in order, with no gaps."""
    writers, per_writer = 8, 60
    done = asyncio.Event()
    seen: list[int] = []

    async def writer(w: int) -> None:
        for i in range(per_writer):
            stream = CONFIG_STREAM if i % 5 == 0 else f"usage:w{w}"
            await store.append(stream, [ev(i)] * (1 + i % 3), AppendOptions())

    async def reader() -> None:
        cursor = 0
        while True:
            finished = done.is_set()
            for e in await store.read(cursor, limit=50):
                assert e.position == cursor + 1, f"reader skipped from {cursor} to {e.position}"
                cursor = e.position
                seen.append(cursor)
            if finished and cursor == await store.head():
                return
            await asyncio.sleep(0)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer(w) for w in range(writers)))
    done.set()
    await asyncio.wait_for(reading, 60)
    expected_total = writers * sum(1 + i % 3 for i in range(per_writer))
    assert seen == list(range(1, expected_total + 1))


async def test_postgres_notifies_config_appends_only(pg_store: PostgresEventStore, database_url: str) -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as listener:
        await listener.execute("LISTEN shieldes_events")
        await pg_store.append("usage:n1", [ev(1)], AppendOptions())
        await pg_store.append(CONFIG_STREAM, [ev(2)], AppendOptions())
        gen = listener.notifies(timeout=5, stop_after=1)
        payloads: list[Any] = [n.payload async for n in gen]
    assert payloads == ["2"]


async def test_append_waits_for_a_stuck_lock_holder_only_so_long(pool: Any, database_url: str) -> None:
    """A session holding the append lock (stuck writer, maintenance) costs other writers at most
    the lock timeout, then a clear error; nothing is appended, and appends work again after."""
    import psycopg

    from shieldes.errors import AppendTimeout
    from shieldes.events.pg_store import APPEND_LOCK, PostgresEventStore
    from shieldes.events.store import AppendOptions, NewEvent

    store = PostgresEventStore(pool, lock_timeout=0.2)
    event = [NewEvent("team.created", 1, {"id": "t1", "name": "a"})]
    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (APPEND_LOCK,))
        started = time.monotonic()
        with pytest.raises(AppendTimeout, match="append lock was held"):
            await store.append("config", event, AppendOptions())
        assert time.monotonic() - started < 5
        holder.execute("SELECT pg_advisory_unlock(%s)", (APPEND_LOCK,))
    assert (await store.append("config", event, AppendOptions())).first_position == 1


async def test_read_page_gives_the_events_and_the_compaction_horizon(store: EventStore) -> None:
    page = await store.read_page(0)
    assert (page.events, page.horizon) == ([], 0)
    await store.append(CONFIG_STREAM, [ev(1), ev(2), ev(3)], AppendOptions())
    if isinstance(store, PostgresEventStore):
        async with store.connections.connection() as conn:
            await raise_horizon(conn, 2)
            await raise_horizon(conn, 1)  # never lowered
            assert await horizon(conn) == 2
    else:
        assert isinstance(store, InMemoryEventStore)
        store.horizon = 2
    page = await store.read_page(1, limit=1)
    assert ([e.position for e in page.events], page.horizon) == ([2], 2)
    assert [e.position for e in (await store.read_page(0)).events] == [e.position for e in await store.read(0)]
    assert (await store.read_page(3)).horizon == 2  # known even with nothing to read


async def test_read_paths_raise_the_error_tree_not_psycopg(database_url: str) -> None:
    """psycopg's errors are translated at the store boundary (shieldes/errors.py), reads included."""
    import psycopg
    from psycopg_pool import AsyncConnectionPool

    from shieldes.errors import DatabaseError, DatabaseUnavailable

    with psycopg.connect(database_url, autocommit=True) as conn:  # a database without the schema
        conn.execute("DROP DATABASE IF EXISTS shieldes_no_schema")
        conn.execute("CREATE DATABASE shieldes_no_schema")
    bare = psycopg.conninfo.make_conninfo(database_url, dbname="shieldes_no_schema")
    pool = open_pool(bare, size=1)
    await pool.open(wait=True)
    try:
        store = PostgresEventStore(pool)
        for read in (store.head(), store.read(0), store.read_page(0), store.config_head(),
                     store.fingerprint(1), store.find_config("k", "v")):
            with pytest.raises(DatabaseError, match="shieldes db upgrade"):
                await read
    finally:
        await pool.close()
    # nothing listens on this port: the pool gives up waiting for a connection
    dead: AsyncConnectionPool[Any] = AsyncConnectionPool(
        "postgresql://127.0.0.1:9/x?connect_timeout=1", min_size=0, max_size=1, open=False, timeout=0.5)
    await dead.open(wait=False)
    try:
        with pytest.raises(DatabaseUnavailable, match="check that Postgres is reachable"):
            await PostgresEventStore(dead).read_page(0)
    finally:
        await dead.close()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE shieldes_no_schema")
