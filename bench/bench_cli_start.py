"""`shieldes key create` / `key revoke` as processes on a million-key log, against the interpreter floor.

    python bench/bench_cli_start.py --keys 1000000 --teams 10000       # builds the log, keeps it, prints its name
    python bench/bench_cli_start.py --reuse DB --baseline-tree DIR --rounds 6 --runs 5
    python bench/bench_cli_start.py --reuse DB --baseline-tree DIR --baseline-reuse DB0 ...   # DIR's schema is older
    python bench/bench_cli_start.py --reuse DB --remote --rounds 6 --runs 5    # direct and remote mode, one run
    python bench/bench_cli_start.py --reuse DB --instructions VENV/bin/python [VENV2/bin/python]   # callgrind
    python bench/bench_cli_start.py --reuse DB --node-start 8 [--baseline-tree DIR]   # a node's start to ready

The first form builds the log of bench_keys_scale.py (bulk appends) in a scratch database and keeps
it (a database a `bench_keys_scale.py --keep` run left does as well). The second runs rounds that
alternate this checkout and DIR (an earlier checkout; the order swaps every round, so both see the
same load); each round of a tree measures, as processes started the way a shell starts them
(`python -m shieldes ...`, the interpreter itself, not a version manager's shim):

- the floor: `python -S -c pass` (the interpreter), `python -c pass` (plus this machine's
  site-packages .pth hooks), `python -c "import click, psycopg"` (the libraries a key write needs)
  and `python -c "import click, psycopg, psycopg_pool"` (with the pool a node, and earlier
  versions' key writes, use);
- `shieldes key --help` (no database);
- --runs `key create --name ...` then as many `key revoke NAME`, writing to Postgres directly;
- with --remote (this checkout only): the floor of a remote command, `python -c "import click,
  http.client, json"`, and the same writes through the admin API of a node this bench starts on
  the same database (`SHIELDES_ADMIN_URL`), with the node's CPU per write beside the command's.

With --instructions, each command's own process runs once under `valgrind --tool=callgrind` with each
interpreter given (a venv with a wheel install of a tree: an editable install's finder costs about
15 ms of its own), and its instruction count is printed: deterministic to a few tenths of a percent
whatever the machine's load. The commands: the floors, `--help`, `key --help`, `logs --help`, `key
create|revoke|list`, `usage` and `logs` directly, and the same through the admin API of a node of this
checkout the bench starts on the database.

With --node-start N, N rounds (alternating with DIR's, as above) each start `shieldes serve` of a
tree on the database twice, with and without a cluster secret (gossip on and off), and measure the
start to ready (`/ready` answering 200, polled every 10 ms): its wall time and the node's CPU (user +
system, from /proc) at that moment; each node is stopped before the next starts. With --counted, each
kind of node of each tree then runs once under callgrind, its instructions dumped when it is ready.

Each figure is wall time (median and range) and the CPU time of the process (user + system), which
a loaded machine inflates less. Both checkouts are byte-compiled first (`compileall`): an installed
package ships its bytecode, and PYTHONDONTWRITEBYTECODE (set on some machines) would otherwise make
every run compile the modules it imports.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_keys_scale import SECRET, Shape, seed  # noqa: E402
from bench.bench_log import scratch_url  # noqa: E402
from shieldes import db  # noqa: E402
from shieldes.events.pg_store import PostgresEventStore, open_pool  # noqa: E402
from tests import pg  # noqa: E402

FLOOR = {
    "python -S -c pass": ("-S", "-c", "pass"),
    "python -c pass": ("-c", "pass"),
    "import click, psycopg": ("-c", "import click, psycopg"),
    "import click, psycopg, psycopg_pool": ("-c", "import click, psycopg, psycopg_pool"),
    "shieldes key --help": ("-m", "shieldes", "key", "--help"),
}
REMOTE_FLOOR = {"import click, http.client, json": ("-c", "import click, http.client, json")}
ADMIN_TOKEN = "bench-cli-admin-token-" + "x" * 24


@dataclass
class Figures:
    wall: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def add(self, what: str, wall: float, cpu: float) -> None:
        self.wall.setdefault(what, []).append(wall * 1000)
        self.cpu.setdefault(what, []).append(cpu * 1000)

    def line(self, what: str) -> str:
        w, c = self.wall[what], self.cpu[what]
        return (f"wall median {statistics.median(w):6.1f} ms ({min(w):.0f}-{max(w):.0f}), "
                f"CPU median {statistics.median(c):6.1f} ms")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(args: list[str], root: Path, env: dict[str, str]) -> tuple[float, float]:
    cpu, started = children_cpu(), time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=root, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started, children_cpu() - cpu


def one_round(url: str, root: Path, runs: int, tag: str, got: Figures, node: Node | None = None) -> None:
    env = {**os.environ, "PYTHONPATH": str(root), "SHIELDES_DATABASE_URL": url, "SHIELDES_CLUSTER_SECRET": SECRET,
           "SHIELDES_ACTOR": "bench"}
    env.pop("SHIELDES_ADMIN_URL", None)
    for what, args in FLOOR.items():
        got.add(what, *timed(list(args), root, env))
    names = [f"bench-cli-{tag}-{i}" for i in range(runs)]
    for name in names:
        got.add("key create", *timed(["-m", "shieldes", "key", "create", "--name", name], root, env))
    for name in names:
        got.add("key revoke", *timed(["-m", "shieldes", "key", "revoke", name], root, env))
    if node is None:
        return
    # the remote mode: no database URL at all, the node's admin API and token
    remote = {**env, "SHIELDES_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none", "SHIELDES_ADMIN_URL": node.url,
              "SHIELDES_ADMIN_TOKEN": ADMIN_TOKEN}
    for what, args in REMOTE_FLOOR.items():
        got.add(what, *timed(list(args), root, remote))
    for verb, names_ in (("create", [f"{n}-r" for n in names]), ("revoke", [f"{n}-r" for n in names])):
        for name in names_:
            args = ["-m", "shieldes", "key", verb, *(["--name", name] if verb == "create" else [name])]
            before = node.cpu()
            got.add(f"remote key {verb}", *timed(args, root, remote))
            got.add(f"node CPU per remote {verb}", 0.0, node.cpu() - before)


class Node:
    """`shieldes serve` of this checkout on the bench database, for the remote mode."""

    def __init__(self, url: str, root: Path = ROOT, env: dict[str, str] | None = None,
                 prefix: tuple[str, ...] = ()) -> None:
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            b.bind(("127.0.0.1", 0))
            port, gossip = a.getsockname()[1], b.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.data_dir = tempfile.TemporaryDirectory(prefix="bench-cli-node-")
        node_env = {**os.environ, "PYTHONPATH": str(root), "SHIELDES_DATABASE_URL": url,
                    "SHIELDES_CLUSTER_SECRET": SECRET, "SHIELDES_ADMIN_TOKEN": ADMIN_TOKEN,
                    "SHIELDES_DATA_DIR": self.data_dir.name, **(env or {})}
        node_env.pop("SHIELDES_ADMIN_URL", None)
        self.log = open(Path(self.data_dir.name) / "node.log", "w")  # noqa: SIM115 (closed in stop)
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "shieldes", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--gossip-port", str(gossip), "--node-id", "bench-cli-node"], cwd=root, env=node_env, stdout=self.log,
            stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 600.0, poll: float = 0.2) -> float:
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"the node exited ({self.proc.returncode}); see {self.log.name}")
            try:
                with urllib.request.urlopen(self.url + "/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return time.perf_counter() - started
            except OSError:
                pass
            time.sleep(poll)
        raise SystemExit(f"the node was not ready within {timeout:.0f} s; see {self.log.name}")

    def cpu(self) -> float:
        """The node's CPU time so far (user + system), from /proc."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        self.data_dir.cleanup()


def rounds(url: str, runs: int, count: int, baseline: Path | None, baseline_url: str, remote: bool) -> None:
    trees = [("now", ROOT)] + ([("before", baseline)] if baseline is not None else [])
    urls = {"now": url, "before": baseline_url}
    for _, root in trees:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "shieldes")], check=True)
    node = Node(url) if remote else None
    if node is not None:
        print(f"node ready in {node.wait_ready():.1f} s at {node.url}", flush=True)
    got = {label: Figures() for label, _ in trees}
    loads = [os.getloadavg()[0]]
    stamp = time.strftime("%H%M%S")
    try:
        for r in range(count):
            for label, root in (trees if r % 2 == 0 else trees[::-1]):
                one_round(urls[label], root, runs, f"{stamp}-{label}-{r}", got[label], node if label == "now" else None)
                loads.append(os.getloadavg()[0])
            print(f"round {r + 1} done, load average {loads[-1]:.2f}", flush=True)
    finally:
        if node is not None:
            node.stop()
    print(f"\n{sys.executable}; {count} rounds x {runs} runs; load average (1 min) {min(loads):.2f}-{max(loads):.2f}")
    remote_rows = (*REMOTE_FLOOR, "remote key create", "remote key revoke") if remote else ()
    for label, _ in trees:
        for what in (*FLOOR, "key create", "key revoke", *(remote_rows if label == "now" else ())):
            print(f"{label:6s} {what:38s} {got[label].line(what)}")
    now = got["now"]
    if remote:
        for verb in ("create", "revoke"):
            cpu = now.cpu[f"node CPU per remote {verb}"]
            print(f"now    node CPU per remote {verb:6s}              mean {statistics.mean(cpu):6.1f} ms over "
                  f"{len(cpu)} (the node's /proc ticks while each command ran)")
    floor, libraries = (statistics.median(now.wall[w]) for w in ("python -c pass", "import click, psycopg"))
    for what in ("key create", "key revoke"):
        median = statistics.median(now.wall[what])
        print(f"now    {what}: {median:.1f} ms, {median - floor:.1f} ms above `python -c pass`, "
              f"{median - libraries:.1f} ms above importing click + psycopg (goal < 100 ms end to end)")
    if remote:
        light = statistics.median(now.wall["import click, http.client, json"])
        for what in ("remote key create", "remote key revoke"):
            median = statistics.median(now.wall[what])
            print(f"now    {what}: {median:.1f} ms, {median - floor:.1f} ms above `python -c pass`, "
                  f"{median - light:.1f} ms above importing click + http.client + json (goal < 100 ms end to end)")


def node_instructions(url: str, root: Path, env: dict[str, str]) -> int:
    """Instructions of a node's process from its start to ready: callgrind's counts dumped at that
    moment (`callgrind_control --dump`), its shutdown left out."""
    with tempfile.TemporaryDirectory(prefix="bench-node-cg-") as tmp:
        out = Path(tmp) / "callgrind.out"
        node = Node(url, root, env, prefix=("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "-q"))
        try:
            node.wait_ready(600, poll=0.05)
            subprocess.run(["callgrind_control", "--dump", str(node.proc.pid)], check=True, capture_output=True)
            dumps = sorted(Path(tmp).glob("callgrind.out.*"))
            assert dumps, "callgrind_control wrote no dump"
            text = dumps[0].read_text()
        finally:
            node.stop()
        line = next(x for x in text.splitlines() if x.startswith(("summary:", "totals:")))
        return int(line.split()[1])


def node_start(url: str, count: int, baseline: Path | None, counted: bool) -> None:
    """A node's start to ready, with and without gossip, each tree's nodes in alternating rounds."""
    trees = [("now", ROOT)] + ([("before", baseline)] if baseline is not None else [])
    for _, root in trees:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "shieldes")], check=True)
    kinds = {"gossip on (a cluster secret)": {}, "gossip off (no cluster secret)": {"SHIELDES_CLUSTER_SECRET": ""}}
    got = {label: Figures() for label, _ in trees}
    loads = [os.getloadavg()[0]]
    for r in range(count):
        for label, root in (trees if r % 2 == 0 else trees[::-1]):
            for kind, env in kinds.items():
                node = Node(url, root, env)
                try:
                    node.wait_ready(120, poll=0.01)
                    got[label].add(kind, time.perf_counter() - node.started, node.cpu())
                finally:
                    node.stop()
        loads.append(os.getloadavg()[0])
        print(f"round {r + 1} done, load average {loads[-1]:.2f}", flush=True)
    print(f"\n`shieldes serve` start to ready; {count} rounds; load average (1 min) {min(loads):.2f}-{max(loads):.2f}")
    for label, _ in trees:
        for kind in kinds:
            print(f"{label:6s} {kind:32s} {got[label].line(kind)}")
    if counted:  # one run each under callgrind: counts, whatever the load
        for label, root in trees:
            for kind, env in kinds.items():
                counts = node_instructions(url, root, env) / 1e6
                print(f"{label:6s} {kind:32s} {counts:9.1f} M instructions", flush=True)


INSTRUCTION_RUNS = (  # (name, remote, python arguments); NAME is replaced by a fresh key name
    ("python -c pass", False, ("-c", "pass")),
    ("import click, psycopg", False, ("-c", "import click, psycopg")),
    ("import click, http.client, json", False, ("-c", "import click, http.client, json")),
    ("shieldes --help", False, ("-m", "shieldes", "--help")),
    ("shieldes key --help", False, ("-m", "shieldes", "key", "--help")),
    ("shieldes logs --help", False, ("-m", "shieldes", "logs", "--help")),
    ("key create", False, ("-m", "shieldes", "key", "create", "--name", "NAME")),
    ("key revoke", False, ("-m", "shieldes", "key", "revoke", "NAME")),
    ("key list --json (10 keys)", False, ("-m", "shieldes", "--json", "key", "list", "--limit", "10")),
    ("usage", False, ("-m", "shieldes", "usage")),
    ("logs --limit 5", False, ("-m", "shieldes", "logs", "--limit", "5")),
    ("remote key create", True, ("-m", "shieldes", "key", "create", "--name", "NAME-r")),
    ("remote key revoke", True, ("-m", "shieldes", "key", "revoke", "NAME-r")),
    ("remote key list --json (10 keys)", True, ("-m", "shieldes", "--json", "key", "list", "--limit", "10")),
    ("remote usage", True, ("-m", "shieldes", "usage")),
    ("remote logs --limit 5", True, ("-m", "shieldes", "logs", "--limit", "5")),
)


def callgrind(python: str, args: list[str], env: dict[str, str]) -> int:
    """Instructions of one process (callgrind's total), run from / so only the install is imported."""
    with tempfile.TemporaryDirectory(prefix="bench-cli-cg-") as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "-q", python, *args], cwd="/",
                       env=env, check=True, stdout=subprocess.DEVNULL)
        return next(int(line.split()[1]) for line in out.read_text().splitlines() if line.startswith("summary:"))


def instructions(url: str, pythons: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SHIELDES_ADMIN_URL")}
    env.update(SHIELDES_DATABASE_URL=url, SHIELDES_CLUSTER_SECRET=SECRET, SHIELDES_ACTOR="bench")
    node = Node(url)
    print(f"node ready in {node.wait_ready():.1f} s at {node.url}", flush=True)
    remote = {**env, "SHIELDES_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none", "SHIELDES_ADMIN_URL": node.url,
              "SHIELDES_ADMIN_TOKEN": ADMIN_TOKEN}
    counts: dict[str, list[int]] = {}
    try:
        for i, python in enumerate(pythons):
            name = f"bench-cli-cg-{time.strftime('%H%M%S')}-{i}"
            for what, is_remote, args in INSTRUCTION_RUNS:
                argv = [a.replace("NAME", name) for a in args]
                counts.setdefault(what, []).append(callgrind(python, argv, remote if is_remote else env))
    finally:
        node.stop()
    print(f"\ninstructions (callgrind, one run each); load average {os.getloadavg()[0]:.2f}")
    print(f"{'':34s}" + "".join(f"{p[-40:]:>42s}" for p in pythons))
    for what, got in counts.items():
        ratio = f"  {got[-1] / got[0]:.3f}x" if len(got) > 1 else ""
        print(f"{what:34s}" + "".join(f"{n:42,d}" for n in got) + ratio)


async def build(server: str, shape: Shape) -> str:
    name, url = scratch_url(server)
    pool = open_pool(url, size=4, name="bench")
    await pool.open(wait=True)
    try:
        started = time.perf_counter()
        store = PostgresEventStore(pool)
        await seed(store, shape)
        print(f"log written: {shape.keys:,} keys, {shape.teams:,} teams, {await store.head():,} config events "
              f"in {time.perf_counter() - started:.1f}s", flush=True)
    finally:
        await pool.close()
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--teams", type=int, default=10_000)
    parser.add_argument("--database-url", help="server to create the scratch database on")
    parser.add_argument("--reuse", metavar="DBNAME", help="a database this bench or bench_keys_scale.py --keep left")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5, help="key creates (and revokes) per round and tree")
    parser.add_argument("--baseline-tree", type=Path, metavar="DIR", help="an earlier checkout to alternate with")
    parser.add_argument("--baseline-reuse", metavar="DBNAME",
                        help="the database DIR runs on (default: --reuse's) when this checkout migrates it past "
                             "DIR's schema: a copy of it made before `shieldes db upgrade` (CREATE DATABASE ... "
                             "TEMPLATE ...)")
    parser.add_argument("--instructions", nargs="+", metavar="PYTHON",
                        help="count each command's instructions with callgrind, once per interpreter given")
    parser.add_argument("--node-start", type=int, metavar="N",
                        help="N rounds of a node's start to ready (with DIR's when --baseline-tree is given)")
    parser.add_argument("--counted", action="store_true",
                        help="with --node-start: also each node's instructions to ready, once, under callgrind")
    parser.add_argument("--remote", action="store_true",
                        help="also through the admin API of a node this bench starts on --reuse's database")
    args = parser.parse_args()
    server = db.libpq_url(args.database_url) if args.database_url else pg.server_url()
    if not args.reuse:
        name = asyncio.run(build(server, Shape(args.keys, args.teams)))
        print(f"scratch database (kept for --reuse): {name}")
        return
    if args.node_start:
        node_start(pg.with_database(server, args.reuse), args.node_start, args.baseline_tree, args.counted)
        return
    if args.instructions:
        instructions(pg.with_database(server, args.reuse), args.instructions)
        return
    rounds(pg.with_database(server, args.reuse), args.runs, args.rounds, args.baseline_tree,
           pg.with_database(server, args.baseline_reuse or args.reuse), args.remote)


if __name__ == "__main__":
    main()
