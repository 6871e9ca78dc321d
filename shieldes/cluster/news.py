"""Forwarded news: with digest pulls (digest.py), what a node pushes on of the news it was told.

A push to a round's target carries the entries that changed in that very message (its *news*):
the round's k targets are a change's first holders, and every other node pulls it from one of them
or from those that pulled it before, a pull epidemic that starts from k/N of the cluster and takes
about log2 N rounds to reach its last nodes. Forwarding the news once more shortens the start:

* A node told news it did not hold (of an origin it takes for alive) pushes it on in its next
  round to `per_news` of that round's targets (`forward_to`: not the origin, not the node that
  told it), as relayed Counts marked `news` with the message's label (exact) and the `hops` left;
  the receiver holds it as news of that message (digest.Holdings.learn), so pulls never send it
  again, and forwards it on while `hops` is above 0.
* The entries forwarded are the ones received, with the values of that message, so their label
  stays exact: an answer built on them is never short of a later value (digest.py).
* `fanout.spread_for` sizes it: about N - 1 - k copies per change in all, so each node receives a
  change about once from a push and the pulls fill in the rest; below that (k near N) nothing
  is forwarded.

Pure value holders without I/O: gossip_rounds.py runs them, the tests and the simulation bench too.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from shieldes.cluster.view import Component, NodeState


@dataclass(frozen=True)
class Rumor:
    """Every monotone entry that changed in message `label` of boot `state.component`, with that
    message's values; `hops`: how many more times its receivers forward it; `source`: the node
    that told this node (not told back)."""

    state: NodeState
    label: int
    hops: int
    source: str


def monotone(state: NodeState) -> NodeState:
    """The monotone entries of a message (counts, pending usage, unflushed deltas, reservations),
    windows named only for an unused claim (a gauge) left out."""
    return NodeState(state.node_id, state.boot_epoch, windows={w: v for w, v in state.windows.items() if any(v)},
                     pending=state.pending, unflushed=state.unflushed, reservations=state.reservations)


class Forward:
    """The news to push on in the next round, once per message of a boot."""

    def __init__(self) -> None:
        self._queue: dict[tuple[Component, int], Rumor] = {}

    def note(self, rumor: Rumor) -> None:
        if rumor.hops < 0 or not (rumor.state.windows or rumor.state.pending or rumor.state.unflushed
                                  or rumor.state.reservations):
            return
        key = (rumor.state.component, rumor.label)
        old = self._queue.get(key)
        if old is None or rumor.hops > old.hops:
            self._queue[key] = rumor

    def take(self) -> list[Rumor]:
        """What to forward this round (and forget it)."""
        out, self._queue = list(self._queue.values()), {}
        return out

    def __len__(self) -> int:
        return len(self._queue)


def forward_to(rumor: Rumor, targets: Sequence[str], per_news: int, salt: int) -> list[str]:
    """The targets (node ids) of this round a rumor goes to: `per_news` of them, never its origin
    or its source, picked by a hash that differs per message and round (spreads the copies)."""
    if per_news <= 0:
        return []
    node, epoch = rumor.state.component
    eligible = [t for t in targets if t != node and t != rumor.source]
    if len(eligible) > per_news:
        eligible.sort(key=lambda t: zlib.crc32(f"{salt}:{node}:{epoch}:{rumor.label}>{t}".encode()))
    return eligible[:per_news]
