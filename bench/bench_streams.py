"""Many long streams held open at once, as a fleet of coding agents keeps them: what each open
stream costs a node (memory, open files, CPU while it trickles) and whether other requests still
get through quickly, beside the bare aiohttp pass-through proxy under the same load.

Each target gets `--streams` concurrent chat streams from the fake upstream, every frame
`--chunk-delay` seconds apart (20 frames: a stream lasts about 20 x that), and, before and while
they are open, sequential small JSON requests (the probe) for their latency. Figures per target:
how long until every stream had its first byte, resident memory and open files added per open
stream (read from /proc at the peak against before), CPU per second while they trickle (and per
frame relayed; nothing else is sent meanwhile), the probe's p50/p99 idle and under the held
streams, failed streams.

Run: PYTHONPATH=. python bench/bench_streams.py [--streams 1000] [--chunk-delay 1.0] [--only node]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_gateway as bg

FRAMES = 20


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


async def probe(session: aiohttp.ClientSession, url: str, headers: dict[str, str], until: float) -> list[float]:
    """Sequential small JSON requests until `until`; their latencies in ms."""
    out: list[float] = []
    while time.monotonic() < until:
        t0 = time.perf_counter()
        async with session.post(url, json=bg.BODY, headers=headers) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"probe answered {r.status}")
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def measure(url: str, key: str | None, pid: int, streams: int, chunk_delay: float) -> dict[str, Any]:
    headers = bg.request_headers(url, key)
    conn = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=FRAMES * chunk_delay * 4 + 60)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
        idle = await probe(session, url, headers, time.monotonic() + 5)
        rss0, files0 = rss_kib(pid), open_files(pid)
        first: list[float] = []
        failed = 0
        started = time.monotonic()
        all_open = asyncio.Event()

        async def one() -> None:
            nonlocal failed
            try:
                async with session.post(url, json={**bg.BODY, "stream": True}, headers=headers) as r:
                    seen = False
                    async for _chunk in r.content.iter_any():
                        if not seen:
                            seen = True
                            first.append(time.monotonic() - started)
                            if len(first) == streams:
                                all_open.set()
                    if r.status != 200 or not seen:
                        failed += 1
            except (TimeoutError, aiohttp.ClientError):
                failed += 1
            if len(first) + failed >= streams:
                all_open.set()

        tasks = [asyncio.create_task(one()) for _ in range(streams)]
        await all_open.wait()
        opened_in = time.monotonic() - started
        rss1, files1 = rss_kib(pid), open_files(pid)
        # the time left while every stream trickles: half for the CPU (nothing else sent), half probed
        window = max(2.0, FRAMES * chunk_delay - opened_in - 2 * chunk_delay) / 2
        cpu0, t0 = bg.cpu_seconds(pid), time.monotonic()
        await asyncio.sleep(window)
        cpu_per_s = (bg.cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        held = await probe(session, url, headers, time.monotonic() + window)
        await asyncio.gather(*tasks)
    return {"opened_in": opened_in, "rss_per_stream": (rss1 - rss0) / streams, "files": files1 - files0,
            "cpu_ms_per_s": cpu_per_s * 1000, "idle": idle, "held": held, "failed": failed,
            "frames_per_s": streams / chunk_delay}


def report(label: str, streams: int, m: dict[str, Any]) -> str:
    return (f"| {label} | {streams} | {m['opened_in']:.2f} | {m['rss_per_stream']:.1f} | {m['files']} | "
            f"{m['cpu_ms_per_s']:.0f} ({m['cpu_ms_per_s'] / m['frames_per_s'] * 1000:.0f} us/frame) | "
            f"{statistics.median(m['idle']):.2f} / {percentile(m['idle'], 0.99):.2f} | "
            f"{statistics.median(m['held']):.2f} / {percentile(m['held'], 0.99):.2f} | {m['failed']} |")


async def run(args: argparse.Namespace) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * args.streams + 256:  # this process holds a socket per stream, the targets two
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * args.streams + 1024), hard))
    up_port, node_port, proxy_port = bg.free_port(), bg.free_port(), bg.free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    db_url, secret = await bg.prepare_database()
    await bg.add_provider(db_url, upstream)
    procs = {"upstream": bg.spawn(["-m", "tests.fake_upstream", "--port", str(up_port), "--completion-tokens",
                                   str(FRAMES - 2), "--chunk-delay", str(args.chunk_delay)])}
    try:
        if args.only in (None, "proxy"):
            procs["proxy"] = bg.spawn([str(Path(bg.__file__)), "proxy", "--port", str(proxy_port),
                                       "--upstream", upstream])
        if args.only in (None, "node"):
            procs["node"] = bg.spawn(["-m", "shieldes", "serve", "--host", "127.0.0.1", "--port", str(node_port),
                                      "--node-id", "bench-streams"], env={"SHIELDES_DATABASE_URL": db_url})
        bg.wait_port(up_port)
        rows = []
        for label, name, port, key in (("bare aiohttp pass-through proxy", "proxy", proxy_port, None),
                                       ("shieldes node", "node", node_port, secret)):
            if name not in procs:
                continue
            bg.wait_port(port)
            url = f"http://127.0.0.1:{port}{bg.CHAT_PATH}"
            m = await measure(url, key, procs[name].pid, args.streams, args.chunk_delay)
            rows.append(report(label, args.streams, m))
            print(rows[-1], flush=True)
        print(f"\n{args.streams} streams of {FRAMES} frames, {args.chunk_delay:g} s apart; load average "
              f"{os.getloadavg()[0]:.2f}")
        print("| target | streams | all open after (s) | RSS per open stream (KiB) | open files added | "
              "CPU ms/s while held | probe p50 / p99 idle (ms) | probe p50 / p99 held (ms) | failed |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        print("\n".join(rows))
    finally:
        for p in procs.values():
            p.terminate()
            p.wait()
        bg.drop_scratch(db_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--chunk-delay", type=float, default=1.0, help="seconds between a stream's frames")
    parser.add_argument("--only", choices=("node", "proxy"), help="measure one target only")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
