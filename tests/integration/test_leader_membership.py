"""Leader election and membership against real Postgres."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from shieldes.cluster.leader import Leader, NotLeader, current_leader
from shieldes.cluster.membership import Membership, claim_boot_epoch


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def test_one_leader_and_handover_with_a_higher_epoch(
    database_url: str, pool: AsyncConnectionPool[Any]
) -> None:
    a = Leader(database_url, "a", retry_interval=0.05)
    b = Leader(database_url, "b", retry_interval=0.05)
    events: list[tuple[str, str, int]] = []
    ran = asyncio.Event()
    for node in (a, b):
        node.on_elected(lambda e, n=node.node_id: _record(events, n, "elected", e))
        node.on_demoted(lambda e, n=node.node_id: _record(events, n, "demoted", e))

        async def leader_only() -> None:
            ran.set()
            await asyncio.Event().wait()

        node.add_leader_task("work", leader_only)
    await a.start()
    await b.start()
    try:
        await until(lambda: a.is_leader or b.is_leader)
        await ran.wait()
        # the loser keeps trying; give it several retries to (wrongly) win
        loser = b if a.is_leader else a
        winner = a if a.is_leader else b
        for _ in range(5):
            loser.changed.clear()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(loser.changed.wait(), 0.05)
        assert winner.is_leader and not loser.is_leader
        first = winner.epoch
        assert await current_leader(pool) == (first, winner.node_id)
        async with winner.fenced(pool) as conn:
            await conn.execute("SELECT 1")
        with pytest.raises(NotLeader):
            async with loser.fenced(pool):
                pass

        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (winner.backend_pid,))
        await until(lambda: loser.is_leader)
        await until(lambda: not winner.is_leader)
        assert loser.epoch > first
        assert await current_leader(pool) == (loser.epoch, loser.node_id)
        assert (winner.node_id, "demoted", first) in events
        assert (loser.node_id, "elected", loser.epoch) in events

        late = asyncio.Event()

        async def added_while_leading() -> None:
            late.set()

        loser.add_leader_task("late", added_while_leading)  # starts at once on the current leader
        await asyncio.wait_for(late.wait(), 5)
    finally:
        await a.stop()
        await b.stop()


async def _record(events: list[tuple[str, str, int]], node: str, what: str, epoch: int) -> None:
    events.append((node, what, epoch))


async def test_a_stale_leader_write_is_fenced(database_url: str, pool: AsyncConnectionPool[Any]) -> None:
    a = Leader(database_url, "a", retry_interval=0.05)
    await a.start()
    try:
        await until(lambda: a.is_leader)
        # someone else took over behind a's back (a's connection is fine: it has not noticed)
        async with pool.connection() as conn:
            await conn.execute("UPDATE leader_epoch SET epoch = epoch + 1, node_id = 'b'")
        with pytest.raises(NotLeader):
            async with a.fenced(pool):
                pass
    finally:
        await a.stop()


async def test_membership_register_heartbeat_alive_and_leave(pool: AsyncConnectionPool[Any]) -> None:
    info = {"gossip": {"sent": 0}}
    one = Membership(pool, "n1", "127.0.0.1:8081", "127.0.0.1:7001", "0.1.0", heartbeat_interval=0.05,
                     node_timeout=0.5, static_peers=["10.0.0.9:7946", "127.0.0.1:7001"], position=lambda: 42,
                     info=lambda: info)
    two = Membership(pool, "n2", "127.0.0.1:8082", "127.0.0.1:7002", "0.1.0", heartbeat_interval=0.05,
                     node_timeout=0.5)
    await one.start()
    await two.start()
    try:
        await until(lambda: {n.node_id for n in one.alive_peers()} == {"n2"})
        assert one.alive_count() == 2 and one.alive_ids() == ["n1", "n2"]
        assert one.gossip_targets() == ["127.0.0.1:7002", "10.0.0.9:7946"]  # own address left out
        info["gossip"]["sent"] = 7
        await until(lambda: any(n.node_id == "n1" and n.position == 42 and n.info == info for n in two.nodes))

        # a node that stops heartbeating (crash) ages out; a graceful stop removes the row
        await two.stop(deregister=False)
        await until(lambda: one.alive_peers() == [])
        assert [n.alive for n in one.nodes if n.node_id == "n2"] == [False]
        await two.start()
        await until(lambda: len(one.alive_peers()) == 1)
        await two.stop()
        await until(lambda: all(n.node_id != "n2" for n in one.nodes))

        # a restart takes a strictly higher boot epoch
        epoch = one.boot_epoch
        assert await one.register() == epoch  # its row came back (deleted meanwhile): same boot, same epoch
        newer = await claim_boot_epoch(pool, "n1", 0, "0.1.0")  # a new boot of the same node id
        assert newer > epoch
        # the running boot finds its row taken at its next heartbeat: it writes it no more, nor deletes it
        await until(lambda: one.superseded == newer)
        await one.stop()
        async with pool.connection() as conn:
            row = await (await conn.execute("SELECT boot_epoch FROM cluster_nodes WHERE node_id = 'n1'")).fetchone()
        assert row is not None and row[0] == newer
    finally:
        await one.stop()
        await two.stop()


async def test_a_failed_first_registration_does_not_fail_the_start(pool: AsyncConnectionPool[Any]) -> None:
    """One database error at start (registration or the first read of cluster_nodes) is retried by
    the heartbeat loop; the node starts anyway."""
    failures = [RuntimeError("server closed the connection unexpectedly")]
    real = pool.connection

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    one = Membership(pool, "flaky", "127.0.0.1:8081", "127.0.0.1:7001", "0.1.0", heartbeat_interval=0.05,
                     node_timeout=0.5, boot_epoch=7)
    pool.connection = flaky  # type: ignore[method-assign]
    try:
        await one.start()  # the first call fails: no exception, a warning and a retry
        assert one.last_error and "closed the connection" in one.last_error
        await until(lambda: one.last_error is None and any(n.node_id == "flaky" and n.alive for n in one.nodes))
    finally:
        pool.connection = real  # type: ignore[method-assign]
        await one.stop()
