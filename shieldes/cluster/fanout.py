"""Bounded fanout: which peers a node pushes to each round, and what it relays for others.

A node pushes to `k` peers per round, not to every peer (gossip_rounds.py runs this):

* **Direct pushes rotate** through the peers in a fixed shuffled order, `k` per round, so every
  peer gets a message of this node's own component (a delta since the newest one it accepted, or
  the whole state, delta.py) every ceil((N - 1) / k) rounds. Liveness (`heard`) and the
  acknowledgements that end limit rounds come only from these direct messages and their Acks:
  a node's own messages are the only proof that it is alive, so relays can never keep a stopped
  node alive.
* **Digest pulls** (digest.py) carry other nodes' entries to peers that answer them: each change
  crosses each link about once. The relays below are for peers of the release before them.
* **Relays.** Every entry of another node's component that grew in this node's view (from a direct
  message or a relay) is relayed once, in the next round's pushes (`Relay`): a change spreads like
  an epidemic, to k peers, then k^2, ..., reaching every node in about log_k N rounds. Relayed
  entries are monotone (counts, pending usage, unflushed deltas, reservations) and merge by max
  per origin component (view.merge_admitted), so a relay arriving twice, late, or through several
  paths changes nothing. Gauges (unused claims, deployment health) travel only in their origin's
  own messages, which always arrive within a rotation.
* `k` = ceil(log2 N) + 1, and at least what makes every peer get a direct push within a third of
  SHIELDES_NODE_TIMEOUT (liveness stays judged by the origin's own messages): `fanout_for`.

Older releases (their Ack does not say `fanout`) get a push every round with `seen`, as before.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shieldes.cluster.view import Component, NodeState

RELAYED_KINDS = ("windows", "pending", "unflushed", "reservations")  # the monotone parts of a component


def fanout_for(peers: int, *, interval: float, timeout: float) -> int:
    """Targets per round with `peers` other nodes: ceil(log2 N) + 1, and enough that each peer gets
    a direct push at least every timeout / 3 seconds (never more than `peers`)."""
    if peers <= 0:
        return 0
    rounds = max(1, math.floor(timeout / (3 * interval)))  # rounds within which every peer gets a push
    k = max(math.ceil(math.log2(peers + 1)) + 1, math.ceil(peers / rounds))
    return min(peers, k)


@dataclass(frozen=True)
class Spread:
    """How digest pulls spread a change beyond its origin's k targets (news.py, digest.py)."""

    hops: int = 0  # times news is forwarded on after the origin's push
    per_news: int = 0  # targets of a round each forwarded news goes to
    sources: int = 1  # targets of a round each boot is asked from (while its origin is not one)


def spread_for(peers: int, k: int) -> Spread:
    """With `peers` other nodes and `k` targets per round, once the cluster is more than two
    rotations of k: forward each news once, to as many targets as make about `peers` - k copies
    of a change in all (k first holders, each forwarding to up to k), so a change reaches about
    two thirds of the cluster by push in two rounds; and once it is more than five rotations, ask
    each boot of two targets (the pull epidemic's tail then shrinks with the cube of what lacks a
    change per round, not the square), which costs a second digest entry per boot and the answers
    both targets give. Below two rotations the origin's own pushes already reach half the cluster
    and forwarding bought 20 ms of convergence for 15% more bytes (bench_gossip_sim.py, N = 10)."""
    if k <= 0 or peers <= 2 * k:
        return Spread()
    return Spread(hops=1, per_news=min(k, math.ceil((peers - k) / k)), sources=2 if peers > 5 * k else 1)


def rotation(me: str, targets: Sequence[str]) -> list[str]:
    """The order direct pushes take through `targets`: stable, and different per node (a pseudo-random
    shuffle), so a node's pushes are spread evenly and peers are not all hit by the same nodes first."""
    return sorted(targets, key=lambda t: (zlib.crc32(f"{me}>{t}".encode()), t))


def pick(order: Sequence[str], cursor: int, k: int) -> tuple[list[str], int]:
    """The next `k` targets of `order` from `cursor` (wrapping), and the cursor after them."""
    n = len(order)
    if n == 0 or k <= 0:
        return [], cursor
    if k >= n:
        return list(order), 0
    start = cursor % n
    return [order[(start + i) % n] for i in range(k)], (start + k) % n


def _grown(before: Mapping[Any, tuple[int, ...]], after: Mapping[Any, tuple[int, ...]],
           keys: Any) -> dict[Any, tuple[int, ...]]:
    out = {}
    for key in keys:
        value = after.get(key)
        if value is not None and before.get(key) != value:
            out[key] = value
    return out


class Relay:
    """Entries of other nodes' components that grew in this node's view since the last round: the
    next round's pushes relay them (each node relays a value once: what it already held does not
    grow, so an epidemic dies out by itself)."""

    def __init__(self) -> None:
        self._fresh: dict[Component, dict[str, dict[Any, tuple[int, ...]]]] = {}

    def note(self, before: NodeState | None, after: NodeState | None, incoming: NodeState) -> None:
        """A message (or relay) `incoming` was folded into component `before`, giving `after`."""
        if after is None:
            return
        fresh: dict[str, dict[Any, tuple[int, ...]]] | None = None
        for kind in RELAYED_KINDS:
            keys = getattr(incoming, kind).keys()
            if not keys:
                continue
            grown = _grown(getattr(before, kind) if before is not None else {}, getattr(after, kind), keys)
            if grown:
                if fresh is None:
                    fresh = self._fresh.setdefault(after.component, {})
                fresh.setdefault(kind, {}).update(grown)

    def take(self) -> list[NodeState]:
        """What to relay this round (and forget it)."""
        fresh, self._fresh = self._fresh, {}
        return [NodeState(node, epoch, **parts)  # type: ignore[arg-type]
                for (node, epoch), parts in sorted(fresh.items())]

    def __len__(self) -> int:
        return len(self._fresh)
