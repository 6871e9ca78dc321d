"""How long taking a snapshot holds a serving node's event loop (every request on the node waits
that long): the longest wall-clock gap between two turns of the loop, read by a task that only
yields, while a snapshot of a config of N keys (N/100 teams, a tenth of the keys with usage) is
encoded, the way the leader did before (the whole state turned into JSON on the loop in one step,
compressed in a thread) and the way it does now (store.save_snapshot: the usage read a slice at a
time with the loop turning between, `codec.parts_in_slices`, then everything else in a thread,
`codec.encode_parts`). Wall clock, so a busy machine adds to both; the config is built
in memory directly (bench_keys_scale.Shape), no database.

    PYTHONPATH=. python bench/bench_snapshot_stall.py [--keys 100000,1000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_keys_scale import Shape  # noqa: E402
from bench_loop_holds import LoopGaps  # noqa: E402

from shieldes.gateway.app import tune_gc  # noqa: E402
from shieldes.projections.projector import Projection  # noqa: E402
from shieldes.projections.usage import Totals  # noqa: E402
from shieldes.snapshots import codec  # noqa: E402


async def longest_gap(work: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(the longest wall-clock gap between two loop turns, the work's own wall time), in ms."""
    async with LoopGaps() as gaps:
        t0 = time.perf_counter()
        await work()
        took = time.perf_counter() - t0
    return gaps.wall, took * 1000


async def before(projection: Projection) -> None:
    raw = codec.projection_to_json(projection)
    teams = codec.teams_to_json(projection.config, projection.position, projection.config_tip)
    await asyncio.to_thread(codec.seal, raw, projection.position, None, codec.FORMAT, teams)


async def now(projection: Projection, held: list[float]) -> None:
    t0 = time.perf_counter()
    parts = await codec.parts_in_slices(projection)  # (a node's projector held still meanwhile)
    held.append((time.perf_counter() - t0) * 1000)
    await asyncio.to_thread(codec.encode_parts, parts)


async def measure(keys: int, rounds: int) -> None:
    t = time.perf_counter()
    projection = Projection(Shape(keys, max(1, keys // 100)).config())
    for i in range(0, keys, 10):
        projection.usage.totals[f"key_{i:08x}"] = Totals(3, 120, 40, 9_000)
    projection.position, projection.config_tip = keys, (keys, "0" * 64)
    tune_gc()  # as a node does once loaded
    print(f"{keys:,} keys built in {time.perf_counter() - t:.1f} s", flush=True)
    held: list[float] = []
    for _ in range(rounds):
        held.clear()
        for name, work in (("JSON on the loop (before)", lambda: before(projection)),
                           ("usage in slices, rest in a thread (now)", lambda: now(projection, held))):
            gap, took = await longest_gap(work)
            print(f"  {name:40} loop held at most {gap:8.1f} ms   (the snapshot's encoding took {took:8.1f} ms)",
                  flush=True)
        print(f"  {'':40} the usage's read (events wait meanwhile) took {held[0]:.1f} ms", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", default="100000,1000000")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    for keys in (int(k) for k in args.keys.split(",")):
        asyncio.run(measure(keys, args.rounds))


if __name__ == "__main__":
    main()
