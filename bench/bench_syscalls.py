"""The kernel's share of a request: syscalls per request by kind, context switches and page faults
(`perf stat` on the syscall tracepoints, else `strace -c`), and CPU per request split into user
and system time (/proc), for the bare aiohttp proxy of the gateway bench and a node (every
governance feature on, as bench/bench_gateway.py configures it), mode by mode.

    PYTHONPATH=. python bench/bench_syscalls.py [--modes json,stream,messages-stream,responses-stream]
        [--duration 6] [--connections 32] [--requests N] [--tree DIR ...] [--save FILE]

Syscalls: each server's syscalls (every thread) are counted in the kernel while `--duration`
seconds of the gateway bench's load run (wrk, else its Python client, `--connections`
connections), then for as long again with none: what the server does by the clock (timers,
batches, the loop-lag probe) is that idle window's count, taken off the busy one's in proportion
to their lengths, and the rest divided by the requests served. With `--requests N --connections 1`
the load is N requests one after the other, a quiet machine's pattern (a read per frame), where
under saturation a read finds many frames. strace stops the process at every syscall, so its
reads find more bytes at once: compare servers counted alike.

CPU: then `--duration` seconds of the same load, not counted, utime and stime of the server's
process from /proc (0: no CPU window). `--tree DIR` runs that tree's node beside
(bench/baseline_tree.py sets its database up).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import baseline_tree  # noqa: E402
import bench_gateway as bg  # noqa: E402
import bench_instructions  # noqa: E402

# the request bodies and paths bench_instructions.py counts instructions of, its streams and JSON
MODES = {mode: bench_instructions.MODES[mode] for mode in ("json", "stream", "messages-stream", "responses-stream")}
# the kinds a table lists first, in this order (then the rest by count)
FIRST = ("context-switches", "page-faults", "cpu-migrations", "epoll_wait", "epoll_pwait", "recvfrom", "read",
         "sendto", "write", "writev", "sendmsg", "recvmsg",
         "epoll_ctl", "setsockopt", "getsockname", "getpeername", "clock_gettime", "futex", "openat", "close")
ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)\s*$")


def count_window(pid: int, work: Any, out: Path) -> tuple[dict[str, int], float]:
    """Syscalls of `pid` (every thread) by kind while `work()` runs, and the seconds it took: counted
    in the kernel by its syscall tracepoints (`perf stat`, which slows no syscall), else by strace
    (which stops the process at each one, so its reads find more bytes at once)."""
    if shutil.which("perf"):
        cmd = ["perf", "stat", "-x", ",", "--no-big-num", "-o", str(out), "-e",
               "syscalls:sys_enter_*,context-switches,page-faults,cpu-migrations", "-p", str(pid)]
    else:
        cmd = ["strace", "-c", "-f", "-q", "-o", str(out), "-p", str(pid)]
    out.unlink(missing_ok=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not attached(pid, cmd[0] == "perf", out):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit(f"{cmd[0]} could not attach to {pid}: "
                             f"{proc.communicate()[1].decode(errors='replace')[-500:]}")
        time.sleep(0.01)
    began = time.monotonic()
    try:
        work()
    finally:
        took = time.monotonic() - began
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    counts: dict[str, int] = {}
    for line in out.read_text().splitlines():
        if cmd[0] == "perf":
            parts = line.split(",")
            if len(parts) > 2 and parts[0].isdigit() and int(parts[0]):
                counts[parts[2].removeprefix("syscalls:sys_enter_")] = int(parts[0])
        elif (m := ROW.match(line)) and m.group(3) != "total":
            counts[m.group(3)] = int(m.group(1))
    return counts, took


def attached(pid: int, perf: bool, out: Path) -> bool:
    """Whether the counting has begun: perf has opened its output (then its counters), strace is
    every thread's tracer."""
    if perf:
        if not out.exists():
            return False
        time.sleep(0.2)  # (perf opens its counters once its output is open)
        return True
    for task in Path(f"/proc/{pid}/task").iterdir():
        if re.search(r"^TracerPid:\s+0$", (task / "status").read_text(), re.M):
            return False
    return True


def send_all(port: int, path: str, data: bytes, headers: dict[str, str], requests: int, conns: int) -> int:
    """`requests` requests over `conns` keep-alive connections, each answered in full before the next."""
    left = [requests]
    lock = threading.Lock()
    failed: list[str] = []

    def one_connection() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while True:
                with lock:
                    if left[0] == 0:
                        return
                    left[0] -= 1
                conn.request("POST", path, body=data, headers=headers)
                resp = conn.getresponse()
                answer = resp.read()
                if resp.status != 200:
                    failed.append(f"{resp.status} {answer[:300]!r}")
                    return
        finally:
            conn.close()

    threads = [threading.Thread(target=one_connection) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise SystemExit(f"{path}: {failed[0]}")
    return requests


def per_request(busy: dict[str, int], busy_s: float, idle: dict[str, int], idle_s: float,
                requests: int) -> dict[str, float]:
    """Each kind's count per request: the busy window's less the idle window's, scaled to its length."""
    scale = busy_s / idle_s
    return {k: max(0.0, (busy.get(k, 0) - idle.get(k, 0) * scale) / requests) for k in set(busy) | set(idle)}


EVENTS = ("context-switches", "page-faults", "cpu-migrations")  # not syscalls


def syscalls(counts: dict[str, float]) -> float:
    return sum(v for k, v in counts.items() if k not in EVENTS)


def table(mode: str, by: dict[str, dict[str, float]], cpu: dict[str, tuple[float, float]]) -> str:
    names = list(by)
    kinds = [k for k in FIRST if any(by[n].get(k, 0) >= 0.05 for n in names)]
    rest = sorted({k for n in names for k, v in by[n].items() if v >= 0.05 and k not in kinds},
                  key=lambda k: -max(by[n].get(k, 0) for n in names))
    width = max(14, *(len(n) + 2 for n in names))
    lines = [f"{mode}: per request", f"{'':22}" + "".join(f"{n:>{width}}" for n in names)]
    for k in [*kinds, *rest]:
        lines.append(f"{k:22}" + "".join(f"{by[n].get(k, 0):>{width}.2f}" for n in names))
    lines.append(f"{'all syscalls':22}" + "".join(f"{syscalls(by[n]):>{width}.2f}" for n in names))
    if cpu:
        for i, what in enumerate(("user us", "system us")):
            lines.append(f"{what:22}" + "".join(f"{cpu[n][i]:>{width}.1f}" if n in cpu else f"{'':>{width}}"
                                                   for n in names))
        lines.append(f"{'cpu us':22}" + "".join(f"{sum(cpu[n]):>{width}.1f}" if n in cpu else f"{'':>{width}}"
                                                for n in names))
    return "\n".join(lines)


def measure(pid: int, port: int, key: str | None, body: dict[str, Any], path: str, args: argparse.Namespace,
            scratch: Path) -> tuple[dict[str, float], tuple[float, float] | None]:
    """One server in one mode: its syscalls and events per request, its (user, system) us per request."""
    url = f"http://127.0.0.1:{port}{path}"
    bg.load(url, body, key, 1, 4)  # warm-up
    sent: list[int] = []
    if args.requests:  # a fixed number, `--connections` clients sending each after the last
        headers = {**bg.request_headers(url, key), "Content-Type": "application/json"}
        data = json.dumps(body).encode()
        busy, busy_s = count_window(pid, lambda: sent.append(
            send_all(port, path, data, headers, args.requests, args.connections)), scratch / "busy")
    else:  # the CPU window's load
        busy, busy_s = count_window(pid, lambda: sent.append(
            bg.load(url, body, key, args.duration, args.connections).requests), scratch / "busy")
    idle, idle_s = count_window(pid, lambda: time.sleep(busy_s), scratch / "idle")
    counts = per_request(busy, busy_s, idle, idle_s, sent[0])
    if not args.duration:
        return counts, None
    u0, s0 = bg.cpu_split(pid)
    got = bg.load(url, body, key, args.duration, args.connections)
    u1, s1 = bg.cpu_split(pid)
    n = max(1, got.requests)
    return counts, ((u1 - u0) / n * 1e6, (s1 - s0) / n * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default=",".join(MODES), help=f"of {', '.join(MODES)}")
    parser.add_argument("--connections", type=int, default=32, help="connections of the load (as the gateway "
                        "bench's)")
    parser.add_argument("--duration", type=int, default=6, help="seconds of load a window lasts")
    parser.add_argument("--requests", type=int, default=0, help="count the syscalls of this many requests "
                        "sent by `--connections` clients one after the other (not `--duration` seconds of wrk)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per mode and server (the median by kind)")
    parser.add_argument("--tree", action="append", default=[], type=Path, help="another source tree's node too")
    parser.add_argument("--save", type=Path, help="write every figure to this JSON file")
    args = parser.parse_args()
    modes = bench_instructions.chosen_modes(parser, args.modes, MODES)
    if not shutil.which("perf") and not shutil.which("strace"):
        raise SystemExit("error: neither perf nor strace is installed (apt-get install linux-perf strace): "
                         "one of them counts the syscalls")

    scratch = Path(tempfile.mkdtemp(prefix="shieldes-syscalls-"))
    up_port = bg.free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    server = bg.bench_server()
    trees = [ROOT, *(t.resolve() for t in args.tree)]
    prepared = [baseline_tree.prepare(tree, server, upstream, bg.KEY_LIMITS, responses=True) for tree in trees]
    procs: dict[str, subprocess.Popen[bytes]] = {
        "upstream": bg.spawn(["-m", "tests.fake_upstream", "--port", str(up_port), "--completion-tokens", "20"])}
    targets: list[tuple[str, int, str | None]] = []
    try:
        port = bg.free_port()
        procs["bare proxy"] = bg.spawn([str(ROOT / "bench" / "bench_gateway.py"), "proxy", "--port", str(port),
                                        "--upstream", upstream])
        targets.append(("bare proxy", port, None))
        for i, (tree, db) in enumerate(zip(trees, prepared, strict=True)):
            port = bg.free_port()
            name = "node" if tree == ROOT else f"tree {i}"
            procs[name] = bg.spawn(["-m", "shieldes", "serve", "--host", "127.0.0.1", "--port", str(port),
                                    "--node-id", f"bench-sys-{i}"], env={"SHIELDES_DATABASE_URL": db.url}, src=tree)
            targets.append((name, port, db.secret))
        bg.wait_port(up_port)
        for _, port, _ in targets:
            bg.wait_port(port, timeout=600)
        results: dict[str, dict[str, Any]] = {}
        for mode in modes:
            body, path = MODES[mode]
            by: dict[str, dict[str, float]] = {}
            cpu: dict[str, tuple[float, float]] = {}
            for name, port, key in targets:
                runs = [measure(procs[name].pid, port, key, body, path, args, scratch) for _ in range(args.rounds)]
                # the median round by kind: a rare batch of the node's (a snapshot) landing in one window is left out
                kinds = {k for c, _ in runs for k in c}
                by[name] = {k: statistics.median(c.get(k, 0.0) for c, _ in runs) for k in kinds}
                if runs[0][1] is not None:
                    cpu[name] = (statistics.median(u[0] for _, u in runs if u),
                                 statistics.median(u[1] for _, u in runs if u))
                results.setdefault(mode, {})[name] = {"syscalls": by[name], "cpu_user_sys_us": cpu.get(name)}
            print(table(mode, by, cpu), flush=True)
            print(f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        bg.stop_all(procs)
        for db in prepared:
            bg.drop_scratch(db.url)
        shutil.rmtree(scratch, ignore_errors=True)
    if args.save:
        args.save.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
