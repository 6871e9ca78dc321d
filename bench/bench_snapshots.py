"""Snapshot and compaction benchmark: startup with and without a snapshot, snapshot size and write
time, compaction time (and append latency meanwhile), table size before/after, steady-load growth.

    PYTHONPATH=. python bench/bench_snapshots.py --events 1000000 --keys 10000
    PYTHONPATH=. python bench/bench_snapshots.py --events 50000     # while iterating

Uses SHIELDES_BENCH_DATABASE_URL (a server URL; a scratch database is created and dropped) or an
embedded Postgres under $TMPDIR/shieldes-bench-pg. Traffic model: 4 nodes flushing every 0.5 s,
1-5 deltas per flush, keys drawn from a Zipf-like distribution (a few hot keys, a long tail).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg
from psycopg_pool import AsyncConnectionPool

from shieldes import db
from shieldes.events.catalog import (
    CONFIG_STREAM,
    PricingSet,
    ProviderAdded,
    UsageDelta,
    UsageRecorded,
    VirtualKeyCreated,
)
from shieldes.events.codec import Codec
from shieldes.events.partitions import ensure_covered, relation_size
from shieldes.events.pg_store import PostgresEventStore, open_pool
from shieldes.events.store import AppendOptions, NewEvent
from shieldes.projections.projector import Projection, Projector
from shieldes.snapshots.compaction import compact_once
from shieldes.snapshots.loader import load_projection_report
from shieldes.snapshots.store import save_snapshot

T = TypeVar("T")
NODES = 4
FLUSH_EVERY = 0.5  # seconds per node
MODELS = (("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet"))
COLS = "position, stream, type, version, data, metadata, recorded_at, seq"


class Traffic:
    """Deterministic synthetic usage flushes, as COPY text rows."""

    def __init__(self, keys: int, seed: int = 1) -> None:
        self.rng = random.Random(seed)
        self.keys = [f"k{i:05d}" for i in range(keys)]
        weights = [1.0 / (i + 1) ** 0.9 for i in range(keys)]  # Zipf-ish: s = 0.9
        self.cum = list(_accumulate(weights))
        self.seq = dict.fromkeys(range(NODES), 0)

    def rows(self, first_position: int, count: int, start_ts: float) -> Iterator[bytes]:
        rng, step = self.rng, FLUSH_EVERY / NODES
        for i in range(count):
            pos, ts, node = first_position + i, start_ts + i * step, i % NODES
            self.seq[node] += 1
            hour = int(ts // 3600)
            deltas = []
            for key in dict.fromkeys(rng.choices(self.keys, cum_weights=self.cum, k=rng.randint(1, 5))):
                provider, model = MODELS[rng.randrange(3)]
                p, c = rng.randint(20, 4000), rng.randint(5, 1500)
                deltas.append({"key_id": key, "team_id": None, "provider": provider, "model": model,
                               "hour": hour, "requests": rng.randint(1, 4), "prompt_tokens": p,
                               "completion_tokens": c, "cost_nusd": p * 2500 + c * 10000})
            data = orjson.dumps({"node_id": f"n{node}", "epoch": 1, "seq": self.seq[node], "deltas": deltas})
            recorded = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}+00"
            yield b"\t".join((str(pos).encode(), f"usage:n{node}".encode(), b"usage.recorded", b"1",
                              data.replace(b"\\", b"\\\\"), b'{"node_id":"n%d"}' % node, recorded.encode(),
                              str(self.seq[node]).encode())) + b"\n"


def _accumulate(xs: list[float]) -> Iterator[float]:
    total = 0.0
    for x in xs:
        total += x
        yield total


async def copy_usage(pool: AsyncConnectionPool[Any], traffic: Traffic, count: int, start_ts: float) -> int:
    """COPY `count` usage events after the head (the log's append lock held, like an append)."""
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (0x5348_4C44,))
        cur = await conn.execute("SELECT position FROM log_head WHERE id = 1")
        row = await cur.fetchone()
        assert row is not None
        first = int(row[0]) + 1
        await ensure_covered(conn, first + count - 1)
        async with conn.cursor() as c, c.copy(f"COPY events ({COLS}) FROM STDIN") as cp:
            buf: list[bytes] = []
            for line in traffic.rows(first, count, start_ts):
                buf.append(line)
                if len(buf) >= 20_000:
                    await cp.write(b"".join(buf))
                    buf.clear()
            if buf:
                await cp.write(b"".join(buf))
        await conn.execute("UPDATE log_head SET position = %s WHERE id = 1", (first + count - 1,))
    return first + count - 1


async def seed_config(store: PostgresEventStore, keys: int) -> None:
    codec = Codec()
    head = [ProviderAdded("openai", "openai", "http://up/v1", "env:OPENAI_KEY", ("gpt-4o", "gpt-4o-mini")),
            ProviderAdded("anthropic", "anthropic", "http://up2", "env:ANTHROPIC_KEY", ("claude-sonnet",)),
            PricingSet("gpt-4o", 2.5, 10.0), PricingSet("gpt-4o-mini", 0.15, 0.6)]
    opts = AppendOptions({"actor": "bench"})
    await store.append(CONFIG_STREAM, [NewEvent.of(e, codec) for e in head], opts)
    for start in range(0, keys, 1000):
        batch = [VirtualKeyCreated(f"k{i:05d}", f"key-{i}", uuid.uuid4().hex * 2, f"sk-shd-{i:05d}", None)
                 for i in range(start, min(keys, start + 1000))]
        await store.append(CONFIG_STREAM, [NewEvent.of(e, codec) for e in batch], opts)


async def table_size(pool: AsyncConnectionPool[Any]) -> int:
    async with pool.connection() as conn:
        return await relation_size(conn)


async def size_parts(pool: AsyncConnectionPool[Any]) -> str:
    """heap / toast / indexes of `events` (all partitions), to see where growth comes from."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT sum(pg_relation_size(c.oid))::bigint, "
            "sum(coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0))::bigint, "
            "sum(pg_indexes_size(c.oid))::bigint, "
            "count(*) FROM pg_partition_tree('events') t JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf"
        )
        row = await cur.fetchone()
    assert row is not None
    return f"heap {mb(row[0])}, toast {mb(row[1])}, indexes {mb(row[2])}, {row[3]} partitions"


async def vacuum(pool: AsyncConnectionPool[Any], full: bool = False) -> None:
    async with pool.connection() as conn:
        await conn.execute("VACUUM (FULL, ANALYZE) events" if full else "VACUUM (ANALYZE) events")


def append_latencies(url: str, stop: Any, send: Any) -> None:
    """Another node's flushes (own process): what the leader's compaction costs the other nodes."""
    out: list[float] = []

    async def go() -> None:
        pool = open_pool(url, size=1, name="probe")
        await pool.open(wait=True)
        store, codec, seq = PostgresEventStore(pool), Codec(), 10**9
        try:
            while not stop.is_set():
                seq += 1
                ev = UsageRecorded("probe", 1, seq, (UsageDelta("k00000", None, "openai", "gpt-4o",
                                                                int(time.time() // 3600), 1, 10, 10, 1000),))
                t = time.perf_counter()
                opts = AppendOptions(idempotency_seq=seq)
                await store.append("usage:probe", [NewEvent.of(ev, codec)], opts)
                out.append(time.perf_counter() - t)
                await asyncio.sleep(0.01)
        finally:
            await pool.close()

    asyncio.run(go())
    send.send(out)


async def loop_lag(stop: asyncio.Event, out: list[float]) -> None:
    """How late a 10 ms timer fires on the compacting leader's own event loop."""
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.01)
        out.append(time.perf_counter() - t - 0.01)


async def while_probing(url: str, work: Awaitable[T]) -> tuple[T, list[float], list[float]]:
    """Run `work` while another process appends (latencies) and a timer measures this loop's lag."""
    stop, lag = asyncio.Event(), []
    mp = multiprocessing.get_context("spawn")
    tstop, (recv, send) = mp.Event(), mp.Pipe(duplex=False)
    probe = mp.Process(target=append_latencies, args=(url, tstop, send))
    probe.start()
    received = asyncio.ensure_future(asyncio.to_thread(recv.recv))
    await asyncio.sleep(1.0)  # let the probe process start before measuring
    lagger = asyncio.create_task(loop_lag(stop, lag))
    result = await work
    stop.set()
    tstop.set()
    await lagger
    lat = await received
    await asyncio.to_thread(probe.join)
    return result, lat, lag


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def node_start_to_ready(url: str, timeout: float = 600.0, *, root: Path | None = None,
                        env: dict[str, str] | None = None) -> float:
    """Seconds from spawning `python -m shieldes serve` to its first 200 on /ready (process start,
    imports, schema check, snapshot + tail, cluster parts, HTTP): what an operator waits for.
    `root`: the checkout to run (default: this one), e.g. an earlier version as a baseline."""
    root = root or Path(__file__).resolve().parent.parent
    port = _free_port()
    env = {**os.environ, **(env or {}), "SHIELDES_DATABASE_URL": url, "PYTHONPATH": str(root)}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shieldes", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--gossip-port", str(_free_port()), "--node-id", f"bench-start-{port}"],
        cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        while time.perf_counter() - started < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - started
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError("the node exited before it was ready")
            time.sleep(0.01)
        raise TimeoutError("node not ready in time")
    finally:
        proc.terminate()
        proc.wait(60)


def ms(xs: list[float], q: float) -> str:
    return f"{sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1000:.1f} ms"


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


async def run(
    url: str, events: int, keys: int, tail: int, rounds: int, round_events: int
) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []

    def out(name: str, value: str) -> None:
        rows.append((name, value))
        print(f"  {name}: {value}", flush=True)

    pool = open_pool(url, size=6, name="bench")
    await pool.open(wait=True)
    store = PostgresEventStore(pool)
    traffic = Traffic(keys)
    try:
        t = time.perf_counter()
        await seed_config(store, keys)
        now = time.time()
        span = events * FLUSH_EVERY / NODES
        await copy_usage(pool, traffic, events, now - span - tail * FLUSH_EVERY / NODES - 60)
        async with pool.connection() as conn:
            await conn.execute("ANALYZE events")
        out("log written", f"{events:,} usage events ({span / 3600:.1f} h of 4 nodes flushing every 0.5 s), "
            f"{keys:,} keys in {time.perf_counter() - t:.1f}s")
        size_before = await table_size(pool)
        out("events table size (log as written)", mb(size_before))

        full, rep = await load_projection_report(pool)
        out("start without snapshot (full replay)", f"{rep.seconds:.2f}s for {rep.tail_events:,} events")
        took = await asyncio.to_thread(node_start_to_ready, url)
        out("node process start-to-ready without snapshot", f"{took:.2f}s")
        t = time.perf_counter()
        info = await save_snapshot(pool, full, node_id="bench", keep=3)
        out("snapshot write", f"{time.perf_counter() - t:.2f}s, {mb(info.size_bytes)} compressed "
            f"({len(full.usage.totals):,} keys with usage)")

        await copy_usage(pool, traffic, tail, time.time() - tail * FLUSH_EVERY / NODES)
        timings = []
        for _ in range(3):
            loaded, rep = await load_projection_report(pool)
            timings.append(rep.seconds)
        out("start with snapshot",
            f"{statistics.median(timings):.2f}s median of 3 (snapshot + {rep.tail_events:,} tail events)")
        reference = loaded  # the state every later measurement must reproduce
        took = await asyncio.to_thread(node_start_to_ready, url)
        out("node process start-to-ready with snapshot", f"{took:.2f}s (goal < 2 s)")

        _, base_lat, base_lag = await while_probing(url, asyncio.sleep(10))
        out("baseline, no compaction (10 s)", f"append median {ms(base_lat, 0.5)}, max {ms(base_lat, 1)}; "
            f"loop lag median {ms(base_lag, 0.5)}, max {ms(base_lag, 1)}")
        report, lat, lag = await while_probing(
            url, compact_once(pool, holder="bench", retain_seconds=0, node_timeout=5))
        out("compaction (--retain 0s)", f"{report.seconds:.1f}s: {report.replaced_events:,} raw events -> "
            f"{report.rollup_events} rollups ({report.deltas_in:,} -> {report.deltas_out:,} deltas), "
            f"{report.batches} batches, longest batch transaction {report.max_batch_seconds * 1000:.0f} ms")
        out("append latency during compaction",
            f"median {statistics.median(lat) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms "
            f"over {len(lat)} appends")
        out("leader event-loop lag during compaction",
            f"median {statistics.median(lag) * 1000:.1f} ms, max {max(lag) * 1000:.1f} ms")
        out("events table size after compaction", mb(await table_size(pool)))
        t = time.perf_counter()
        await vacuum(pool)
        took = time.perf_counter() - t
        out("  + VACUUM (space reusable, file kept)", f"{mb(await table_size(pool))} ({took:.1f}s)")
        t = time.perf_counter()
        await vacuum(pool, full=True)
        took = time.perf_counter() - t
        out("  + VACUUM FULL (live data only)", f"{mb(await table_size(pool))} ({took:.1f}s)")

        t = time.perf_counter()
        replay = Projector(store, Projection())
        await replay.catch_up()
        out("start without snapshot after compaction", f"{time.perf_counter() - t:.2f}s")
        probe_keys = {k for k in replay.usage.totals if k != "k00000"}  # the probe appended to k00000
        assert all(replay.usage.totals[k] == reference.usage.totals[k] for k in probe_keys), "totals changed!"
        assert replay.config == reference.config
        out("check", "usage totals and config identical before and after compaction")

        sizes = []
        live = replay
        for r in range(rounds):
            # the round's flushes happened over the last round_events * 0.125 s
            started_at = time.time() - round_events * FLUSH_EVERY / NODES - 1
            await copy_usage(pool, traffic, round_events, started_at)
            await live.catch_up()
            await save_snapshot(pool, live.projection, node_id="bench", keep=3)
            await compact_once(pool, holder="bench", retain_seconds=0, node_timeout=5)
            await vacuum(pool)
            sizes.append(await table_size(pool))
            print(f"    steady round {r + 1}: {mb(sizes[-1])} ({await size_parts(pool)})", flush=True)
        out(f"steady load: {rounds} rounds of +{round_events:,} events, snapshot, compact, VACUUM",
            " -> ".join(mb(s) for s in sizes))
    finally:
        await pool.close()
    return rows


@contextlib.contextmanager
def scratch_database(prefix: str, *, keep: bool = False) -> Iterator[str]:
    """A fresh, migrated database on the bench server (SHIELDES_BENCH_DATABASE_URL, else the
    embedded one under $TMPDIR/shieldes-bench-pg); yields its URL, drops it after unless `keep`."""
    server = db.libpq_url(os.environ.get("SHIELDES_BENCH_DATABASE_URL") or db.embedded_database_url(
        Path(tempfile.gettempdir()) / "shieldes-bench-pg"))
    name = f"{prefix}_{os.getpid()}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(server)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    try:
        db.upgrade(url)
        yield url
    finally:
        if not keep:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--tail", type=int, default=2_000, help="events appended after the snapshot")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--round-events", type=int, default=50_000)
    ap.add_argument("--keep-db", action="store_true")
    args = ap.parse_args()
    with scratch_database("bench_snap", keep=args.keep_db) as url:
        started = time.perf_counter()
        rows = asyncio.run(run(url, args.events, args.keys, args.tail, args.rounds, args.round_events))
        width = max(len(r[0]) for r in rows)
        print(f"\nshieldes snapshot/compaction bench: {args.events:,} events, {args.keys:,} keys "
              f"({time.perf_counter() - started:.0f}s)")
        for k, v in rows:
            print(f"{k.ljust(width)}  {v}")

if __name__ == "__main__":
    main()
