"""Fault benchmark: three real nodes under load on a private embedded Postgres.

1. Postgres outage: the database is stopped (pg_ctl stop -m fast) for --outage seconds under load and
   started again. Prints requests served and failed during the outage, /health and /ready as seen
   during it, the peak of usage held in memory (deltas and requests, from /admin/status and
   /admin/usage), the time from the restart until the log holds all usage served before it, and
   whether the log's usage equals what the upstream served (every 200 is one upstream answer).
2. Node crash: SIGKILL one of the three under load, wait until the leader has appended what it had
   gossiped (3 node timeouts of silence), then SIGTERM the two others. Prints, per node, requests
   served vs requests in the log: the SIGKILLed node loses at most what it served after its last
   gossip message (one gossip interval); the SIGTERMed ones lose nothing.

Run: PYTHONPATH=. python bench/bench_faults.py [--outage 30] [--keys 50] [--concurrency 4] [--crash-only]
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
    logged_usage,
    proc_stats,
    setup,
    start_cluster,
    status_code,
    table,
)
from tests.cluster.harness import Cluster


async def outage(c: Cluster, pgs: PrivatePostgres, keys: list[str], seconds: float, concurrency: int) -> None:
    bases = {n.node_id: n.base for n in c.nodes}
    load = Load(bases, keys, concurrency)
    await load.start()
    await asyncio.sleep(5)
    fds_before = [proc_stats(n.proc.pid)[1] for n in c.nodes if n.proc is not None]
    ok0, failed0 = load.total_ok(), load.total_failed()
    stopped_at = time.monotonic()
    await asyncio.to_thread(pgs.stop)
    peak_deltas = peak_requests = 0
    degraded_after: float | None = None
    health: set[int] = set()
    ready: set[int] = set()
    async with aiohttp.ClientSession() as s:
        while time.monotonic() - stopped_at < seconds:
            for base in bases.values():
                health.add(await status_code(s, base + "/health"))
                code = await status_code(s, base + "/ready")
                ready.add(code)
                if code == 503 and degraded_after is None:
                    degraded_after = time.monotonic() - stopped_at
                st = await admin_get(s, base, "/admin/status")
                usage = await admin_get(s, base, "/admin/usage")
                if st:
                    peak_deltas = max(peak_deltas, st["unflushed_usage_deltas"])
                if usage:
                    peak_requests = max(peak_requests, sum(r["unflushed_requests"] for r in usage["data"]))
            await asyncio.sleep(0.5)
        served_down, failed_down = load.total_ok() - ok0, load.total_failed() - failed0
        await asyncio.to_thread(pgs.start)
        restarted_at = time.monotonic()
        owed = load.total_ok()
        drained = None
        while time.monotonic() - restarted_at < 120:
            try:
                if (await asyncio.to_thread(logged_usage, c.database_url))[0] >= owed:
                    drained = time.monotonic() - restarted_at
                    break
            except Exception:
                pass  # the server is still starting
            await asyncio.sleep(0.1)
        ready_after: set[int] = set()
        await asyncio.sleep(3)
        fds_after = [proc_stats(n.proc.pid)[1] for n in c.nodes if n.proc is not None]
        for base in bases.values():
            ready_after.add(await status_code(s, base + "/ready"))
    await load.stop()
    for node in c.nodes:
        c.kill(node, signal.SIGTERM)
    total = load.total_ok()
    logged = logged_usage(c.database_url)
    expected = (total, total * PROMPT_TOKENS, total * COMPLETION_TOKENS)
    table(f"Postgres outage: {seconds:.0f} s, 3 nodes, {len(keys)} keys, {concurrency} clients per node", [
        ("requests served during the outage", served_down),
        ("requests failed during the outage", failed_down),
        ("requests failed in the whole run", load.total_failed()),
        ("/health statuses during the outage", sorted(health)),
        ("/ready statuses during the outage", sorted(ready)),
        ("first /ready 503 after the stop (s)", f"{degraded_after:.1f}" if degraded_after is not None else "never"),
        ("/ready statuses 3 s after drain", sorted(ready_after)),
        ("open fds per node before / 3 s after", f"{fds_before} / {fds_after}"),
        ("peak unflushed usage deltas (one node)", peak_deltas),
        ("peak unflushed requests (one node)", peak_requests),
        ("time to drain after restart (s)", f"{drained:.2f}" if drained is not None else "not drained"),
        ("served in total (= upstream answers)", total),
        ("log: requests, prompt, completion", logged),
        ("log usage == served usage", logged == expected),
    ])


async def crash(c: Cluster, keys: list[str], concurrency: int, flush_interval: float) -> None:
    bases = {n.node_id: n.base for n in c.nodes}
    victim = c.nodes[2]
    load = Load(bases, keys, concurrency, record_times=True)
    await load.start()
    await asyncio.sleep(4)
    assert victim.proc is not None
    victim.proc.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    await asyncio.sleep(4)
    await load.stop()
    env = c.env(victim)
    # the survivors forget the silent victim after 3 node timeouts; the leader appends its orphan
    # usage at its next maintenance tick
    await asyncio.sleep(3 * float(env["SHIELDES_NODE_TIMEOUT"]) + 3 * float(env["SHIELDES_HEARTBEAT_INTERVAL"]))
    for node in c.nodes[:2]:
        c.kill(node, signal.SIGTERM)
    rows = []
    for node in c.nodes:
        served = load.ok.get(node.node_id, 0)
        logged = logged_usage(c.database_url, node.node_id)[0]
        failures = load.failed.get(node.node_id, {})
        how = "SIGKILL" if node is victim else "SIGTERM"
        detail = f"served {served}, logged {logged}, lost {served - logged}, client errors {sum(failures.values())}"
        rows.append((f"{node.node_id} ({how})", detail))
    vt = load.ok_at.get(victim.node_id, [])
    rate = sum(1 for t in vt if killed_at - 2 <= t < killed_at) / 2
    last = sum(1 for t in vt if t >= killed_at - flush_interval)
    gossip_interval = float(c.env(victim)["SHIELDES_GOSSIP_INTERVAL"])
    last_gossip = sum(1 for t in vt if t >= killed_at - gossip_interval)
    lost = load.ok.get(victim.node_id, 0) - logged_usage(c.database_url, victim.node_id)[0]
    rows += [
        ("victim rate before the kill (req/s)", f"{rate:.0f}"),
        ("victim served in its last flush interval", f"{last} (flush interval {flush_interval} s)"),
        ("victim served in its last gossip interval", f"{last_gossip} (gossip interval {gossip_interval} s)"),
        ("victim usage lost (requests)", lost),
        ("lost, in seconds of the victim's traffic", f"{lost / rate:.2f}" if rate else "n/a"),
        ("survivor client errors after the kill",
         sum(sum(load.failed.get(n.node_id, {}).values()) for n in c.nodes[:2])),
    ]
    table("Node crash: SIGKILL one of 3 under load, SIGTERM the others", rows)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--outage", type=float, default=30.0)
    parser.add_argument("--keys", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--flush-interval", type=float, default=0.5)
    parser.add_argument("--crash-only", action="store_true", help="skip the Postgres outage")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="shieldes-bench-faults-"))
    pgs = PrivatePostgres(tmp)
    env = {"SHIELDES_FLUSH_INTERVAL": str(args.flush_interval)}
    c = start_cluster(pgs.url, tmp, 3, **env)
    try:
        keys = await setup(pgs.url, c.upstream_url, args.keys)
        if not args.crash_only:
            for i in range(3):
                c.start(c.add_node(f"outage{i + 1}"))
            for node in c.nodes:
                c.wait_ready(node, 60)
            await outage(c, pgs, keys, args.outage, args.concurrency)
        c.nodes = [c.add_node(f"crash{i + 1}") for i in range(3)][-3:]
        for node in c.nodes:
            c.start(node)
        for node in c.nodes:
            c.wait_ready(node, 60)
        await asyncio.sleep(2)  # membership and gossip settle
        await crash(c, keys, args.concurrency, args.flush_interval)
    finally:
        c.stop_all()
        pgs.server.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
