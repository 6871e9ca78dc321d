"""Gossip traffic of real node processes: --nodes `python -m shieldes serve` processes on one
Postgres, Zipf-like load over --keys virtual keys, gossip bytes/s and messages/s per node.

Each node reports its gossip counters in its cluster_nodes heartbeat (`shieldes cluster status
--json`); the figures are their growth over the measured stretch (after --warmup seconds of load),
per node: bytes sent and received per second, messages sent + received per second, whole states
and deltas sent, and the nodes' convergence time. With --baseline REF the same run is repeated on
that git revision (exported with `git archive`, e.g. the release before delta gossip) for
comparison.

Run: PYTHONPATH=. python bench/bench_gossip_nodes.py [--nodes 10] [--keys 300] [--rps 150]
     [--seconds 20] [--baseline aae466d] [--fanout -1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shieldes.projections.commands import CreateKey  # noqa: E402
from shieldes.projections.shared_commands import AddProvider  # noqa: E402
from shieldes.secrets import display_prefix, hash_key, new_id, new_virtual_key  # noqa: E402
from tests import pg  # noqa: E402
from tests.cluster.harness import MESSAGES, UPSTREAM_KEY_ENV, Cluster, NodeProc, until  # noqa: E402


class CodeCluster(Cluster):
    """The harness's cluster, its nodes running the code under `code` (this checkout or a baseline)."""

    code: Path = ROOT
    fanout: int | None = None  # SHIELDES_GOSSIP_FANOUT (None: the default, automatic)

    def env(self, node: NodeProc) -> dict[str, str]:
        env = super().env(node)
        env.update(PYTHONPATH=str(self.code), SHIELDES_GOSSIP_INTERVAL="0.15", SHIELDES_HEARTBEAT_INTERVAL="0.5",
                   SHIELDES_NODE_TIMEOUT="5", SHIELDES_FLUSH_INTERVAL="1")
        if self.fanout is not None:
            env["SHIELDES_GOSSIP_FANOUT"] = str(self.fanout)
        return env

    def start(self, node: NodeProc) -> None:
        with node.log.open("ab") as out:
            node.proc = subprocess.Popen([sys.executable, "-m", "shieldes", "serve"], cwd=self.code,
                                         env=self.env(node), stdout=out, stderr=subprocess.STDOUT)


def gossip_counters(database_url: str) -> dict[str, dict[str, Any]]:
    env = {**os.environ, "SHIELDES_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "shieldes", "--json", "cluster", "status"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return {n["node_id"]: n["gossip"] for n in json.loads(out)["nodes"] if n["status"] == "alive"}


async def load(bases: list[str], keys: list[str], rps: float, seconds: float) -> tuple[int, int]:
    """Open-loop requests at `rps`, each to a random node with a Zipf-drawn key."""
    weights = [1 / (r + 1) ** 1.1 for r in range(len(keys))]
    rng = random.Random(7)
    ok = failed = 0
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession() as session:

        async def one(base: str, key: str) -> None:
            nonlocal ok, failed
            try:
                async with session.post(base + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                        json={"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 5}) as r:
                    await r.read()
                    ok += r.status == 200
                    failed += r.status != 200
            except aiohttp.ClientError:
                failed += 1

        loop = asyncio.get_running_loop()
        start = loop.time()
        sent = 0
        while (now := loop.time()) - start < seconds:
            due = int((now - start) * rps)
            for _ in range(due - sent):
                task = asyncio.create_task(one(rng.choice(bases), rng.choices(keys, weights)[0]))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            sent = due
            await asyncio.sleep(0.01)
        await asyncio.gather(*tasks)
    return ok, failed


def run(code: Path, server: str, args: argparse.Namespace, fanout: int | None = None) -> dict[str, Any]:
    url = pg.fresh_database(server)
    cluster = CodeCluster(url, Path(tempfile.mkdtemp(prefix="bench-gossip-")))
    cluster.code, cluster.fanout = code, fanout
    try:
        cluster.start_upstream()
        secrets = [new_virtual_key() for _ in range(args.keys)]
        cluster.admin(AddProvider("openai", "openai", cluster.upstream_url, f"env:{UPSTREAM_KEY_ENV}",
                                  ("gpt-4o-mini",)),
                      *(CreateKey(new_id("key"), f"k{i}", hash_key(s), display_prefix(s), rpm=100_000)
                        for i, s in enumerate(secrets)))
        for i in range(args.nodes):
            cluster.start(cluster.add_node(f"g{i + 1:02d}"))
        for node in cluster.nodes:
            cluster.wait_ready(node, timeout=120)
        until(lambda: len(gossip_counters(url)) == args.nodes, 60, "every node heartbeating")
        bases = [n.base for n in cluster.nodes]
        asyncio.run(load(bases, secrets, args.rps, args.warmup))  # every node gossips its windows by now
        before, t0 = gossip_counters(url), time.monotonic()
        ok, failed = asyncio.run(load(bases, secrets, args.rps, args.seconds))
        time.sleep(1.0)  # one more heartbeat carries the counters
        after, elapsed = gossip_counters(url), time.monotonic() - t0
    finally:
        cluster.stop_all()
        pg.drop_database(server, url)

    def rate(field: str) -> float:
        return sum(after[n].get(field, 0) - before[n].get(field, 0) for n in after) / len(after) / elapsed

    conv = [after[n].get("convergence_ms") for n in after if after[n].get("convergence_ms") is not None]
    return {"sent_Bps": rate("sent_bytes"), "recv_Bps": rate("received_bytes"),
            "mps": rate("sent") + rate("received"), "full": rate("full_sent") * elapsed,
            "deltas": rate("deltas_sent") * elapsed, "conv_ms": max(conv) if conv else None,
            "ok": ok, "failed": failed, "seconds": elapsed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--keys", type=int, default=300)
    ap.add_argument("--rps", type=float, default=150, help="cluster-wide requests/s")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=8)
    ap.add_argument("--baseline", help="a git revision to compare with (run from an export of it; with --fanout, "
                    "also with its fanout)")
    ap.add_argument("--fanout", type=int,
                    help="also run this checkout with SHIELDES_GOSSIP_FANOUT set to this (-1: automatic)")
    args = ap.parse_args()
    server = pg.server_url()
    pg.make_template(server)
    runs: list[tuple[str, Path, int | None]] = [("this checkout", ROOT, None)]
    if args.fanout is not None:
        runs.append((f"this, fanout {args.fanout}", ROOT, args.fanout))
    if args.baseline:
        export = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(export)], input=archive.stdout, check=True)
        runs.append((f"baseline {args.baseline}", export, None))
        if args.fanout is not None:  # the baseline's own bounded fanout, for the same comparison
            runs.append((f"baseline, fanout {args.fanout}", export, args.fanout))
    print(f"{args.nodes} nodes, {args.keys} keys, {args.rps:g} req/s Zipf over nodes at random, gossip every 0.15 s, "
          f"measured over {args.seconds:g} s after {args.warmup:g} s of load")
    print(f"{'code':<22} {'sent B/s/node':>14} {'recv B/s/node':>14} {'msg/s/node':>11} {'full/node':>10} "
          f"{'deltas/node':>12} {'conv ms (max)':>14} {'requests ok/failed':>19}")
    try:
        for name, code, fanout in runs:
            r = run(code, server, args, fanout)
            print(f"{name:<22} {r['sent_Bps']:>14,.0f} {r['recv_Bps']:>14,.0f} {r['mps']:>11.1f} {r['full']:>10.0f} "
                  f"{r['deltas']:>12.0f} {r['conv_ms'] if r['conv_ms'] is not None else '-':>14} "
                  f"{r['ok']:>9}/{r['failed']:<9}", flush=True)
    finally:
        pg.drop_template(server)


if __name__ == "__main__":
    main()
