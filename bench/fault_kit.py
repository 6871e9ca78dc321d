"""Shared pieces of the fault and soak benchmarks: a private embedded Postgres that can be stopped and
started, real node processes (tests/cluster/harness.py), many virtual keys, an aiohttp load generator
that records every outcome, and admin-surface / SQL / /proc probes."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shieldes import db  # noqa: E402
from shieldes.config_writer import execute  # noqa: E402
from shieldes.events.pg_store import PostgresEventStore, open_pool  # noqa: E402
from shieldes.projections.commands import CreateKey  # noqa: E402
from shieldes.projections.shared_commands import AddProvider  # noqa: E402
from shieldes.secrets import display_prefix, hash_key, new_id, new_virtual_key  # noqa: E402
from tests import pg  # noqa: E402
from tests.cluster.harness import UPSTREAM_KEY_ENV, Cluster  # noqa: E402

ADMIN_TOKEN = "bench-admin-token-" + os.urandom(8).hex()
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "one two three four"}]}
PROMPT_TOKENS, COMPLETION_TOKENS = 4, 5  # per request at the fake upstream (--completion-tokens 5)


class PrivatePostgres:
    """An embedded Postgres of our own (under a temp dir), so stopping it disturbs nobody else."""

    def __init__(self, data_dir: Path) -> None:
        import pgserver

        self.server = pgserver.get_server(data_dir / "pg", cleanup_mode="stop")  # type: ignore[attr-defined]
        maintenance = str(self.server.get_uri())
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS bench WITH (FORCE)")
            conn.execute("CREATE DATABASE bench")
        self.url = pg.with_database(maintenance, "bench")
        db.upgrade(self.url)

    def stop(self) -> None:
        from pgserver._commands import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.server.pgdata, user=self.server.system_user)

    def start(self) -> None:
        self.server.ensure_postgres_running()


async def setup(url: str, upstream_url: str, keys: int) -> list[str]:
    """A provider for gpt-4o-mini at the fake upstream and `keys` virtual keys; returns the secrets."""
    pool = open_pool(url, size=1, name="bench-admin")
    await pool.open(wait=True)
    store = PostgresEventStore(pool)
    try:
        await execute(store, AddProvider("openai", "openai", upstream_url, f"env:{UPSTREAM_KEY_ENV}",
                                         ("gpt-4o-mini",)), actor="bench")
        secrets = []
        for i in range(keys):
            secret = new_virtual_key()
            await execute(store, CreateKey(new_id("key"), f"bench-{i}", hash_key(secret), display_prefix(secret)),
                          actor="bench")
            secrets.append(secret)
        return secrets
    finally:
        await pool.close()


def start_cluster(url: str, tmp: Path, nodes: int, **env: str) -> Cluster:
    c = Cluster(url, tmp, env_overrides={"SHIELDES_ADMIN_TOKEN": ADMIN_TOKEN, "SHIELDES_SHUTDOWN_GRACE": "10",
                                         "SHIELDES_POLL_INTERVAL": "1", **env})
    c.start_upstream()
    return c


@dataclass
class Load:
    """`concurrency` workers per node, each cycling through the keys; every outcome is recorded."""

    bases: dict[str, str]
    keys: list[str]
    concurrency: int = 4
    ok: dict[str, int] = field(default_factory=dict)
    ok_at: dict[str, list[float]] = field(default_factory=dict)
    failed: dict[str, dict[str, int]] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    record_times: bool = False

    def total_ok(self) -> int:
        return sum(self.ok.values())

    def total_failed(self) -> int:
        return sum(sum(v.values()) for v in self.failed.values())

    async def _worker(self, node: str, base: str, offset: int, session: aiohttp.ClientSession) -> None:
        i = offset
        while not self._stop.is_set():
            key = self.keys[i % len(self.keys)]
            i += 1
            started = time.monotonic()
            try:
                async with session.post(base + "/v1/chat/completions", json=BODY,
                                        headers={"Authorization": f"Bearer {key}"}) as resp:
                    await resp.read()
                    status = resp.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                status = type(exc).__name__  # type: ignore[assignment]
            if status == 200:
                self.ok[node] = self.ok.get(node, 0) + 1
                done = time.monotonic()
                self.latencies.append(done - started)
                if self.record_times:
                    self.ok_at.setdefault(node, []).append(done)
            else:
                per = self.failed.setdefault(node, {})
                per[str(status)] = per.get(str(status), 0) + 1
                await asyncio.sleep(0.05)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30),
                                              connector=aiohttp.TCPConnector(limit=0))
        self._tasks = [asyncio.create_task(self._worker(n, b, j * 7, self._session))
                       for n, b in self.bases.items() for j in range(self.concurrency)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        await self._session.close()


async def admin_get(session: aiohttp.ClientSession, base: str, path: str) -> Any:
    try:
        async with session.get(base + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                               timeout=aiohttp.ClientTimeout(total=3)) as resp:
            return await resp.json()
    except (TimeoutError, aiohttp.ClientError):
        return None


async def status_code(session: aiohttp.ClientSession, url: str) -> int:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=3)) as resp:
            await resp.read()
            return resp.status
    except (TimeoutError, aiohttp.ClientError):
        return 0


def logged_usage(url: str, node_id: str | None = None) -> tuple[int, int, int]:
    """(requests, prompt, completion) in the log, all nodes or one node's usage stream."""
    where, args = ("WHERE stream = %s", ("usage:" + node_id,)) if node_id else ("", ())
    with psycopg.connect(url, connect_timeout=3) as conn:
        row = conn.execute("SELECT coalesce(sum(requests),0), coalesce(sum(prompt_tokens),0), "
                           f"coalesce(sum(completion_tokens),0) FROM usage_deltas {where}", args).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def proc_stats(pid: int) -> tuple[float, int]:
    """(RSS in MiB, open file descriptors) of a process, from /proc."""
    rss = 0.0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def db_connections(url: str) -> int:
    with psycopg.connect(url, connect_timeout=3) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND pid <> pg_backend_pid()").fetchone()
    return int(row[0]) if row else 0


def table(title: str, rows: list[tuple[str, Any]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"\n{title}\n" + "-" * (width + 24))
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
