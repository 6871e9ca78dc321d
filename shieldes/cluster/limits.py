"""Cluster-wide limits: split the remaining headroom among alive nodes, round by round.

A node's view of a counter is its own exact count plus every peer's count as last gossiped, so it
misses what peers admitted since. Unchecked, each of N nodes could spend the same headroom (N x
the limit). The rule here keeps that small whatever the request rate:

* Claims. Before admitting in a window, a node claims a share of the remaining headroom:
  remaining = limit - what it sees consumed (its own count plus, per peer, count + unused claim),
  split in N equal parts (N = alive nodes) with the remainder handed out one unit per node by a
  rank that rotates every window. It admits only within its claim and gossips the unused part,
  so a claim is spent headroom for every peer that has seen it.
* Rounds. Every gossip message says which sequence the sender last accepted from each peer
  (`seen`). A node may claim again only in a new round, and a round ends only when every alive
  peer has acknowledged a message sent after this node's latest claim; the unused rest of the
  claim is then returned. So when a node claims, it sees every claim of every peer except at most
  that peer's latest one.

Bounds (docs/cluster.md). When the nodes' views agree the shares add up to exactly the remaining
headroom. Stale views can only hide each peer's latest claim, and a claim is at most
ceil(remaining / N), so the excess never passes (N - 1) claims: admitted <= limit + (N - 1) *
ceil(limit / N) + 1 is the hard worst case (below 2 x limit, never N x limit), while near the
limit claims are small and the simulation in tests/unit/test_cluster_limits.py (random delays,
losses, reordering, skewed load, partitions) never goes past limit + N. A node cut off from its
peers cannot finish a round: it keeps to one share per window with the N it last knew. N = 1 is
exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

Ident = tuple[str, str, int]  # (subject, window name, window start)


def allowance(limit: int, seen_total: int, alive: int, rank: int = 0) -> int:
    """This node's share of the headroom for one round: an equal part, and the remainder one unit
    each to the nodes ranked lowest. When the nodes agree on what is left, the shares add up to it
    exactly; when they do not, a share is still at most ceil(remaining / alive)."""
    remaining = limit - seen_total
    if remaining <= 0:
        return 0
    alive = max(1, alive)
    return remaining // alive + (1 if rank % alive < remaining % alive else 0)


class Rounds:
    """When this node's round ends: every alive peer has acknowledged (via `seen`) a message this
    node sent after its latest claim. Gossip reports what it sends (`sent`) and what peers saw."""

    def __init__(self) -> None:
        self.generation = 0
        self.start_seq = 0  # the round ends once every alive peer saw this sequence of ours
        self.sent_seq = 0
        self._acked: dict[str, tuple[int, int]] = {}  # peer -> (our boot epoch, our seq) it last saw

    def sent(self, seq: int) -> None:
        self.sent_seq = max(self.sent_seq, seq)

    def rearm(self) -> None:
        """A claim was made: the round may only end after peers saw a message that carries it."""
        self.start_seq = self.sent_seq + 1

    def peer_saw(self, peer: str, boot_epoch: int, seq: int) -> None:
        old = self._acked.get(peer)
        if old is None or (boot_epoch, seq) > old:
            self._acked[peer] = (boot_epoch, seq)

    def advance(self, alive_peers: Iterable[str], boot_epoch: int) -> bool:
        """Start a new round if every alive peer saw our latest claim."""
        for peer in alive_peers:
            acked = self._acked.get(peer)
            if acked is None or acked < (boot_epoch, self.start_seq):
                return False
        self.generation += 1
        self.start_seq = self.sent_seq + 1
        return True

    def forget(self, keep: Iterable[str]) -> None:
        alive = set(keep)
        for peer in [p for p in self._acked if p not in alive]:
            del self._acked[peer]


@dataclass(slots=True)
class _Share:
    generation: int
    allowance: int
    used: int = 0


class HeadroomSplitter:
    """Per (subject, window) allowances claimed lazily, one per round, gossiped while unused.

    Peers count this node's consumption as `count + outstanding` (outstanding = the unused part of
    the current round's allowance), so a claim is spent headroom for everyone as soon as they see
    it, and returns to the pool when the round ends unused.
    """

    def __init__(self, rounds: Rounds) -> None:
        self.rounds = rounds
        self._shares: dict[Ident, _Share] = {}

    def admit(self, ident: Ident, limit: int, seen_total: int, alive: int, cost: int = 1,
              rank: int = 0) -> bool:
        """`seen_total` = local count + every peer's (count + outstanding). The caller counts the
        request locally when this returns True. `cost` is what the request takes (1 for a request;
        its estimated nano-USD or tokens for budgets and token limits): it must fit, in the limit
        and in this node's share (fail closed)."""
        if seen_total + cost > limit:
            return False
        generation = self.rounds.generation
        share = self._shares.get(ident)
        if share is None or share.generation != generation:
            # a share too small for one request would never be usable: claim one request's cost
            # instead while the headroom holds it (budgets near their end, where estimates are large)
            share = self._shares[ident] = _Share(generation, max(allowance(limit, seen_total, alive, rank),
                                                                  cost if seen_total + cost <= limit else 0))
            if share.allowance:
                self.rounds.rearm()
        if share.used + cost > share.allowance:
            return False
        share.used += cost
        return True

    def outstanding(self, ident: Ident) -> int:
        share = self._shares.get(ident)
        if share is None or share.generation != self.rounds.generation:
            return 0
        return max(0, share.allowance - share.used)

    def outstanding_all(self) -> dict[Ident, int]:
        g = self.rounds.generation
        return {
            i: s.allowance - s.used
            for i, s in self._shares.items()
            if s.generation == g and s.allowance > s.used
        }

    def forget_windows_before(self, window: str, start: int) -> None:
        for ident in [i for i in self._shares if i[1] == window and i[2] < start]:
            del self._shares[ident]
