"""Memory and garbage-collector cost of a node's cache of stored responses (`ResponseStore`, up to
SHIELDES_RESPONSES_CACHE_BYTES of JSON), and the CPU of reading a continuation's history from it.

    python bench/bench_stored_cache.py [--responses 30000] [--tree DIR ...]
    python bench/bench_stored_cache.py --turns 60 [--item-bytes 1000] [--rounds 5] [--tree DIR ...]

Fills one store with answers the size of the gateway bench's Responses stream (a short input, a
20-word answer with every response field), as the writer would leave it (written, still cached),
and prints: RSS per cached response against its JSON bytes, objects the cyclic collector tracks, a
full `gc.collect()` (what every full collection on the node pays while the cache is full), and the
CPU of `history()` over a 20-turn previous_response_id chain. Each `--tree` (`git archive <commit> |
tar -x -C DIR`) runs the same in its own process, for a before/after in one run.

`--turns N`: what the stored responses cost an agent's continued turn over HTTP instead: the
conversation before it as the Responses handler gets it (`history_of`: the `History` of
previous_response_id) and the turn's response stored (`Turn.finish`), for agent conversations of N
turns, each turn a tool output of `--item-bytes` as input and a tool call as output. Prints the CPU
of the last turn (a continuation of the N-1th response, repeated) and the mean over whole
conversations, best of `--rounds`, then the RSS and the objects the cyclic collector tracks after
400 conversations (the cache's JSON and, since the node remembers conversations, their items).
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
            got = await store.history(last, "key_1")
        items = getattr(got, "items", got)  # (a History since the node remembers conversations)
        assert len(items) == 40, len(items)
        return (time.process_time() - c) / k

    history = asyncio.run(reads(2000))
    return {"responses": n, "json_bytes": json_bytes, "rss": rss, "tracked": tracked, "full_gc": full_gc,
            "history": history}


def agent_turn(i: int, rid: str, previous: str | None, item_bytes: int) -> tuple[list[Any], dict[str, Any]]:
    """An agent turn's input (the output of the tool it called) and its response (the next call)."""
    given = [{"type": "function_call_output", "call_id": f"call_{i}", "output": f"line {i}: " + "x" * item_bytes}]
    call = {"id": f"fc_{i:030x}", "type": "function_call", "status": "completed", "call_id": f"call_{i + 1}",
            "name": "shell", "arguments": '{"command":["rg","-n","stored","shieldes"]}'}
    return given, {**answer(i, previous), "id": rid, "output": [call]}


def measure_turns(turns: int, item_bytes: int, rounds: int) -> dict[str, float]:
    from shieldes.dbwait import DbWait
    from shieldes.responses.history import History
    from shieldes.responses.service import ResponseStore
    from shieldes.responses.store import ResponseTable, StoredResponse
    from shieldes.settings import Settings

    settings = Settings(database_url="postgresql://unused", responses_cache_bytes=1 << 40)
    remembers = "before" in ResponseStore.save.__code__.co_varnames  # (the tree before: save(stored))
    store = ResponseStore(ResponseTable(None), settings, DbWait(1.0))  # type: ignore[arg-type]  # no I/O
    made = 0

    async def turn(previous: str | None) -> str:
        """One turn as the handler runs it, but for the upstream call: its history, its response stored."""
        nonlocal made
        made += 1
        rid = f"resp_{made:032x}"
        history = History.of([])
        if previous is not None:
            got: Any = await store.history(previous, "key_1")
            history = got if isinstance(got, History) else History.of(got)
        given, body = agent_turn(made, rid, previous, item_bytes)
        stored = StoredResponse(rid, time.time(), "key_1", previous, "gpt-4o", given, body)
        if remembers:
            store.save(stored, history)  # type: ignore[call-arg]
        else:
            store.save(stored)
        store._pending.clear()  # written: as the writer leaves it
        return rid

    async def conversation() -> str:
        previous: str | None = None
        for _ in range(turns - 1):
            previous = await turn(previous)
        assert previous is not None
        return previous

    async def run() -> tuple[float, float]:
        c = time.process_time()
        for _ in range(20):
            await turn(await conversation())
        whole = (time.process_time() - c) / (20 * turns)
        before_last = await conversation()
        got: Any = await store.history(before_last, "key_1")
        assert len(got.items if isinstance(got, History) else got) == 2 * (turns - 1)
        c = time.process_time()
        for _ in range(500):
            await turn(before_last)
        return (time.process_time() - c) / 500, whole

    best = [min(pair) for pair in zip(*(asyncio.run(run()) for _ in range(rounds)), strict=True)]

    async def fill(conversations: int) -> None:
        for _ in range(conversations):
            await turn(await conversation())

    # a node after many conversations: what the memory of them costs the collector and the RSS
    import psutil

    store = ResponseStore(ResponseTable(None), settings, DbWait(1.0))  # type: ignore[arg-type]  # no I/O
    gc.collect()
    objects, rss = len(gc.get_objects()), psutil.Process().memory_info().rss
    asyncio.run(fill(400))
    gc.collect()
    tracked, grown = len(gc.get_objects()) - objects, psutil.Process().memory_info().rss - rss
    return {"turns": turns, "item_bytes": item_bytes, "last": best[0], "mean": best[1], "tracked": tracked,
            "rss": grown, "remembered": getattr(store, "histories_weight", 0)}


def report(label: str, r: dict[str, float]) -> str:
    n = r["responses"]
    return (f"| {label} | {r['json_bytes'] / n:.0f} | {r['rss'] / n:.0f} ({r['rss'] / r['json_bytes']:.2f}x) | "
            f"{r['tracked'] / n:.1f} | {r['full_gc'] * 1e3:.1f} | {r['history'] * 1e6:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--responses", type=int, default=30_000)
    parser.add_argument("--tree", action="append", default=[], help="another source tree, measured the same way")
    parser.add_argument("--turns", type=int, default=0, help="measure agent conversations of this many turns")
    parser.add_argument("--item-bytes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_turns(args.turns, args.item_bytes, args.rounds) if args.turns
                         else measure(args.responses)))
        return
    if args.turns:
        print(f"agent conversations of {args.turns} turns, {args.item_bytes}-byte tool outputs, best of "
              f"{args.rounds} rounds: CPU of the stored responses' part of a continued turn\n")
        n = args.turns
        print(f"| tree | turn {n} (continues the {n - 1}th response), us | mean over turns 1-{n}, us "
              f"| after 400 conversations: RSS MB, objects tracked by gc, conversations remembered (MB of JSON) |")
        print("|---|---:|---:|---:|")
        for tree in [str(ROOT), *args.tree]:
            out = subprocess.run([sys.executable, __file__, "--child", "--turns", str(args.turns), "--item-bytes",
                                  str(args.item_bytes), "--rounds", str(args.rounds)],
                                 env={**os.environ, "PYTHONPATH": tree}, cwd=tree, check=True,
                                 capture_output=True, text=True).stdout
            r = json.loads(out)
            print(f"| {'this tree' if tree == str(ROOT) else tree} | {r['last'] * 1e6:.1f} | {r['mean'] * 1e6:.1f} "
                  f"| {r['rss'] / 1e6:.0f}, {r['tracked']:.0f}, {r['remembered'] / 1e6:.1f} |", flush=True)
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
