"""Gossip counters of one node: messages and bytes each way, refusals, whole states and deltas sent,
per peer what was last heard and per push target its current deadline (reported in heartbeats,
`cluster status` and /metrics)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shieldes.cluster.push_deadline import PushTimer


@dataclass
class PeerStats:
    received: int = 0
    received_bytes: int = 0
    last_seen: float = 0.0  # monotonic
    last_seen_wall: float = 0.0
    boot_epoch: int = 0
    seq: int = 0
    address: str = ""


@dataclass
class GossipStats:
    sent: int = 0
    sent_bytes: int = 0
    send_errors: int = 0
    received: int = 0
    received_bytes: int = 0
    rejected_signature: int = 0
    rejected_stale: int = 0
    rejected_malformed: int = 0
    full_sent: int = 0  # whole states sent (first contact, anti-entropy, older peers, need_full)
    deltas_sent: int = 0
    need_full: int = 0  # deltas this node could not apply (it lacked the base): answered need_full
    rounds: int = 0
    quiet_rounds: int = 0  # rounds left out: nothing but acknowledgements to send (quiet.py)
    peers: dict[str, PeerStats] = field(default_factory=dict)
    pushed_ok: dict[str, float] = field(default_factory=dict)  # target address -> monotonic time of its last ack
    refused: dict[str, float] = field(default_factory=dict)  # target address -> last "connection refused"
    push_timeouts: int = 0  # pushes that missed their deadline (also counted in send_errors)
    push_timers: dict[str, PushTimer] = field(default_factory=dict)  # target address -> its pushes' timing
    push_deadline: dict[str, float] = field(default_factory=dict)  # target address -> next push's deadline, s

    def recently_seen(self, now: float, within: float) -> list[str]:
        return sorted(n for n, p in self.peers.items() if now - p.last_seen <= within)

    def reachable(self, now: float, within: float) -> list[str]:
        ok = {a for a, t in self.pushed_ok.items() if now - t <= within}
        return sorted(n for n, p in self.peers.items() if p.address in ok)

    def gone(self, now: float, silent_for: float) -> list[str]:
        """Nothing listens at their address any more: the process is dead (a slow or paused peer
        times out instead of refusing)."""
        return sorted(n for n, p in self.peers.items()
                      if now - p.last_seen > silent_for
                      and self.refused.get(p.address, 0.0) > self.pushed_ok.get(p.address, 0.0))

    def forget(self, now: float, silent_for: float, keep: Iterable[str], addresses: Iterable[str]) -> None:
        """Drop the peers silent for `silent_for` seconds that are not in `keep` (node ids), and the
        push times of addresses that are neither in `addresses` (the current targets) nor a kept
        peer's: nodes that come back under new ids or at new addresses (containers) would otherwise
        leave an entry behind at every start, listed in `cluster status` for good."""
        kept = set(keep)
        for node in [n for n, p in self.peers.items() if n not in kept and now - p.last_seen > silent_for]:
            del self.peers[node]
        held = set(addresses) | {p.address for p in self.peers.values()}
        for times in (self.pushed_ok, self.refused):
            for address in set(times) - held:
                del times[address]

    def to_dict(self) -> dict[str, Any]:
        now = time.time()
        return {
            "sent": self.sent, "sent_bytes": self.sent_bytes, "send_errors": self.send_errors,
            "received": self.received, "received_bytes": self.received_bytes,
            "rejected_signature": self.rejected_signature, "rejected_stale": self.rejected_stale,
            "rejected_malformed": self.rejected_malformed,
            "full_sent": self.full_sent, "deltas_sent": self.deltas_sent, "need_full": self.need_full,
            "rounds": self.rounds, "quiet_rounds": self.quiet_rounds, "push_timeouts": self.push_timeouts,
            "peers": {
                node: {"received": p.received, "bytes": p.received_bytes, "address": p.address,
                       "last_seen_age": round(now - p.last_seen_wall, 3) if p.last_seen_wall else None}
                for node, p in sorted(self.peers.items())
            },
            # per push target (address): the deadline its next push gets (push_deadline.py), the smoothed
            # round trip of its answered pushes and how many of its pushes timed out
            "targets": {
                address: {"deadline_s": round(seconds, 3),
                          "rtt_ms": round(timer.srtt * 1000, 1) if (timer := self.push_timers.get(address))
                          and timer.srtt > 0 else None,
                          "timeouts": timer.timeouts if timer else 0}
                for address, seconds in sorted(self.push_deadline.items())
            },
        }


def unreached(pushed_ok: Mapping[str, float], tried_since: Mapping[str, float], targets: Iterable[str], *,
              now: float, within: float) -> list[str]:
    """Targets none of this node's pushes has reached for more than `within` seconds (one never
    reached counts from the first push to it, `tried_since`). Such a peer holds nothing this node
    settled since: if this node is killed, it has none of that usage to append on its behalf."""
    out = []
    for target in targets:
        last = max(pushed_ok.get(target, 0.0), tried_since.get(target, now))
        if now - last > within:
            out.append(target)
    return sorted(out)
