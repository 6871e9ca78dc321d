"""How long a serving node's background steps hold its event loop (every request and stream on the
node waits that long): the longest wall-clock gap between two turns of the loop, read by a task
that only yields, while one step runs, before (the step in one go) and now, in one run.

Paths:
- fold: the projector folding one page (PAGE = 5,000) of `virtual_key.created` events on a config
  of --keys keys (a bulk key import, or a node catching up after a pause): before, the page in one
  step (turn_every = infinity); now, the loop turning every TURN_EVERY seconds.

The config is built in memory (bench_keys_scale.Shape) and the page comes from the in-memory store,
so no database; wall clock, so a busy machine adds to both columns.

    PYTHONPATH=. python bench/bench_loop_holds.py [--keys 100000,1000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_keys_scale import Shape  # noqa: E402

from shieldes.events.catalog import VirtualKeyCreated  # noqa: E402
from shieldes.events.codec import Codec  # noqa: E402
from shieldes.events.store import RecordedEvent  # noqa: E402
from shieldes.gateway.app import tune_gc  # noqa: E402
from shieldes.projections import projector as projector_module  # noqa: E402
from shieldes.projections.projector import Projection, Projector  # noqa: E402
from shieldes.secrets import hash_key  # noqa: E402


async def longest_gap(work: Callable[[], Awaitable[Any]]) -> tuple[float, float, float]:
    """(the longest gap between two loop turns in wall clock, the same in the loop thread's CPU
    time, the work's own wall time), in ms. CPU time leaves out the other processes of a busy
    machine; the wall clock is what a request waits."""
    stop, longest, cpu = asyncio.Event(), [0.0], [0.0]

    async def turns() -> None:
        last, last_cpu = time.perf_counter(), time.thread_time()
        while not stop.is_set():
            await asyncio.sleep(0)
            now, now_cpu = time.perf_counter(), time.thread_time()
            longest[0], cpu[0] = max(longest[0], now - last), max(cpu[0], now_cpu - last_cpu)
            last, last_cpu = now, now_cpu

    ticking = asyncio.create_task(turns())
    await asyncio.sleep(0.01)
    longest[0] = cpu[0] = 0.0
    t0 = time.perf_counter()
    await work()
    took = time.perf_counter() - t0
    stop.set()
    await ticking
    return longest[0] * 1000, cpu[0] * 1000, took * 1000


def report(name: str, gap: float, cpu: float, took: float) -> None:
    print(f"  {name:44} loop held at most {gap:7.1f} ms wall, {cpu:7.1f} ms CPU   (the step took {took:7.1f} ms)",
          flush=True)


def key_page(first: int, count: int) -> list[RecordedEvent]:
    codec, now = Codec(), datetime.now(UTC)
    out = []
    for pos in range(first, first + count):
        kid = f"key_new_{pos:08x}"
        _, version, data = codec.encode(VirtualKeyCreated(kid, f"new-{pos}", hash_key(f"sk-new-{pos}"),
                                                          "sk-shd-abcd", None))
        out.append(RecordedEvent(pos, "config", VirtualKeyCreated.TYPE, version, data, {}, now))
    return out


async def fold(keys: int, rounds: int) -> None:
    t = time.perf_counter()
    config = Shape(keys, max(1, keys // 100)).config()
    tune_gc()  # as a node does once loaded
    print(f"fold: {keys:,} keys built in {time.perf_counter() - t:.1f} s; a page of "
          f"{projector_module.PAGE:,} key creations folded", flush=True)
    for _ in range(rounds):
        for name, every in (("page in one step (before)", math.inf),
                            (f"loop turning every {projector_module.TURN_EVERY * 1000:g} ms (now)",
                             projector_module.TURN_EVERY)):
            projection = Projection(config, position=keys)
            projector = Projector(None, projection, turn_every=every)  # type: ignore[arg-type]
            page = key_page(keys + 1, projector_module.PAGE)
            report(name, *await longest_gap(lambda p=projector, e=page: p.apply_appended(e)))  # type: ignore[misc]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", default="100000,1000000")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--paths", default="fold")
    args = ap.parse_args()
    paths = set(args.paths.split(","))
    for keys in (int(k) for k in args.keys.split(",")):
        if "fold" in paths:
            asyncio.run(fold(keys, args.rounds))


if __name__ == "__main__":
    main()
