"""Where a config fold starts: the config of the newest snapshot that verifies, so an admin write
reads the snapshot plus the config events after it instead of the whole config stream from
position 0, and a look at the config as it was at a point in the log (`config show --at`,
`GET /admin/v1/config?at=`, `config diff`) starts from the newest snapshot before that point.

A snapshot is used only if its seal checks with this process's key (SHIELDES_CLUSTER_SECRET, as
the nodes that wrote it) and the log's config chain ends at the snapshot's recorded tip; anything
else (no snapshot, another format, no key, a mismatch) means None and the caller folds from 0."""

from __future__ import annotations

import asyncio
import logging

from shieldes.config_writer import ConfigView
from shieldes.events.connections import Connections
from shieldes.events.store import EventStore
from shieldes.projections.state import ConfigState
from shieldes.snapshots import codec as snapcodec
from shieldes.snapshots.config_diff import snapshot_bound
from shieldes.snapshots.history import Point
from shieldes.snapshots.newest import newest_verified
from shieldes.snapshots.store import NEWEST_FIRST, NEWEST_UP_TO, STATE_OF

log = logging.getLogger(__name__)


async def config_from_snapshot(pool: Connections, key: bytes | None, *,
                               up_to: int | None = None) -> ConfigView | None:
    """The newest usable snapshot's config (of those at or before position `up_to`, if given),
    positioned at its config chain tip."""

    async def decode(data: bytes, checksum: str, position: int) -> tuple[ConfigState, tuple[int, str]]:
        return await asyncio.to_thread(snapcodec.decode_config, data, checksum, position, key)

    candidates, params = (NEWEST_FIRST, ()) if up_to is None else (NEWEST_UP_TO, (up_to,))
    found = await newest_verified(pool, candidates, STATE_OF, lambda row: snapcodec.is_compatible(row[2], row[3]),
                                  decode, "the config", params)
    return ConfigView(*found) if found is not None else None


async def config_base(store: EventStore, pool: Connections, key: bytes | None, point: Point) -> ConfigView | None:
    """Where a fold up to `point` may start: the newest usable snapshot whose config `point`
    includes whole, else None (fold from 0). For a time, the snapshots at or before the first
    config event after it: an older snapshot than the newest is a start too (a time before the
    newest once folded from 0). At a million keys a fold from 0 took longer than the admin API's
    read bound."""
    return await config_from_snapshot(pool, key, up_to=await snapshot_bound(store, point))
