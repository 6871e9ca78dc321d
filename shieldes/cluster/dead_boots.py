"""What the cluster does for boots that died: the usage they gossiped but never appended is appended
on their behalf, and the rows of nodes silent for SHIELDES_DEAD_NODE_RETENTION leave cluster_nodes.
ClusterRuntime's maintenance tick runs both (the leader; any node for boots dead long enough)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from shieldes.cluster import view
from shieldes.cluster.membership import Membership
from shieldes.cluster.view import ViewCell
from shieldes.events.catalog import UsageDelta, UsageRecorded
from shieldes.projections.projector import Projector
from shieldes.settings import Settings
from shieldes.usage.flusher import append_flush

log = logging.getLogger(__name__)
DEAD_ROWS_EVERY = 60.0  # seconds between the leader's removals of long-dead nodes' rows


class DeadBoots:
    def __init__(self, settings: Settings, membership: Membership, projector: Projector, cell: ViewCell,
                 wake: Callable[[], None]) -> None:
        self.settings = settings
        self.node_id = settings.node_id
        self.membership = membership
        self.projector = projector
        self.cell = cell  # what this node believes about its peers, the dead boots' unappended flushes included
        self._wake = wake  # the projection catches up (after an append on a dead boot's behalf)
        self.taken_over = 0  # flushes of dead boots this node appended
        self._rows_checked = float("-inf")

    async def remove_rows(self) -> None:
        """The leader removes cluster_nodes rows silent for SHIELDES_DEAD_NODE_RETENTION (checked at
        most once a minute): a node killed for good, or replaced under a new id (the default id is
        `<hostname>-<pid>`), would otherwise be listed dead and counted in the cluster's node total for good."""
        retention = self.settings.dead_node_retention
        now = time.monotonic()
        if not retention or now - self._rows_checked < min(DEAD_ROWS_EVERY, retention / 2):
            return
        self._rows_checked = now
        try:
            removed = await self.membership.remove_dead(retention)
        except Exception as exc:  # the database away: the next check (a minute on) tries again
            log.warning("could not remove long-dead nodes from cluster_nodes yet: %s",
                        str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
            return
        for node, silent in removed:
            log.info("removed node %s from cluster_nodes: no heartbeat for %.0f s (SHIELDES_DEAD_NODE_RETENTION "
                     "is %g s)", node, silent, retention)

    async def take_over(self, orphaned_before: float | None = None) -> None:
        """Append the flushes dead boots had gossiped but not appended, on their behalf: the leader at
        once, any other node for boots dead since before `orphaned_before` (no leader, or the leader
        is the dead node's own next boot). Keyed like their own appends by (node, boot epoch, flush
        seq): a flush the boot did append, or another node's append, is a no-op; a boot that was
        only paused and flushes the same seq later appends the rest under its next seq
        (usage/flusher.py)."""
        appended = 0
        for node, epoch, seq, deltas in view.takeover(self.cell.value, self.projector.usage.durable_seq,
                                                      orphaned_before=orphaned_before):
            event = UsageRecorded(node, epoch, seq, tuple(UsageDelta(k, t, p, m, h, *u) for k, t, p, m, h, u in deltas))
            result = await append_flush(self.projector.store, event, self.projector.projection.codec,
                                        appended_by=self.node_id)
            if not result.duplicate:
                appended += 1
                log.warning("appended flush %d of node %s (boot %d) on its behalf: %d usage deltas it had "
                            "gossiped before it died", seq, node, epoch, len(deltas))
        if appended:
            self.taken_over += appended
            self._wake()  # the projection catches up, the orphans' usage turns durable and they go
