"""Admin reads at a million keys, this tree against an earlier one, on the same database.

    python bench/bench_keys_scale.py --keep        # or bench_team_counts.py --keep: prints the kept DB
    python bench/bench_admin_reads.py --reuse DB --baseline-tree DIR [--rounds 2] [--runs 3] [--snapshot]
    # when this checkout's schema is newer than DIR's: a copy for DIR at its schema, kept apart
    psql -c 'CREATE DATABASE DB_OLD TEMPLATE DB'   # before this tree's first run upgrades DB
    python bench/bench_admin_reads.py --reuse DB --baseline-tree DIR --baseline-reuse DB_OLD --snapshot

With --snapshot, each tree first writes a sealed snapshot with its own CLI (do it once: a
database a bench kept may hold only snapshots this release does not load). Each round starts one
node of each tree in turn (this one first) on its database, waits for it to
be ready and settled (its deferred key indexes built), creates one key through its admin API (so
the newest snapshot is behind the head by a config event or more) and times each read --runs
times from this process: the config diff from the newest snapshot to the head, the config at the
head with the console's 50 keys, the audit of one key, and the filtered key lists (searches
included). With --list, also the whole `shieldes key list` as a process, once per round: remote
mode as JSON and as a table, direct mode as JSON, to its first byte and to its end. Prints the
medians per tree, and the events the diff spanned.

Uses --database-url (a server), else the test suite's embedded Postgres, as the bench that kept
the database did.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench.bench_keys_scale import ADMIN_TOKEN, SECRET, NodeProc, settled_cpu  # noqa: E402
from shieldes import db  # noqa: E402
from tests import pg  # noqa: E402

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TIMEOUT = aiohttp.ClientTimeout(total=120)


def reads(snapshot: int, head: int) -> list[tuple[str, str]]:
    return [
        ("config/diff from the newest snapshot", f"/config/diff?from={snapshot}"),
        ("config at the head, keys_limit=50", f"/config?at={head}&keys_limit=50"),
        ("audit?subject=app-77", "/audit?subject=app-77"),
        ("audit?subject=team-5", "/audit?subject=team-5"),
        ("keys?team=team-5 (50 keys)", "/keys?team=team-5"),
        ("keys?status=revoked (none)", "/keys?status=revoked"),
        ("keys?search=zzz (none)", "/keys?search=zzz"),
        ("keys?search=app-12345 (11 keys)", "/keys?search=app-12345"),
        ("keys?search=APP-9999&limit=100 (111 match)", "/keys?search=APP-9999&limit=100"),
    ]


def whole_list(root: Path, env: dict[str, str], *args: str) -> tuple[float, float, float, int]:
    """`shieldes key list` of every key as a process: (seconds to its first byte, to its end, its CPU
    seconds, bytes)."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "shieldes", *args, "key", "list"], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    first, size = 0.0, 0
    while chunk := proc.stdout.read1(1 << 16):
        first = first or time.perf_counter() - started
        size += len(chunk)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"key list {args}: {proc.stderr.read().decode() if proc.stderr else ''}")
    return first, time.perf_counter() - started, usage.ru_utime + usage.ru_stime, size


def lists(url: str, root: Path, base: str, times: dict[str, list[float]], notes: dict[str, str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(root), "SHIELDES_CLUSTER_SECRET": SECRET}
    remote = {**env, "SHIELDES_ADMIN_URL": base, "SHIELDES_ADMIN_TOKEN": ADMIN_TOKEN}
    for name, e, args in (("key list --json, remote", remote, ("--json",)), ("key list (table), remote", remote, ()),
                          ("key list --json, direct", {**env, "SHIELDES_DATABASE_URL": url}, ("--json",))):
        first, total, cpu, size = whole_list(root, e, *args)
        times.setdefault(name, []).append(total)
        times.setdefault(name + ": first byte", []).append(first)
        times.setdefault(name + ": the CLI's CPU", []).append(cpu)
        notes[name] = f"{size / 1e6:.0f} MB"


async def get(http: aiohttp.ClientSession, base: str, path: str) -> tuple[float, int, Any]:
    started = time.perf_counter()
    async with http.get(base + "/admin/v1" + path, headers=AUTH) as r:
        body = await r.json()
        return time.perf_counter() - started, r.status, body


async def one_round(url: str, root: Path, tag: str, runs: int, times: dict[str, list[float]],
                    notes: dict[str, str], whole: bool = False) -> None:
    node = NodeProc(url, f"bench-{tag}", root)
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            await node.ready(http)
            await settled_cpu([node.proc.pid])
            async with http.post(node.base + "/admin/v1/keys", json={"name": f"bench-diff-{uuid.uuid4().hex[:8]}"},
                                 headers=AUTH) as r:
                if r.status >= 300:
                    raise RuntimeError(f"key create: {r.status} {await r.text()}")
            _, _, snaps = await get(http, node.base, "/snapshots")
            snapshot = max(s["position"] for s in snaps["data"] if s["compatible"])
            async with http.get(node.base + "/ready") as r:
                head = int((await r.json())["position"])
            for name, path in reads(snapshot, head):
                for _ in range(runs):
                    seconds, status, body = await get(http, node.base, path)
                    times.setdefault(name, []).append(seconds)
                    if status != 200:  # e.g. a 503 past the read bound (SHIELDES_DB_ADMIN_READ_TIMEOUT)
                        notes[name] = f"{status} {body['error']['code']} after {seconds:.1f} s"
                    elif name.startswith("config/diff"):
                        notes[name] = f"{body['events']} events, {len(body['changes'])} changes"
            if whole:  # the CLI's whole list, in a thread: this loop only waits
                await asyncio.to_thread(lists, url, root, node.base, times, notes)
    finally:
        node.stop()


def with_snapshot(url: str, root: Path, tag: str) -> None:
    """A sealed snapshot this tree's nodes load, written by its own `shieldes snapshot create` (a
    database kept by an older bench may hold only layouts this release no longer reads, and a
    snapshot another tree wrote may be of a schema this one does not know: a node then folds the
    whole log, minutes at a million keys, and every read at a point folds from 0)."""
    env = {**os.environ, "SHIELDES_DATABASE_URL": url, "PYTHONPATH": str(root), "SHIELDES_CLUSTER_SECRET": SECRET}
    started = time.perf_counter()
    made = subprocess.run([sys.executable, "-m", "shieldes", "--json", "snapshot", "create"], cwd=root, env=env,
                          capture_output=True, text=True, check=True)
    info = json.loads(made.stdout)
    print(f"  {tag}: snapshot {info['id']} at position {info['position']} in {time.perf_counter() - started:.0f} s",
          flush=True)


async def run(trees: list[tuple[str, Path, str]], rounds: int, runs: int, snapshot: bool, whole: bool) -> None:
    for tag, root, url in trees if snapshot else ():
        with_snapshot(url, root, tag)
    results: dict[str, dict[str, list[float]]] = {tag: {} for tag, _, _ in trees}
    notes: dict[str, dict[str, str]] = {tag: {} for tag, _, _ in trees}
    for r in range(rounds):
        for tag, root, url in trees:
            print(f"round {r + 1}: {tag} (load average {' '.join(f'{x:.2f}' for x in os.getloadavg())})", flush=True)
            await one_round(url, root, tag, runs, results[tag], notes[tag], whole)
    names = list(results[trees[0][0]])
    print(f"\n{'read':<42}" + "".join(f"{tag:>24}" for tag, _, _ in trees))
    for name in names:
        cells = "".join(f"{statistics.median(results[tag][name]) * 1000:>21.0f} ms" for tag, _, _ in trees)
        print(f"{name:<42}{cells}")
    for tag, _, _ in trees:
        for name, note in notes[tag].items():
            print(f"  {tag}: {name}: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reuse", metavar="DBNAME", required=True, help="a database a --keep run left")
    parser.add_argument("--baseline-tree", type=Path, metavar="DIR", help="a checkout of an earlier version")
    parser.add_argument("--baseline-reuse", metavar="DBNAME", help="the baseline's database (default: --reuse)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", help="the server holding the databases")
    parser.add_argument("--snapshot", action="store_true",
                        help="first write a snapshot with each tree's `shieldes snapshot create`")
    parser.add_argument("--list", action="store_true",
                        help="also time `shieldes key list` of every key (remote --json and table, direct --json)")
    args = parser.parse_args()
    server = db.libpq_url(args.database_url) if args.database_url else pg.server_url()
    url = pg.with_database(server, args.reuse)
    with __import__("psycopg").connect(url) as conn:
        revision = db.schema_revision(conn)
    if revision != db.SCHEMA_HEAD:
        db.upgrade(url)
        print(f"schema upgraded: {revision} -> {db.SCHEMA_HEAD}")
    trees = [("this tree", ROOT, url)]
    if args.baseline_tree:
        trees.append(("baseline", args.baseline_tree.resolve(),
                      pg.with_database(server, args.baseline_reuse or args.reuse)))
    asyncio.run(run(trees, args.rounds, args.runs, args.snapshot, args.list))


if __name__ == "__main__":
    main()
