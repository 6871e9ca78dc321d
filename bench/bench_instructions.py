"""Instructions per request, C included: every user-space instruction a server process executes
(the interpreter's eval loop, orjson, memcpy, the event loop, psycopg, the threads), counted by
valgrind's callgrind, for the bare aiohttp proxy of the gateway bench and a node (every governance
feature on, as bench/bench_gateway.py configures it). A count does not move with the other work on
the machine, where a CPU time here moves by more than the difference at stake.

    PYTHONPATH=. python bench/bench_instructions.py [--modes json,stream,messages-stream,responses-stream]
        [--window 6] [--rounds 3] [--agent-turns N] [--image-kb N] [--tree DIR ...] [--workers 2]
        [--gossip-interval 1] [--top 25] [--profile DIR] [--save FILE] [--connections 16] [--cache-sim]

Each server runs under `valgrind --tool=callgrind` (the fake upstream and Postgres do not); a
sequential client (one keep-alive connection) warms a mode up, then counts windows of the same
length in time (`--window` seconds of requests and 2 s more), each zeroed (`callgrind_control
--zero`) and dumped (`--dump`) around it, carrying n or 3n requests paced across it (n as many as
fit at the warm-up's pace), `--rounds` pairs of them. Per request: the median over the pairs of
(long window - short window) / 2n. What a node does by the clock cancels in it: under valgrind a
request takes some 50x longer than natively, so a node's batches and timers would fall on 50x
fewer requests than on a real machine, and on fewer still when the machine is busy. The node's
batch intervals (SHIELDES_REQUEST_LOG_INTERVAL, SHIELDES_FLUSH_INTERVAL) are set to the window's
length, so one request-log COPY and one usage append land in every window, their rows counted
per request and their statements' own cost cancelling; and the node holds a stream open to an
upstream that never answers, so its loop-lag probe ticks as under load in every window. Work
per statement of a batch that does not wait for a window (the stored responses' INSERT, 25 ms
after the first response) counts per request at this pace, as it does at a moderate load.

Postgres is not under callgrind; the CPU time of the backends serving a node's database (found by
their process title, read from /proc/PID/schedstat) is taken over the same windows and reported per
request by the same difference: a time, so it moves with the machine's load, but it is Postgres's
own work for the node's statements (the stored responses' INSERTs, the usage and request-log
batches), which the counts leave out and which runs on the same cores under the gateway bench.

Not counted: the kernel's work (syscalls, the network stack), cache misses and branch
mispredictions, what an instruction costs (a division against an add); a ratio of instructions is
not a ratio of CPU time. `--tree DIR` (e.g. `git archive <commit> | tar -x -C DIR`) runs that
tree's node beside, on a database of its own its own CLI sets up (bench/baseline_tree.py).
`--workers 2` also runs this tree's node as `serve --workers 2` and counts every process of it, its
workers gossiping every second (SHIELDES_GOSSIP_INTERVAL=1, `--gossip-interval`): at the 150 ms
default a round with news goes out after nearly every request under valgrind and after one in
hundreds natively, so the rounds would count per request; at 1 s one round with news falls on
each second of every window, whatever its requests, and cancels as the timers do (what a round
costs is in the clock's figure, per second).
`--connections N` sends a window's requests N at a time, each on a connection of its own, so that N
are in flight together as under the gateway bench's load (a request's per-loop-turn work is shared
by the requests in flight). `--cache-sim` turns on callgrind's cache simulation (first-level
instruction and data caches, last level) and reports estimated cycles instead of instructions:
each instruction 1, a first-level miss 10 more, a last-level miss 100 more (callgrind's own
estimate; a process alone, no other process evicting its lines, no branch predictor).

`--profile DIR` keeps each dump there, for `callgrind_annotate --inclusive=yes DIR/<file>`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import baseline_tree  # noqa: E402
import bench_gateway as bg  # noqa: E402

MODES: dict[str, tuple[dict[str, Any], str]] = {
    "json": (bg.BODY, bg.CHAT_PATH),
    "stream": ({**bg.BODY, "stream": True}, bg.CHAT_PATH),
    "messages": (bg.MESSAGES_BODY, bg.MESSAGES_PATH),
    "messages-stream": ({**bg.MESSAGES_BODY, "stream": True}, bg.MESSAGES_PATH),
    "responses-stream": (bg.RESPONSES_BODY, bg.RESPONSES_PATH),
    "responses-unstored": ({**bg.RESPONSES_BODY, "store": False}, bg.RESPONSES_PATH),
}
GROW = {bg.CHAT_PATH: bg.agent_chat, bg.MESSAGES_PATH: bg.agent_messages, bg.RESPONSES_PATH: bg.agent_responses}


def body_of(mode: str, agent_turns: int, image_kb: int) -> tuple[bytes, str]:
    body, path = MODES[mode]
    if agent_turns:
        body = GROW[path](body, agent_turns)
    if image_kb:
        body = bg.with_image(body, path, image_kb)
    return json.dumps(body).encode(), path


@dataclass
class Counted:
    """One server under callgrind: its process (valgrind's, pid of the Python it runs) and its dumps."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    key: str | None
    out: Path  # callgrind's files: <out>.<pid>[.<dump>]
    database: str | None = None  # a node's database: its Postgres backends' CPU is read per window
    dumps: int = 0
    last: tuple[Path, ...] = ()  # the files of the last dump

    def pids(self) -> list[int]:
        """The process and its descendants (`serve --workers N`: the supervisor and each worker)."""
        parents: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):  # exited meanwhile
                    continue
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(child for child, parent in parents.items() if parent == pid)
        return found

    def control(self, *args: str) -> None:
        for pid in self.pids():
            subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True, timeout=120)

    def count(self) -> int:
        """Instructions executed since the last zero (with --cache-sim, estimated cycles), over every
        process; zeroes them again."""
        self.dumps += 1
        pids = self.pids()
        self.control(f"--dump={self.name}-{self.dumps}")
        total = 0
        for pid in pids:
            total += dumped_total(self.out, pid, self.dumps)
        self.last = tuple(self.out.parent / f"{self.out.name}.{pid}.{self.dumps}" for pid in pids)
        self.control("--zero")
        return total


def backends_cpu(database: str | None) -> float:
    """Seconds on a CPU of the Postgres backends serving `database` (those now connected, found by
    their process title, `postgres: USER DATABASE ...`; the scheduler's count, /proc/PID/schedstat):
    the server's work for a node's statements. 0 without a database (the bare proxy)."""
    if database is None:
        return 0.0
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].split()
            if len(title) > 2 and title[0] == b"postgres:" and title[2] == database.encode():
                total += int((entry / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):  # exited meanwhile
            continue
    return total / 1e9


def dumped_total(out: Path, pid: int, dump: int) -> int:
    """The instruction count of a process's `dump`-th dump: its `summary:` line, every thread's count
    since the last zero (exact; `totals:`, the sum of the file's lines, can carry costs from before the
    zero into the first dump after it). With the cache simulation on, the estimated cycles instead."""
    path = out.parent / f"{out.name}.{pid}.{dump}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.exists():
            events: list[str] = []
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("events:"):
                    events = line.split()[1:]
                elif line.startswith("summary:"):
                    return estimated_cycles(dict(zip(events, map(int, line.split()[1:]), strict=False)))
        time.sleep(0.05)
    raise SystemExit(f"callgrind wrote no dump {path} within 60 s")


def estimated_cycles(events: dict[str, int]) -> int:
    """Instructions, plus (when simulated) 10 cycles a first-level cache miss and 100 a last-level
    one: callgrind's own cycle estimate. Without the cache simulation, the instructions alone."""
    first = events.get("I1mr", 0) + events.get("D1mr", 0) + events.get("D1mw", 0)
    last = events.get("ILmr", 0) + events.get("DLmr", 0) + events.get("DLmw", 0)
    return events["Ir"] + 10 * first + 100 * last


def valgrind(out: Path, children: bool, cache_sim: bool) -> list[str]:
    return ["valgrind", "--tool=callgrind", f"--cache-sim={'yes' if cache_sim else 'no'}",
            "--dump-instr=no", "--dump-line=no", "--collect-jumps=no",
            f"--trace-children={'yes' if children else 'no'}", f"--callgrind-out-file={out}.%p"]


def start(name: str, args: list[str], env: dict[str, str], src: Path, scratch: Path, key: str | None,
          port: int, cache_sim: bool, children: bool = False) -> Counted:
    out = scratch / name.replace(" ", "-")
    proc = subprocess.Popen(
        [*valgrind(out, children, cache_sim), sys.executable, *args], cwd=src,
        env={**os.environ, "PYTHONPATH": str(src), "PYTHONHASHSEED": "0", **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = env.get("SHIELDES_DATABASE_URL")
    return Counted(name, proc, port, key, out, baseline_tree.database_name(url) if url else None)


def send(conn: http.client.HTTPConnection, path: str, data: bytes, headers: dict[str, str]) -> None:
    conn.request("POST", path, body=data, headers=headers)
    resp = conn.getresponse()
    answer = resp.read()
    if resp.status != 200:
        raise SystemExit(f"{path}: {resp.status} {answer[:300]!r}")


SETTLE = 2.0  # seconds a window lasts beyond its requests' share, for its batches' writes
HELD_MODEL = "gpt-4o-mini"  # (priced, as the key's budget wants) served by an upstream that sends no token for an hour


def hold(target: Counted) -> socket.socket | None:
    """A stream kept open on a node (not the bare proxy: it has no timers) while its counts are
    taken, so its timers run as under load (the loop-lag probe ticks 10x as often with a request in
    flight) in the idle windows as in the requests' windows; None for the bare proxy."""
    if target.key is None:
        return None
    body = json.dumps({**bg.BODY, "model": HELD_MODEL, "stream": True}).encode()
    sock = socket.create_connection(("127.0.0.1", target.port))
    sock.sendall(f"POST {bg.CHAT_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"Authorization: Bearer {target.key}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    sock.settimeout(600)
    head = sock.recv(65536)  # its head and first frames: it is in flight
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"the held stream was refused: {head[:300]!r}")
    return sock


def measure(target: Counted, data: bytes, path: str, warmup: int, window: float, rounds: int,
            connections: int) -> dict[str, Any]:
    """Instructions per request: the median slope of a window's count over its requests, between windows
    of the same length in time carrying n and 3n requests (as many as fit, at the warm-up's pace)
    paced across it. A node's batches (the request log's, the usage flusher's) are written an
    interval after their first record, set to the window's length: one of each lands in every
    window, whatever its requests, and cancels in the slope, as the timers' ticks (the loop-lag
    probe) do; under valgrind a request takes some 50x longer than natively, so at their usual
    intervals they would fall on 50x fewer requests than on a real machine. With `connections` > 1 a
    window's requests go out `connections` at a time, each on a keep-alive connection of its own, so
    that many are in flight together, as under the gateway bench's load."""
    url = f"http://127.0.0.1:{target.port}{path}"
    headers = {**bg.request_headers(url, target.key), "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", target.port, timeout=600)
    pool = [http.client.HTTPConnection("127.0.0.1", target.port, timeout=600) for _ in range(connections)]
    held = hold(target)
    windows: list[tuple[float, int, int]] = []  # (seconds, requests, instructions)
    postgres: list[float] = []  # the Postgres backends' CPU seconds in each window
    pair: tuple[tuple[Path, ...], ...] = ((), ())  # the dumps of the last two windows
    try:
        began = time.monotonic()
        for _ in range(warmup):
            send(conn, path, data, headers)
        each = (time.monotonic() - began) / max(1, warmup)
        n = max(4, int(0.6 * window / each / 3))  # the long window's 3n in 60% of it, at the warm-up's pace
        time.sleep(window + SETTLE)  # (the warm-up's batches written)
        span = math.ceil(window + SETTLE)  # whole seconds: as many of each 1 s (and 0.1 s) tick in every window
        for _ in range(rounds):
            for k in (n, 3 * n):
                time.sleep((0.5 - time.monotonic()) % 1.0)  # halfway between two ticks of the node's clock
                began = time.monotonic()
                target.control("--zero")
                pg_began = backends_cpu(target.database)
                if connections == 1:
                    for i in range(k):
                        send(conn, path, data, headers)
                        time.sleep(max(0.0, began + (i + 1) * 0.8 * window / k - time.monotonic()))
                else:
                    send_together(pool, path, data, headers, k, began, 0.8 * window)
                time.sleep(max(0.0, began + span - time.monotonic()))  # its batches written
                windows.append((time.monotonic() - began, k, target.count()))
                postgres.append(backends_cpu(target.database) - pg_began)
                pair = (*pair[1:], target.last)
    finally:
        for c in (conn, *pool):
            c.close()
        if held is not None:
            held.close()
    rate, per_request = fit(windows)
    pairs = [(hi[2] - lo[2] - rate * (hi[0] - lo[0])) / (hi[1] - lo[1])
             for lo, hi in zip(windows[::2], windows[1::2], strict=True)]
    # the median pair: a pair whose windows caught an odd batch or tick more or less is left out
    pg_pairs = [(hi - lo) / (2 * n) for lo, hi in zip(postgres[::2], postgres[1::2], strict=True)]
    return {"per_request": statistics.median(pairs), "fitted": per_request, "clock_per_s": rate, "pairs": pairs,
            "postgres_us": statistics.median(pg_pairs) * 1e6, "postgres_pairs_us": [p * 1e6 for p in pg_pairs],
            "requests": n,
            "whole_window": windows[-1][2] / windows[-1][1], "functions": slope(pair, 2 * n)}


def send_together(pool: list[http.client.HTTPConnection], path: str, data: bytes, headers: dict[str, str],
                  k: int, began: float, span: float) -> None:
    """`k` requests in groups of len(pool), a group's requests sent together, one on each connection
    (a thread each), the groups paced across `span` seconds from `began`."""
    group = len(pool)

    def one(j: int) -> None:
        for i in range(j, k, group):
            time.sleep(max(0.0, began + (i // group) * group * span / k - time.monotonic()))
            send(pool[j], path, data, headers)

    threads = [threading.Thread(target=one, args=(j,)) for j in range(group)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def slope(pair: tuple[tuple[Path, ...], ...], more: int) -> dict[str, float]:
    """Each function's own instructions per request: the long window's less the short one's (the
    same length in time: the clock's share cancels, but for a batch more or fewer), over the
    requests it had more."""
    own: dict[str, float] = {}
    for sign, dumps in zip((-1, 1), pair, strict=True):
        for dump in dumps:
            for name, n in self_costs(dump).items():
                own[name] = own.get(name, 0.0) + sign * n / more
    return own


def fit(windows: list[tuple[float, int, int]]) -> tuple[float, float]:
    """Least squares of count = rate x seconds + per_request x requests (no constant: a window of
    no time and no request counts nothing); (rate, per_request)."""
    stt = sum(t * t for t, _, _ in windows)
    snn = sum(n * n for _, n, _ in windows)
    stn = sum(t * n for t, n, _ in windows)
    stc = sum(t * c for t, _, c in windows)
    snc = sum(n * c for _, n, c in windows)
    det = stt * snn - stn * stn
    return (stc * snn - snc * stn) / det, (snc * stt - stc * stn) / det


def chosen_modes(parser: argparse.ArgumentParser, text: str, known: dict[str, Any]) -> list[str]:
    """The comma-separated `--modes`, each one of `known` (else the parser's error names them)."""
    modes = text.split(",")
    unknown = sorted(set(modes) - set(known))
    if unknown:
        parser.error(f"--modes: no mode {', '.join(unknown)}; the modes are {', '.join(known)}")
    return modes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="json,stream,messages-stream,responses-stream",
                        help=f"of {', '.join(MODES)}")
    parser.add_argument("--window", type=float, default=6.0, help=f"seconds a window's requests take (then {SETTLE} s "
                        "more for its batches); a node's batch intervals are set to it")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of windows per mode and server")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--agent-turns", type=int, default=0, help="as bench_gateway.py --agent-turns")
    parser.add_argument("--image-kb", type=int, default=0, help="as bench_gateway.py --image-kb")
    parser.add_argument("--tree", action="append", default=[], type=Path, help="another source tree's node too")
    parser.add_argument("--workers", type=int, default=1, help="also this tree's node as `serve --workers N`")
    parser.add_argument("--gossip-interval", type=float, default=1.0,
                        help="SHIELDES_GOSSIP_INTERVAL of the `--workers` node (see above)")
    parser.add_argument("--no-bare", action="store_true", help="leave out the bare proxy")
    parser.add_argument("--connections", type=int, default=1,
                        help="requests in flight together (each on a keep-alive connection of its own)")
    parser.add_argument("--cache-sim", action="store_true",
                        help="simulate the caches: count estimated cycles (instructions + 10 a first-level "
                        "miss + 100 a last-level miss) instead of instructions")
    parser.add_argument("--top", type=int, default=25, help="functions listed per mode by their own instructions "
                        "beyond the bare proxy's (the last pair of windows'), 0: none")
    parser.add_argument("--profile", type=Path, help="keep callgrind's dumps in this directory")
    parser.add_argument("--save", type=Path, help="write every figure to this JSON file")
    args = parser.parse_args()
    modes = chosen_modes(parser, args.modes, MODES)
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        raise SystemExit("error: valgrind is not installed (apt-get install valgrind): it counts the instructions")

    scratch = args.profile.resolve() if args.profile else Path(tempfile.mkdtemp(prefix="shieldes-instr-"))
    scratch.mkdir(parents=True, exist_ok=True)
    up_port = bg.free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    server = bg.bench_server()
    responses = any(MODES[m][1] == bg.RESPONSES_PATH for m in modes)
    trees = [ROOT, *(t.resolve() for t in args.tree)]
    slow_port = bg.free_port()
    prepared = [baseline_tree.prepare(tree, server, upstream, bg.KEY_LIMITS, responses=responses) for tree in trees]
    for tree, db in zip(trees, prepared, strict=True):  # the held stream's deployment (hold())
        subprocess.run([sys.executable, "-m", "shieldes", "provider", "add", "held", "--type", "openai", "--base-url",
                        f"http://127.0.0.1:{slow_port}", "--models", HELD_MODEL], cwd=tree,
                       env=baseline_tree.tree_env(tree, db.url), check=True, capture_output=True, timeout=300)
    upstream_proc = bg.spawn(["-m", "tests.fake_upstream", "--port", str(up_port), "--completion-tokens", "20"])
    slow_proc = bg.spawn(["-m", "tests.fake_upstream", "--port", str(slow_port), "--token-delay", "3600"])
    targets: list[Counted] = []
    # one batch of each a window (measure()): written an interval after its first record
    batches = {"SHIELDES_REQUEST_LOG_INTERVAL": str(args.window), "SHIELDES_FLUSH_INTERVAL": str(args.window)}
    try:
        if not args.no_bare:
            port = bg.free_port()
            targets.append(start("bare proxy", [str(ROOT / "bench" / "bench_gateway.py"), "proxy", "--port", str(port),
                                                "--upstream", upstream], {}, ROOT, scratch, None, port,
                                 args.cache_sim))
        for i, (tree, db) in enumerate(zip(trees, prepared, strict=True)):
            port = bg.free_port()
            name = "node" if tree == ROOT else f"tree {i}"
            targets.append(start(name, ["-m", "shieldes", "serve", "--host", "127.0.0.1", "--port", str(port),
                                        "--node-id", f"bench-instr-{i}"],
                                 {"SHIELDES_DATABASE_URL": db.url, **batches}, tree, scratch, db.secret, port,
                                 args.cache_sim))
        if args.workers > 1:
            port = bg.free_port()
            targets.append(start(f"node x{args.workers}", [
                "-m", "shieldes", "serve", "--host", "127.0.0.1", "--port", str(port), "--node-id", "bench-instr-w",
                "--workers", str(args.workers)], {"SHIELDES_DATABASE_URL": prepared[0].url, **batches,
                                                  "SHIELDES_GOSSIP_INTERVAL": str(args.gossip_interval)}, ROOT, scratch,
                prepared[0].secret, port, args.cache_sim, children=True))
        bg.wait_port(up_port)
        bg.wait_port(slow_port)
        for t in targets:
            bg.wait_port(t.port, timeout=600)
        results: dict[str, dict[str, dict[str, Any]]] = {}
        for mode in modes:
            data, path = body_of(mode, args.agent_turns, args.image_kb)
            for t in targets:
                results.setdefault(mode, {})[t.name] = measure(t, data, path, args.warmup, args.window, args.rounds,
                                                                args.connections)
                got = results[mode][t.name]
                print(f"{mode:18} {t.name:12} {got['per_request']:12,.0f} per request (pairs of windows: "
                      f"{', '.join(f'{n:,.0f}' for n in got['pairs'])}; the clock's {got['clock_per_s']:,.0f}/s; "
                      f"a whole window {got['whole_window']:,.0f} per request)", flush=True)
                if t.database is not None:
                    print(f"{'':18} {'':12} Postgres's backends {got['postgres_us']:,.0f} us of CPU per request "
                          f"(pairs: {', '.join(f'{p:,.0f}' for p in got['postgres_pairs_us'])}; a time, not a count)",
                          flush=True)
    finally:
        for t in targets:
            t.proc.terminate()
        for t in targets:
            try:
                t.proc.wait(120)
            except subprocess.TimeoutExpired:
                t.proc.kill()
        for proc in (upstream_proc, slow_proc):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:  # (the slow one waits out its held answer)
                proc.kill()
                proc.wait()
        for db in prepared:
            bg.drop_scratch(db.url)
    if args.save:
        args.save.write_text(json.dumps(results, indent=1))
    report(results, trees, "estimated cycles" if args.cache_sim else "instructions")
    if args.top:
        for mode, by in results.items():
            print_top(mode, by, args.top)


def print_top(mode: str, by: dict[str, dict[str, Any]], top: int) -> None:
    """The functions (C, and the interpreter's eval loop for all Python code) whose own
    instructions per request differ most between the node and the bare proxy."""
    names = list(by)
    node = by.get("node", by[names[-1]])["functions"]
    bare = by["bare proxy"]["functions"] if "bare proxy" in by else {}
    excess = {f: node.get(f, 0.0) - bare.get(f, 0.0) for f in node.keys() | bare.keys()}
    print(f"\n{mode}: own instructions per request by function, node beyond the bare proxy "
          f"({sum(excess.values()):+,.0f}); then each server's")
    print(f"{'beyond':>10}" + "".join(f" {n[:12]:>12}" for n in names) + "  object:function")
    for f, n in sorted(excess.items(), key=lambda kv: -abs(kv[1]))[:top]:
        print(f"{n:+10,.0f}" + "".join(f" {by[t]['functions'].get(f, 0.0):12,.0f}" for t in names) + f"  {f[:100]}")


def report(results: dict[str, dict[str, dict[str, Any]]], trees: list[Path], unit: str) -> None:
    names = list(next(iter(results.values())))
    print(f"\n{unit} per request (what each request adds; the clock's work apart)")
    print(f"{'mode':18}" + "".join(f" {n:>14}" for n in names) + "  ratios")
    for mode, by in results.items():
        cells = "".join(f" {by[n]['per_request']:>14,.0f}" for n in names)
        bare = by.get("bare proxy")
        ratios = [f"{n} / bare {by[n]['per_request'] / bare['per_request']:.3f}x"
                  for n in names if bare and n != "bare proxy"]
        if "node" in by:
            ratios += [f"node / {n} {by['node']['per_request'] / by[n]['per_request']:.3f}x"
                       for n in names if n.startswith("tree ")]
        print(f"{mode:18}{cells}  {', '.join(ratios)}")
    for i, tree in enumerate(trees[1:], start=1):
        print(f"tree {i}: {tree}")


def self_costs(path: Path) -> dict[str, int]:
    """Each function's own instructions in a callgrind dump ("object:function", a recursion's
    'N suffix dropped); a call's cost line (after `calls=`) is the callee's, so it is skipped."""
    names: dict[str, dict[str, str]] = {"fn": {}, "ob": {}}
    costs: dict[str, int] = {}
    fn = ob = ""
    skip = False
    for line in path.read_text(errors="replace").splitlines():
        if not line or line[0] == "#":
            continue
        if line[0].isdigit() or line[0] in "+-*":
            if skip:
                skip = False
            elif fn:
                parts = line.split()
                if len(parts) > 1:
                    key = f"{ob}:{fn}"
                    costs[key] = costs.get(key, 0) + int(parts[1])
            continue
        kind, _, value = line.partition("=")
        if kind in ("fn", "ob"):
            name = resolve(names[kind], value)
            if kind == "fn":
                fn = name.split("'")[0]
            else:
                ob = Path(name).name
        elif kind in ("cfn", "cob"):
            resolve(names[kind[1:]], value)
        elif kind == "calls":
            skip = True
    return costs


def resolve(table: dict[str, str], value: str) -> str:
    """A name of callgrind's compressed form: "(id) name" defines it, "(id)" refers to it."""
    if value.startswith("("):
        ident, _, name = value.partition(")")
        name = name.strip()
        if name:
            table[ident] = name
        return table.get(ident, value)
    return value


if __name__ == "__main__":
    main()
