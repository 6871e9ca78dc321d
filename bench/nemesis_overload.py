"""The short nemesis schedule of one seed with busy loops beside it (an overloaded machine): what the
killed node's gossip pushes did in the seconds before the SIGKILL (read from its /metrics every
0.5 s), what the kill lost (served upstream minus what the log holds) against what the crash-loss
bound lets it lose, and whether the leader appended flushes on the dead node's behalf; then the
checker. docs/guarantees.md (crash-loss bound) quotes its figures.

Run: PYTHONPATH=. python bench/nemesis_overload.py [--seed 301315564] [--busy 6] [--runs 1]
The busy loops (`python -c "while True: pass"`) are started and stopped here.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.fault_kit import table
from tests import pg
from tests.cluster.harness import Cluster
from tests.cluster.nemesis import ADMIN_TOKEN, Nemesis, Step, check_all
from tests.cluster.nemesis_check import loss_since, may_be_lost

METRICS = {
    "answered": r'shieldes_gossip_messages_total\{direction="sent"\} ([0-9.e+]+)',
    "failed": r"shieldes_gossip_send_errors_total ([0-9.e+]+)",
    "timed_out": r"shieldes_gossip_push_timeouts_total ([0-9.e+]+)",
}


def read_metrics(base: str) -> dict[str, float] | None:
    request = urllib.request.Request(base + "/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=3) as r:
            text = r.read().decode()
    except OSError:
        return None
    return {k: float(m.group(1)) if (m := re.search(p, text)) else 0.0 for k, p in METRICS.items()}


class Watched(Nemesis):
    """The nemesis, reading every node's gossip counters while the faults run."""

    samples: dict[str, list[tuple[float, dict[str, float]]]]
    at_kill: dict[str, Any]

    async def _watch(self, cluster: Cluster) -> None:
        while True:
            for n in list(cluster.nodes):
                m = await asyncio.to_thread(read_metrics, n.base) if n.proc and n.proc.poll() is None else None
                if m is not None:
                    self.samples.setdefault(n.node_id, []).append((time.time(), m))
            await asyncio.sleep(0.5)

    async def _inject(self, step: Step, cluster: Cluster, proxy: Any) -> None:
        if not hasattr(self, "samples"):
            self.samples, self.at_kill = {}, {}
            self._watcher = asyncio.create_task(self._watch(cluster))
        if step.kind == "kill":
            victim = next(n for n in cluster.nodes if n.node_id == step.nodes[0])
            last = await asyncio.to_thread(read_metrics, victim.base)
            now = time.time()
            series = self.samples.get(victim.node_id, []) + ([(now, last)] if last else [])
            answered_at = [t1 for (_, a), (t1, b) in itertools.pairwise(series) if b["answered"] > a["answered"]]
            first, end = (series[0][1], series[-1][1]) if series else ({}, {})
            self.at_kill = {
                "victim": victim.node_id,
                "read for (s)": round(series[-1][0] - series[0][0], 1) if series else 0,
                **{f"pushes {k}": int(end.get(k, 0) - first.get(k, 0)) for k in METRICS},
                "last push answered (s before the kill)": round(now - answered_at[-1], 2) if answered_at else None,
            }
        await super()._inject(step, cluster, proxy)


def one_run(server: str, seed: int) -> list[tuple[str, Any]]:
    tmp = Path(tempfile.mkdtemp(prefix="nemesis-overload-"))
    nemesis = Watched(server, tmp, seed)
    history = asyncio.run(nemesis.run())
    appended = sum(1 for f in tmp.glob("*.log") for line in f.read_text(errors="replace").splitlines()
                   if "appended flush" in line and "on its behalf" in line)
    lost = len(history.served) - sum(lg.requests for lg in history.logged.values())
    kills = [f for f in history.faults if f.kind == "kill"]
    allowed = sum(1 for s in history.served if may_be_lost(s, history.faults, history.own_appends))
    since = [round(loss_since(history.own_appends.get(f.nodes[0], ()), f.start) - f.start, 2) for f in kills]
    # forwarded by the killed node before it died, read by the (loaded) fake upstream after the kill
    read_late = sum(1 for s in history.served for f in kills
                    if s.node in f.nodes and s.sent_at <= f.start < s.at and s.answered_at is None)
    violations = check_all(history)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return [("load average", load), ("served upstream", len(history.served)), ("lost (served, not in the log)", lost),
            ("may be lost (the crash-loss bound)", allowed), ("loss_since (s from the kill)", since),
            ("the upstream read after the kill, unanswered", read_late),
            *nemesis.at_kill.items(), ("flushes the leader appended on its behalf", appended),
            ("violations", "; ".join(violations) or "none")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=301315564)
    ap.add_argument("--busy", type=int, default=6, help="busy loops started beside the nodes")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    lease = pg.acquire_server()
    try:
        pg.make_template(lease.url)
        for i in range(args.runs):
            table(f"nemesis seed {args.seed}, {args.busy} busy loops, run {i + 1}", one_run(lease.url, args.seed))
    finally:
        for p in loops:
            p.kill()
            p.wait()
        pg.drop_template(lease.url)
        lease.release()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
