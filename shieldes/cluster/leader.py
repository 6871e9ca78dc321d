"""Leader election: a session advisory lock on a dedicated connection, an epoch row as fencing token.

Whoever holds the session lock `pg_advisory_lock(LEADER_LOCK)` leads (the others wait for it in
the server's lock queue, so one takes over as soon as the leader's session ends); on acquiring it the node bumps
`leader_epoch.epoch`. Any error on that connection (it died, the lock went with it) steps the node
down at once: the leader waits on the connection's socket, so a terminated backend or a closed
connection ends the reign as soon as it arrives, and a silent network once the TCP keepalives give
up (about 11 s; the server releases the lock by its own timeouts, not before). Until the old leader
notices, two nodes may believe they lead: leader-only writes go through `fenced()`, which
re-checks the epoch inside the writing transaction and takes a share lock on the epoch row, so a
stale leader's write either commits before the new leader's bump or is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from shieldes.cluster import membership_log
from shieldes.cluster.listener import QuietConnection
from shieldes.errors import ShieldesError
from shieldes.tasks import cancel_and_wait

log = logging.getLogger(__name__)

LEADER_LOCK = 0x5348_4C45  # "SHLE": distinct from the append lock
Hook = Callable[[int], Awaitable[None]]
LeaderTask = Callable[[], Awaitable[None]]


class NotLeader(ShieldesError):
    status = 409
    code = "not_leader"


class Leader:
    def __init__(
        self,
        url: str,
        node_id: str,
        *,
        retry_interval: float = 1.0,
        lock_key: int = LEADER_LOCK,
    ) -> None:
        self._url = url
        self.node_id = node_id
        self.retry_interval = retry_interval
        self._lock_key = lock_key
        self.is_leader = False
        self.epoch = 0  # our fencing token while leading; 0 when not
        self.backend_pid: int | None = None
        self.changed = asyncio.Event()  # set on every transition (tests and status wait on it)
        self._on_elected: list[Hook] = []
        self._on_demoted: list[Hook] = []
        self._leader_tasks: list[tuple[str, LeaderTask]] = []
        self._running: list[asyncio.Task[None]] = []
        self._task: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None

    # --- hooks for leader-only work ---------------------------------------------------------------

    def on_elected(self, hook: Hook) -> None:
        self._on_elected.append(hook)

    def on_demoted(self, hook: Hook) -> None:
        self._on_demoted.append(hook)

    def add_leader_task(self, name: str, factory: LeaderTask) -> None:
        """A background coroutine run only while leading: started on election (at once if this node
        leads already), cancelled on step-down."""
        self._leader_tasks.append((name, factory))
        if self.is_leader:
            self._running.append(asyncio.create_task(_guard(name, factory), name=f"leader:{name}"))

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="shieldes-leader")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)
        if self.is_leader and self._conn is not None:
            try:
                await membership_log.record(self._conn, membership_log.LEADER_RESIGNED, self.node_id,
                                            observed_by=self.node_id, leader_epoch=self.epoch)
            except Exception as exc:  # the connection is gone: the next election tells the story
                log.warning("could not record the resignation: %s", str(exc).strip()[:200])
        await self._step_down()  # closing the connection releases the lock

    async def _run(self) -> None:
        while True:
            try:
                await self._campaign()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("leader connection error (%s); stepping down", str(exc).strip()[:200])
            await self._step_down()
            await asyncio.sleep(self.retry_interval)

    async def _campaign(self) -> None:
        conn = await QuietConnection.connect(
            self._url, autocommit=True, connect_timeout=5, keepalives=1, keepalives_idle=5,
            keepalives_interval=2, keepalives_count=3,
        )
        self._conn = conn
        self.backend_pid = conn.info.backend_pid
        # wait in the server's queue for the lock: granted as soon as the leader's session ends, with
        # no query a second meanwhile (a database error ends the wait like any other on this connection)
        await conn.execute("SELECT pg_advisory_lock(%s)", (self._lock_key,))
        async with conn.transaction():
            cur = await conn.execute("SELECT node_id FROM leader_epoch WHERE id = 1 FOR UPDATE")
            previous = await cur.fetchone()
            cur = await conn.execute(
                "UPDATE leader_epoch SET epoch = epoch + 1, node_id = %s, acquired_at = now() WHERE id = 1"
                " RETURNING epoch",
                (self.node_id,),
            )
            row = await cur.fetchone()
            assert row is not None, "leader_epoch row missing: run `shieldes db upgrade`"
            await membership_log.record(conn, membership_log.LEADER_ELECTED, self.node_id, observed_by=self.node_id,
                                        leader_epoch=int(row[0]),
                                        details={"previous_leader": previous[0] if previous else None})
        await self._become_leader(int(row[0]))
        # hold the lock: wait on the connection, with no timer and no probe query, until it fails
        # (nothing is LISTENed on it, so nothing else arrives)
        async for _ in conn.notifies():
            pass
        raise psycopg.OperationalError("the leader connection stopped receiving")

    async def _become_leader(self, epoch: int) -> None:
        self.epoch, self.is_leader = epoch, True
        self.changed.set()
        log.info("node %s is the leader (epoch %d)", self.node_id, epoch)
        for hook in self._on_elected:
            await _safely(hook, epoch)
        self._running = [
            asyncio.create_task(_guard(name, f), name=f"leader:{name}") for name, f in self._leader_tasks
        ]

    async def _step_down(self) -> None:
        was, epoch = self.is_leader, self.epoch
        self.is_leader, self.epoch = False, 0
        running, self._running = self._running, []
        await cancel_and_wait(*running)
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
        if was:
            self.changed.set()
            log.info("node %s lost leadership (epoch %d)", self.node_id, epoch)
            for hook in self._on_demoted:
                await _safely(hook, epoch)

    # --- fencing -----------------------------------------------------------------------------

    @asynccontextmanager
    async def fenced(self, pool: AsyncConnectionPool[Any]) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A transaction for a leader-only write, refused unless our epoch is still the current one."""
        epoch = self.epoch
        if not self.is_leader:
            raise NotLeader(f"node {self.node_id} is not the leader; leader-only work runs on the leader")
        async with pool.connection() as conn, conn.transaction():
            await check_epoch(conn, epoch)
            yield conn


async def check_epoch(conn: psycopg.AsyncConnection[Any], epoch: int) -> None:
    """Inside a transaction: hold a share lock on the epoch row and refuse a stale epoch."""
    cur = await conn.execute("SELECT epoch FROM leader_epoch WHERE id = 1 FOR SHARE")
    row = await cur.fetchone()
    current = int(row[0]) if row else -1
    if current != epoch:
        raise NotLeader(f"leadership moved on (epoch {current}, ours {epoch}); the write was refused")


async def current_leader(pool: AsyncConnectionPool[Any]) -> tuple[int, str | None]:
    """(epoch, node_id) of the latest leader recorded; the node may since have died."""
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT epoch, node_id FROM leader_epoch WHERE id = 1")
        row = await cur.fetchone()
    return (int(row[0]), row[1]) if row else (0, None)


async def _safely(hook: Hook, epoch: int) -> None:
    try:
        await hook(epoch)
    except Exception:
        log.exception("leader hook failed")


async def _guard(name: str, factory: LeaderTask) -> None:
    try:
        await factory()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("leader task %s failed", name)
