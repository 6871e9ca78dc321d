"""A Responses turn over the WebSocket mode against the same turn as a streamed POST: the node's
CPU per turn (from /proc) and the latency, same node, same fake upstream, rounds alternated.

Each client sends its turns back to back: over one WebSocket (`response.create`, events back as
text messages) or over one keep-alive HTTP connection (`POST /v1/responses`, `stream: true`, SSE).
`--continue` makes every turn after a client's first continue the previous one by
previous_response_id with `store: false` (only the new item sent): the WebSocket answers it from
the connection's memory; HTTP cannot (an unstored response), so its turns send the whole history,
as agents over HTTP do.

    PYTHONPATH=$PWD python bench/bench_responses_socket.py [--turns 400] [--clients 2] [--rounds 3]
        [--continue] [--tokens 20] [--item-bytes 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gateway as bg

MODEL = "gpt-4o"


def _said(i: int, pad: int) -> str:
    """A turn's user message: `pad` bytes of text beside the ask stand for a tool's output (a file
    read, a command's output), which makes an agent's history tens of kB."""
    return f"turn {i}: say hello" + (" " + "def handler(request): return respond(request) " * (pad // 48))[:pad]


async def _socket_client(url: str, key: str, turns: int, follow: bool, pad: int) -> list[float]:
    latencies = []
    previous: str | None = None
    async with aiohttp.ClientSession() as s, s.ws_connect(url.replace("http://", "ws://") + "/v1/responses",
                                                          headers={"Authorization": f"Bearer {key}"}) as ws:
        for i in range(turns):
            create: dict[str, Any] = {"type": "response.create", "model": MODEL, "store": False,
                                      "input": [{"role": "user", "content": _said(i, pad)}]}
            if follow and previous is not None:
                create["previous_response_id"] = previous
            t0 = time.perf_counter()
            await ws.send_str(json.dumps(create))
            while True:
                event = json.loads(await ws.receive_str())
                if event["type"] == "response.completed":
                    previous = event["response"]["id"]
                    break
                if event["type"] == "error":
                    raise SystemExit(f"error event: {event}")
            latencies.append(time.perf_counter() - t0)
    return latencies


async def _http_client(url: str, key: str, turns: int, follow: bool, pad: int) -> list[float]:
    latencies = []
    history: list[Any] = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as s:
        for i in range(turns):
            item = {"role": "user", "content": _said(i, pad)}
            body = {"model": MODEL, "store": False, "stream": True, "input": [*history, item]}
            t0 = time.perf_counter()
            async with s.post(url + "/v1/responses", json=body) as r:
                if r.status != 200:
                    raise SystemExit(f"HTTP {r.status}: {await r.text()}")
                final = None
                async for line in r.content:
                    if line.startswith(b"data: ") and b'"response.completed"' in line:
                        final = json.loads(line[6:])["response"]
            latencies.append(time.perf_counter() - t0)
            if follow and final is not None:
                history += [item, *final["output"]]
    return latencies


async def _round(mode: str, url: str, key: str, pid: int, turns: int, clients: int,
                 follow: bool, pad: int) -> tuple[float, float]:
    client = _socket_client if mode == "socket" else _http_client
    cpu0 = bg.cpu_seconds(pid)
    results = await asyncio.gather(*(client(url, key, turns, follow, pad) for _ in range(clients)))
    cpu = bg.cpu_seconds(pid) - cpu0
    latencies = [x for r in results for x in r]
    return cpu / len(latencies) * 1e6, statistics.median(latencies) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=400, help="turns per client per round")
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=20, help="tokens the fake upstream streams per answer")
    parser.add_argument("--continue", dest="follow", action="store_true",
                        help="each turn continues the client's previous one (see above)")
    parser.add_argument("--item-bytes", type=int, default=0,
                        help="text added to each turn's user message, as a tool's output adds (with --continue "
                        "and --turns 60, 1000 makes the history about 70 kB by the last turn, an agent's)")
    args = parser.parse_args()
    up_port, node_port = bg.free_port(), bg.free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    db_url, key = asyncio.run(bg.prepare_database())
    asyncio.run(bg.add_provider(db_url, upstream))
    procs = {
        "upstream": bg.spawn(["-m", "tests.fake_upstream", "--port", str(up_port),
                              "--completion-tokens", str(args.tokens)]),
        "node": bg.spawn(["-m", "shieldes", "serve", "--host", "127.0.0.1", "--port", str(node_port),
                          "--node-id", "bench-socket"], env={"SHIELDES_DATABASE_URL": db_url}),
    }
    try:
        bg.wait_port(up_port)
        bg.wait_port(node_port)
        url = f"http://127.0.0.1:{node_port}"
        asyncio.run(_round("socket", url, key, procs["node"].pid, 20, 1, args.follow, args.item_bytes))  # warm up
        asyncio.run(_round("http", url, key, procs["node"].pid, 20, 1, args.follow, args.item_bytes))
        seen: dict[str, list[tuple[float, float]]] = {"socket": [], "http": []}
        for r in range(args.rounds):
            for mode in ("socket", "http") if r % 2 == 0 else ("http", "socket"):
                seen[mode].append(asyncio.run(_round(mode, url, key, procs["node"].pid, args.turns, args.clients,
                                                     args.follow, args.item_bytes)))
        print(f"{args.clients} clients x {args.turns} turns x {args.rounds} rounds, {args.tokens} tokens per answer"
              f"{', each turn continuing the previous' if args.follow else ''}"
              f"{f', {args.item_bytes} bytes more per user message' if args.item_bytes else ''}")
        print(f"{'transport':<10} {'node CPU per turn (us)':>24} {'p50 latency (ms)':>18}   rounds")
        for mode, label in (("socket", "WebSocket"), ("http", "HTTP SSE")):
            cpu = statistics.median(c for c, _ in seen[mode])
            p50 = statistics.median(p for _, p in seen[mode])
            rounds = ", ".join(f"{c:.0f}" for c, _ in seen[mode])
            print(f"{label:<10} {cpu:>24.0f} {p50:>18.2f}   {rounds}")
        ratio = statistics.median(c for c, _ in seen["socket"]) / statistics.median(c for c, _ in seen["http"])
        print(f"WebSocket / HTTP CPU per turn: {ratio:.2f}x")
    finally:
        bg.stop_all(procs)
        bg.drop_scratch(db_url)


if __name__ == "__main__":
    main()
