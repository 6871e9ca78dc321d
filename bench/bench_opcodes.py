"""Python bytecode instructions a node executes per request, by function: a count that the other
work on a shared machine does not move (a CPU time does, by 10-30% here), for telling apart trees
whose difference is a few percent of a stream's interpreted work.

    PYTHONPATH=. python bench/bench_opcodes.py [--modes responses-stream,stream,messages-stream]
        [--requests 800] [--agent-turns N] [--top 40] [--tree DIR ...] [--minus json] [--save FILE]

For each tree (this one, then each `--tree`, e.g. `git archive <commit> | tar -x -C DIR`) a node
runs on a fresh database that tree's own CLI migrates and configures (bench/baseline_tree.py, so
a tree from before a migration runs too), in front of the gateway bench's fake upstream, with the
gateway bench's bodies and key (bench_gateway.py). Each mode is warmed up, then the node counts the opcodes its
main thread executes (sys.settrace's opcode events, switched on and off by SIGUSR2) while it
serves `--requests` requests from 4 connections. Background work (the request log's and the usage
flusher's batches, the stored responses' writes) is counted as it falls in that window, so a
count moves by about 1% between runs. Tracing makes the node some 10x slower: the counts are the
figure, not the time. Opcodes are not equal in cost (a frozen dataclass's field costs a C call,
a comparison a few ns): read a difference in count as where work went, and time it in process.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import pickle
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
COUNTS = "SHIELDES_BENCH_OPCODES"  # where the serving node writes its counts (set by the parent)


def serve() -> None:
    """`python -m shieldes serve ...` counting opcodes per function between two SIGUSR2."""
    import runpy
    import types

    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    on = [False]

    def tracer(frame: types.FrameType, event: str, _arg: Any) -> Any:
        frame.f_trace_opcodes = True
        code = frame.f_code
        key = (code.co_filename, code.co_qualname)  # (not the line: it moves between trees)
        if code.co_filename == "<string>":  # a dataclass's generated __init__: named by its class
            owner = type(frame.f_locals.get("self"))
            key = (f"<{owner.__module__}.{owner.__qualname__}>", code.co_name)

        def local(_frame: types.FrameType, event: str, _arg: Any) -> Any:
            if event == "opcode":
                counts[key] += 1
            return local
        return local

    def toggle(_signum: int, _frame: Any) -> None:
        if not on[0]:
            counts.clear()
            on[0] = True
            sys.settrace(tracer)
            return
        sys.settrace(None)
        on[0] = False
        out = Path(os.environ[COUNTS])
        out.with_suffix(".tmp").write_bytes(pickle.dumps(dict(counts)))
        out.with_suffix(".tmp").rename(out)

    signal.signal(signal.SIGUSR2, toggle)
    sys.argv = ["shieldes", *sys.argv[2:]]
    runpy.run_module("shieldes", run_name="__main__", alter_sys=True)


def measure(tree: Path, modes: list[str], requests: int, agent_turns: int) -> dict[str, dict[str, float]]:
    """Opcodes per request by function ("file qualname"), for each mode, of a node of `tree`."""
    import aiohttp

    sys.path.insert(0, str(ROOT / "bench"))
    import baseline_tree
    import bench_gateway as bg

    bodies = {"stream": ({**bg.BODY, "stream": True}, bg.CHAT_PATH), "json": (bg.BODY, bg.CHAT_PATH),
              "messages": (bg.MESSAGES_BODY, bg.MESSAGES_PATH),
              "messages-stream": ({**bg.MESSAGES_BODY, "stream": True}, bg.MESSAGES_PATH),
              "responses-stream": (bg.RESPONSES_BODY, bg.RESPONSES_PATH),
              "responses-unstored": ({**bg.RESPONSES_BODY, "store": False}, bg.RESPONSES_PATH)}
    grow = {bg.CHAT_PATH: bg.agent_chat, bg.MESSAGES_PATH: bg.agent_messages, bg.RESPONSES_PATH: bg.agent_responses}
    up_port, node_port = bg.free_port(), bg.free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    # set up by the tree's own CLI, as the gateway bench's --baseline: an older tree's node refuses a
    # schema this tree migrated
    prepared = baseline_tree.prepare(tree, bg.bench_server(), upstream, bg.KEY_LIMITS,
                                     responses=any(m.startswith("responses") for m in modes))
    db_url, secret = prepared.url, prepared.secret
    out = Path(tempfile.mkdtemp()) / "counts"
    procs = {
        "upstream": bg.spawn(["-m", "tests.fake_upstream", "--port", str(up_port), "--completion-tokens", "20"]),
        "node": bg.spawn([str(Path(__file__).resolve()), "--serve", "serve", "--host", "127.0.0.1", "--port",
                          str(node_port), "--node-id", "bench-opcodes"],
                         env={"SHIELDES_DATABASE_URL": db_url, COUNTS: str(out)}, src=tree),
    }

    async def drive(url: str, data: bytes, headers: dict[str, str], n: int) -> None:
        async with aiohttp.ClientSession() as session:
            async def one(k: int) -> None:
                for _ in range(k):
                    async with session.post(url, data=data, headers=headers) as resp:
                        assert resp.status == 200, (resp.status, await resp.text())
                        await resp.read()
            await asyncio.gather(*(one(n // 4) for _ in range(4)))

    found: dict[str, dict[str, float]] = {}
    try:
        bg.wait_port(up_port)
        bg.wait_port(node_port)
        for mode in modes:
            body, path = bodies[mode]
            if agent_turns:
                body = grow[path](body, agent_turns)
            url = f"http://127.0.0.1:{node_port}{path}"
            data, headers = json.dumps(body).encode(), bg.request_headers(url, secret)
            asyncio.run(drive(url, data, headers, 200))  # warm: pools, caches, prepared statements
            time.sleep(2)  # (the warm-up's batched writes done before counting starts)
            out.unlink(missing_ok=True)
            procs["node"].send_signal(signal.SIGUSR2)
            asyncio.run(drive(url, data, headers, requests))
            procs["node"].send_signal(signal.SIGUSR2)
            while not out.exists():
                time.sleep(0.05)
            counts = pickle.loads(out.read_bytes())
            found[mode] = {f"{f.replace(str(tree) + '/', '')} {name}": n / requests for (f, name), n in counts.items()}
    finally:
        bg.stop_all(procs)
        bg.drop_scratch(db_url)
    return found


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        serve()
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="responses-stream,stream,messages-stream",
                        help="of json, stream, messages, messages-stream, responses-stream, responses-unstored")
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--agent-turns", type=int, default=0, help="bodies carry an agent's conversation "
                        "(bench_gateway.py --agent-turns)")
    parser.add_argument("--top", type=int, default=25, help="functions listed per mode")
    parser.add_argument("--tree", action="append", default=[], type=Path, help="another source tree")
    parser.add_argument("--minus", metavar="MODE", help="also list, for each other mode, the functions by what "
                        "they execute beyond MODE (e.g. `--modes json,stream --minus json`: what a stream "
                        "costs that a JSON request does not)")
    parser.add_argument("--save", type=Path, help="write every count (tree -> mode -> function) to this JSON file")
    args = parser.parse_args()
    modes = args.modes.split(",")
    if args.minus and args.minus not in modes:
        parser.error(f"--minus {args.minus}: name it in --modes too")
    trees = [ROOT, *(t.resolve() for t in args.tree)]
    results = {tree: measure(tree, modes, args.requests, args.agent_turns) for tree in trees}
    if args.save:
        args.save.write_text(json.dumps({str(t): r for t, r in results.items()}, indent=1))
    for mode in modes:
        totals = " | ".join(f"{'this tree' if t == ROOT else t}: {sum(r[mode].values()):,.0f}"
                            for t, r in results.items())
        print(f"\n{mode}: opcodes per request: {totals}")
        mine = results[ROOT][mode]
        for name, n in sorted(mine.items(), key=lambda kv: -kv[1])[:args.top]:
            others = "".join(f" {r[mode].get(name, 0.0):8.1f}" for t, r in results.items() if t != ROOT)
            print(f"  {n:8.1f}{others}  {name}")
    if args.minus:
        for mode in modes:
            if mode != args.minus:
                print_excess(results, mode, args.minus, args.top)


def print_excess(results: dict[Path, dict[str, dict[str, float]]], mode: str, base: str, top: int) -> None:
    """Each function's opcodes per request in `mode` beyond `base` (negative: fewer), largest first."""
    for tree, r in results.items():
        mine, other = r[mode], r[base]
        excess = {name: mine.get(name, 0.0) - other.get(name, 0.0) for name in mine.keys() | other.keys()}
        print(f"\n{mode} beyond {base} ({'this tree' if tree == ROOT else tree}): "
              f"{sum(excess.values()):+,.0f} opcodes per request")
        for name, n in sorted(excess.items(), key=lambda kv: -abs(kv[1]))[:top]:
            if abs(n) >= 0.5:
                print(f"  {n:+8.1f}  {name}")


if __name__ == "__main__":
    main()
