"""The membership log: an append-only table of cluster membership changes, for auditors (SQL view
`cluster_membership`, readable by role shieldes_audit; docs/audit.md).

Events: `joined` (a node registered, with its boot epoch and the boot it replaces), `left` (a
graceful stop), `declared_dead` (a node's heartbeat went silent for SHIELDES_NODE_TIMEOUT:
recorded once per boot by whichever peer notices first), `leader_elected` (with the new fencing
epoch and the previous leader, in the same transaction as the epoch bump) and `leader_resigned`
(a leader that stops gracefully). Nodes write it; nothing reads it back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

JOINED, LEFT, DECLARED_DEAD = "joined", "left", "declared_dead"
LEADER_ELECTED, LEADER_RESIGNED = "leader_elected", "leader_resigned"

INSERT_SQL = (
    "INSERT INTO cluster_membership_log (event, node_id, boot_epoch, leader_epoch, observed_by, details)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
)
DECLARE_DEAD_SQL = (
    "INSERT INTO cluster_membership_log (event, node_id, boot_epoch, observed_by, details)"
    " SELECT 'declared_dead', node_id, boot_epoch, %s, jsonb_build_object('last_heartbeat', heartbeat_at,"
    " 'gossip_address', gossip_address, 'version', version, 'timeout_seconds', %s::float8)"
    " FROM cluster_nodes WHERE heartbeat_at < now() - make_interval(secs => %s) AND node_id <> %s"
    " ON CONFLICT (node_id, boot_epoch) WHERE event = 'declared_dead' DO NOTHING"
)


async def record(conn: psycopg.AsyncConnection[Any], event: str, node_id: str, *, observed_by: str,
                 boot_epoch: int | None = None, leader_epoch: int | None = None,
                 details: dict[str, Any] | None = None) -> None:
    await conn.execute(INSERT_SQL, (event, node_id, boot_epoch, leader_epoch, observed_by, Jsonb(details or {})))


async def previous_boot(conn: psycopg.AsyncConnection[Any], node_id: str) -> tuple[int, datetime] | None:
    """Inside the registering transaction: the boot of `node_id` about to be replaced, if any. A row
    with boot epoch 0 is this boot's own, written while it loaded (snapshots/loader.py) before it
    claimed an epoch: no earlier boot."""
    cur = await conn.execute("SELECT boot_epoch, heartbeat_at FROM cluster_nodes WHERE node_id = %s FOR UPDATE",
                             (node_id,))
    row = await cur.fetchone()
    return (int(row[0]), row[1]) if row and row[0] else None


async def joined(conn: psycopg.AsyncConnection[Any], node_id: str, boot_epoch: int,
                 previous: tuple[int, datetime] | None, **details: Any) -> None:
    """A new boot registered; `previous` is the boot it replaces (one that crashed, unless it was
    declared dead or left)."""
    info = {k: v for k, v in details.items() if v is not None}
    if previous is not None:
        info |= {"previous_boot_epoch": previous[0], "previous_heartbeat": previous[1].isoformat()}
    await record(conn, JOINED, node_id, observed_by=node_id, boot_epoch=boot_epoch, details=info)


async def declare_dead(conn: psycopg.AsyncConnection[Any], observer: str, node_timeout: float) -> int:
    """Record every node silent for `node_timeout` (the database's clock) as dead, once per boot."""
    cur = await conn.execute(DECLARE_DEAD_SQL, (observer, node_timeout, node_timeout, observer))
    return cur.rowcount
