"""What a budgeted request pays, in a cluster, to read peers' spend not yet in the log.

    python bench/bench_budget_reads.py [--peers 2 10 30] [--keys 100 500] [--baseline-tree DIR]

Every budget check of a request adds the spend peers gossiped but the log does not hold yet
(`view_reads.pending_spend`, the function the node runs). Each peer's state holds one pending entry per
subject (key or team) per unflushed flush, so with many active keys those are thousands of entries.
The bench builds a view of `--peers` peers, each with two unflushed flushes of `--keys` subjects,
and runs requests against it: each request reads a random key's and team's spend; between
requests, peers' states change as often as a node sees it (each peer's pending entries change
twice per flush interval: a new flush, then the prune once the log holds the old one). It prints
the CPU per request of the reads (any regrouping of a changed state included) and, apart, the CPU
of each merge of a peer's new flush and of each prune (on the gossip loop, not in requests; keeping
the grouping by subject up to date happens there; a prune visits every state) for this checkout
and, with --baseline-tree (e.g. `git archive` of an earlier commit), the earlier version's
functions.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import sys
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shieldes.cluster import view, view_reads

# the functions of the view and of its reads, as one namespace (earlier trees had both in view.py)
this_view = SimpleNamespace(**{**vars(view), **vars(view_reads)})

DAY = 20_000
FLUSH_INTERVAL = 0.5  # the default SHIELDES_FLUSH_INTERVAL
RATE = 1000.0  # requests per second the node serves


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def load_view(tree: Path) -> SimpleNamespace:
    """The view functions of another checkout: view.py, and view_reads.py where it has one (its
    import of the view is pointed at that checkout's view while it loads)."""
    base = _load("baseline_view", tree / "shieldes/cluster/view.py")
    names = dict(vars(base))
    reads = tree / "shieldes/cluster/view_reads.py"
    if reads.exists():
        ours = sys.modules["shieldes.cluster.view"]
        sys.modules["shieldes.cluster.view"] = base
        try:
            names.update(vars(_load("baseline_view_reads", reads)))
        finally:
            sys.modules["shieldes.cluster.view"] = ours
    return SimpleNamespace(**names)


def flush(seq: int, keys: int, rnd: random.Random) -> dict[tuple[int, int, str, int], tuple[int, int, int]]:
    subjects = [f"k:key{rnd.randrange(keys * 4)}" for _ in range(keys)] + [f"t:team{i}" for i in range(keys // 10)]
    return {(1, seq, s, DAY): (1, 100, 2_000) for s in subjects}


def run(view_mod: Any, peers: int, keys: int, requests: int) -> tuple[float, float, float]:
    """CPU microseconds per request (the reads), per merge of a peer's new flush and per prune
    (both on the gossip loop)."""
    rnd = random.Random(7)
    seqs = {f"n{i}": 2 for i in range(peers)}
    flushes = {n: [flush(1, keys, rnd), flush(2, keys, rnd)] for n in seqs}

    def state(node: str) -> Any:
        return view_mod.NodeState(node, 1, seq=seqs[node], pending={k: v for f in flushes[node] for k, v in f.items()})

    view = view_mod.fold([state(n) for n in seqs])
    durable = {n: 0 for n in seqs}

    def durable_seq(node: str, _epoch: int) -> int:
        return durable.get(node, 0)

    # a tree with the node's SpendIndex (before the grouping was kept with each state) reads through one
    extra: dict[str, Any] = {"index": view_mod.SpendIndex()} if hasattr(view_mod, "SpendIndex") else {}
    # pending entries change twice per flush interval per peer: every `every` requests, one peer's
    every = max(1, round(RATE * FLUSH_INTERVAL / (2 * peers)))
    days = range(DAY, DAY + 1)
    nodes = list(seqs)
    subjects = [(f"k:key{rnd.randrange(keys * 4)}", f"t:team{rnd.randrange(max(1, keys // 10))}")
                for _ in range(1024)]
    spent = 0.0  # the reads: merges and prunes run on the gossip loop, not in requests
    merging = pruning = 0.0
    merges = prunes = 0
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
                message = state(node)
                start = time.process_time()
                view = view_mod.merge(view, message)
                merging += time.process_time() - start
                merges += 1
            else:  # the log holds the oldest: pruned
                flushes[node].pop(0)
                durable[node] = seqs[node] - 2
                start = time.process_time()
                view = view_mod.prune(view, min_window_start={}, durable=durable_seq)
                pruning += time.process_time() - start
                prunes += 1
    return spent / requests * 1e6, merging / max(1, merges) * 1e6, pruning / max(1, prunes) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=int, nargs="+", default=[2, 10, 30])
    parser.add_argument("--keys", type=int, nargs="+", default=[100, 500],
                        help="subjects per unflushed flush per peer (at 1000 requests/s, 500: a new key each request)")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--baseline-tree", type=Path, metavar="DIR", help="an earlier checkout to compare with")
    args = parser.parse_args()
    baseline = load_view(args.baseline_tree) if args.baseline_tree else None
    print(f"{'':17} {'reads: us/request':^35} {'merge: us each':^18} {'prune (all states): us each':^28}")
    print(f"{'peers':>5} {'keys/flush':>11} {'this':>11} {'baseline':>11} {'ratio':>11}"
          f" {'this':>8} {'baseline':>9} {'this':>13} {'baseline':>14}")
    for peers in args.peers:
        for keys in args.keys:
            mine = run(this_view, peers, keys, args.requests)
            if baseline is not None:  # a tree that scans every entry per read runs fewer requests
                scans = not hasattr(baseline, "SpendIndex") and not hasattr(baseline, "spend_of")
                base = run(baseline, peers, keys, max(200, args.requests // 20) if scans else args.requests)
                print(f"{peers:5d} {keys:11d} {mine[0]:11.1f} {base[0]:11.1f} {base[0] / mine[0]:11.1f}"
                      f" {mine[1]:8.0f} {base[1]:9.0f} {mine[2]:13.0f} {base[2]:14.0f}", flush=True)
            else:
                print(f"{peers:5d} {keys:11d} {mine[0]:11.1f} {'-':>11} {'-':>11}"
                      f" {mine[1]:8.0f} {'-':>9} {mine[2]:13.0f} {'-':>14}", flush=True)


if __name__ == "__main__":
    main()
