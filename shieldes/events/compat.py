"""Rolling upgrades: which event types and versions each node can read, and whether an append is
safe while every live node must apply it.

Each node advertises what it reads (`cluster_nodes.info.reads`: type -> newest version; older
versions are read through upcasters). A writer refuses to append a config event that some live
node cannot read, naming the node and the version it needs; once that node is upgraded or gone the
same command goes through. Pure functions: the store runs them inside the append transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shieldes.events.codec import Codec

# What releases read before nodes advertised it: every type of that catalog, at version 1.
BASELINE_READS: Mapping[str, int] = {
    t: 1
    for t in (
        "provider.added", "provider.updated", "provider.removed", "pricing.set", "team.created",
        "virtual_key.created", "virtual_key.updated", "virtual_key.revoked", "virtual_key.rotated",
        "budget.set", "rate_limit.set", "usage.recorded", "usage.rolled_up",
    )
}


def reads_of(codec: Codec) -> dict[str, int]:
    """What a node running `codec` can read: each known type up to its current version."""
    return {type_: cls.VERSION for type_, cls in sorted(codec.classes.items())}


@dataclass(frozen=True)
class Unreadable:
    """A live node that cannot read an event version a change would write."""

    node_id: str
    type: str
    version: int
    node_reads: int  # the newest version of `type` the node reads; 0: not the type at all

    def message(self) -> str:
        have = f"up to v{self.node_reads}" if self.node_reads else "not at all"
        return (f"node {self.node_id} is alive and reads {self.type} {have}, but this change writes "
                f"{self.type} v{self.version}; upgrade node {self.node_id} first (or retry once it has left "
                "the cluster)")


def unreadable_by(
    new: Iterable[tuple[str, int]], live_nodes: Mapping[str, Mapping[str, int] | None]
) -> list[Unreadable]:
    """Every (live node, new event) pair the node could not apply. A node that advertises nothing
    runs a release from before advertising and reads BASELINE_READS."""
    wanted = sorted(set(new))
    out: list[Unreadable] = []
    for node_id, reads in sorted(live_nodes.items()):
        table = reads if reads is not None else BASELINE_READS
        for type_, version in wanted:
            have = int(table.get(type_, 0))
            if have < version:
                out.append(Unreadable(node_id, type_, version, have))
    return out
