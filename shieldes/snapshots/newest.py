"""The newest snapshot a reader can start from: the loop the config read (config_start.py) and
the teams-only read (teams_start.py) share. Light on imports: the teams read is a CLI command's."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from shieldes.events.connections import Connections
from shieldes.events.pg_store import config_tip_mismatch
from shieldes.snapshots.seal import SnapshotCorrupt

log = logging.getLogger(__name__)
S = TypeVar("S")


async def newest_verified(pool: Connections, candidates: str, part: str, usable: Callable[[tuple[Any, ...]], bool],
                          decode: Callable[[bytes, str, int], Awaitable[tuple[S, tuple[int, str]]]],
                          what: str, params: tuple[Any, ...] = ()) -> tuple[S, int] | None:
    """The decoded part (`part`: its bytes and checksum by snapshot id) of the newest of
    `candidates` (rows that start with id, position; `params` its query's) that is `usable`, whose
    seal checks and whose recorded config tip the log's chain ends at; with that tip's position.
    None when none does."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        cur = await conn.execute(candidates + " LIMIT 3", params)
        for row in await cur.fetchall():
            snap_id, position = row[0], row[1]
            if not usable(row):
                continue
            cur = await conn.execute(part, (snap_id,), binary=True)
            found = await cur.fetchone()
            if found is None:
                continue
            try:
                state, tip = await decode(bytes(found[0]), found[1], position)
            except SnapshotCorrupt as exc:
                log.info("not reading %s from snapshot %d: %s", what, snap_id, exc)
                continue
            reason = await config_tip_mismatch(conn, tip, position)
            if reason is not None:
                log.warning("not reading %s from snapshot %d: %s", what, snap_id, reason)
                continue
            return state, tip[0]
    return None
