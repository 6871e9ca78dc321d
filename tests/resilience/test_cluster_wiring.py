"""How a node's cluster runtime is wired, with full nodes (HTTP, gossip over real gRPC, membership on
Postgres) in one event loop: what a node resumed after a pause keeps of its peers, what a starting
node has heard before it serves, and which gossip address a node advertises."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from typing import Any

import openai
import psycopg

from shieldes.cluster.runtime import ClusterRuntime
from shieldes.node import Node
from shieldes.settings import Settings
from tests.resilience.support import CLUSTER_SECRET, MESSAGES, InProcessCluster, in_process_cluster


async def until(cond: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.01)


def runtime(node: Node) -> ClusterRuntime:
    assert node.cluster is not None and node.cluster.gossip is not None
    return node.cluster


def peer_claims(cluster: ClusterRuntime, peer: str) -> dict[Any, int]:
    """The unused limit claims `cluster` holds for `peer` (what it must not admit on its behalf)."""
    return {w: n for (node, _), s in cluster.cell.value.components.items() if node == peer
            for w, n in s.allowances.items() if n}


async def test_a_node_resumed_after_a_pause_keeps_its_heartbeating_peers_claims(database_url: str) -> None:
    async with in_process_cluster(database_url, 2) as c:
        a, b = runtime(c.nodes[0]), runtime(c.nodes[1])
        key = await c.create_key("paused", rpm=100)
        client = openai.AsyncOpenAI(base_url=c.base(1) + "/v1", api_key=key, max_retries=0)
        try:  # b admits one request: it claims a share of the minute and gossips the unused rest
            await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        finally:
            await client.close()
        await until(lambda: peer_claims(a, b.node_id), what="a holds b's claim")
        # a's last read of cluster_nodes shows b heartbeating, and serving (a starting peer takes no part in a
        # split; a loaded machine may delay a refresh)
        await until(lambda: b.node_id in [n.node_id for n in a.membership.alive_peers()]
                    and b.node_id in (a.membership.serving_boots(60.0) or {}), what="a reads b's heartbeat")
        # a was stopped (SIGSTOP) for ten node timeouts: on resume its maintenance runs before any of
        # b's messages arrive, so b looks silent, but b's heartbeats in cluster_nodes never stopped.
        # No await between the rewind and the checks: no gossip can arrive in between.
        view = a.cell.value
        a.cell.value = dataclasses.replace(
            view, heard={**view.heard, b.node_id: time.monotonic() - 10 * a.settings.node_timeout})
        claims = peer_claims(a, b.node_id)
        a._prune()
        assert peer_claims(a, b.node_id) == claims  # b's claims still count against the limit
        assert a.participants() == [b.node_id] and a.alive_count() == 2  # a does not take itself for alone


def second_node(c: InProcessCluster, **settings: Any) -> Node:
    opts: dict[str, Any] = dict(
        database_url=c.database_url, node_id=f"late-{secrets.token_hex(2)}", host="127.0.0.1", port=0,
        gossip_port=0, cluster_secret=CLUSTER_SECRET, flush_interval=0.1, poll_interval=0.2,
        heartbeat_interval=0.2, node_timeout=3.0, gossip_interval=0.05, retry_backoff=0.0, shutdown_grace=3.0)
    opts.update(settings)
    return Node(Settings(**opts))


async def test_a_starting_node_hears_every_alive_peer_before_it_serves(database_url: str) -> None:
    # the peer pushes only every 2 s: a node that served at once would start before hearing it
    async with in_process_cluster(database_url, 1, node0={"gossip_interval": 2.0}, node_timeout=3.0) as c:
        a = runtime(c.nodes[0])
        late = second_node(c)
        try:
            await late.start()  # returns once the node serves HTTP
            b = runtime(late)
            assert a.node_id in b.gossip.recently_seen(b.settings.node_timeout)  # type: ignore[union-attr]
            assert a.node_id in b.cell.value.heard and b.participants() == [a.node_id]
        finally:
            await late.stop()


async def test_gossip_advertises_the_advertise_host(database_url: str) -> None:
    # bound to every interface (as in the shipped images), reachable by peers at 127.0.0.2
    async with in_process_cluster(database_url, 1, node0={"host": "0.0.0.0", "advertise_host": "127.0.0.2"}) as c:
        a = runtime(c.nodes[0])
        advertised = f"127.0.0.2:{a.gossip.port}"  # type: ignore[union-attr]
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT gossip_address FROM cluster_nodes WHERE node_id = %s",
                               (a.node_id,)).fetchone()
        assert row == (advertised,)  # what peers dial
        late = second_node(c)
        try:
            await late.start()
            b = runtime(late)
            await until(lambda: a.node_id in b.gossip.stats.peers, what="b hears a")  # type: ignore[union-attr]
            assert b.gossip.stats.peers[a.node_id].address == advertised  # type: ignore[union-attr]  # a's messages
            # b's pushes reach a at the advertised address
            await until(lambda: b.node_id in a.gossip.recently_seen(1.0), what="a hears b")  # type: ignore[union-attr]
        finally:
            await late.stop()


async def test_a_peers_resting_breaker_rests_the_deployment_here_and_its_recovery_ends_it(database_url: str) -> None:
    """Routing asks the breaker of every request's deployments; with peers it reads their gossiped
    health (read once per view value): a deployment a peer's breaker rests is rested here within a
    gossip round, and no longer once that peer's breaker closes it again."""
    async with in_process_cluster(database_url, 2) as c:
        a, b = runtime(c.nodes[0]), runtime(c.nodes[1])
        assert a.breaker is not None and b.breaker is not None
        name = next(iter(a.deployment_report()))
        assert not a.remote_open(name) and not a.breaker.is_open(name)
        for _ in range(b.breaker.failures):
            b.breaker.failure(name)
        assert b.breaker.locally_open(name)
        await until(lambda: a.remote_open(name), what="a reads b's breaker resting the deployment")
        assert a.breaker.is_open(name) and not a.breaker.locally_open(name)
        assert not a.remote_open("another-deployment")
        b.breaker.success(name)
        await until(lambda: not a.remote_open(name), what="a reads b's breaker closed again")
        assert not a.breaker.is_open(name)
