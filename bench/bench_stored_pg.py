"""What a stored Responses answer costs Postgres: backend CPU per stored row, and the node's CPU per
statement, for the writer's statement (`ResponseTable.insert`); then the same at the node level.

    python bench/bench_stored_pg.py statements [--rounds 5] [--batches 200] [--tree DIR ...]
    python bench/bench_stored_pg.py node [--rounds 3] [--duration 6] [--connections 16] [--tree DIR ...]

`statements`: batches of 1, 22 (about what a node writes at once at saturation) and 100 typical
answers (a 1.3 kB response object, a 120 B input) through the tree's own `ResponseTable`, on a pool
of one connection: the backend's CPU from /proc/<backend pid>/schedstat (nanoseconds, user and
kernel: the commit's WAL flush is a system call of the backend), the process's `time.process_time`
per statement. Each tree in its own process, alternated, medians of the rounds.

`node`: the bench harness's fake upstream and one node per tree (bench/bench_gateway.py), wrk at
`--connections` for `--duration` s on `/v1/responses` streams (`bench_gateway.RESPONSES_BODY`),
stored (the API's default) and `store: false`, alternated: per request the node's CPU, the CPU of
the Postgres backends of the scratch database (the nodes' connections, and autovacuum workers on
it) and of the server's own processes (WAL writer, checkpointer, background writer), and the rows
each INSERT carried (rows over distinct transaction ids of the rows written in the run).

A real Postgres: SHIELDES_BENCH_DATABASE_URL, or the embedded one under $TMPDIR/shieldes-bench-pg;
a scratch database is created and dropped. The Postgres server must run on this machine (/proc).
`--tree DIR`: another checkout (`git archive <commit> | tar -x -C DIR`) measured the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stored_insert import Rows  # noqa: E402

SIZES = (1, 22, 100)
AUX = ("walwriter", "checkpointer", "background writer", "autovacuum launcher")


def answer(n: int) -> dict[str, Any]:
    """A response object as a native Responses upstream returns it for a short answer (~1.3 kB)."""
    return {"id": f"resp_{n:032x}", "object": "response", "created_at": 1764800000, "status": "completed",
            "background": False, "error": None, "incomplete_details": None,
            "instructions": "You are a helpful assistant. Answer briefly and precisely.",
            "max_output_tokens": None, "max_tool_calls": None, "model": "gpt-4o-2024-08-06",
            "output": [{"id": f"msg_{n:032x}", "type": "message", "status": "completed", "role": "assistant",
                        "content": [{"type": "output_text", "text": "Hello benchmark! " * 12, "annotations": [],
                                     "logprobs": []}]}],
            "parallel_tool_calls": True, "previous_response_id": None, "prompt_cache_key": None,
            "reasoning": {"effort": None, "summary": None}, "safety_identifier": None, "service_tier": "default",
            "store": True, "temperature": 1.0, "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": "auto", "tools": [], "top_logprobs": 0, "top_p": 1.0, "truncation": "disabled",
            "usage": {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 20,
                      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 29},
            "user": None, "metadata": {"client": "bench", "run": "stored-pg"}}


INPUT = [{"type": "message", "role": "user", "content": [{"type": "input_text",
                                                           "text": "Say hello to the benchmark please"}]}]


def on_cpu(pid: int) -> float:
    """Seconds a process has run (user and kernel), to the nanosecond; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except OSError:
        return 0.0


# --- statements: one tree's writer, in its own process --------------------------------------------


async def measure(url: str, batches: int) -> dict[int, tuple[float, float]]:
    from shieldes.events.pg_store import open_pool
    from shieldes.responses.store import ResponseTable

    pool = open_pool(url, size=1)
    await pool.open(wait=True)
    table = ResponseTable(pool)
    rows = Rows(uuid.uuid4().hex[:12], INPUT, answer)  # this process's ids: the table holds other runs' rows

    out: dict[int, tuple[float, float]] = {}
    try:
        for k in SIZES:
            for _ in range(3):
                await table.insert(rows(k))  # partition made, statement prepared
            async with pool.connection() as conn:
                pid = conn.info.backend_pid  # the pool's one connection
            todo = [rows(k) for _ in range(max(5, batches * 10 // (10 + k)))]
            pg0, node0 = on_cpu(pid), time.process_time()
            for batch in todo:
                await table.insert(batch)
            pg, node = on_cpu(pid) - pg0, time.process_time() - node0
            out[k] = (pg / len(todo) / k, node / len(todo))
    finally:
        await pool.close()
    return out


def statements(args: argparse.Namespace) -> None:
    import bench_gateway as bg

    url, _ = asyncio.run(bg.prepare_database())
    got: dict[str, list[dict[str, list[float]]]] = {}
    try:
        for _ in range(args.rounds):
            for tree in [str(ROOT), *args.tree]:  # each tree's own shieldes (the script's folder holds none)
                out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "one", "--url", url,
                                      "--batches", str(args.batches)], env={**os.environ, "PYTHONPATH": tree},
                                     cwd=tree, check=True, capture_output=True, text=True).stdout
                got.setdefault(tree, []).append(json.loads(out.strip().splitlines()[-1]))
    finally:
        bg.drop_scratch(url)
    print(f"medians of {args.rounds} rounds, trees alternated")
    print_per_batch("tree", {"this tree" if tree == str(ROOT) else tree:
                             [{int(k): v for k, v in r.items()} for r in runs] for tree, runs in got.items()})


def print_per_batch(first: str, got: dict[str, list[dict[int, Any]]]) -> None:
    """One row per name: the medians over its runs of Postgres CPU per row and node CPU per statement."""
    heads = " | ".join(f"batch of {k}: Postgres us per row, node us per statement" for k in SIZES)
    print(f"| {first} | {heads} |")
    print("|---|" + "---:|" * len(SIZES))
    for name, runs in got.items():
        cells = " | ".join(f"{statistics.median(r[k][0] for r in runs) * 1e6:.0f}, "
                           f"{statistics.median(r[k][1] for r in runs) * 1e6:.0f}" for k in SIZES)
        print(f"| {name} | {cells} |")


# --- variants: other ways to send the same batch, measured and not adopted --------------------------

PG_EPOCH = 946_684_800  # 2000-01-01 UTC: binary timestamptz counts microseconds from it
_ARRAY = struct.Struct("!iiIii")  # ndim, has nulls, element type, length, lower bound
_COLUMNS = "id, created_at, key_id, previous_response_id, model, input, response"


def _text_array(items: list[Any]) -> bytes:
    parts = [_ARRAY.pack(1, int(None in items), 25, len(items), 1)]  # 25: text
    for item in items:
        data = item if isinstance(item, bytes) else item.encode() if item is not None else None
        parts += (b"\xff\xff\xff\xff",) if data is None else (struct.pack("!i", len(data)), data)
    return b"".join(parts)


def _float8_array(items: list[float]) -> bytes:
    return _ARRAY.pack(1, 0, 701, len(items), 1) + b"".join(struct.pack("!id", 8, x) for x in items)  # 701: float8


def _copy_rows(rows: list[Any]) -> bytes:
    parts = [b"PGCOPY\n\xff\r\n\x00", struct.pack("!ii", 0, 0)]
    for r in rows:
        parts.append(struct.pack("!h", 7))
        for value in (r.id.encode(), struct.pack("!q", round((r.created_at - PG_EPOCH) * 1e6)), r.key_id.encode(),
                      None if r.previous_response_id is None else r.previous_response_id.encode(), r.model.encode(),
                      b"\x01" + r.input, b"\x01" + r.response):  # jsonb's binary input: version 1, then the text
            parts += (b"\xff\xff\xff\xff",) if value is None else (struct.pack("!i", len(value)), value)
    parts.append(struct.pack("!h", -1))
    return b"".join(parts)


async def variants_measure(url: str, batches: int) -> dict[str, dict[int, tuple[float, float]]]:
    from psycopg.adapt import Dumper
    from psycopg.postgres import types as pg_types
    from psycopg.pq import Format

    from shieldes.events.pg_store import open_pool
    from shieldes.responses.store import ResponseTable, Utf8, Utf8Dumper, day_of, partition_name

    class Raw:
        __slots__ = ("data",)

        def __init__(self, data: bytes) -> None:
            self.data = data

    class TextArray(Raw):
        __slots__ = ()

    class TextArrayDumper(Dumper):
        format, oid = Format.BINARY, pg_types["text"].array_oid

        def dump(self, obj: Raw) -> bytes:
            return obj.data

    class Float8ArrayDumper(TextArrayDumper):
        oid = pg_types["float8"].array_oid

    select = ("SELECT r->>0, to_timestamp((r->>1)::float8), r->>2, r->>3, r->>4, r->5, r->6 "
              "FROM jsonb_array_elements(%b::text::jsonb) AS r ON CONFLICT DO NOTHING")
    arrays = ("SELECT i, to_timestamp(t), k, p, m, a::jsonb, b::jsonb FROM unnest(%s::text[], "
              "%s::float8[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) AS r(i, t, k, p, m, a, b) "
              "ON CONFLICT DO NOTHING")

    def batch_json(rows: list[Any]) -> bytes:
        parts = [b"["]
        for r in rows:
            parts += (json.dumps([r.id, r.created_at, r.key_id, r.previous_response_id, r.model])[:-1].encode(),
                      b",", r.input, b",", r.response, b"],")
        parts[-1] = b"]]"
        return b"".join(parts)

    pool = open_pool(url, size=1)
    await pool.open(wait=True)
    table = ResponseTable(pool)
    await table.ensure_partitions({day_of(time.time())})

    async def partition(rows: list[Any]) -> None:
        async with pool.connection() as conn, conn.cursor() as cur:
            cur.adapters.register_dumper(Utf8, Utf8Dumper)
            await cur.execute(f"INSERT INTO {partition_name(day_of(rows[0].created_at))} ({_COLUMNS}) "
                              + select, (Utf8(batch_json(rows)),), prepare=True)

    async def seven_arrays(rows: list[Any]) -> None:
        async with pool.connection() as conn, conn.cursor() as cur:
            cur.adapters.register_dumper(TextArray, TextArrayDumper)
            cur.adapters.register_dumper(Raw, Float8ArrayDumper)
            await cur.execute(f"INSERT INTO stored_responses ({_COLUMNS}) " + arrays, (
                TextArray(_text_array([r.id for r in rows])), Raw(_float8_array([r.created_at for r in rows])),
                TextArray(_text_array([r.key_id for r in rows])),
                TextArray(_text_array([r.previous_response_id for r in rows])),
                TextArray(_text_array([r.model for r in rows])), TextArray(_text_array([r.input for r in rows])),
                TextArray(_text_array([r.response for r in rows]))), prepare=True)

    async def copy(rows: list[Any]) -> None:  # no ON CONFLICT: a retried batch would fail
        async with pool.connection() as conn, conn.cursor() as cur, cur.copy(
                f"COPY {partition_name(day_of(rows[0].created_at))} ({_COLUMNS}) FROM STDIN (FORMAT BINARY)") as out:
            await out.write(_copy_rows(rows))

    ways = {"ResponseTable.insert": table.insert, "straight into the partition": partition,
            "seven binary arrays": seven_arrays, "binary COPY into the partition": copy}
    rows = Rows(uuid.uuid4().hex[:12], INPUT, answer)
    out: dict[str, dict[int, tuple[float, float]]] = {}
    try:
        async with pool.connection() as conn:
            pid = conn.info.backend_pid
        for k in SIZES:
            for name, way in ways.items():
                for _ in range(3):
                    await way(rows(k))  # statement prepared
                todo = [rows(k) for _ in range(max(5, batches * 10 // (10 + k)))]
                pg0, node0 = on_cpu(pid), time.process_time()
                for batch in todo:
                    await way(batch)
                pg, node = on_cpu(pid) - pg0, time.process_time() - node0
                out.setdefault(name, {})[k] = (pg / len(todo) / k, node / len(todo))
    finally:
        await pool.close()
    return out


def variants(args: argparse.Namespace) -> None:
    import bench_gateway as bg
    import uvloop

    url, _ = asyncio.run(bg.prepare_database())
    got: dict[str, list[dict[int, tuple[float, float]]]] = {}
    try:
        for _ in range(args.rounds):
            for name, per in uvloop.run(variants_measure(url, args.batches)).items():
                got.setdefault(name, []).append(per)
    finally:
        bg.drop_scratch(url)
    print(f"this tree, medians of {args.rounds} rounds, the ways alternated")
    print_per_batch("way", got)


# --- node: a node under wrk ------------------------------------------------------------------------


def pg_processes(conn: Any, dbname: str) -> dict[int, str]:
    """The server's processes this bench counts: the backends of the scratch database but `conn`'s
    own (the nodes' connections, autovacuum workers on it) and the server's own processes."""
    rows = conn.execute(
        "SELECT pid, backend_type FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
        "AND (datname = %s OR backend_type = ANY(%s))", (dbname, list(AUX))).fetchall()
    return {int(pid): "server" if kind in AUX else "backends" for pid, kind in rows}


def commits(conn: Any) -> int:
    """Transactions committed in the scratch database (this bench's own queries included: a few per run)."""
    return int(conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
               .fetchone()[0])


def pg_cpu(procs: dict[int, str]) -> dict[int, float]:
    return {pid: on_cpu(pid) for pid in procs}


def pg_used(procs: dict[int, str], before: dict[int, float], after: dict[int, float]) -> dict[str, float]:
    """CPU between two readings by kind; a process started meanwhile counts from 0, one that ended
    meanwhile (a short autovacuum worker) is not counted."""
    out = {"backends": 0.0, "server": 0.0}
    for pid, kind in procs.items():
        if after.get(pid, 0.0) > 0.0:
            out[kind] += after[pid] - before.get(pid, 0.0)
    return out


def node(args: argparse.Namespace) -> None:
    import bench_gateway as bg
    import psycopg

    up_port = bg.free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    url, secret = asyncio.run(bg.prepare_database())
    asyncio.run(bg.add_provider(url, upstream))
    trees = [ROOT, *(Path(t).resolve() for t in args.tree)]
    ports = {tree: bg.free_port() for tree in trees}
    procs = {"upstream": bg.spawn(["-m", "tests.fake_upstream", "--port", str(up_port), "--completion-tokens", "20"])}
    for i, tree in enumerate(trees):
        procs[str(tree)] = bg.spawn(["-m", "shieldes", "serve", "--host", "127.0.0.1", "--port", str(ports[tree]),
                                     "--node-id", f"bench-{i}"], env={"SHIELDES_DATABASE_URL": url}, src=tree)
    results: dict[tuple[Path, str], list[dict[str, float]]] = {}
    try:
        for port in (up_port, *ports.values()):
            bg.wait_port(port)
        with psycopg.connect(url, autocommit=True) as conn:
            dbname = conn.info.dbname
            for _ in range(args.rounds):
                for tree in trees:
                    for mode, body in (("stored", bg.RESPONSES_BODY), ("store: false", {**bg.RESPONSES_BODY,
                                                                                      "store": False})):
                        target = f"http://127.0.0.1:{ports[tree]}{bg.RESPONSES_PATH}"
                        bg.load(target, body, secret, 1, 4)  # warm-up
                        time.sleep(0.2)  # the warm-up's rows written (the writer waits 25 ms)
                        pid = procs[str(tree)].pid
                        if procs[str(tree)].poll() is not None:
                            raise SystemExit(f"the node of {tree} exited; run it by hand to see why")
                        start = conn.execute("SELECT now()").fetchone()[0]
                        pgs = pg_processes(conn, dbname)
                        node0, pg0, x0 = bg.cpu_seconds(pid), pg_cpu(pgs), commits(conn)
                        res = bg.load(target, body, secret, args.duration, args.connections)
                        time.sleep(1.1)  # the last batch written, the backends' counts flushed (each second)
                        pgs |= pg_processes(conn, dbname)  # autovacuum workers started meanwhile
                        node1, pg1, x1 = bg.cpu_seconds(pid), pg_cpu(pgs), commits(conn)
                        rows, xacts = conn.execute(
                            "SELECT count(*), count(DISTINCT xmin::text) FROM stored_responses WHERE created_at >= %s",
                            (start,)).fetchone()
                        n = max(1, res.requests)
                        used = pg_used(pgs, pg0, pg1)
                        got = {"rps": res.rps, "p50": res.p50_ms, "node": (node1 - node0) / n * 1e6,
                               "backends": used["backends"] / n * 1e6, "server": used["server"] / n * 1e6,
                               "batch": rows / xacts if xacts else 0.0, "commits": (x1 - x0) / n,
                               "errors": res.errors}
                        results.setdefault((tree, mode), []).append(got)
                        print(f"{tree.name:20} {mode:12} " + "  ".join(f"{k} {v:.1f}" for k, v in got.items()),
                              flush=True)
    finally:
        bg.stop_all(procs)
        bg.drop_scratch(url)
    print(f"\nwrk -c{args.connections}, {args.duration} s, medians of {args.rounds} rounds alternated")
    print("| tree | mode | RPS | p50 ms | node CPU us/req | Postgres backends us/req | Postgres server "
          "processes us/req | rows per INSERT | commits per request |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for (tree, mode), runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"| {'this tree' if tree == ROOT else tree} | {mode} | {med['rps']:.0f} | {med['p50']:.2f} | "
              f"{med['node']:.0f} | {med['backends']:.0f} | {med['server']:.0f} | {med['batch']:.1f} | "
              f"{med['commits']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("statements")
    st.add_argument("--batches", type=int, default=200, help="statements per size (fewer for larger batches)")
    st.add_argument("--rounds", type=int, default=5)
    st.add_argument("--tree", action="append", default=[], help="another source tree, measured the same way")
    one = sub.add_parser("one")  # a subprocess's single measure, on this database
    one.add_argument("--url", required=True)
    one.add_argument("--batches", type=int, default=200)
    va = sub.add_parser("variants")
    va.add_argument("--batches", type=int, default=200, help="statements per size (fewer for larger batches)")
    va.add_argument("--rounds", type=int, default=5)
    nd = sub.add_parser("node")
    nd.add_argument("--rounds", type=int, default=3)
    nd.add_argument("--duration", type=int, default=6)
    nd.add_argument("--connections", type=int, default=16)
    nd.add_argument("--tree", action="append", default=[], help="another source tree, measured the same way")
    args = parser.parse_args()
    if args.cmd == "one":
        import uvloop

        print(json.dumps(uvloop.run(measure(args.url, args.batches))))
        return
    {"statements": statements, "variants": variants, "node": node}[args.cmd](args)


if __name__ == "__main__":
    main()
