"""Advisory-lock keys and the leader-epoch fence shared by snapshots and compaction.

LEADER_LOCK is the session advisory lock a leader holds on a dedicated connection; the CLI's
`shieldes compact` takes the same key, so it never runs beside a leader. MAINTENANCE_LOCK
serialises compaction with snapshot writes (see store.save_snapshot): a snapshot is only stored
when no compaction is half-way, and only if it is at or past every rollup in the log.
"""

from __future__ import annotations

from typing import Any

import psycopg

from shieldes.cluster.leader import LEADER_LOCK
from shieldes.errors import ShieldesError

__all__ = ["LEADER_LOCK", "MAINTENANCE_LOCK", "Fenced", "bump_epoch", "check_epoch"]

MAINTENANCE_LOCK = 0x5348_4C4D  # "SHLM": compaction (session) vs. snapshot insert (transaction)


class Fenced(ShieldesError):
    """A write by a leader whose epoch is no longer the current one: a newer leader took over."""

    status = 409
    code = "fenced"


async def check_epoch(conn: psycopg.AsyncConnection[Any], epoch: int) -> None:
    """Inside a transaction: refuse unless `epoch` is still the leader epoch. FOR SHARE makes a
    new leader's epoch bump wait for this transaction, so the check holds until commit."""
    cur = await conn.execute("SELECT epoch, node_id FROM leader_epoch WHERE id = 1 FOR SHARE")
    row = await cur.fetchone()
    current = int(row[0]) if row else 0
    if current != epoch:
        holder = row[1] if row else None
        raise Fenced(
            f"leader epoch {epoch} is stale: epoch {current} ({holder or 'unknown node'}) took over; "
            "this node is no longer leader and must not compact or snapshot"
        )


async def bump_epoch(conn: psycopg.AsyncConnection[Any], holder: str) -> int:
    """Take a new fencing token (the caller holds LEADER_LOCK)."""
    cur = await conn.execute(
        "UPDATE leader_epoch SET epoch = epoch + 1, node_id = %s, acquired_at = now() WHERE id = 1 "
        "RETURNING epoch",
        (holder,),
    )
    row = await cur.fetchone()
    assert row is not None, "leader_epoch row missing: run `shieldes db upgrade`"
    return int(row[0])
