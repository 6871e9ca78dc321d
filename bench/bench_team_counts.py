"""Team key counts at a million keys: `team list`, `budget show --team` and the admin API's teams.

    python bench/bench_team_counts.py --keys 1000000 --teams 10000 [--runs 5] [--keep]
    python bench/bench_team_counts.py --reuse DB [--runs 5]           # a database --keep left

Builds the log of bench_keys_scale.py (bulk appends; every second key in one of --teams teams) and
a format-3 snapshot of it with its teams part (skipped with --reuse: a database this bench kept;
one kept by an older release is upgraded to this schema and given a snapshot with a teams part
first), then prints:

- in process, on the config as a full read loads it (newest snapshot + config tail): the load, the
  count of every team's active keys from the snapshot's columns (what a load adds), and the
  walk the counts replace (every key read for one team; `team list` did it once per team, so its
  time is that walk times --teams, stated as extrapolated, not run);
- in process, the teams-only read `team list` and `budget show --team` do: the snapshot's teams
  part plus the config tail, with no key loaded;
- the CLI as processes, direct mode (Postgres): `team list --json` and `budget show --team T`, and
  `python -c pass` and the direct mode's imports (`click`, `psycopg`) as the floor;
- a node started on the database: `GET /admin/v1/teams` (a page of 100, 1000 and 10,000),
  `GET /admin/v1/teams/{team}`, and the CLI's remote mode (`SHIELDES_ADMIN_URL`): `team list`
  (every page) and `budget show --team T`, with `shieldes key --help` as that mode's floor.

Medians of --runs. Uses --database-url (a server) else the test suite's embedded Postgres.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_keys_scale import ADMIN_TOKEN, SECRET, Shape, nodes, seeded_projection, settled_cpu  # noqa: E402
from bench.bench_log import scratch_url  # noqa: E402
from shieldes import db  # noqa: E402
from shieldes.config_writer import load_config  # noqa: E402
from shieldes.events.codec import Codec  # noqa: E402
from shieldes.events.pg_store import PostgresEventStore, open_pool  # noqa: E402
from shieldes.projections.state import ConfigState  # noqa: E402
from shieldes.projections.team_keys import team_key_counts  # noqa: E402
from shieldes.snapshots import codec as snapcodec  # noqa: E402
from shieldes.snapshots.config_start import config_from_snapshot  # noqa: E402
from shieldes.snapshots.loader import load_projection  # noqa: E402
from shieldes.snapshots.store import save_encoded  # noqa: E402
from shieldes.snapshots.teams_start import NEWEST_WITH_TEAMS, load_teams, teams_from_snapshot  # noqa: E402
from tests import pg  # noqa: E402

TEAM = "team-5"  # a team with keys (every second key is in a team, round robin)


def out(name: str, value: str) -> None:
    print(f"  {name:<52} {value}", flush=True)


def timed(fn: Callable[[], object], runs: int) -> list[float]:
    xs = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        xs.append(time.perf_counter() - t)
    return xs


def ms(xs: list[float]) -> str:
    return f"median {statistics.median(xs) * 1000:.1f} ms (min {min(xs) * 1000:.1f}, max {max(xs) * 1000:.1f})"


def cli(url: str, *args: str, remote: str | None = None) -> float:
    env = {**os.environ, "SHIELDES_DATABASE_URL": url, "SHIELDES_CLUSTER_SECRET": SECRET, "PYTHONPATH": str(ROOT)}
    if remote is not None:
        env.update(SHIELDES_ADMIN_URL=remote, SHIELDES_ADMIN_TOKEN=ADMIN_TOKEN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "shieldes", *args], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


async def build(url: str, shape: Shape) -> None:
    pool = open_pool(url, size=4, name="bench")
    await pool.open(wait=True)
    try:
        projection = await seeded_projection(pool, shape)
        snap = snapcodec.encode(projection, snapcodec.mac_key(SECRET))  # this release's layout: the one it loads
        await save_encoded(pool, snap, node_id="bench", keep=5)
        out("snapshot written", f"format {snapcodec.FORMAT}")
    finally:
        await pool.close()


async def prepare_reused(url: str) -> None:
    """A kept database as this release reads it: at its schema head, with a teams part in its newest
    snapshot (a database kept by an older release has neither)."""
    with psycopg.connect(url) as conn:
        revision = db.schema_revision(conn)
    if revision != db.SCHEMA_HEAD:
        db.upgrade(url)
        out("schema upgraded", f"{revision} -> {db.SCHEMA_HEAD}")
    pool = open_pool(url, size=2, name="bench")
    await pool.open(wait=True)
    try:
        async with pool.connection() as conn:
            cur = await conn.execute(NEWEST_WITH_TEAMS + " LIMIT 1")
            if await cur.fetchone() is not None:
                return
        t = time.perf_counter()
        projection = await load_projection(pool, snapshot_key=snapcodec.mac_key(SECRET))
        await save_encoded(pool, snapcodec.encode(projection, snapcodec.mac_key(SECRET)), node_id="bench", keep=5)
        out("snapshot with a teams part written", f"{time.perf_counter() - t:.1f}s")
    finally:
        await pool.close()


async def teams_read(url: str, runs: int) -> None:
    """The teams-only read, in process, on a fresh connection each time (as a CLI process does)."""
    xs = []
    for _ in range(runs):
        pool = open_pool(url, size=1, name="bench")
        await pool.open(wait=True)
        try:
            t = time.perf_counter()
            base = await teams_from_snapshot(pool, snapcodec.mac_key(SECRET))
            assert base is not None, "no snapshot with a teams part"
            view = await load_teams(PostgresEventStore(pool), Codec(), base)
            xs.append(time.perf_counter() - t)
            assert view.position >= base.position
        finally:
            await pool.close()
    out("teams-only read (teams part + config tail)", ms(xs))


async def in_process(url: str, teams: int, runs: int) -> ConfigState:
    pool = open_pool(url, size=2, name="bench")
    await pool.open(wait=True)
    try:
        t = time.perf_counter()
        base = await config_from_snapshot(pool, snapcodec.mac_key(SECRET))
        state = (await load_config(PostgresEventStore(pool), Codec(), base=base)).state
        out("config load as the CLI does (snapshot + tail)", f"{(time.perf_counter() - t) * 1000:.0f} ms")
    finally:
        await pool.close()
    gc.freeze()
    counted = timed(lambda: team_key_counts(state.keys), runs)
    out("count every team's keys from the columns (at load)", ms(counted))
    assert dict(team_key_counts(state.keys)) == dict(state.team_keys)
    team = state.find_team(TEAM)
    assert team is not None
    lookups = timed(lambda: [state.team_keys.get(t, 0) for t in state.teams], runs)
    out(f"now: every team's count ({teams:,} lookups)", ms(lookups))
    walk = timed(lambda: sum(1 for k in state.keys.values() if k.team_id == team.id and not k.revoked), 3)
    assert sum(1 for k in state.keys.values() if k.team_id == team.id and not k.revoked) == state.team_keys[team.id]
    out("before: one team's count, a walk over every key", ms(walk))
    total = statistics.median(walk) * teams
    out(f"before: `team list` ({teams:,} walks, extrapolated)", f"{total:.0f} s ({total / 3600:.1f} h)")
    return state


async def run(url: str, teams: int, runs: int) -> None:
    await in_process(url, teams, runs)
    await teams_read(url, runs)
    out("`python -c pass`", ms(timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), runs)))
    for imports, mode in (("click, psycopg", "direct"), ("click, http.client, json, orjson", "remote")):
        out(f"`python -c 'import {imports}'` ({mode} floor)",
            ms(timed(lambda i=imports: subprocess.run([sys.executable, "-c", f"import {i}"], check=True), runs)))
    out(f"CLI `team list --json` ({teams:,} teams), direct", ms([cli(url, "--json", "team", "list")
                                                                  for _ in range(runs)]))
    out(f"CLI `budget show --team {TEAM}`, direct", ms([cli(url, "budget", "show", "--team", TEAM)
                                                        for _ in range(runs)]))
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
        with nodes(url, 1, "teams") as (node,):
            ready = await node.ready(http)
            out("node start-to-ready", f"{ready:.2f}s")
            await settled_cpu([node.proc.pid])  # its deferred key indexes built: the steady state

            async def get(path: str, **params: str) -> float:
                t = time.perf_counter()
                async with http.get(node.base + "/admin/v1" + path, params=params) as r:
                    assert r.status == 200, await r.text()
                    await r.read()
                return time.perf_counter() - t

            async def accepts(limit: str) -> bool:  # a node before pages of 10,000 refuses them
                async with http.get(node.base + "/admin/v1/teams", params={"limit": limit}) as r:
                    return r.status == 200

            for limit in ("100", "1000", "10000"):
                if limit == "10000" and not await accepts(limit):
                    continue
                xs = [await get("/teams", limit=limit) for _ in range(runs)]
                out(f"admin API GET /teams?limit={limit}", ms(xs))
            out(f"admin API GET /teams/{TEAM}", ms([await get(f"/teams/{TEAM}") for _ in range(runs)]))
            loop = asyncio.get_running_loop()
            for args in (("--json", "team", "list"), ("budget", "show", "--team", TEAM)):
                xs = [await loop.run_in_executor(None, lambda a=args: cli(url, *a, remote=node.base))
                      for _ in range(runs)]
                out(f"CLI `{' '.join(args)}`, remote mode", ms(xs))
            xs = [await loop.run_in_executor(None, lambda: cli(url, "key", "--help", remote=node.base))
                  for _ in range(runs)]
            out("CLI `key --help` (the remote mode's floor)", ms(xs))
    out("load average", " ".join(f"{x:.2f}" for x in os.getloadavg()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--teams", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", help="server to create the scratch database on")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database (for --reuse)")
    parser.add_argument("--reuse", metavar="DBNAME", help="a database an earlier --keep run left")
    args = parser.parse_args()
    server = db.libpq_url(args.database_url) if args.database_url else pg.server_url()
    name, url = (args.reuse, pg.with_database(server, args.reuse)) if args.reuse else scratch_url(server)
    try:
        if not args.reuse:
            asyncio.run(build(url, Shape(args.keys, args.teams)))
            print(f"database: {name}" + (" (kept for --reuse)" if args.keep else ""), flush=True)
        else:
            asyncio.run(prepare_reused(url))
        print(f"{args.keys:,} keys, {args.teams:,} teams", flush=True)
        asyncio.run(run(url, args.teams, args.runs))
    finally:
        if not (args.keep or args.reuse):
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


if __name__ == "__main__":
    main()
