"""What a budgeted request pays, in a cluster, to read peers' spend not yet in the log.

    python bench/bench_budget_reads.py [--peers 2 10 30] [--keys 100 500] [--baseline-tree DIR]

Every budget check of a request adds the spend peers gossiped but the log does not hold yet
(`view.pending_spend`, the function the node runs). Each peer's state holds one pending entry per
subject (key or team) per unflushed flush, so with many active keys those are thousands of entries.
The bench builds a view of `--peers` peers, each with two unflushed flushes of `--keys` subjects,
and runs requests against it: each request reads a random key's and team's spend; between
requests, peers' states change as often as a node sees it (each peer's pending entries change
twice per flush interval: a new flush, then the prune once the log holds the old one). It prints
the CPU per request of the reads (regrouping a changed state included; the merges and prunes
themselves run on the gossip loop and are not counted) for this checkout and, with
--baseline-tree (e.g. `git archive` of an earlier commit), the earlier version's function.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shieldes.cluster import view as this_view

DAY = 20_000
FLUSH_INTERVAL = 0.5  # the default SHIELDES_FLUSH_INTERVAL
RATE = 1000.0  # requests per second the node serves


def load_view(tree: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("baseline_view", tree / "shieldes/cluster/view.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_view"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def flush(seq: int, keys: int, rnd: random.Random) -> dict[tuple[int, int, str, int], tuple[int, int, int]]:
    subjects = [f"k:key{rnd.randrange(keys * 4)}" for _ in range(keys)] + [f"t:team{i}" for i in range(keys // 10)]
    return {(1, seq, s, DAY): (1, 100, 2_000) for s in subjects}


def run(view_mod: ModuleType, peers: int, keys: int, requests: int, indexed: bool) -> float:
    """CPU microseconds per request."""
    rnd = random.Random(7)
    seqs = {f"n{i}": 2 for i in range(peers)}
    flushes = {n: [flush(1, keys, rnd), flush(2, keys, rnd)] for n in seqs}

    def state(node: str) -> Any:
        return view_mod.NodeState(node, 1, seq=seqs[node], pending={k: v for f in flushes[node] for k, v in f.items()})

    view = view_mod.fold([state(n) for n in seqs])
    durable = {n: 0 for n in seqs}

    def durable_seq(node: str, _epoch: int) -> int:
        return durable.get(node, 0)

    extra: dict[str, Any] = {"index": view_mod.SpendIndex()} if indexed else {}
    # pending entries change twice per flush interval per peer: every `every` requests, one peer's
    every = max(1, round(RATE * FLUSH_INTERVAL / (2 * peers)))
    days = range(DAY, DAY + 1)
    nodes = list(seqs)
    subjects = [(f"k:key{rnd.randrange(keys * 4)}", f"t:team{rnd.randrange(max(1, keys // 10))}")
                for _ in range(1024)]
    spent = 0.0  # only the reads: merges and prunes run on the gossip loop, not in requests
    for i in range(requests):
        key, team = subjects[i & 1023]
        start = time.process_time()
        view_mod.pending_spend(view, key, days, durable_seq, exclude="me", **extra)
        view_mod.pending_spend(view, team, days, durable_seq, exclude="me", **extra)
        spent += time.process_time() - start
        if i % every == every - 1:
            node = nodes[(i // every) % peers]
            if len(flushes[node]) == 2:  # a new flush
                seqs[node] += 1
                flushes[node].append(flush(seqs[node], keys, rnd))
                view = view_mod.merge(view, state(node))
            else:  # the log holds the oldest: pruned
                flushes[node].pop(0)
                durable[node] = seqs[node] - 1
                view = view_mod.prune(view, min_window_start={}, durable=durable_seq)
    return spent / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, nargs="+", default=[2, 10, 30])
    parser.add_argument("--keys", type=int, nargs="+", default=[100, 500],
                        help="subjects per unflushed flush per peer (at 1000 requests/s, 500: a new key each request)")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--baseline-tree", type=Path, metavar="DIR", help="an earlier checkout to compare with")
    args = parser.parse_args()
    baseline = load_view(args.baseline_tree) if args.baseline_tree else None
    print(f"{'peers':>5} {'keys/flush':>10} {'this us/req':>12} {'baseline us/req':>16} {'ratio':>6}")
    for peers in args.peers:
        for keys in args.keys:
            mine = run(this_view, peers, keys, args.requests, indexed=True)
            base = run(baseline, peers, keys, max(200, args.requests // 20), indexed=False) if baseline else None
            tail = f"{base:16.1f} {base / mine:6.1f}" if base is not None else f"{'-':>16} {'-':>6}"
            print(f"{peers:5d} {keys:10d} {mine:12.1f} {tail}", flush=True)


if __name__ == "__main__":
    main()
