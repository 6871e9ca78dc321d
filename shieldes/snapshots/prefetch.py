"""A node's start, overlapped: the newest snapshot fetched, verified and decoded in a thread while
the process imports the rest of the node (about a second of Python imports that would otherwise
come before the first byte of the snapshot is read).

The loader uses the result only if, in its own consistent view of the log, the snapshot it would
start from is this one (same id, same seal): a snapshot row never changes, so the projection is
the one the loader would have decoded itself. Anything else (another snapshot became the newest,
the fetch failed, the snapshot does not verify) and the loader reads as it always does.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass

import psycopg

from shieldes.projections.projector import Projection
from shieldes.snapshots import codec as snapcodec
from shieldes.snapshots.store import NEWEST_FIRST, STATE_OF

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prefetched:
    snapshot_id: int
    checksum: str
    key: bytes | None  # the seal was checked with this key
    projection: Projection  # decoded, at the snapshot's position: the loader applies the tail to it


def fetch_newest(url: str, key: bytes | None) -> Prefetched | None:
    """The newest snapshot this release reads, decoded; None when there is none or it does not
    verify (the loader then says why, from its own read)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        candidates = conn.execute(
            NEWEST_FIRST
        ).fetchall()
        for snap_id, position, schema_version, fmt in candidates:
            if not snapcodec.is_compatible(schema_version, fmt):
                continue
            row = conn.execute(STATE_OF, (snap_id,),
                               binary=True).fetchone()
            if row is None:
                return None
            try:
                projection = snapcodec.decode(bytes(row[0]), row[1], position, key)
            except snapcodec.SnapshotCorrupt:
                return None
            return Prefetched(snap_id, row[1], key, projection)
    return None


class SnapshotPrefetch:
    """`fetch_newest` in a daemon thread, started at once; `result()` waits for it. A failure is no
    error: the loader reads the snapshot itself."""

    def __init__(self, url: str, key: bytes | None) -> None:
        self._done: Future[Prefetched | None] = Future()
        threading.Thread(target=self._run, args=(url, key), name="snapshot-prefetch", daemon=True).start()

    def _run(self, url: str, key: bytes | None) -> None:
        try:
            self._done.set_result(fetch_newest(url, key))
        except Exception as exc:  # the database is not there yet, ...: the loader will say
            log.debug("snapshot prefetch failed: %s", exc)
            self._done.set_result(None)

    async def result(self) -> Prefetched | None:
        return await asyncio.wrap_future(self._done)
