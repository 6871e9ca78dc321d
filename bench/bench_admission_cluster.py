"""What admission costs a request in a cluster against a node alone: the meter's admit and settle
(limits, budgets, the headroom split) and routing's question to the breaker (does a peer rest the
deployment?), with the cluster runtime's reads of a view holding one peer (`serve --workers 2`: the
sibling worker, heard from lately, its breaker closed), and with an empty view and no gossip (a
node alone).

    python bench/bench_admission_cluster.py [--requests 50000] [--rounds 5] [--tree DIR ...]

Each `--tree` (e.g. `git archive <commit> | tar -x -C DIR`) is measured the same way in a
subprocess, for a before/after in one run. Prints the median CPU per request over the rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def measure(requests: int, rounds: int) -> tuple[float, float]:
    from shieldes.cluster import view_reads
    from shieldes.cluster.gossip_rounds import GossipRounds
    from shieldes.cluster.gossip_stats import PeerStats
    from shieldes.cluster.meter import RATE_WINDOW, TOKEN_WINDOW, ClusterMeter, key_subject
    from shieldes.cluster.runtime import ClusterRuntime
    from shieldes.cluster.view import Health, NodeState, View, ViewCell
    from shieldes.projections.state import Budget, ConfigState, VirtualKey
    from shieldes.projections.usage import UsageState

    now = time.time()
    w, today = int(now // 60), int(now // 86400)
    # the bench's key: far from its limits, with a budget, so every check runs
    key = VirtualKey("key1", "bench", "h", "p", None, None, None, rpm=10**9, tpm=10**12, budget=Budget(1e6, "30d"))
    subject = key_subject(key.id)
    peer = NodeState("peer", 1, seq=5,
                     windows={(subject, RATE_WINDOW, w): (500, 20000, 1000),
                              (subject, RATE_WINDOW, w - 1): (900, 30000, 100)},
                     pending={(1, 3, subject, today): (0, 0, 12345)}, reservations={subject: (10**9, 10**9 - 5000)},
                     allowances={(subject, RATE_WINDOW, w): 1000, (subject, TOKEN_WINDOW, w): 10**6},
                     health={"openai": Health(12.0, 0.0, 500)})
    with_peer = View(components={("peer", 1): peer, ("me", 2): NodeState("me", 2)}, epochs={"peer": 1, "me": 2},
                     heard={"peer": time.monotonic()})
    usage, config = UsageState(), ConfigState()

    class Runtime(ClusterRuntime):
        """The runtime's own reads of the view; membership and projector reduced to what they read."""

        def __init__(self, value: View, alive: int) -> None:
            self.cell = ViewCell()
            self.cell.value = value
            self.node_id = "me"
            self.membership: Any = SimpleNamespace(boot_epoch=2)
            self.settings: Any = SimpleNamespace(node_timeout=5.0)
            self.gossip: Any = None
            if alive > 1:  # the sibling heard from just now
                self.gossip = GossipRounds(node_id="me", secret=b"bench")
                self.gossip.stats.peers["peer"] = PeerStats(last_seen=time.monotonic())
            self.projector: Any = SimpleNamespace(usage=usage, position=7)
            self._alive = alive
            if hasattr(view_reads, "ViewReads"):  # trees before the memo read the view directly
                self._view_reads = view_reads.ViewReads(value, "me", 2)

        def alive_and_rank(self) -> tuple[int, int]:
            return (self._alive, 1 if self._alive > 1 else 0)

    def once(value: View, alive: int) -> float:
        meter = ClusterMeter("me", 2, buffer_max=10**9)
        runtime = Runtime(value, alive)
        meter.cluster = runtime
        meter.remote = runtime
        t0 = time.process_time()
        for _ in range(requests):
            res = meter.admit(config, usage, key, 7000, 7, estimate_tokens=300)
            runtime.remote_open("openai")  # (plan() asks the breaker, which asks the cluster)
            meter.settle(res, "fake", "gpt-4o", 10, 20, 5000)
        return (time.process_time() - t0) / requests * 1e6

    alone = [once(View(), 1) for _ in range(rounds)]
    peers = [once(with_peer, 2) for _ in range(rounds)]
    return statistics.median(alone), statistics.median(peers)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tree", type=Path, action="append", default=[], help="another source tree to measure")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.json:
        print(*measure(args.requests, args.rounds))
        return
    print("| tree | node alone, us/request | with one peer | the cluster path adds |")
    print("|---|---:|---:|---:|")
    for tree in [ROOT, *args.tree]:
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--json", "--requests",
                              str(args.requests), "--rounds", str(args.rounds)],
                             env={**os.environ, "PYTHONPATH": str(tree.resolve())}, capture_output=True,
                             text=True, check=True).stdout
        alone, peer = (float(x) for x in out.split())
        print(f"| {'this tree' if tree == ROOT else tree} | {alone:.2f} | {peer:.2f} | {peer - alone:+.2f} |")


if __name__ == "__main__":
    main()
