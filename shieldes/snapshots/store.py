"""The `snapshots` table: save (with pruning to the newest N), list, and fetch candidates."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg_pool import AsyncConnectionPool

from shieldes.errors import ShieldesError
from shieldes.events.log_reads import rollup_floor
from shieldes.projections.projector import Projection, Projector
from shieldes.snapshots import codec
from shieldes.snapshots.fencing import MAINTENANCE_LOCK, check_epoch

log = logging.getLogger(__name__)


class SnapshotRefused(ShieldesError):
    status = 409
    code = "snapshot_refused"


# The reads every snapshot loader shares (the node's load, its prefetch, a CLI write's start).
NEWEST_FIRST = "SELECT id, position, schema_version, format FROM snapshots ORDER BY position DESC, id DESC"
NEWEST_UP_TO = ("SELECT id, position, schema_version, format FROM snapshots WHERE position <= %s "
                "ORDER BY position DESC, id DESC")
STATE_OF = "SELECT state, checksum FROM snapshots WHERE id = %s"  # read with binary=True: bytea as bytes
# `shieldes audit verify`: every snapshot with its state, to decode each
EVERY_STATE_OLDEST_FIRST = ("SELECT id, position, schema_version, format, state, checksum FROM snapshots "
                            "ORDER BY position")

@dataclass(frozen=True)
class SnapshotInfo:
    id: int
    position: int
    schema_version: str
    format: int
    size_bytes: int
    checksum: str
    node_id: str | None
    leader_epoch: int | None
    created_at: datetime

    @property
    def compatible(self) -> bool:
        return codec.is_compatible(self.schema_version, self.format)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "position": self.position, "schema_version": self.schema_version,
            "format": self.format, "size_bytes": self.size_bytes, "checksum": self.checksum,
            "node_id": self.node_id, "leader_epoch": self.leader_epoch,
            "created_at": self.created_at.isoformat(), "compatible": self.compatible,
        }


_INFO = "id, position, schema_version, format, size_bytes, checksum, node_id, leader_epoch, created_at"


async def save_encoded(
    pool: AsyncConnectionPool[Any],
    snap: codec.EncodedSnapshot,
    *,
    node_id: str | None,
    keep: int,
    leader_epoch: int | None = None,
) -> SnapshotInfo:
    """Insert one snapshot and delete all but the newest `keep`. With `leader_epoch`, refuse (Fenced)
    unless it is still current. Waits for a running compaction (MAINTENANCE_LOCK) to finish."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MAINTENANCE_LOCK,))
        if leader_epoch is not None:
            await check_epoch(conn, leader_epoch)
        floor = await rollup_floor(conn)
        if snap.position < floor:
            raise SnapshotRefused(
                f"the state at position {snap.position} predates compaction rollups up to {floor}; "
                "catch up and snapshot again"
            )
        cur = await conn.execute(
            "INSERT INTO snapshots (position, schema_version, format, state, checksum, size_bytes, node_id,"
            f" leader_epoch, teams, teams_checksum) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_INFO}",
            (snap.position, snap.schema_version, snap.format, snap.state, snap.checksum, snap.size_bytes,
             node_id, leader_epoch, snap.teams, snap.teams_checksum),
        )
        row = await cur.fetchone()
        assert row is not None
        await conn.execute(
            "DELETE FROM snapshots WHERE id NOT IN "
            "(SELECT id FROM snapshots ORDER BY position DESC, id DESC LIMIT %s)",
            (keep,),
        )
    return SnapshotInfo(*row)


def _refuse_unreadable(projection: Projection) -> None:
    if projection.unreadable:
        first = projection.unreadable[0]
        raise SnapshotRefused(
            f"this process skipped {projection.unreadable_count} event(s) it cannot read (first: {first.type} "
            f"v{first.version} at position {first.position}); a snapshot from it would hide them from nodes "
            "that can: upgrade it, or snapshot from an upgraded node"
        )


async def save_snapshot(
    pool: AsyncConnectionPool[Any],
    source: Projection | Projector,
    *,
    node_id: str | None,
    keep: int,
    leader_epoch: int | None = None,
    key: bytes | None = None,
) -> SnapshotInfo:
    """Encode the projection as it is now, then store it sealed with `key` (see codec.mac_key). A
    serving node's (a Projector's) is held still while its usage is read a slice at a time, the loop
    serving requests between slices, and encoded in a thread; a projection nothing else changes
    is read in one go."""
    if isinstance(source, Projector):
        async with source.still() as projection:
            _refuse_unreadable(projection)
            parts = await codec.parts_in_slices(projection)
    else:
        _refuse_unreadable(source)
        parts = codec.parts_of(source)
    snap = await asyncio.to_thread(codec.encode_parts, parts, key)
    info = await save_encoded(pool, snap, node_id=node_id, keep=keep, leader_epoch=leader_epoch)
    log.info("snapshot %d written at position %d (%d bytes)", info.id, info.position, info.size_bytes)
    return info


async def list_snapshots(pool: AsyncConnectionPool[Any]) -> list[SnapshotInfo]:
    async with pool.connection() as conn:
        cur = await conn.execute(f"SELECT {_INFO} FROM snapshots ORDER BY position DESC, id DESC")
        return [SnapshotInfo(*r) for r in await cur.fetchall()]
