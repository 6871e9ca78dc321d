"""An agent's conversation continued by `previous_response_id` over HTTP, turn after turn: the node
CPU per turn as the conversation grows, on a real node with the fake upstream and the test Postgres
(bench/bench_responses.py's), the node on an event loop of its own thread (bench_conversations's
NodeThread: its CPU is that thread's; the fake upstream shares the thread, alike for every tree).

    PYTHONPATH=. python bench/bench_stored_turns.py [--turns 60] [--item-bytes 1000] [--rounds 5] [--tree DIR ...]

Each turn sends one user message of `--item-bytes` and continues the previous turn's response
(`store` defaulting to true), so turn N's upstream gets N messages and N-1 answers. Prints, per
tree, the mean node CPU of the last ten turns and of all of them, best of `--rounds`
conversations. Each `--tree` (`git archive <commit> | tar -x -C DIR`) runs the same in its own
process, for a before/after in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def measure(turns: int, item_bytes: int, rounds: int) -> dict[str, float]:
    sys.path.insert(0, os.getcwd())
    from bench.bench_conversations import NodeThread
    from bench.bench_responses import bench_node
    from tests.integration.test_responses_api import oai

    node = NodeThread()
    try:
        h, secret = node.call(node.stack.enter_async_context(bench_node()))
        client = oai(h.base, secret).with_options(timeout=60)
        await client.responses.create(model="gpt-4o", input="warm up")
        last, whole = [], []
        for r in range(rounds):
            previous = None
            used = []
            for n in range(turns):
                text = f"round {r} turn {n}: " + "x" * item_bytes
                cpu = node.cpu()
                previous = (await client.responses.create(model="gpt-4o", input=text,
                                                          previous_response_id=previous)).id
                used.append(node.cpu() - cpu)
            last.append(statistics.fmean(used[-10:]))
            whole.append(statistics.fmean(used))
        await client.close()
        return {"last": min(last), "whole": min(whole), "load": os.getloadavg()[0]}
    finally:
        node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=60)
    parser.add_argument("--item-bytes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tree", action="append", default=[], help="another source tree, measured the same way")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(measure(args.turns, args.item_bytes, args.rounds))))
        return
    n = args.turns
    print(f"conversations of {n} turns continued by previous_response_id, {args.item_bytes}-byte messages, "
          f"best of {args.rounds}; load average {os.getloadavg()[0]:.1f} at start\n")
    print(f"| tree | node CPU per turn, turns {n - 9}-{n} | per turn, turns 1-{n} |")
    print("|---|---:|---:|")
    for tree in [str(ROOT), *args.tree]:
        out = subprocess.run([sys.executable, __file__, "--child", "--turns", str(n), "--item-bytes",
                              str(args.item_bytes), "--rounds", str(args.rounds)],
                             env={**os.environ, "PYTHONPATH": tree}, cwd=tree, check=True,
                             capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        label = "this tree" if tree == str(ROOT) else tree
        print(f"| {label} | {r['last'] * 1e6:.0f} us | {r['whole'] * 1e6:.0f} us |", flush=True)
    print(f"\n(load average {os.getloadavg()[0]:.1f} at end)")


if __name__ == "__main__":
    main()
