"""Request-log benchmark: what the per-request log costs, and that its table stays flat.

1. Cost per row, in-process against a real Postgres: the request path's share (open a record,
   fill it as a successful call does, append it to the buffer) and the writer's share (turn the
   batch into rows and COPY them), in CPU microseconds of this process. And the longest the writer
   holds the event loop while it writes a batch (every request on the node waits that long): the
   most CPU time the loop's thread spends between two of its turns, read by a task that only
   yields, during a batch of each size (CPU time, so the other work on the machine does not count).
2. A real node (`shieldes serve`) under load with the request log on and off, taking turns
   (SHIELDES_ACCESS_LOG=false in both): node CPU per request, median of the rounds.
3. Retention under steady load: simulated days of N rows each with a 3-day retention; after each
   day the leader's upkeep runs; the table's total size per day.

    python bench/bench_request_log.py [--rows 50000] [--duration 5] [--rounds 3] [--connections 16]
    python bench/bench_request_log.py --stall-only [--stall-rows 500,5000] [--rounds 3]

Needs Postgres: SHIELDES_BENCH_DATABASE_URL (a server URL), else an embedded Postgres.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_gateway as bg  # noqa: E402
from bench_loop_holds import LoopGaps  # noqa: E402

from shieldes.events.pg_store import open_pool  # noqa: E402
from shieldes.projections.state import VirtualKey  # noqa: E402
from shieldes.requestlog.record import RequestRecord  # noqa: E402
from shieldes.requestlog.writer import RequestLogWriter, upkeep  # noqa: E402

KEY = VirtualKey("key_0123456789abcdef", "bench", "h", "sk-shd-abcd", None, None, None)


def fill(i: int, started: float, buf_add: object) -> None:
    """What the request path does for one successful JSON call."""
    rec = RequestRecord(f"{i:024x}", started, 1.0, "POST", "/v1/chat/completions")
    rec.key = KEY
    rec.model = "gpt-4o"
    rec.upstream_model = "gpt-4o"
    rec.attempt("openai")
    rec.t_first_byte = 1.01
    rec.prompt_tokens, rec.completion_tokens, rec.cost_nusd = 12, 20, 230_000
    rec.t_end = 1.02
    rec.status = 200
    rec.route = "/v1/chat/completions"
    rec.client_ip, rec.user_agent = "127.0.0.1", "OpenAI/Python 1.55.0"
    buf_add(rec)  # type: ignore[operator]


async def per_row_cost(url: str, rows: int) -> tuple[float, float]:
    pool = open_pool(url, size=1, name="bench-requestlog")
    await pool.open(wait=True)
    try:
        writer = RequestLogWriter(pool, "bench", capacity=rows + 1, interval=3600)
        now = time.time()
        t0 = time.process_time()
        for i in range(rows):
            fill(i, now, writer.add)
        hot = (time.process_time() - t0) / rows * 1e6
        t0 = time.process_time()
        assert await writer.flush_all(120)
        write = (time.process_time() - t0) / rows * 1e6
        return hot, write
    finally:
        await pool.close()


async def loop_stall(url: str, batch: int, rounds: int) -> list[float]:
    """The longest hold of the event loop (ms of CPU) while the writer writes `batch` records, per round."""
    pool = open_pool(url, size=1, name="bench-requestlog-stall")
    await pool.open(wait=True)
    held = []
    try:
        for _ in range(rounds):
            writer = RequestLogWriter(pool, "bench", capacity=2 * batch + 1, interval=3600)
            now = time.time()
            for i in range(batch):
                fill(i, now, writer.add)
            async with LoopGaps() as gaps:
                assert await writer.flush_all(120)
            held.append(gaps.cpu)
    finally:
        await pool.close()
    return held


def node_cpu(db_url: str, secret: str, args: argparse.Namespace) -> dict[str, list[float]]:
    up_port = bg.free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    asyncio.run(bg.add_provider(db_url, upstream))
    modes = {"off": ("false", "false"), "on": ("true", "false"), "on+access": ("true", "true")}
    ports = {mode: bg.free_port() for mode in modes}
    procs = {"upstream": bg.spawn(["-m", "tests.fake_upstream", "--port", str(up_port), "--completion-tokens", "20"])}
    for mode, port in ports.items():
        request_log, access = modes[mode]
        procs[mode] = bg.spawn(
            ["-m", "shieldes", "serve", "--host", "127.0.0.1", "--port", str(port), "--node-id", f"bench-{mode}"],
            env={"SHIELDES_DATABASE_URL": db_url, "SHIELDES_ACCESS_LOG": access,
                 "SHIELDES_REQUEST_LOG": request_log})
    out: dict[str, list[float]] = {mode: [] for mode in modes}
    try:
        for port in (up_port, *ports.values()):
            bg.wait_port(port)
        for port in ports.values():
            bg.load(f"http://127.0.0.1:{port}/v1/chat/completions", bg.BODY, secret, 1, 4)  # warm-up
        for _ in range(args.rounds):
            for mode, port in ports.items():
                pid = procs[mode].pid
                cpu0 = bg.cpu_seconds(pid)
                r = bg.load(f"http://127.0.0.1:{port}/v1/chat/completions", bg.BODY, secret, args.duration,
                            args.connections)
                out[mode].append((bg.cpu_seconds(pid) - cpu0) / max(1, r.requests) * 1e6)
                print(f"  node, request log {mode:9}: {r.rps:7.0f} rps  {out[mode][-1]:6.1f} us CPU/req  "
                      f"errors {r.errors}", flush=True)
    finally:
        bg.stop_all(procs)
    return out


async def retention_sizes(url: str, per_day: int, days: int, retention: int) -> list[tuple[date, int, int]]:
    pool = open_pool(url, size=1, name="bench-retention")
    await pool.open(wait=True)
    sizes = []
    try:
        first = date(2031, 1, 1)
        for d in range(days):
            day = first + timedelta(days=d)
            writer = RequestLogWriter(pool, "bench", capacity=per_day + 1, interval=3600)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
            for i in range(per_day):
                fill(d * per_day + i, start + i * 86400 / per_day, writer.add)
            assert await writer.flush_all(120)
            await upkeep(pool, retention, today=day)
            async with pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0), "
                    "(SELECT count(*) FROM request_log_rows) FROM pg_inherits i "
                    "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
                    "WHERE p.relname IN ('request_log_rows', 'request_log_bodies')")
                row = await cur.fetchone()
                assert row is not None
                sizes.append((day, int(row[0]), int(row[1])))
                print(f"  day {day}: {int(row[1]):8d} rows kept, {int(row[0]) / 1e6:7.1f} MB", flush=True)
    finally:
        await pool.close()
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--per-day", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=8)
    parser.add_argument("--stall-rows", default="500,5000", help="batch sizes for the loop-hold figure")
    parser.add_argument("--stall-only", action="store_true", help="only the loop-hold figure")
    args = parser.parse_args()
    db_url, secret = asyncio.run(bg.prepare_database())
    try:
        report(db_url, secret, args)
    finally:
        bg.drop_scratch(db_url)


def report_stall(db_url: str, args: argparse.Namespace) -> None:
    for batch in (int(n) for n in args.stall_rows.split(",")):
        held = asyncio.run(loop_stall(db_url, batch, args.rounds))
        print(f"a batch of {batch:5d} records: the event loop held at most {max(held):6.2f} ms of CPU "
              f"(rounds: {', '.join(f'{h:.2f}' for h in held)})", flush=True)


def report(db_url: str, secret: str, args: argparse.Namespace) -> None:
    report_stall(db_url, args)
    if args.stall_only:
        return
    hot, write = asyncio.run(per_row_cost(db_url, args.rows))
    print(f"per row: request path {hot:.2f} us, writer (rows + COPY) {write:.2f} us, total {hot + write:.2f} us",
          flush=True)
    cpu = node_cpu(db_url, secret, args)
    on, off, access = (statistics.median(cpu[m]) for m in ("on", "off", "on+access"))
    print(f"node CPU per request (median of {args.rounds}): request log off {off:.1f} us, on {on:.1f} us "
          f"({(on - off) / on * 100:+.1f}%), on + access log lines {access:.1f} us "
          f"({(access - off) / access * 100:+.1f}%)")
    print(f"request log share by per-row cost: {(hot + write) / on * 100:.1f}% of the node's CPU per request")
    sizes = asyncio.run(retention_sizes(db_url, args.per_day, args.days, 3))
    steady = [s for _, s, _ in sizes[4:]]
    if steady:
        print(f"retention 3 days, {args.per_day} rows/day: size from day 5 on {min(steady) / 1e6:.1f}-"
              f"{max(steady) / 1e6:.1f} MB (flat), peak rows kept {max(r for *_, r in sizes)}")


if __name__ == "__main__":
    main()
