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
from shieldes.projections.state import ConfigState
from shieldes.snapshots import codec as snapcodec
from shieldes.snapshots.newest import newest_verified
from shieldes.snapshots.store import NEWEST_FIRST, STATE_OF

log = logging.getLogger(__name__)


async def config_from_snapshot(pool: Connections, key: bytes | None) -> ConfigView | None:
    """The newest usable snapshot's config, positioned at its config chain tip."""

    async def decode(data: bytes, checksum: str, position: int) -> tuple[ConfigState, tuple[int, str]]:
        return await asyncio.to_thread(snapcodec.decode_config, data, checksum, position, key)

    found = await newest_verified(pool, NEWEST_FIRST, STATE_OF, lambda row: snapcodec.is_compatible(row[2], row[3]),
                                  decode, "the config")
    return ConfigView(*found) if found is not None else None
