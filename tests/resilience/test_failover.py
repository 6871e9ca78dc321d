"""Database failover with a real streaming replica (two Postgres servers, pg_basebackup): nodes on a
libpq multi-host URL ride through the primary's loss and the replica's promotion; with a replica
that lagged, every node ends on the new primary's log, none ahead of it (docs/deploy.md,
"Database failover")."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from shieldes import db
from shieldes.errors import ShieldesError
from shieldes.node import Node
from shieldes.projections.commands import CreateKey
from shieldes.secrets import display_prefix, hash_key, new_id, new_virtual_key
from tests.resilience.replica import PgServer, make_primary, make_replica, make_synchronous, remove, wait_replayed
from tests.resilience.support import InProcessCluster, Load, TcpProxy, in_process_cluster

pytestmark = pytest.mark.cluster


@dataclass
class Pair:
    primary: PgServer
    replica: PgServer
    url: str  # multi-host: the primary first, the replica second; libpq picks the writable one


@pytest.fixture
async def pair_via_proxy() -> AsyncIterator[tuple[Pair, TcpProxy]]:
    """Primary + replica whose replication stream runs through a proxy the test can cut."""
    root = Path(tempfile.mkdtemp(prefix="shieldes-failover-"))
    primary = await asyncio.to_thread(make_primary, root)
    proxy = await TcpProxy(primary.url()).start()
    replica: PgServer | None = None
    try:
        with psycopg.connect(primary.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE shieldes")
        url = (f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:PORT2/shieldes"
               "?target_session_attrs=read-write&connect_timeout=2")
        replica = await asyncio.to_thread(make_replica, root, primary, via_port=proxy.port)
        url = url.replace("PORT2", str(replica.port))
        await asyncio.to_thread(db.upgrade, url)
        await asyncio.to_thread(wait_replayed, primary, replica)
        yield Pair(primary, replica, url), proxy
    finally:
        await proxy.stop()
        await asyncio.to_thread(remove, root, *([primary] + ([replica] if replica else [])))


async def create_key(c: InProcessCluster, name: str, timeout: float = 30.0) -> tuple[str, int]:
    """The CLI's path against the multi-host URL, retried while the failover is under way."""
    from shieldes.config_writer import execute

    secret = new_virtual_key()
    command = CreateKey(new_id("key"), name, hash_key(secret), display_prefix(secret))
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            written = await execute(c.store, command, actor="test")
            return secret, written[-1].position
        except (ShieldesError, psycopg.Error, OSError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


def head_of(server: PgServer) -> int:
    with psycopg.connect(server.url("shieldes"), autocommit=True) as conn:
        row = conn.execute("SELECT position FROM log_head").fetchone()
        assert row is not None
        return int(row[0])


async def served_usage(server: PgServer) -> int:
    def query() -> int:
        with psycopg.connect(server.url("shieldes"), autocommit=True) as conn:
            row = conn.execute("SELECT coalesce(sum(requests), 0) FROM usage_deltas").fetchone()
            return int(row[0]) if row else 0

    return await asyncio.to_thread(query)


async def wait_all(nodes: list[Node], position: int, timeout: float = 20.0) -> None:
    for n in nodes:
        assert n.projector is not None
        assert await n.projector.wait_for(position, timeout), f"{n.node_id} did not reach {position}"


async def test_failover_to_a_synced_replica_loses_nothing(pair_via_proxy: tuple[Pair, TcpProxy]) -> None:
    pair, _ = pair_via_proxy
    # Synchronous replication: an append the nodes saw committed is on the replica. (With
    # asynchronous replication a fast shutdown usually sends all WAL first, but a replication link
    # that is behind at that moment loses the tail: the lagging-replica test below.)
    await asyncio.to_thread(make_synchronous, pair.primary)
    async with in_process_cluster(pair.url, 2, poll_interval=0.2) as c:
        secret, created = await create_key(c, "app")
        await wait_all(c.nodes, created)
        loads = [Load(c.base(i), secret, workers=2).start() for i in range(2)]
        await asyncio.sleep(0.5)  # let traffic flow (the load is what is measured, not the wait)
        await asyncio.to_thread(pair.primary.stop, "fast")  # fast shutdown sends all WAL to the replica
        await asyncio.to_thread(pair.replica.promote)
        _, after = await create_key(c, "after-failover")
        await wait_all(c.nodes, after)
        for load in loads:
            await load.stop()
        for n in c.nodes:
            assert n.flusher is not None
            assert await n.flusher.flush_all(20)
        assert [load.failed for load in loads] == [{}, {}]
        assert sum(load.ok for load in loads) > 0
        assert await served_usage(pair.replica) == sum(load.ok for load in loads)


async def test_failover_to_a_lagging_replica_reloads_instead_of_diverging(
    pair_via_proxy: tuple[Pair, TcpProxy]
) -> None:
    pair, proxy = pair_via_proxy
    async with in_process_cluster(pair.url, 2, poll_interval=0.2) as c:
        await create_key(c, "kept")
        await asyncio.to_thread(wait_replayed, pair.primary, pair.replica)
        proxy.cut()  # the replica stops receiving WAL: what follows never reaches it
        _, lost_at = await create_key(c, "lost-in-failover")
        await wait_all(c.nodes, lost_at)
        assert all(n.projector and n.projector.config.key_ids_by_name.get("lost-in-failover") for n in c.nodes)

        await asyncio.to_thread(pair.primary.stop, "immediate")
        await asyncio.to_thread(pair.replica.promote)
        assert head_of(pair.replica) < lost_at  # the new primary's log ends before the nodes' cursors
        await create_key(c, "after-failover")

        def on_new_log(n: Node) -> bool:
            p = n.projector
            return bool(p and p.config.key_ids_by_name.get("after-failover")
                        and "lost-in-failover" not in p.config.key_ids_by_name)

        deadline = asyncio.get_running_loop().time() + 30
        while not all(on_new_log(n) for n in c.nodes):
            assert asyncio.get_running_loop().time() < deadline, "nodes did not reload from the new primary"
            await asyncio.sleep(0.05)
        head = head_of(pair.replica)
        for n in c.nodes:
            assert n.projector is not None and n.poller is not None
            assert n.projector.position <= head  # none ahead of the new primary's log
            assert n.poller.reloads >= 1
