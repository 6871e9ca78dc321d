"""Where a config write starts folding: the config of the newest snapshot that verifies, so an
admin write reads the snapshot plus the config events after it instead of the whole config
stream from position 0.

A snapshot is used only if its seal checks with this process's key (SHIELDES_CLUSTER_SECRET, as
the nodes that wrote it) and the log's config chain ends at the snapshot's recorded tip; anything
else (no snapshot, another format, no key, a mismatch) means None and the caller folds from 0."""

from __future__ import annotations

import asyncio
import logging

from shieldes.config_writer import ConfigView
from shieldes.events.connections import Connections
from shieldes.events.pg_store import config_tip_mismatch
from shieldes.snapshots import codec as snapcodec
from shieldes.snapshots.store import NEWEST_FIRST, STATE_OF

log = logging.getLogger(__name__)


async def config_from_snapshot(pool: Connections, key: bytes | None) -> ConfigView | None:
    """The newest usable snapshot's config, positioned at its config chain tip."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cur = await conn.execute(
            NEWEST_FIRST + " LIMIT 3"
        )
        for snap_id, position, schema_version, fmt in await cur.fetchall():
            if not snapcodec.is_compatible(schema_version, fmt):
                continue
            cur = await conn.execute(STATE_OF, (snap_id,), binary=True)
            row = await cur.fetchone()
            if row is None:
                continue
            try:
                state, tip = await asyncio.to_thread(snapcodec.decode_config, bytes(row[0]), row[1], position, key)
            except snapcodec.SnapshotCorrupt as exc:
                log.info("not starting from snapshot %d: %s", snap_id, exc)
                continue
            reason = await config_tip_mismatch(conn, tip, position)
            if reason is not None:
                log.warning("not starting from snapshot %d: %s", snap_id, reason)
                continue
            return ConfigView(state, tip[0])
    return None
