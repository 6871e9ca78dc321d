"""Event log benchmark (not a timed test): batched append throughput and full replay speed.

    python bench/bench_log.py [--events 1000000] [--deltas 4] [--database-url URL] [--keep | --reuse DBNAME]
                              [--start [--baseline-tree DIR]]

Creates a scratch database next to SHIELDES_DATABASE_URL (or the embedded server), migrates it,
appends N usage events (each a realistic flush of --deltas per-(key, deployment) deltas) in
transactions of several batch sizes, then replays the whole log from position 0 into a fresh
Projection with Projector.catch_up, both event by event (the baseline) and with usage folded in
Postgres (what a replay from 0 does), checks that both give the same state, and prints a table
(events/s, MB of event JSON, MB/s). With --start it also times a node's start without a snapshot:
the loader in process (its state checked against the replay's), and `shieldes serve` from spawn
to ready, from this checkout and from --baseline-tree (e.g. `git archive` of an earlier commit).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import psycopg
from bench_snapshots import node_start_to_ready

from shieldes import db
from shieldes.events.catalog import UsageDelta, UsageRecorded, usage_stream
from shieldes.events.codec import Codec
from shieldes.events.pg_store import PostgresEventStore, open_pool
from shieldes.events.store import AppendOptions, NewEvent
from shieldes.projections.projector import Projection, Projector
from shieldes.settings import Settings
from shieldes.snapshots.loader import load_projection_report

# Share of the events appended with each batch size (events per append transaction).
BATCH_SHARES = ((1, 0.005), (10, 0.02), (100, 0.175), (1000, 0.8))
MB = 1024 * 1024


@dataclass
class Row:
    phase: str
    events: int
    seconds: float
    megabytes: float

    def cells(self) -> list[str]:
        rate = self.events / self.seconds if self.seconds else 0.0
        return [
            self.phase,
            f"{self.events:,}",
            f"{self.seconds:.2f}",
            f"{rate:,.0f}",
            f"{self.megabytes:,.1f}",
            f"{self.megabytes / self.seconds if self.seconds else 0:,.1f}",
        ]


def usage_events(first: int, count: int, deltas: int, total: int = 1_000_000) -> list[NewEvent]:
    """Flushes `first`..`first+count` from 4 nodes; each carries `deltas` deltas over 1000 keys and
    6 deployments, spread over a month of hours."""
    rng = random.Random(first)
    codec = Codec()
    hour0 = int(time.time() // 3600) - 24 * 30
    deployments = [
        ("openai", "gpt-4o"),
        ("openai", "gpt-4o-mini"),
        ("azure", "gpt-4o"),
        ("anthropic", "claude-3-5-sonnet"),
        ("anthropic", "claude-3-5-haiku"),
        ("groq", "llama-3.1-70b"),
    ]
    out = []
    for i in range(first, first + count):
        hour = hour0 + i * 24 * 30 // max(total, 1)
        ds = []
        for _ in range(deltas):
            k = rng.randrange(1000)
            provider, model = rng.choice(deployments)
            reqs = rng.randint(1, 40)
            p, c = reqs * rng.randint(50, 2000), reqs * rng.randint(10, 800)
            ds.append(
                UsageDelta(
                    f"key_{k:016x}",
                    f"team_{k % 20:016x}" if k % 3 else None,
                    provider,
                    model,
                    hour,
                    reqs,
                    p,
                    c,
                    p * 2500 + c * 10000,
                )
            )
        out.append(NewEvent.of(UsageRecorded(f"node-{i % 4}", 1, i // 4 + 1, tuple(ds)), codec))
    return out


def scratch_url(server_url: str) -> tuple[str, str]:
    name = "bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(server_url)
    url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    db.upgrade(url)
    return name, url


async def append_phase(store: PostgresEventStore, total: int, deltas: int) -> list[Row]:
    """Events are generated per slice (outside the timed part) so memory stays flat at 1M events."""
    rows, start = [], 0
    for batch, share in BATCH_SHARES:
        n = total - start if batch == BATCH_SHARES[-1][0] else int(total * share)
        seconds = size = 0.0
        for offset in range(0, n, 20_000):
            chunk = usage_events(start + offset, min(20_000, n - offset), deltas, total)
            size += sum(len(orjson.dumps(e.data)) for e in chunk) / MB
            t0 = time.perf_counter()
            for i in range(0, len(chunk), batch):
                part = chunk[i : i + batch]
                node = part[0].data["node_id"]
                # one stream per append, as a node's flusher does; the seq makes it idempotent
                await store.append(
                    usage_stream(node),
                    part,
                    AppendOptions(metadata={"node_id": node}, idempotency_seq=start + offset + i + 1),
                )
            seconds += time.perf_counter() - t0
        rows.append(Row(f"append, {batch}/txn", n, seconds, size))
        start += n
    return rows


async def replay_phase(store: PostgresEventStore, total_mb: float, fold_sample: int) -> tuple[list[Row], Projection]:
    t0 = time.perf_counter()
    cursor, n = 0, 0
    sample: list[Any] = []
    while True:
        page = await store.read(cursor, 5000)
        if not page:
            break
        n += len(page)
        cursor = page[-1].position
        if len(sample) < fold_sample:
            sample.extend(page[: fold_sample - len(sample)])
    read = Row("read only (store.read)", n, time.perf_counter() - t0, total_mb)
    # decode + fold alone, on events already in memory (best of 3): the CPU part of replay
    fold_seconds = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        Projection().apply_all(sample)
        fold_seconds = min(fold_seconds, time.perf_counter() - t0)
    fold = Row("decode + fold only", len(sample), fold_seconds, total_mb * len(sample) / max(n, 1))
    # the baseline: every event through the codec and the fold, one by one (the path before
    # usage was folded in the database; still the path of a catch-up that is not from 0)
    projector = Projector(store, Projection(), fold_in_store=False)
    t0 = time.perf_counter()
    await projector.catch_up()
    baseline = Row("replay, event by event (baseline)", projector.position, time.perf_counter() - t0, total_mb)
    assert projector.usage.totals, "replay folded no usage"
    folded = Projector(store, Projection())
    t0 = time.perf_counter()
    await folded.catch_up()
    replay = Row("replay (catch_up from 0, usage folded in Postgres)", folded.position,
                 time.perf_counter() - t0, total_mb)
    assert folded.usage == projector.usage and folded.config == projector.config, "the two replays differ"
    assert folded.position == projector.position
    return [read, fold, baseline, replay], folded.projection


async def start_phase(pool: Any, url: str, total_mb: float, reference: Projection,
                      baseline: Path | None) -> list[Row]:
    """A node's start without a snapshot: the loader in this process (checked against the replay's
    state), then `shieldes serve` start-to-ready from this checkout and, given, from `baseline` (an
    earlier version's checkout). Snapshots are removed first, and the node neither snapshots nor
    compacts during its short life, so every start replays the same log."""
    env = {"SHIELDES_SNAPSHOT_EVERY_SECONDS": "86400", "SHIELDES_SNAPSHOT_EVERY_EVENTS": "100000000",
           "SHIELDES_COMPACT_INTERVAL": "86400"}

    async def no_snapshots() -> None:
        async with pool.connection() as conn:
            await conn.execute("DELETE FROM snapshots")

    await no_snapshots()
    loaded, report = await load_projection_report(pool)
    assert report.snapshot_id is None
    assert loaded.usage == reference.usage and loaded.config == reference.config, "the loader's state differs"
    rows = [Row("node load without snapshot (loader, in process)", report.tail_events, report.seconds, total_mb)]
    for label, root in (("this version", None), ("baseline", baseline)):
        if label == "baseline" and root is None:
            continue
        await no_snapshots()
        took = await asyncio.to_thread(node_start_to_ready, url, root=root, env=env)
        rows.append(Row(f"node process start-to-ready without snapshot ({label})", loaded.position, took, total_mb))
    return rows


async def main_async(args: argparse.Namespace) -> None:
    server = db.libpq_url(args.database_url) if args.database_url else db.resolve_database_url(Settings())
    if args.reuse:  # a database kept by an earlier run (--keep): replay only
        parts = urlsplit(server)
        name, url = args.reuse, urlunsplit((parts.scheme, parts.netloc, "/" + args.reuse, parts.query, ""))
    else:
        name, url = scratch_url(server)
        if args.keep:
            print(f"scratch database (kept): {name}", flush=True)
    try:
        pool = open_pool(url, size=2, name="bench")
        await pool.open(wait=True)
        try:
            store = PostgresEventStore(pool)
            rows = [] if args.reuse else await append_phase(store, args.events, args.deltas)
            with psycopg.connect(url, autocommit=True) as conn:
                json_mb = conn.execute("SELECT sum(pg_column_size(data)) FROM events").fetchone()
            total_mb = sum(r.megabytes for r in rows) or float((json_mb[0] if json_mb else 0) or 0) / MB
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE events")
                size = conn.execute("SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('events') "
                                    "WHERE isleaf").fetchone()
            replayed, state = await replay_phase(store, total_mb, min(args.events, 100_000))
            rows += replayed
            if args.start:
                rows += await start_phase(pool, url, total_mb, state, args.baseline_tree)
        finally:
            await pool.close()
        print_table(rows)
        print(
            f"events table on disk: {(size[0] if size else 0) / MB:,.0f} MB; "
            f"{'stored jsonb' if args.reuse else 'event JSON'}: {total_mb:,.0f} MB ({args.deltas} deltas per event)"
        )
    finally:
        if not args.keep and not args.reuse:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def print_table(rows: list[Row]) -> None:
    header = ["phase", "events", "seconds", "events/s", "MB", "MB/s"]
    cells = [r.cells() for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    for line in [header, *cells]:
        pairs = enumerate(zip(line, widths, strict=True))
        padded = [v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in pairs]
        print("  ".join(padded))


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=1_000_000, help="usage events to append and replay")
    parser.add_argument("--deltas", type=int, default=4, help="deltas per usage event (one flush)")
    parser.add_argument("--database-url", help="server to create the scratch database on")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--reuse", metavar="DBNAME", help="replay a database an earlier --keep run left (no append)")
    parser.add_argument("--start", action="store_true",
                        help="also time a node's start without a snapshot (loader, and `shieldes serve` to ready)")
    parser.add_argument("--baseline-tree", type=Path, metavar="DIR",
                        help="with --start: also start the node from this checkout (an earlier version)")
    asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
