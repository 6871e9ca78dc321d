"""How xdist's `load` and `worksteal` schedulers would share a suite run between workers, replayed on
the per-test durations of a run (so a choice of `--dist` is judged without running the suite twice).

    python -m pytest --collect-only -q -n0 | grep :: > collection.txt
    python -m pytest -p no:cacheprovider --durations=0 > durations.txt
    python bench/suite_schedule.py collection.txt durations.txt [--workers 2]

Replays xdist 3.8's rules: `load` hands each worker a quarter of its share of the collection, then
tops a worker up to half of its share of what is left when it runs low (holding back while its last
test was slow and it still has two); `worksteal` splits the collection evenly and a worker with
fewer than two tests left takes half of the longest queue's tail. Fixtures are not modelled: a
test's setup, call and teardown are its duration wherever it runs.
"""

from __future__ import annotations

import argparse
import heapq
import re
from collections import defaultdict
from pathlib import Path

DURATION = re.compile(r"^([\d.]+)s (setup|call|teardown)\s+(\S.*)$")


def durations(text: str) -> dict[str, float]:
    total: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        m = DURATION.match(line.strip())
        if m:
            total[m.group(3).strip()] += float(m.group(1))
    return total


def replay(kind: str, times: list[float], workers: int) -> list[float]:
    """When each worker ends, in seconds from the start."""
    pending = list(range(len(times)))
    queues: list[list[int]] = [[] for _ in range(workers)]

    def send(w: int, k: int) -> None:
        queues[w].extend(pending[:k])
        del pending[:k]

    def balance() -> None:  # worksteal's check_schedule
        idle = [w for w in range(workers) if len(queues[w]) < 2]
        if not idle:
            return
        if pending:
            for i, w in enumerate(idle):
                send(w, len(pending) // (len(idle) - i))
            if all(len(q) >= 2 for q in queues):
                return
        victim = max(range(workers), key=lambda w: len(queues[w]))
        k = min(len(queues[victim]) // 2, max(0, len(queues[victim]) - 2))
        if k:
            pending.extend(queues[victim][-k:])
            del queues[victim][-k:]
            balance()

    if kind == "load":
        for w in range(workers):
            send(w, max(len(times) // workers // 4, 2))
    else:
        balance()
    running: list[int | None] = [None] * workers
    events: list[tuple[float, int]] = []
    end = [0.0] * workers

    def start(now: float) -> None:
        for w in range(workers):
            if queues[w] and running[w] is None:
                running[w] = queues[w][0]
                heapq.heappush(events, (now + times[queues[w][0]], w))

    start(0.0)
    while events:
        now, w = heapq.heappop(events)
        done = running[w]
        assert done is not None
        running[w] = None
        queues[w].remove(done)
        end[w] = now
        if kind == "load" and pending:
            low, high = max(2, len(pending) // workers // 4), max(2, len(pending) // workers // 2)
            if len(queues[w]) < low and not (times[done] >= 0.1 and len(queues[w]) >= 2):
                send(w, high - len(queues[w]))
        elif kind == "worksteal":
            balance()
        start(now)
    return end


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("collection", type=Path, help="`pytest --collect-only -q` output: test ids in order")
    parser.add_argument("durations", type=Path, help="a run's output with --durations=0")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    order = [line.strip() for line in args.collection.read_text().splitlines() if "::" in line]
    measured = durations(args.durations.read_text())
    times = [measured.get(test, 0.0) for test in order]
    print(f"{len(order)} tests ({sum(t not in measured for t in order)} under 5 ms or not run), "
          f"{sum(times):.0f} s in all, the longest {max(times, default=0):.0f} s")
    for kind in ("load", "worksteal"):
        end = replay(kind, times, args.workers)
        print(f"{kind:9s} workers end at {', '.join(f'{e:.0f}' for e in end)} s: "
              f"wall {max(end):.0f} s, the first idle {max(end) - min(end):.0f} s before the last")


if __name__ == "__main__":
    main()
