"""Cluster benchmark: three real nodes (`python -m shieldes serve`) on one Postgres.

1. Propagation: config changes committed by the admin path (what the CLI runs) -> applied on all 3
   nodes (each node's /ready position), p50/p99 over --changes changes. Nodes poll only every 30 s,
   so this measures LISTEN/NOTIFY.
2. Rate-limit accuracy: one key limited to N requests per minute, --load-factor x N requests spread
   round-robin over the 3 nodes, all at once and then at a fixed concurrency; admitted / N.
3. Budget overshoot: one key with a USD budget worth N requests, waves of requests over the 3 nodes
   until three waves in a row are refused; spend in the log after the flush minus the budget, in USD.

Run: PYTHONPATH=. python bench/bench_cluster.py [--changes 200] [--limit 100] [--load-factor 4]
Uses SHIELDES_TEST_DATABASE_URL if set, else an embedded Postgres; prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shieldes.config_writer import execute  # noqa: E402
from shieldes.events.pg_store import PostgresEventStore, open_pool  # noqa: E402
from shieldes.projections.commands import CreateKey  # noqa: E402
from shieldes.projections.shared_commands import AddProvider, SetPricing  # noqa: E402
from shieldes.secrets import display_prefix, hash_key, new_id, new_virtual_key  # noqa: E402
from tests import pg  # noqa: E402
from tests.cluster.harness import UPSTREAM_KEY_ENV, Cluster, until  # noqa: E402

BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": 5}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def positions(session: aiohttp.ClientSession, bases: list[str]) -> list[int]:
    async def one(base: str) -> int:
        async with session.get(base + "/ready") as resp:
            return int((await resp.json())["position"])

    return list(await asyncio.gather(*(one(b) for b in bases)))


async def propagation(cluster: Cluster, changes: int) -> list[float]:
    pool = open_pool(cluster.database_url, size=1, name="bench-admin")
    await pool.open(wait=True)
    store = PostgresEventStore(pool)
    bases = [n.base for n in cluster.nodes]
    delays = []
    try:
        async with aiohttp.ClientSession() as session:
            for i in range(changes):
                change = SetPricing(f"bench-model-{i % 10}", 1.0 + i, 2.0)
                written = await execute(store, change, actor="bench")
                committed = time.perf_counter()
                target = written[-1].position
                while min(await positions(session, bases)) < target:
                    pass
                delays.append(time.perf_counter() - committed)
    finally:
        await pool.close()
    return delays


async def load(bases: list[str], key: str, total: int, concurrency: int) -> list[int]:
    statuses: list[int] = []
    queue = [bases[i % len(bases)] for i in range(total)]
    headers = {"Authorization": f"Bearer {key}"}

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def worker() -> None:
            while queue:
                base = queue.pop()
                async with session.post(base + "/v1/chat/completions", json=BODY, headers=headers) as resp:
                    await resp.read()
                    statuses.append(resp.status)

        await asyncio.gather(*(worker() for _ in range(min(concurrency, total))))
    return statuses


def wait_for_fresh_window(min_left: float = 25.0) -> None:
    """Rate windows are whole minutes: start a run only with enough of the minute left."""
    left = 60 - time.time() % 60
    if left < min_left:
        time.sleep(left + 0.05)


def key(cluster: Cluster, name: str, **kw: Any) -> str:
    secret = new_virtual_key()
    position = cluster.admin(CreateKey(new_id("key"), name, hash_key(secret), display_prefix(secret), **kw))
    cluster.wait_position(position)
    return secret


def spend_usd(cluster: Cluster, name: str) -> float:
    import psycopg

    with psycopg.connect(cluster.database_url) as conn:
        row = conn.execute("SELECT coalesce(sum(cost_usd), 0) FROM usage_daily WHERE key_name = %s",
                           (name,)).fetchone()
    return float(row[0]) if row else 0.0


def requests_in_log(cluster: Cluster, name: str) -> int:
    import psycopg

    with psycopg.connect(cluster.database_url) as conn:
        row = conn.execute("SELECT coalesce(sum(requests), 0) FROM usage_daily WHERE key_name = %s",
                           (name,)).fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=200)
    ap.add_argument("--limit", type=int, default=100, help="rpm of the limited key (N)")
    ap.add_argument("--load-factor", type=int, default=4, help="rate-limit load, in multiples of N")
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()

    server = pg.server_url()
    pg.make_template(server)
    url = pg.fresh_database(server)
    cluster = Cluster(url, Path(tempfile.mkdtemp(prefix="bench-cluster-")))
    rows: list[tuple[str, str, str]] = []
    try:
        cluster.start_upstream()
        cluster.admin(
            AddProvider("openai", "openai", cluster.upstream_url, f"env:{UPSTREAM_KEY_ENV}",
                        ("gpt-4o-mini",)),
            SetPricing("gpt-4o-mini", 1000.0, 1000.0),  # $0.001 per token: 2 + 5 tokens = $0.007 a request
        )
        for i in range(3):
            cluster.start(cluster.add_node(f"bench{i + 1}"))
        for node in cluster.nodes:
            cluster.wait_ready(node)
        until(lambda: all((n.ready() or {}).get("cluster", {}).get("alive") == 3 for n in cluster.nodes), 15)
        bases = [n.base for n in cluster.nodes]

        delays = asyncio.run(propagation(cluster, args.changes))
        ms = [d * 1000 for d in delays]
        rows.append(("propagation commit -> applied on all 3 (ms)",
                     f"p50 {percentile(ms, 50):.1f}  p99 {percentile(ms, 99):.1f}  max {max(ms):.1f}",
                     f"{args.changes} changes, goal p99 < 100"))

        n = args.limit
        for shape, conc in (("burst", n * args.load_factor), ("steady", args.concurrency)):
            wait_for_fresh_window()
            secret = key(cluster, f"limited-{shape}", rpm=n)
            started = time.perf_counter()
            statuses = asyncio.run(load(bases, secret, n * args.load_factor, conc))
            took = time.perf_counter() - started
            admitted = statuses.count(200)
            other = len(statuses) - admitted - statuses.count(429)
            rows.append((f"rpm limit N={n}, {args.load_factor}xN over 3 nodes ({shape}, concurrency {conc})",
                         f"admitted/N = {admitted / n:.3f} ({admitted}/{n})",
                         f"{took:.2f}s, simulated worst N+3 = {(n + 3) / n:.3f}, other statuses {other}"))

        cost = 0.007
        budget = round(n * cost, 3)
        secret = key(cluster, "budgeted", budget_usd=budget, budget_period="1d")
        # waves of requests, a few in flight per node, until a whole wave is refused: the estimate held at
        # admission (prompt bytes / 4 + max_tokens) is ~4x the real cost here, so one short burst would
        # mostly measure how conservative the estimate is, not where spending stops
        admitted = waves = refused_in_a_row = 0
        while waves < 200 and refused_in_a_row < 3:
            waves += 1
            got = asyncio.run(load(bases, secret, 30, 6)).count(200)
            admitted += got
            refused_in_a_row = 0 if got else refused_in_a_row + 1
            if not got:
                time.sleep(0.5)  # what a client told "retry in a second" does; shares renew meanwhile
        until(lambda: requests_in_log(cluster, "budgeted") >= admitted, 20, "usage flushed")
        spent = spend_usd(cluster, "budgeted")
        rows.append((f"budget ${budget:.3f} (~{n} requests), load until refused, over 3 nodes",
                     f"overshoot ${spent - budget:+.4f} ({(spent - budget) / cost:+.1f} requests)",
                     f"admitted {admitted} in {waves} waves of 30, spent ${spent:.4f}, concurrency 6"))
    finally:
        cluster.stop_all()
        pg.drop_database(server, url)
        pg.drop_template(server)
    width = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(width)}  result")
    for name, result, note in rows:
        print(f"{name.ljust(width)}  {result}   [{note}]")
    print(f"median propagation {statistics.median(ms):.1f} ms")


if __name__ == "__main__":
    main()
