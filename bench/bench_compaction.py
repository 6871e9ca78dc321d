"""Compaction of the partitioned event log against its baseline, in one run: the same log compacted
by replacing whole partitions with their replacements prepared ahead (the leader's path: the
preparation, which the leader does in the background as partitions fill, is timed on its own row),
by replacing whole partitions with nothing prepared, and by DELETE batches (the path before
partitions), each in its own scratch database. Prints seconds, events table size before, after and
after VACUUM, and checks that usage per key is identical before and after.

    PYTHONPATH=. python bench/bench_compaction.py --events 1000000
    PYTHONPATH=. python bench/bench_compaction.py --events 100000 --modes partitions   # iterating

Uses SHIELDES_BENCH_DATABASE_URL (a server URL) or an embedded Postgres under
$TMPDIR/shieldes-bench-pg. Traffic model as bench_snapshots.py: 4 nodes flushing every 0.5 s, 1-5
deltas per flush, Zipf-distributed keys.

Besides wall seconds it prints the CPU seconds the compaction took, in this process and in the
Postgres server (its processes' CPU, parallel workers and ended backends included; when the server
is local), and the load average around it: on a shared machine the wall figure moves with the
other tenants' load, the CPU figure much less. "loop held" is the longest gap between two turns of
this process's event loop during the step (wall clock / the loop thread's CPU time; and the longest
collection of the cyclic GC meanwhile): what every request on the leader waits;
`--sums-per-turn 1000000` makes a partition's sums at once, as before.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from typing import Any

import psutil
from bench_loop_holds import LoopGaps
from bench_snapshots import FLUSH_EVERY, NODES, Traffic, copy_usage, mb, scratch_database, table_size, vacuum

from shieldes.events import compaction_sql
from shieldes.events.pg_store import open_pool
from shieldes.gateway.app import tune_gc
from shieldes.snapshots.compaction import compact_once
from shieldes.snapshots.fencing import bump_epoch
from shieldes.snapshots.partition_replace import prepare
from shieldes.snapshots.rollups import MAX_ROLLUP_DELTAS

PER_KEY = ("SELECT key_id, sum(requests), sum(prompt_tokens), sum(completion_tokens), sum(cost_nusd) "
           "FROM usage_deltas GROUP BY 1 ORDER BY 1")
MODES = ("prepared", "partitions", "delete")


async def server_cpu(pool: Any) -> float | None:
    """CPU seconds used so far by the local Postgres server: its processes alive now plus every
    one that ended (reaped by the postmaster, so in its children's times). None when remote."""
    async with pool.connection() as conn:
        row = await (await conn.execute("SELECT pg_backend_pid()")).fetchone()
    try:
        postmaster = psutil.Process(psutil.Process(int(row[0])).ppid())
        own = postmaster.cpu_times()
        total = own.user + own.system + own.children_user + own.children_system
        for child in postmaster.children():
            with contextlib.suppress(psutil.Error):
                t = child.cpu_times()
                total += t.user + t.system
        return total
    except psutil.Error:
        return None


async def one(url: str, events: int, keys: int, mode: str) -> dict[str, Any]:
    pool = open_pool(url, size=3, name="bench")
    await pool.open(wait=True)
    try:
        t = time.perf_counter()
        await copy_usage(pool, Traffic(keys), events, time.time() - events * FLUSH_EVERY / NODES - 60)
        async with pool.connection() as conn:
            before = await (await conn.execute(PER_KEY)).fetchall()
        written = time.perf_counter() - t
        # a log compaction reaches is days old: vacuumed, hint bits set, flushed. Done here, so that
        # autovacuum and the checkpointer do not catch up on the fresh COPY during the measurement
        await vacuum(pool)
        async with pool.connection() as conn:
            await conn.execute("CHECKPOINT")
        size_before = await table_size(pool)
        tune_gc()  # as a node (the leader) runs: its collections are part of what holds the loop
        prep = None
        if mode == "prepared":  # what the leader does in the background as each partition fills
            load_before, cpu_before, server_before = os.getloadavg()[0], time.process_time(), await server_cpu(pool)
            t = time.perf_counter()
            async with pool.connection() as conn:
                epoch = await bump_epoch(conn, "bench")
            async with LoopGaps() as prep_gaps:
                prepared = await prepare(pool, leader_epoch=epoch, node_id="bench", max_deltas=MAX_ROLLUP_DELTAS)
            server_after = await server_cpu(pool)
            prep = {"seconds": time.perf_counter() - t, "client_cpu": time.process_time() - cpu_before,
                    "server_cpu": None if server_before is None or server_after is None
                    else server_after - server_before, "load": (load_before, os.getloadavg()[0]),
                    "partitions": prepared.prepared, "gaps": (prep_gaps.wall, prep_gaps.cpu, prep_gaps.gc)}
        load_before, cpu_before, server_before = os.getloadavg()[0], time.process_time(), await server_cpu(pool)
        async with LoopGaps() as gaps:
            report = await compact_once(pool, holder="bench", retain_seconds=0, node_timeout=5,
                                        replace_partitions=mode != "delete")
        client_cpu, server_after = time.process_time() - cpu_before, await server_cpu(pool)
        load = (load_before, os.getloadavg()[0])
        size_after = await table_size(pool)
        t = time.perf_counter()
        await vacuum(pool)
        vacuumed = time.perf_counter() - t
        size_vacuum = await table_size(pool)
        async with pool.connection() as conn:
            after = await (await conn.execute(PER_KEY)).fetchall()
        assert after == before, "usage per key changed"
        return {"report": report, "written": written, "before": size_before, "after": size_after,
                "vacuum": size_vacuum, "vacuum_s": vacuumed, "client_cpu": client_cpu, "load": load, "prepare": prep,
                "gaps": (gaps.wall, gaps.cpu, gaps.gc),
                "server_cpu": None if server_before is None or server_after is None else server_after - server_before}
    finally:
        await pool.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--modes", default="prepared,partitions,delete",
                    help="prepared (partitions prepared ahead, as the leader does), partitions (none prepared), "
                         "delete (baseline)")
    ap.add_argument("--sums-per-turn", type=int, default=getattr(compaction_sql, "SUMS_PER_TURN", 0),
                    help="rows of a partition's sums made between two turns of the event loop (a large "
                         "number: all at once, as before)")
    args = ap.parse_args()
    compaction_sql.SUMS_PER_TURN = args.sums_per_turn  # type: ignore[attr-defined]  # (a tree before has none)
    rows = []
    for mode in args.modes.split(","):
        with scratch_database(f"bench_compact_{mode}") as url:
            out = asyncio.run(one(url, args.events, args.keys, mode))
        if out["prepare"]:
            p = out["prepare"]
            server = "?" if p["server_cpu"] is None else f"{p['server_cpu']:.1f}"
            rows.append(("prepare (background)", f"{p['seconds']:.1f}", f"{p['client_cpu']:.1f} + {server}",
                         "{:.1f} -> {:.1f}".format(*p["load"]), f"{p['partitions']} partitions", "", "",
                         "{:.1f} / {:.1f} / {:.1f}".format(*p["gaps"]), "", "", ""))
        r = out["report"]
        server = "?" if out["server_cpu"] is None else f"{out['server_cpu']:.1f}"
        rows.append((mode, f"{r.seconds:.1f}", f"{out['client_cpu']:.1f} + {server}",
                     "{:.1f} -> {:.1f}".format(*out["load"]), f"{r.replaced_events:,} -> {r.rollup_events:,}",
                     str(r.partitions_replaced), f"{r.max_swap_seconds * 1000:.0f}",
                     "{:.1f} / {:.1f} / {:.1f}".format(*out["gaps"]), mb(out["before"]),
                     mb(out["after"]), f"{mb(out['vacuum'])} ({out['vacuum_s']:.1f}s)"))
        print(f"  {mode}: {r.as_dict()}", flush=True)
    header = ("compaction", "seconds", "CPU s (this + Postgres)", "load average", "raw -> rollups",
              "partitions replaced", "longest swap ms", "loop held ms (wall / CPU / longest GC)", "size before",
              "after", "after VACUUM")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\ncompaction of {args.events:,} usage events, {args.keys:,} keys (usage per key identical after)")
    for line in (header, *rows):
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)))


if __name__ == "__main__":
    main()
