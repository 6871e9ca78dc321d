"""Soak benchmark: sustained load on three real nodes for --minutes, sampling every --every seconds
per node: RSS (MiB), open file descriptors, asyncio tasks (/admin/status), unflushed usage deltas;
and the database connections of the whole cluster (pg_stat_activity). Prints the samples and a
summary (first vs last vs max): the figures must stay flat. Ends with a SIGTERM of every node and
checks the log's usage equals what was served.

Run: PYTHONPATH=. python bench/bench_soak.py [--minutes 3] [--every 15] [--keys 200] [--concurrency 3]
Uses its own embedded Postgres under a temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fault_kit import (
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    Load,
    PrivatePostgres,
    admin_get,
    db_connections,
    logged_usage,
    proc_stats,
    setup,
    start_cluster,
    table,
)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--every", type=float, default=15.0)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=3)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="shieldes-bench-soak-"))
    pgs = PrivatePostgres(tmp)
    c = start_cluster(pgs.url, tmp, 3)
    try:
        keys = await setup(pgs.url, c.upstream_url, args.keys)
        for i in range(3):
            c.start(c.add_node(f"soak{i + 1}"))
        for node in c.nodes:
            c.wait_ready(node, 60)
        bases = {n.node_id: n.base for n in c.nodes}
        load = Load(bases, keys, args.concurrency)
        await load.start()
        started = time.monotonic()
        samples: list[tuple[float, int, dict[str, tuple[float, int, int, int]], int]] = []
        print(f"{'t (s)':>6} {'requests':>9} {'db conns':>8}  per node: rss MiB / fds / tasks / unflushed")
        async with aiohttp.ClientSession() as s:
            while True:
                per: dict[str, tuple[float, int, int, int]] = {}
                for node in c.nodes:
                    assert node.proc is not None
                    rss, fds = proc_stats(node.proc.pid)
                    st = await admin_get(s, node.base, "/admin/status") or {}
                    per[node.node_id] = (rss, fds, int(st.get("asyncio_tasks", -1)),
                                         int(st.get("unflushed_usage_deltas", -1)))
                conns = await asyncio.to_thread(db_connections, pgs.url)
                t = time.monotonic() - started
                samples.append((t, load.total_ok(), per, conns))
                cells = "  ".join(f"{n}: {v[0]:.1f}/{v[1]}/{v[2]}/{v[3]}" for n, v in per.items())
                print(f"{t:6.0f} {load.total_ok():9d} {conns:8d}  {cells}", flush=True)
                if t >= args.minutes * 60:
                    break
                await asyncio.sleep(args.every)
        elapsed = time.monotonic() - started
        await load.stop()
        for node in c.nodes:
            c.kill(node, signal.SIGTERM)
        total = load.total_ok()
        logged = logged_usage(pgs.url)
        lat = sorted(load.latencies)
        rows = [
            ("duration (s)", f"{elapsed:.0f}"),
            ("requests served / failed", f"{total} / {load.total_failed()}"),
            ("throughput (req/s)", f"{total / elapsed:.0f}"),
            ("latency p50 / p99 (ms)", f"{lat[len(lat) // 2] * 1000:.1f} / {lat[int(len(lat) * 0.99)] * 1000:.1f}"),
        ]
        warm = samples[1] if len(samples) > 2 else samples[0]  # after the first interval: caches are warm
        for i, what in enumerate(("RSS MiB", "open fds", "asyncio tasks", "unflushed deltas")):
            for node in c.nodes:
                values = [smp[2][node.node_id][i] for smp in samples]
                rows.append((f"{node.node_id} {what}: warm / last / max",
                             f"{warm[2][node.node_id][i]:.1f} / {values[-1]:.1f} / {max(values):.1f}"))
        conns = [smp[3] for smp in samples]
        rows.append(("db connections: warm / last / max", f"{warm[3]} / {conns[-1]} / {max(conns)}"))
        rows.append(("log usage == served usage",
                     logged == (total, total * PROMPT_TOKENS, total * COMPLETION_TOKENS)))
        table(f"Soak: 3 nodes, {args.keys} keys, {args.concurrency} clients per node", rows)
    finally:
        c.stop_all()
        pgs.server.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
