"""Shared setup for the snapshot, compaction and config-history tests: a config, a usage log from
several nodes and epochs, full replays, the CLI in this process, and the config hash-chain check."""

from __future__ import annotations

import json
import random
import subprocess
from typing import Any

from psycopg_pool import AsyncConnectionPool

from shieldes.config_writer import execute
from shieldes.events.catalog import UsageDelta, UsageRecorded, usage_stream
from shieldes.events.codec import GENESIS_HASH, Codec, chain_hash
from shieldes.events.store import AppendOptions, EventStore, NewEvent
from shieldes.projections.commands import CreateKey, CreateTeam, SetBudget
from shieldes.projections.projector import Projection, Projector
from shieldes.projections.shared_commands import AddProvider, SetPricing
from tests.cli import completed

KEYS = ("k1", "k2", "k3")
HOUR0 = 490_000  # an hour number in 2025; deltas span two days from here


async def seed_config(store: EventStore, actor: str = "admin") -> None:
    await execute(store, AddProvider("openai", "openai", "http://up.test/v1", "env:OPENAI_KEY", ("gpt-4o",)),
                  actor=actor)
    await execute(store, SetPricing("gpt-4o", 2.5, 10.0), actor=actor)
    await execute(store, CreateTeam("t1", "research"), actor=actor)
    for i, k in enumerate(KEYS):
        await execute(store, CreateKey(k, f"key-{k}", f"hash-{k}", f"sk-shd-{k}",
                                       team="research" if i == 0 else None), actor=actor)
    await execute(store, SetBudget("key", "key-k2", 5.0, "1d"), actor=actor)


def random_deltas(rng: random.Random, n: int, hour: int | None = None) -> tuple[UsageDelta, ...]:
    """`hour`: the flush's hour (a delta may be from the hour before, as a late flush carries);
    None spreads deltas over two days."""
    out = []
    for _ in range(n):
        h = HOUR0 + rng.randint(0, 47) if hour is None else hour - rng.choice((0, 0, 0, 1))
        key = rng.choice(KEYS)
        p, c = rng.randint(1, 900), rng.randint(1, 400)
        model = rng.choice(["gpt-4o", "gpt-4o-mini"])
        # some deltas carry media units (from the numbers drawn: the random sequence stays the same)
        units = ({"images": 1 + c % 3} if p % 10 == 0 else {"characters": c} if p % 10 == 1
                 else {"audio_seconds": 1 + c % 60} if p % 10 == 2 else {})
        out.append(UsageDelta(key, "t1" if key == "k1" else None, "openai", model,
                              h, rng.randint(1, 3), p, c, p * 2500 + c * 10000, **units))
    return tuple(out)


class UsageWriter:
    """Appends flushes like the nodes' flushers do: a rising seq per node (the idempotency key is
    (stream, seq), so it keeps rising across the node's boot epochs)."""

    def __init__(self, store: EventStore, seed: int = 7) -> None:
        self.store = store
        self.rng = random.Random(seed)
        self.seqs: dict[str, int] = {}
        self.expected: dict[str, tuple[int, int, int, int]] = {}  # key -> totals written
        self.flushes = 0  # flush k happens in hour HOUR0 + 1 + (k // 2) % 40: hours recur

    async def flush(self, node: str = "n1", epoch: int = 1, deltas: int = 3, hour: int | None = None) -> int:
        seq = self.seqs[node] = self.seqs.get(node, 0) + 1
        hour = HOUR0 + 1 + (self.flushes // 2) % 40 if hour is None else hour
        self.flushes += 1
        event = UsageRecorded(node, epoch, seq, random_deltas(self.rng, deltas, hour))
        for d in event.deltas:
            t = self.expected.get(d.key_id, (0, 0, 0, 0))
            self.expected[d.key_id] = (t[0] + d.requests, t[1] + d.prompt_tokens, t[2] + d.completion_tokens,
                                       t[3] + d.cost_nusd)
        r = await self.store.append(usage_stream(node), [NewEvent.of(event, Codec())],
                                    AppendOptions(metadata={"node_id": node}, idempotency_seq=seq))
        return r.last_position

    async def many(self, n: int) -> int:
        last = 0
        for i in range(n):
            last = await self.flush(node=("n1", "n2")[i % 2], epoch=1 + (i // 20) % 2)
        return last


async def full_replay(store: EventStore) -> Projection:
    projector = Projector(store)
    await projector.catch_up()
    return projector.projection


async def usage_daily(pool: AsyncConnectionPool[Any]) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT key_name, day, requests, prompt_tokens, completion_tokens, cost_usd, images, audio_seconds, "
            "characters FROM usage_daily ORDER BY key_name, day"
        )
        return await cur.fetchall()


async def usage_per_key_sql(pool: AsyncConnectionPool[Any]) -> dict[str, tuple[int, int, int, int]]:
    """Per key totals from usage_daily, aggregated the way `shieldes usage --json` reports them."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT key_id, sum(requests), sum(prompt_tokens), sum(completion_tokens), "
            "(sum(cost_usd) * 1000000000)::bigint FROM usage_daily GROUP BY key_id"
        )
        return {r[0]: (int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in await cur.fetchall()}


def usage_per_key_cli(database_url: str) -> dict[str, tuple[int, int, int, int]] | None:
    """`shieldes usage --json` per key, or None where this build has no `usage` command yet."""
    r = run_cli(database_url, "usage", "--json")
    if r.returncode != 0 and "No such command" in r.stderr:
        return None
    assert r.returncode == 0, r.stderr
    return {u["key_id"]: (u["requests"], u["prompt_tokens"], u["completion_tokens"],
                          u.get("cost_nusd", round(u["cost_usd"] * 1e9)))
            for u in json.loads(r.stdout) if u["requests"]}


def usage_per_key_projection(p: Projection) -> dict[str, tuple[int, int, int, int]]:
    return {k: (t.requests, t.prompt_tokens, t.completion_tokens, t.cost_nusd)
            for k, t in p.usage.totals.items()}


async def config_rows(pool: AsyncConnectionPool[Any]) -> list[tuple[Any, ...]]:
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT * FROM events WHERE stream = 'config' ORDER BY position")
        return await cur.fetchall()


async def verify_chain(store: EventStore) -> int:
    """Recompute the config hash chain as `shieldes audit verify` does; returns events checked."""
    prev, n = GENESIS_HASH, 0
    for e in await store.read(0, 1_000_000, stream="config"):
        assert e.prev_hash == prev, f"chain broken before position {e.position}"
        assert e.hash == chain_hash(prev, position=e.position, stream=e.stream, type_=e.type,
                                    version=e.version, data=e.data, metadata=e.metadata,
                                    recorded_at=e.recorded_at)
        prev, n = e.hash, n + 1
    return n


def run_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The command in pytest's process (tests/cli.py): these tests are about what it reads and
    writes; tests/integration/test_cli_process.py runs real processes."""
    return completed(*args, env={"SHIELDES_DATABASE_URL": database_url, "SHIELDES_NODE_ID": "test-cli"})


def cli_json(database_url: str, *args: str) -> Any:
    r = run_cli(database_url, *args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)
