"""Which raw usage flushes compaction must keep: the flush-sequence watermarks.

Peers' gossip, the leader's appends on behalf of a dead boot and a node choosing its next boot epoch
rely on the highest flush seq of a node's recent boots (UsageState.node_seqs). The fold keeps it for
each node's newest boots (projections/usage.BOOTS_KEPT), so compaction keeps, among the raw events it may fold, the
highest-seq one of each of those boots and folds every other, older boots' last flushes included:
the raw events left per node are bounded, and a replay after compaction rebuilds the same
watermarks as the live fold.
"""

from __future__ import annotations

from typing import Any

import psycopg


async def watermark_positions(conn: psycopg.AsyncConnection[Any], cutoff: int, boots_kept: int) -> set[int]:
    """Positions of the highest-seq raw flush of each node's `boots_kept` newest boots among the raw
    flushes at or below the cutoff. Keeping one when a higher seq of that boot lies above the cutoff
    is harmless (a later run folds it); looking only below the cutoff scans just what this run folds."""
    cur = await conn.execute(
        "SELECT position FROM ("
        " SELECT position, rank() OVER (PARTITION BY node ORDER BY epoch DESC) AS newest FROM ("
        "  SELECT DISTINCT ON (data->>'node_id', data->>'epoch') position, data->>'node_id' AS node,"
        "   (data->>'epoch')::bigint AS epoch"
        "  FROM events WHERE type = 'usage.recorded' AND position <= %s"
        "  ORDER BY data->>'node_id', data->>'epoch', (data->>'seq')::bigint DESC, position DESC"
        " ) boots"
        ") ranked WHERE newest <= %s",
        (cutoff, boots_kept),
    )
    return {int(r[0]) for r in await cur.fetchall()}
