"""Membership: register and heartbeat in `cluster_nodes` (soft state, not event-sourced).

A peer whose heartbeat is older than `node_timeout` leaves the gossip fan-out and the split of
limits. Liveness is judged with the database clock (`now()`), so node clocks may disagree.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from shieldes.cluster import membership_log
from shieldes.tasks import Wake, cancel_and_wait, next_tick

log = logging.getLogger(__name__)

NODE_COLUMNS = (
    "SELECT node_id, http_address, gossip_address, version, boot_epoch, started_at, heartbeat_at, position,"
    " info, heartbeat_at > now() - make_interval(secs => %s) AS alive,"
    " extract(epoch FROM now() - heartbeat_at)::float8 AS age"
)
NODES_SQL = NODE_COLUMNS + " FROM cluster_nodes ORDER BY node_id"
# A heartbeat and the read of every node in one statement (one round trip, one transaction a
# second). The read sees the table as before the update, so this node's row is the updated one
# (`beat`). The update takes only this boot's row: if the row belongs to another boot of this node
# id (a newer one started while this one was paused or cut off) it is read as it is, untouched, and
# none comes back if the row is gone (deleted behind this node's back).
HEARTBEAT_SQL = (
    "WITH beat AS (UPDATE cluster_nodes SET heartbeat_at = now(), position = %s, info = %s, http_address = %s,"
    " gossip_address = %s WHERE node_id = %s AND boot_epoch = %s RETURNING *) "
    + NODE_COLUMNS
    + " FROM (SELECT * FROM beat UNION ALL SELECT * FROM cluster_nodes"
    " WHERE node_id <> %s OR NOT EXISTS (SELECT 1 FROM beat)) AS n ORDER BY node_id"
)


def superseded_by(own_boot: int, own_row: NodeRecord | None) -> int | None:
    """The boot epoch of a newer boot of this node id that holds its row (this boot is over: the node id
    was started again elsewhere), or None. A boot that has not registered yet (0) is superseded by none."""
    if own_boot and own_row is not None and own_row.boot_epoch > own_boot:
        return own_row.boot_epoch
    return None


def starting(info: dict[str, Any]) -> bool:
    """Whether a row's `info` says its node is starting (registered, not serving yet): `state`, or a
    release before `state`'s `starting` flag (cluster/status.py shows the same)."""
    state = info.get("state")
    return state == "starting" or (state is None and bool(info.get("starting")))


@dataclass(frozen=True)
class NodeRecord:
    node_id: str
    http_address: str | None
    gossip_address: str | None
    version: str | None
    boot_epoch: int
    started_at: datetime
    heartbeat_at: datetime
    position: int
    info: dict[str, Any]
    alive: bool
    heartbeat_age: float


async def list_nodes(pool: AsyncConnectionPool[Any], node_timeout: float) -> list[NodeRecord]:
    async with pool.connection() as conn:
        cur = await conn.execute(NODES_SQL, (node_timeout,))
        return [NodeRecord(*row) for row in await cur.fetchall()]


# Boot epochs of earlier versions were milliseconds; they are not carried over (see register).
LEGACY_EPOCH = 100_000_000_000


def propose_epoch(floor: int = 0) -> int:
    """A boot epoch: unix seconds, and above `floor` (e.g. every boot epoch of this node id in the
    log). The database keeps it strictly increasing per node id, even for restarts within a second."""
    return max(int(time.time()), floor)


REGISTER_SQL = (
    "INSERT INTO cluster_nodes (node_id, http_address, gossip_address, version, boot_epoch,"
    " started_at, heartbeat_at, position, info) VALUES (%s, %s, %s, %s, %s, now(), now(), %s, %s)"
    " ON CONFLICT (node_id) DO UPDATE SET http_address = EXCLUDED.http_address,"
    " gossip_address = EXCLUDED.gossip_address, version = EXCLUDED.version,"
    " boot_epoch = GREATEST(EXCLUDED.boot_epoch, CASE WHEN cluster_nodes.boot_epoch < %s"
    "   THEN cluster_nodes.boot_epoch + %s ELSE 0 END),"
    " started_at = CASE WHEN %s THEN now() ELSE cluster_nodes.started_at END, heartbeat_at = now(),"
    " position = EXCLUDED.position, info = EXCLUDED.info"
    " RETURNING boot_epoch"
)


# A node loading the log (snapshots/loader.py) holds its row at the position it loads from, so
# compaction never folds past it; `info` is merged into the row's, and no HTTP address is claimed
# (a previous boot's row said it served there). The boot's epoch is claimed after the load
# (claim_boot_epoch: the log's own epochs for this node id are known then).
LOADING_SQL = (
    "INSERT INTO cluster_nodes (node_id, position, info) VALUES (%s, %s, %s) ON CONFLICT (node_id)"
    " DO UPDATE SET position = excluded.position, heartbeat_at = now(), http_address = NULL,"
    " info = cluster_nodes.info || excluded.info"
)
LOADING_HEARTBEAT_SQL = "UPDATE cluster_nodes SET heartbeat_at = now() WHERE node_id = %s"


async def register_loading(pool: AsyncConnectionPool[Any], node_id: str, position: int,
                           info: dict[str, Any]) -> None:
    """Register `node_id` as loading the log at `position` (its row inserted or taken over)."""
    async with pool.connection() as conn:
        await conn.execute(LOADING_SQL, (node_id, position, Jsonb(info)))


async def loading_heartbeat(pool: AsyncConnectionPool[Any], node_id: str) -> None:
    """A loading node's heartbeat: its row stays alive while the load runs (Membership beats after)."""
    async with pool.connection() as conn:
        await conn.execute(LOADING_HEARTBEAT_SQL, (node_id,))


async def claim_boot_epoch(pool: AsyncConnectionPool[Any], node_id: str, floor: int, version: str) -> int:
    """Register this boot of `node_id` and return its boot epoch: above any earlier boot of the same
    node id in cluster_nodes and above `floor`. Every per-boot identity uses it: gossip components,
    the usage flushes' idempotency keys (node, boot epoch, flush seq)."""
    async with pool.connection() as conn:
        previous = await membership_log.previous_boot(conn, node_id)
        cur = await conn.execute(REGISTER_SQL, (node_id, None, None, version, propose_epoch(floor), 0,
                                                Jsonb({"state": "starting"}), LEGACY_EPOCH, 1, True))
        row = await cur.fetchone()
        assert row is not None
        await membership_log.joined(conn, node_id, int(row[0]), previous, version=version)
    return int(row[0])


@dataclass
class Membership:
    pool: AsyncConnectionPool[Any]
    node_id: str
    http_address: str | None
    gossip_address: str | None
    version: str
    heartbeat_interval: float = 1.0
    node_timeout: float = 5.0
    static_peers: list[str] = field(default_factory=list)
    position: Callable[[], int] = lambda: 0
    info: Callable[[], dict[str, Any]] = dict
    boot_epoch: int = 0
    nodes: list[NodeRecord] = field(default_factory=list)  # the last view, self included
    read_at: float = float("-inf")  # when (monotonic) `nodes` was read
    last_error: str | None = None
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _declared: set[tuple[str, int]] = field(default_factory=set, init=False, repr=False)  # dead boots recorded
    _beat: Wake = field(default_factory=Wake, init=False, repr=False)  # beat_now() asked
    # called once with the newer boot's epoch when this node id's row is found taken by a newer boot
    on_superseded: Callable[[int], None] | None = None
    superseded: int | None = None  # that newer boot's epoch: this boot writes and deletes the row no more

    async def start(self) -> None:
        try:
            await self.register()
            await self.refresh()
        except Exception as exc:  # one failed call must not fail a start: the heartbeat loop retries
            self.last_error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning("cluster membership not registered yet (will retry): %s", self.last_error)
        self._task = asyncio.create_task(self._heartbeat_loop(), name="shieldes-heartbeat")

    async def stop(self, *, deregister: bool = True) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if deregister and self.superseded is None:
            try:
                # bounded: with the database down, leaving must not hold shutdown for the pool's 30 s;
                # the row of a newer boot of this node id (started while this one was paused) stays
                async with self.pool.connection(timeout=2.0) as conn:
                    await conn.execute("DELETE FROM cluster_nodes WHERE node_id = %s AND boot_epoch <= %s",
                                       (self.node_id, self.boot_epoch))
                    await membership_log.record(conn, membership_log.LEFT, self.node_id, observed_by=self.node_id,
                                                boot_epoch=self.boot_epoch)
            except Exception as exc:  # leaving is best effort: the heartbeat timeout covers it
                log.warning("could not deregister node %s: %s", self.node_id, exc)

    async def register(self) -> int:
        """Insert or take over this node's row. With `boot_epoch` already claimed (claim_boot_epoch)
        the row keeps it; otherwise a new epoch strictly above any earlier one is claimed."""
        claim = 0 if self.boot_epoch else 1
        async with self.pool.connection() as conn:
            previous = await membership_log.previous_boot(conn, self.node_id) if claim else None
            cur = await conn.execute(
                REGISTER_SQL,
                (self.node_id, self.http_address, self.gossip_address, self.version,
                 self.boot_epoch or propose_epoch(), self.position(), Jsonb(self.info()), LEGACY_EPOCH, claim,
                 bool(claim)),
            )
            row = await cur.fetchone()
            assert row is not None
            self.boot_epoch = int(row[0])
            if claim:  # a new boot (claim_boot_epoch records its own)
                await membership_log.joined(conn, self.node_id, self.boot_epoch, previous, version=self.version,
                                            http_address=self.http_address, gossip_address=self.gossip_address)
        return self.boot_epoch

    async def heartbeat(self) -> list[NodeRecord]:
        """Say this node is alive and read every node's row (refresh), in one statement. A row taken by
        a newer boot of this node id ends this boot's membership (`superseded`): it no longer writes."""
        if self.superseded is not None:
            return self.nodes
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                HEARTBEAT_SQL,
                (self.position(), Jsonb(self.info()), self.http_address, self.gossip_address, self.node_id,
                 self.boot_epoch, self.node_timeout, self.node_id),
            )
            nodes = [NodeRecord(*row) for row in await cur.fetchall()]
        own = next((n for n in nodes if n.node_id == self.node_id), None)
        newer = superseded_by(self.boot_epoch, own)
        if newer is not None:
            self.superseded = newer
            log.error("node id %s was started again (boot %d) while this boot (%d) was paused or cut off: this "
                      "boot leaves its row to the new one and stops; run each node id once", self.node_id, newer,
                      self.boot_epoch)
            if self.on_superseded is not None:
                self.on_superseded(newer)
            return await self._observe(nodes)
        if own is None or own.boot_epoch != self.boot_epoch:  # someone deleted our row (or a stop did)
            await self.register()
            return await self.refresh()
        return await self._observe(nodes)

    async def refresh(self) -> list[NodeRecord]:
        return await self._observe(await list_nodes(self.pool, self.node_timeout))

    async def _observe(self, nodes: list[NodeRecord]) -> list[NodeRecord]:
        self.nodes = nodes
        self.read_at = time.monotonic()
        dead = {(n.node_id, n.boot_epoch) for n in self.nodes if not n.alive and n.node_id != self.node_id}
        if dead - self._declared:  # once per dead boot (a dead row stays for SHIELDES_DEAD_NODE_RETENTION)
            async with self.pool.connection() as conn:
                await membership_log.declare_dead(conn, self.node_id, self.node_timeout)
        self._declared = dead
        return self.nodes

    async def remove_dead(self, retention: float) -> list[tuple[str, float]]:
        """Remove the rows of nodes silent for `retention` seconds (the database's clock): nodes that
        died without leaving, or were replaced under another id. (node id, seconds silent) of each.
        A node silent that long that comes back registers again (heartbeat)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM cluster_nodes WHERE heartbeat_at < now() - make_interval(secs => %s) AND node_id <> %s"
                " RETURNING node_id, extract(epoch FROM now() - heartbeat_at)::float8",
                (retention, self.node_id),
            )
            return [(str(node), float(age)) for node, age in await cur.fetchall()]

    def beat_now(self) -> None:
        """Heartbeat at once rather than at the next tick: what peers and `cluster status` read of this
        node changed (it serves now, or it drains)."""
        self._beat.set()

    async def _next_beat(self) -> None:
        """The next tick (the node's other 1 s loops share it), or sooner if beat_now() was called.
        (A Wake: no task a wait, as the node's other idle loops wait.)"""
        loop = asyncio.get_running_loop()
        await self._beat.wait(max(0.0, next_tick(loop.time(), self.heartbeat_interval) - loop.time()))
        self._beat.clear()

    async def _heartbeat_loop(self) -> None:
        while self.superseded is None:
            await self._next_beat()
            try:
                await self.heartbeat()
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep the last view; peers age out on their own
                self.last_error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                log.warning("heartbeat failed: %s", self.last_error)

    # --- views -------------------------------------------------------------------------------

    def alive_peers(self) -> list[NodeRecord]:
        return [n for n in self.nodes if n.alive and n.node_id != self.node_id]

    def serving_boots(self, within: float) -> dict[str, int] | None:
        """Per peer with a row that says it serves (or drains), that row's boot epoch, as read at most
        `within` seconds ago; a row that says `starting` (registered while it loads the log or hears its
        peers) is left out. None when the last read is older: the database is away, and gossip alone
        decides who takes part in a split, as before rows said `state`."""
        if time.monotonic() - self.read_at > within:
            return None
        return {n.node_id: n.boot_epoch for n in self.nodes if n.node_id != self.node_id and not starting(n.info)}

    def gossip_targets(self) -> list[str]:
        """Addresses to push gossip to: alive peers from the table plus the static list."""
        targets = [n.gossip_address for n in self.alive_peers() if n.gossip_address]
        own = self.gossip_address
        for peer in self.static_peers:
            if peer not in targets and peer != own:
                targets.append(peer)
        return targets

    def alive_count(self) -> int:
        """Alive nodes including this one (at least 1)."""
        return 1 + len(self.alive_peers())

    def alive_ids(self) -> list[str]:
        return sorted({self.node_id, *(n.node_id for n in self.alive_peers())})
