"""How long a serving node's background steps hold its event loop (every request and stream on the
node waits that long): the longest wall-clock gap between two turns of the loop, read by a task
that only yields, while one step runs, before (the step in one go) and now, in one run.

Paths:
- fold: the projector folding one page (PAGE = 5,000) of `virtual_key.created` events on a config
  of --keys keys (a bulk key import, or a node catching up after a pause): before, the page in one
  step (turn_every = infinity); now, the loop turning every TURN_EVERY seconds.
- flush: the projector folding one usage flush of --deltas deltas (a flush after a database outage
  holds every delta of it): before, decoded and folded in one step (DELTAS_PER_PART above its size);
  now, DELTAS_PER_PART at a time with the loop turning between.

The config is built in memory (bench_keys_scale.Shape) and the page comes from the in-memory store,
so no database; wall clock, so a busy machine adds to both columns.

    PYTHONPATH=. python bench/bench_loop_holds.py [--paths fold,flush] [--keys 100000,1000000]
        [--deltas 10000,100000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
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

from shieldes.events.catalog import UsageDelta, UsageRecorded, VirtualKeyCreated  # noqa: E402
from shieldes.events.codec import Codec  # noqa: E402
from shieldes.events.store import RecordedEvent  # noqa: E402
from shieldes.gateway.app import tune_gc  # noqa: E402
from shieldes.projections import projector as projector_module  # noqa: E402
from shieldes.projections.projector import Projection, Projector  # noqa: E402
from shieldes.projections.usage import Totals  # noqa: E402
from shieldes.secrets import hash_key  # noqa: E402


class LoopGaps:
    """`async with LoopGaps() as gaps:` a task that only yields notes the longest gap between two
    turns of the loop while the block runs: `gaps.wall` (what a request waits) and `gaps.cpu` (the
    loop thread's CPU time, `time.thread_time()`: leaves out the other processes of a busy machine),
    in ms; `gaps.gc` is the longest collection of the cyclic GC meanwhile (a part of some gaps)."""

    def __init__(self) -> None:
        self.wall = self.cpu = self.gc = 0.0
        self._gc_start = 0.0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _turns(self) -> None:
        last, last_cpu = time.perf_counter(), time.thread_time()
        while not self._stop.is_set():
            await asyncio.sleep(0)
            now, now_cpu = time.perf_counter(), time.thread_time()
            self.wall = max(self.wall, (now - last) * 1000)
            self.cpu = max(self.cpu, (now_cpu - last_cpu) * 1000)
            last, last_cpu = now, now_cpu

    def _collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gc = max(self.gc, (time.perf_counter() - self._gc_start) * 1000)

    async def __aenter__(self) -> LoopGaps:
        self._task = asyncio.create_task(self._turns())
        await asyncio.sleep(0.01)
        self.wall = self.cpu = self.gc = 0.0
        gc.callbacks.append(self._collection)
        return self

    async def __aexit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._collection)
        self._stop.set()
        assert self._task is not None
        await self._task


async def longest_gap(work: Callable[[], Awaitable[Any]]) -> tuple[float, float, float, float]:
    """(the longest gap between two loop turns in wall clock, the same in CPU time, the longest GC
    collection meanwhile, the work's own wall time), in ms."""
    async with LoopGaps() as gaps:
        t0 = time.perf_counter()
        await work()
        took = time.perf_counter() - t0
    return gaps.wall, gaps.cpu, gaps.gc, took * 1000


def report(name: str, gap: float, cpu: float, collection: float, took: float) -> None:
    print(f"  {name:36} loop held at most {gap:7.1f} ms wall, {cpu:7.1f} ms CPU (longest GC {collection:5.1f} ms)"
          f"   (the step took {took:7.1f} ms)", flush=True)


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


def usage_flush(count: int) -> RecordedEvent:
    deltas = tuple(UsageDelta(f"key_{i:08x}", f"team_{i % 1000:06x}" if i % 2 else None, "openai", "gpt-4o",
                              490_000, 1, 100, 20, 1000) for i in range(count))
    type_, version, data = Codec().encode(UsageRecorded("n2", 1, 1, deltas))
    return RecordedEvent(1, "usage:n2", type_, version, data, {}, datetime.now(UTC))


async def flush(count: int, rounds: int) -> None:
    recorded = usage_flush(count)
    tune_gc()
    print(f"flush: one usage flush of {count:,} deltas folded (10,000 keys already with usage)", flush=True)
    now_part = projector_module.DELTAS_PER_PART
    for _ in range(rounds):
        for name, part in (("in one step (before)", count + 1), (f"{now_part:,} deltas a part (now)", now_part)):
            projector_module.DELTAS_PER_PART = part
            projection = Projection()
            for i in range(0, count, max(1, count // 10_000)):
                projection.usage.totals[f"key_{i:08x}"] = Totals(3, 120, 40, 9_000)
            projector = Projector(None, projection)  # type: ignore[arg-type]
            report(name, *await longest_gap(lambda p=projector: p.apply_appended([recorded])))  # type: ignore[misc]
    projector_module.DELTAS_PER_PART = now_part


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", default="100000,1000000")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--deltas", default="10000,100000")
    ap.add_argument("--paths", default="fold,flush")
    args = ap.parse_args()
    paths = set(args.paths.split(","))
    for keys in (int(k) for k in args.keys.split(",")):
        if "fold" in paths:
            asyncio.run(fold(keys, args.rounds))
    for count in (int(d) for d in args.deltas.split(",")):
        if "flush" in paths:
            asyncio.run(flush(count, args.rounds))


if __name__ == "__main__":
    main()
