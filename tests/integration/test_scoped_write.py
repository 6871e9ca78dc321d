"""`key create` / `key revoke` read only what they decide on: the shared config plus the keys and
teams they name, found in SQL through `config_index` (migration 0010) and read by position from
the partitions holding them, the same events the in-memory store selects; a node's admin API
decides on its projection and reads back only what it wrote. Neither reads the whole config."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
from psycopg_pool import AsyncConnectionPool

from shieldes.config_writer import execute, execute_live, scoped_write
from shieldes.events.catalog import CONFIG_STREAM, VirtualKeyCreated
from shieldes.events.codec import Codec
from shieldes.events.memory_store import InMemoryEventStore
from shieldes.events.pg_store import PostgresEventStore
from shieldes.events.scope import ENTITY_TYPES, KEY_CREATED, KEY_ROTATED, KEY_UPDATED, TEAM_CREATED, Scope, subject
from shieldes.events.scope_sql import EVENTS_SQL, POSITIONS_SQL
from shieldes.events.store import AppendOptions, AppendResult, Decide, EventStore, NewEvent, RecordedEvent
from shieldes.projections.commands import CreateKey, CreateTeam, RevokeKey, RotateKey, SetBudget, UpdateKey
from shieldes.projections.projector import Projection, Projector
from shieldes.projections.shared_commands import AddProvider, SetPricing
from tests.cli import ok, refused

MANY = 300


async def _log(stores: Sequence[EventStore]) -> None:
    codec = Codec()
    bulk = [NewEvent.of(VirtualKeyCreated(f"key_bulk{i}", f"bulk-{i}", f"hash-bulk{i}", "sk", None), codec)
            for i in range(MANY)]
    for store in stores:
        await execute(store, AddProvider("openai", "openai", "http://up.test/v1", "env:K", ("gpt-4o",)), actor="t")
        await execute(store, SetPricing("gpt-4o", 2.5, 10.0), actor="t")
        await execute(store, CreateTeam("team_r", "research", 50.0, "30d"), actor="t")
        await execute(store, CreateTeam("team_o", "ops"), actor="t")
        await store.append(CONFIG_STREAM, bulk, AppendOptions(metadata={"actor": "t"}))
        await execute(store, CreateKey("key_a", "alpha", "hash-a", "sk-a", team="research", rpm=5), actor="t")
        await execute(store, CreateKey("key_b", "beta", "hash-b", "sk-b", budget_usd=3.0), actor="t")
        await execute(store, UpdateKey("beta", team="ops"), actor="t")
        await execute(store, RotateKey("alpha", "hash-a2", "sk-a2"), actor="t")
        await execute(store, SetBudget("team", "ops", 9.0, "1d"), actor="t")
        await execute(store, RevokeKey("bulk-7"), actor="t")


SCOPES = [
    Scope(keys=("alpha",)), Scope(keys=("key_b",)), Scope(keys=("bulk-7", "nobody")), Scope(hashes=("hash-a",)),
    Scope(hashes=("hash-a2",)), Scope(teams=("ops",)), Scope(teams=("team_r",)), Scope(), Scope(keys=("gamma",)),
]


async def test_postgres_selects_what_the_in_memory_store_selects(pg_store: PostgresEventStore) -> None:
    memory = InMemoryEventStore()
    await _log([pg_store, memory])
    for scope in SCOPES:
        (pg_events, pg_head), (mem_events, mem_head) = await pg_store.read_scope(scope), await memory.read_scope(scope)
        assert pg_head == mem_head
        assert [(e.position, e.type, e.data) for e in pg_events] == [(e.position, e.type, e.data) for e in mem_events]
        assert len(pg_events) < 15  # never the bulk of keys
    beta, _ = await pg_store.read_scope(Scope(keys=("beta",)))
    assert {e.data.get("id") or e.data.get("subject_id") for e in beta if e.type.startswith(("team", "budget"))} \
        == {"team_o", "key_b"}  # the key's current team comes along (its row prints the team's name)


async def test_the_scoped_reads_use_the_indexes(pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore) -> None:
    await _log([pg_store])
    params = {"keys": ["alpha"], "hashes": ["hash-a"], "teams": ["ops"]}
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        cur = await conn.execute("EXPLAIN (FORMAT JSON) " + POSITIONS_SQL, params)  # type: ignore[operator]
        row = await cur.fetchone()
        assert row is not None
        # the log_head row is one row in a tiny table: a sequential scan there is the right plan
        scans = [p for p in _scans(row[0]) if p["Relation Name"] != "log_head"]
        assert scans and all(p["Relation Name"] == "config_index" and p["Node Type"] != "Seq Scan"
                             for p in scans), orjson.dumps(row[0]).decode()
        cur = await conn.execute(POSITIONS_SQL, params)  # type: ignore[arg-type]
        row = await cur.fetchone()
        assert row is not None and row[1]
        cur = await conn.execute("EXPLAIN (FORMAT JSON) " + EVENTS_SQL, (row[1],))  # type: ignore[operator]
        plan = await cur.fetchone()
        assert plan is not None
        cur = await conn.execute("SELECT count(*) FROM pg_partition_tree('events') WHERE isleaf")
        partitions = await cur.fetchone()
        assert partitions is not None
        # pruned when planned: only the partitions holding the positions are in the plan
        scans = _scans(plan[0])
        assert 0 < len(scans) < partitions[0] and all(p["Node Type"] != "Seq Scan" for p in scans), \
            orjson.dumps(plan[0]).decode()


def _index_of(events: Sequence[RecordedEvent]) -> list[tuple[Any, ...]]:
    """config_index as events/scope.py defines what a scoped read matches on, and the idempotency
    key an admin API create is found by (migration 0011)."""
    def field(e: RecordedEvent, name: str, types: tuple[str, ...]) -> Any:
        return e.data.get(name) if e.type in types else None

    return [(e.position, e.type, e.type not in ENTITY_TYPES, subject(e.data) if e.type in ENTITY_TYPES else None,
             field(e, "name", (KEY_CREATED, TEAM_CREATED)), field(e, "key_hash", (KEY_CREATED, KEY_ROTATED)),
             field(e, "team_id", (KEY_CREATED, KEY_UPDATED)), e.metadata.get("idempotency_key"))
            for e in events if e.is_config]


async def test_config_index_follows_every_change_of_the_config_stream(
    pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore
) -> None:
    """Appends, and a hand-made insert, edit or delete in SQL (a repair): config_index says what
    the config events say, and nothing about other streams."""
    await _log([pg_store])
    await pg_store.append("usage:n1", [NewEvent("usage.recorded", 1, {"node_id": "n1"})], AppendOptions())
    retried = await pg_store.append(CONFIG_STREAM, [NewEvent(TEAM_CREATED, 1, {"id": "team_i", "name": "idem"})],
                                    AppendOptions(metadata={"actor": "t", "idempotency_key": "t\x1fk1"}))
    assert [e.position for e in await pg_store.find_config("idempotency_key", "t\x1fk1")] == [
        e.position for e in retried.events]
    assert await pg_store.find_config("idempotency_key", "t\x1fk2") == []

    async def index() -> list[tuple[Any, ...]]:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT * FROM config_index ORDER BY position")
            return await cur.fetchall()

    assert await index() == _index_of(await pg_store.read(0, 10_000)) and len(await index()) > MANY
    async with pool.connection() as conn:
        await conn.execute("UPDATE events SET data = '{\"id\": \"key_other\"}'"
                           " WHERE type = 'virtual_key.revoked' AND data->>'id' = 'key_bulk7'")
        await conn.execute("DELETE FROM events WHERE type = 'virtual_key.rotated'")
        await conn.execute("INSERT INTO events (position, stream, type, version, data) SELECT position + 1,"
                           " 'config', 'virtual_key.created', 1, '{\"id\": \"key_z\", \"name\": \"zeta\","
                           " \"key_hash\": \"hash-z\", \"team_id\": \"team_o\"}' FROM log_head")
    assert await index() == _index_of(await pg_store.read(0, 10_000))
    rows = await index()
    assert ("virtual_key.revoked", "key_other") in {(r[1], r[3]) for r in rows}
    assert ("virtual_key.created", "key_z", "zeta", "hash-z", "team_o") in {(r[1], *r[3:7]) for r in rows}
    assert "virtual_key.rotated" not in {r[1] for r in rows}
    events, _ = await pg_store.read_scope(Scope(hashes=("hash-z",)))
    assert [e.data["name"] for e in events if e.type == KEY_CREATED] == ["zeta"]


def _scans(plan: Any) -> list[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan that reads a relation."""
    if isinstance(plan, list):
        return [n for p in plan for n in _scans(p)]
    if not isinstance(plan, dict):
        return []
    nodes = [plan] if "Relation Name" in plan else []
    for value in plan.values():
        if isinstance(value, list | dict):
            nodes += _scans(value)
    return nodes


class CountingStore:
    """The store, counting the config events each read returns."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.read_events = 0

    async def read(self, after: int, limit: int = 1000, *, stream: str | None = None) -> list[RecordedEvent]:
        page = await self.store.read(after, limit, stream=stream)
        self.read_events += len(page)
        return page

    async def read_scope(self, scope: Scope) -> tuple[list[RecordedEvent], int]:
        events, head = await self.store.read_scope(scope)
        self.read_events += len(events)
        return events, head

    async def append_scoped(
        self, scope: Scope, decide: Decide, options: AppendOptions
    ) -> tuple[list[RecordedEvent], AppendResult]:
        events, result = await self.store.append_scoped(scope, decide, options)
        self.read_events += len(events)
        return events, result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_a_cli_write_reads_only_its_scope(pg_store: PostgresEventStore) -> None:
    await _log([pg_store])
    counting = CountingStore(pg_store)
    done = await scoped_write(counting, CreateKey("key_c", "gamma", "hash-c", "sk-c", team="ops"),  # type: ignore[arg-type]
                              actor="t")
    assert done is not None and done.state.keys["key_c"].team_id == "team_o"
    # provider, pricing, the team and its budget; the write is not read back (the append returns it)
    assert counting.read_events == 4 and len(done.events) == 1
    counting.read_events = 0
    done = await scoped_write(counting, RevokeKey("bulk-3"), actor="t")  # type: ignore[arg-type]
    assert done is not None and done.state.keys["key_bulk3"].revoked
    assert counting.read_events == 3


async def test_the_admin_api_write_reads_back_only_what_it_wrote(pg_store: PostgresEventStore) -> None:
    await _log([pg_store])
    counting = CountingStore(pg_store)
    projector = Projector(counting, Projection())  # type: ignore[arg-type]
    await projector.catch_up()
    counting.read_events = 0
    written = await execute_live(projector, RevokeKey("bulk-11"), actor="t")
    assert written.state.keys["key_bulk11"].revoked
    assert counting.read_events <= 2 * len(written.events)  # the projector's catch-up and the read-back


async def test_the_cli_does_not_fold_other_keys(pool: AsyncConnectionPool[Any], pg_store: PostgresEventStore,
                                                database_url: str) -> None:
    """An unrelated key's revocation edited to name a key that never existed: a fold of the whole
    config stream fails on it; `key create` / `key revoke` never read it."""
    await _log([pg_store])
    async with pool.connection() as conn:
        await conn.execute("UPDATE events SET data = '{\"id\": \"key_ghost\"}'"
                           " WHERE type = 'virtual_key.revoked' AND data->>'id' = 'key_bulk7'")
    made = await asyncio.to_thread(ok, database_url, "key", "create", "--name", "delta", "--team", "research")
    assert (made["name"], made["team"]) == ("delta", "research") and made["key"].startswith("sk-")
    revoked = await asyncio.to_thread(ok, database_url, "key", "revoke", "alpha")
    assert revoked["revoked"] is True and revoked["name"] == "alpha"
    message = await asyncio.to_thread(refused, database_url, "key", "revoke", "alpha")
    assert "already revoked" in message
    message = await asyncio.to_thread(refused, database_url, "key", "create", "--name", "beta")
    assert "already exists" in message
