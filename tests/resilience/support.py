"""Fault tooling for the resilience tests: a real asyncio TCP forwarder in front of Postgres that a
test can cut and restore, a node on that forwarder, a small load generator, and backend kills."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import openai
import psycopg
from psycopg.conninfo import conninfo_to_dict

from shieldes.events.pg_store import PostgresEventStore, open_pool
from shieldes.node import Node
from shieldes.projections.shared_commands import AddProvider
from shieldes.settings import Settings
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, UPSTREAM_KEY_ENV, Harness

MESSAGES = [{"role": "user", "content": "one two three four"}]  # 4 prompt tokens at the fake upstream


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a Postgres server (TCP or unix socket). `cut()` drops every open
    connection and makes new ones close at once (a database that went away); `restore()` ends it.
    `stall()` keeps every connection open but forwards nothing, and new ones are accepted but not
    answered (a paused server or a black-holed network: nothing fails, nothing answers); `resume()`
    delivers what was held."""

    def __init__(self, target_url: str) -> None:
        info = conninfo_to_dict(target_url)
        self._host = str(info.get("host") or "127.0.0.1")
        self._port = int(info.get("port") or 5432)
        self.up = True
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    def url_for(self, database_url: str) -> str:
        """`database_url` (same server) rewritten to go through this proxy."""
        info = conninfo_to_dict(database_url)
        user = info.get("user", "postgres")
        password = f":{info['password']}" if info.get("password") else ""
        return f"postgresql://{user}{password}@127.0.0.1:{self.port}/{info['dbname']}"

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._host.startswith("/"):
            return await asyncio.open_unix_connection(os.path.join(self._host, f".s.PGSQL.{self._port}"))
        return await asyncio.open_connection(self._host, self._port)

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.cut()
        self.resume()  # connections held by a stall end (the proxy is cut)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def cut(self) -> None:
        self.up = False
        for w in list(self._writers):
            w.close()
        self._writers.clear()

    def restore(self) -> None:
        self.up = True

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        await self._flowing.wait()  # a stalled server's kernel accepts the connection; nothing answers
        if not self.up:
            writer.close()
            return
        try:
            up_reader, up_writer = await self._connect()
        except OSError:
            writer.close()
            return
        self.accepted += 1
        self._writers.update((writer, up_writer))
        pumps = [asyncio.create_task(p) for p in self._pumps(reader, writer, up_reader, up_writer)]
        self._tasks.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for w in (writer, up_writer):
            w.close()
            self._writers.discard(w)
        for p in pumps:
            p.cancel()
            self._tasks.discard(p)

    def _pumps(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up_reader: asyncio.StreamReader,
               up_writer: asyncio.StreamWriter) -> list[Coroutine[Any, Any, None]]:
        """The client's bytes to Postgres and Postgres's back (a subclass may edit them)."""
        return [self._pump(reader, up_writer), self._pump(up_reader, writer)]

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ConnectionError):
            while data := await src.read(65536):
                await self._flowing.wait()  # bytes read as the stall began are held, not delivered
                dst.write(data)
                await dst.drain()


def terminate_backends(database_url: str) -> int:
    """pg_terminate_backend on every other connection to this database; returns how many."""
    name = conninfo_to_dict(database_url)["dbname"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = %s AND pid <> pg_backend_pid()", (name,)).fetchall()
    return len(rows)


@asynccontextmanager
async def node_via(database_url: str, node_url: str, *, upstream: FakeUpstream | None = None,
                   **settings: Any) -> AsyncIterator[Harness]:
    """A node whose database connections use `node_url` (e.g. through a TcpProxy); the admin pool and
    `Harness.sql` use `database_url` directly."""
    os.environ[UPSTREAM_KEY_ENV] = UPSTREAM_KEY
    up = upstream or FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=("gpt-4o-mini",))
    pool = open_pool(database_url, size=2, name="test-admin")
    await pool.open(wait=True)
    await up.start()
    opts: dict[str, Any] = dict(database_url=node_url, node_id=f"r-{secrets.token_hex(3)}", host="127.0.0.1",
                                port=0, flush_interval=0.05, poll_interval=0.1, retry_backoff=0.0,
                                shutdown_grace=5.0)
    opts.update(settings)
    h = Harness(database_url, PostgresEventStore(pool), up, Settings(**opts))
    await h.admin(AddProvider("openai", "openai", up.url, "env:" + UPSTREAM_KEY_ENV, ("gpt-4o-mini",)))
    h.node = Node(h.settings)
    try:
        await h.node.start()
        yield h
    finally:
        await h.node.stop()
        await up.stop()
        await pool.close()


@dataclass
class Load:
    """`workers` clients sending chat completions in a loop until stopped; counts outcomes."""

    base: str
    key: str
    workers: int = 4
    ok: int = 0
    failed: dict[int, int] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def _worker(self) -> None:
        client = openai.AsyncOpenAI(base_url=self.base + "/v1", api_key=self.key, max_retries=0, timeout=30)
        try:
            while not self._stop.is_set():
                try:
                    await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
                    self.ok += 1
                except openai.APIStatusError as exc:
                    self.failed[exc.status_code] = self.failed.get(exc.status_code, 0) + 1
                except openai.APIConnectionError:
                    self.failed[0] = self.failed.get(0, 0) + 1
                await asyncio.sleep(0.005)
        finally:
            await client.close()

    def start(self) -> Load:
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.workers)]
        return self

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


CLUSTER_SECRET = "resilience-cluster-secret"


@dataclass
class InProcessCluster:
    """Several full nodes (HTTP, gossip over real gRPC, membership, listener) in one event loop."""

    database_url: str
    store: PostgresEventStore
    upstream: FakeUpstream
    nodes: list[Node] = field(default_factory=list)

    def base(self, i: int) -> str:
        return f"http://127.0.0.1:{self.nodes[i].port}"

    async def create_key(self, name: str, **kw: Any) -> str:
        from shieldes.config_writer import execute
        from shieldes.projections.commands import CreateKey
        from shieldes.secrets import display_prefix, hash_key, new_id, new_virtual_key

        secret = new_virtual_key()
        written = await execute(self.store, CreateKey(new_id("key"), name, hash_key(secret),
                                                      display_prefix(secret), **kw), actor="test")
        for n in self.nodes:
            assert n.projector is not None
            assert await n.projector.wait_for(written[-1].position, 10)
        return secret


@asynccontextmanager
async def in_process_cluster(database_url: str, n: int, *, node_url: str | None = None,
                             **settings: Any) -> AsyncIterator[InProcessCluster]:
    """`node_url`: what the nodes connect to (e.g. a TcpProxy); the admin pool uses `database_url`."""
    os.environ[UPSTREAM_KEY_ENV] = UPSTREAM_KEY
    up = FakeUpstream(completion_tokens=5, api_key=UPSTREAM_KEY, models=("gpt-4o-mini",))
    pool = open_pool(database_url, size=2, name="test-admin")
    await pool.open(wait=True)
    await up.start()
    c = InProcessCluster(database_url, PostgresEventStore(pool), up)
    from shieldes.config_writer import execute

    await execute(c.store, AddProvider("openai", "openai", up.url, "env:" + UPSTREAM_KEY_ENV, ("gpt-4o-mini",)),
                  actor="test")
    try:
        for i in range(n):
            opts: dict[str, Any] = dict(
                database_url=node_url or database_url, node_id=f"g{i}-{secrets.token_hex(2)}", host="127.0.0.1", port=0,
                gossip_port=0, cluster_secret=CLUSTER_SECRET, flush_interval=0.1, poll_interval=0.2,
                heartbeat_interval=0.2, node_timeout=1.5, gossip_interval=0.05, retry_backoff=0.0,
                shutdown_grace=3.0)
            opts.update(settings.get(f"node{i}", {}))
            # every setting but the per-node ones (node0, node1...): node_timeout is for every node
            opts.update({k: v for k, v in settings.items() if not re.fullmatch(r"node\d+", k)})
            node = Node(Settings(**opts))
            await node.start()
            c.nodes.append(node)
        yield c
    finally:
        for node in reversed(c.nodes):
            await node.stop()
        await up.stop()
        await pool.close()


async def burst(targets: list[str], key: str) -> list[int]:
    """All requests at once through the official SDK; returns the HTTP statuses."""
    clients = {b: openai.AsyncOpenAI(base_url=b + "/v1", api_key=key, max_retries=0, timeout=20)
               for b in set(targets)}

    async def one(base: str) -> int:
        try:
            await clients[base].chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        except openai.APIStatusError as exc:
            return exc.status_code
        return 200

    try:
        return list(await asyncio.gather(*(one(b) for b in targets)))
    finally:
        for client in clients.values():
            await client.close()


async def not_near_minute_end(margin: float = 12.0) -> None:
    """Rate limits use fixed one-minute windows: keep a burst inside one window."""
    import time

    left = 60 - time.time() % 60
    if left < margin:
        await asyncio.sleep(left + 0.2)
