"""Admin writes at scale: `shieldes key create` and `key revoke` end to end (a CLI process: start,
connect, decide, append, print) on a log holding N virtual keys, folding the config from
position 0 (no snapshot) and from the newest snapshot plus the config tail (how the CLI writes).

    python bench/bench_admin_write.py --keys 10000 100000 [--runs 3] [--database-url URL]

Creates a scratch database on --database-url's server (default: the test suite's embedded one), appends N
`virtual_key.created` events in batches, then times the CLI (medians of --runs), before and after
a snapshot is saved. Also prints the in-process part (config load + decide + append) alone, since
a Python CLI process spends a fixed ~0.3-0.5 s importing before it does any work.

`key create` and `key revoke` now read only their scope in SQL (docs/snapshots.md), so their CLI
columns no longer depend on the snapshot; the "write ms" column still times the snapshot + tail
path other config commands take. bench/bench_keys_scale.py measures the million-key case.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_log import scratch_url  # noqa: E402
from shieldes import db  # noqa: E402
from shieldes.config_writer import write_config  # noqa: E402
from shieldes.events.catalog import CONFIG_STREAM, VirtualKeyCreated  # noqa: E402
from shieldes.events.codec import Codec  # noqa: E402
from shieldes.events.pg_store import PostgresEventStore, open_pool  # noqa: E402
from shieldes.events.store import AppendOptions, NewEvent  # noqa: E402
from shieldes.projections.commands import CreateKey  # noqa: E402
from shieldes.secrets import hash_key  # noqa: E402
from shieldes.snapshots import codec as snapcodec  # noqa: E402
from shieldes.snapshots.config_start import config_from_snapshot  # noqa: E402
from shieldes.snapshots.loader import load_projection  # noqa: E402
from shieldes.snapshots.store import save_snapshot  # noqa: E402
from tests import pg  # noqa: E402

SECRET = "bench-cluster-secret"
BATCH = 5000


async def seed(store: PostgresEventStore, n: int) -> None:
    codec = Codec()
    for start in range(0, n, BATCH):
        batch = [NewEvent.of(VirtualKeyCreated(f"key_{i:08x}", f"app-{i}", hash_key(f"sk-{i}"), "sk-shd-abcd",
                                               None, None, None), codec)
                 for i in range(start, min(n, start + BATCH))]
        await store.append(CONFIG_STREAM, batch, AppendOptions(metadata={"actor": "bench"}))


def cli(url: str, *args: str) -> float:
    env = {**os.environ, "SHIELDES_DATABASE_URL": url, "SHIELDES_CLUSTER_SECRET": SECRET, "SHIELDES_ACTOR": "bench"}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "shieldes", *args], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


async def in_process(store: PostgresEventStore, snapshot: bool, name: str) -> float:
    started = time.perf_counter()
    base = await config_from_snapshot(store.connections, snapcodec.mac_key(SECRET)) if snapshot else None
    await write_config(store, CreateKey(name, name, hash_key(name), "sk-shd-xxxx"), actor="bench", base=base)
    return time.perf_counter() - started


async def measure(server: str, n: int, runs: int) -> list[str]:
    name, url = scratch_url(server)
    rows = []
    try:
        pool = open_pool(url, size=2, name="bench")
        await pool.open(wait=True)
        try:
            store = PostgresEventStore(pool)
            await seed(store, n)
            for snapshot in (False, True):
                if snapshot:
                    projection = await load_projection(pool)
                    await save_snapshot(pool, projection, node_id="bench", keep=2,
                                        key=snapcodec.mac_key(SECRET))
                label = "snapshot + tail" if snapshot else "fold from 0"
                inner = [await in_process(store, snapshot, f"inproc-{snapshot}-{i}") for i in range(runs)]
                create = [cli(url, "key", "create", "--name", f"cli-{snapshot}-{i}") for i in range(runs)]
                revoke = [cli(url, "key", "revoke", f"cli-{snapshot}-{i}") for i in range(runs)]
                rows.append(f"{n:>9,}  {label:<16}  {statistics.median(inner) * 1000:>10.0f}  "
                            f"{statistics.median(create) * 1000:>10.0f}  {statistics.median(revoke) * 1000:>10.0f}")
        finally:
            await pool.close()
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return rows


async def main_async(args: argparse.Namespace) -> None:
    # the test suite's embedded server by default: the CLI stops an idle embedded database of the
    # data directory after each command, which would time Postgres' start and stop, not the write
    server = db.libpq_url(args.database_url) if args.database_url else pg.server_url()
    print(f"{'keys':>9}  {'config from':<16}  {'write ms':>10}  {'create ms':>10}  {'revoke ms':>10}")
    print("(write: load + decide + append in process; create/revoke: the CLI end to end, medians)")
    for n in args.keys:
        for row in await measure(server, n, args.runs):
            print(row, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", help="server to create the scratch database on")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
