"""Memory and garbage-collector cost of a node's cache of stored responses (`ResponseStore`, up to
SHIELDES_RESPONSES_CACHE_BYTES of JSON), and the CPU of reading a continuation's history from it.

    python bench/bench_stored_cache.py [--responses 30000] [--tree DIR ...]

Fills one store with answers the size of the gateway bench's Responses stream (a short input, a
20-word answer with every response field), as the writer would leave it (written, still cached),
and prints: RSS per cached response against its JSON bytes, objects the cyclic collector tracks, a
full `gc.collect()` (what every full collection on the node pays while the cache is full), and the
CPU of `history()` over a 20-turn previous_response_id chain. Each `--tree` (`git archive <commit> |
tar -x -C DIR`) runs the same in its own process, for a before/after in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def answer(i: int, previous: str | None) -> dict[str, Any]:
    rid = f"resp_{i:032x}"
    return {"id": rid, "object": "response", "created_at": int(time.time()), "status": "completed",
            "background": False, "error": None, "incomplete_details": None, "instructions": None,
            "max_output_tokens": None, "model": "gpt-4o", "parallel_tool_calls": True,
            "previous_response_id": previous, "reasoning": {"effort": None, "summary": None}, "store": True,
            "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [],
            "top_p": 1.0, "truncation": "disabled", "user": None, "metadata": {},
            "output": [{"id": f"msg_{i:032x}", "type": "message", "status": "completed", "role": "assistant",
                        "content": [{"type": "output_text", "text": "word " * 20, "annotations": [],
                                     "logprobs": []}]}],
            "usage": {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 20,
                      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 29}}


def measure(n: int) -> dict[str, float]:
    import psutil

    from shieldes.dbwait import DbWait
    from shieldes.responses.service import ResponseStore
    from shieldes.responses.store import ResponseTable, StoredResponse
    from shieldes.settings import Settings

    settings = Settings(database_url="postgresql://unused", responses_cache_bytes=1 << 40)
    store = ResponseStore(ResponseTable(None), settings, DbWait(1.0))  # type: ignore[arg-type]  # no I/O
    gc.collect()
    baseline_objects = len(gc.get_objects())
    rss0 = psutil.Process().memory_info().rss
    previous: str | None = None
    json_bytes = 0
    for i in range(n):
        body = answer(i, previous if i % 20 else None)  # chains of 20 turns
        stored = StoredResponse(body["id"], time.time(), "key_1", body["previous_response_id"], "gpt-4o",
                                [{"type": "message", "role": "user", "content": f"turn {i}: say hello"}], body)
        store.save(stored)
        store._pending.clear()  # written: as the writer leaves it
        json_bytes += len(json.dumps(stored.input, separators=(",", ":"))) + len(
            json.dumps(stored.response, separators=(",", ":")))
        previous = body["id"]
    gc.collect()
    rss = psutil.Process().memory_info().rss - rss0
    tracked = len(gc.get_objects()) - baseline_objects
    t = time.perf_counter()
    gc.collect()
    full_gc = time.perf_counter() - t
    last = f"resp_{(n // 20) * 20 - 1:032x}"  # the end of the last complete chain

    async def reads(k: int) -> float:
        c = time.process_time()
        for _ in range(k):
            items = await store.history(last, "key_1")
        assert len(items) == 40, len(items)
        return (time.process_time() - c) / k

    history = asyncio.run(reads(2000))
    return {"responses": n, "json_bytes": json_bytes, "rss": rss, "tracked": tracked, "full_gc": full_gc,
            "history": history}


def report(label: str, r: dict[str, float]) -> str:
    n = r["responses"]
    return (f"| {label} | {r['json_bytes'] / n:.0f} | {r['rss'] / n:.0f} ({r['rss'] / r['json_bytes']:.2f}x) | "
            f"{r['tracked'] / n:.1f} | {r['full_gc'] * 1e3:.1f} | {r['history'] * 1e6:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--responses", type=int, default=30_000)
    parser.add_argument("--tree", action="append", default=[], help="another source tree, measured the same way")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.responses)))
        return
    print(f"{args.responses} stored responses in one node's cache (chains of 20 turns)\n")
    print("| tree | JSON bytes per response | RSS per response | objects tracked by gc per response "
          "| full gc.collect() ms | history() of 20 turns, us CPU |")
    print("|---|---:|---:|---:|---:|---:|")
    for tree in [str(ROOT), *args.tree]:
        out = subprocess.run([sys.executable, __file__, "--child", "--responses", str(args.responses)],
                             env={**os.environ, "PYTHONPATH": tree}, cwd=tree, check=True,
                             capture_output=True, text=True).stdout
        print(report("this tree" if tree == str(ROOT) else tree, json.loads(out)), flush=True)


if __name__ == "__main__":
    main()
