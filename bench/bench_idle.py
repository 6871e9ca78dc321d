"""CPU an idle `shieldes serve` spends, per thread (ms of CPU per second, from /proc): what a node
costs with no requests at all, and with `--workers N` what its workers' gossip with each other adds.
Also its database transactions a second (`pg_stat_database.xact_commit` of its scratch database)
and, with `--wakeups`, its event-loop wake-ups a second (epoll waits counted by `strace -c` over a
second window, after the CPU's: strace slows what it traces). `--tree DIR` runs the node from
another checkout (the tree before a change), the same way.

    PYTHONPATH=$PWD python bench/bench_idle.py --workers 2 [--seconds 10] [--wakeups] [--tree DIR] [SHIELDES_X=Y ...]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_gateway as bg


def cpu_by_thread(procs: list[psutil.Process]) -> dict[tuple[int, int, str], float]:
    out = {}
    for p in procs:
        for th in p.threads():
            try:
                name = Path(f"/proc/{p.pid}/task/{th.id}/comm").read_text().strip()
            except OSError:
                name = "?"
            out[(p.pid, th.id, name)] = th.user_time + th.system_time
    return out


def transactions(db_url: str) -> int:
    """Transactions committed in the scratch database so far (read from another database: the
    read itself is not counted)."""
    import psycopg

    from tests.pg import with_database

    name = urlsplit(db_url).path.lstrip("/")
    with psycopg.connect(with_database(db_url, "postgres"), autocommit=True) as conn:
        row = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (name,)).fetchone()
    return int(row[0]) if row else 0


def epoll_waits(pids: list[int], seconds: float) -> int:
    """epoll waits (each a wake-up of an event loop or a gRPC poller) of `pids`' threads in `seconds`."""
    tracers = [subprocess.Popen(["strace", "-f", "-c", "-e", "trace=epoll_wait,epoll_pwait", "-p", str(pid)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for pid in pids]
    time.sleep(seconds)
    calls = 0
    for tracer in tracers:
        tracer.send_signal(2)
        _, report = tracer.communicate()
        for line in report.splitlines():
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?epoll_p?wait$", line)
            if m:
                calls += int(m.group(1))
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=6.0, help="seconds after the port opens before measuring")
    parser.add_argument("--wakeups", action="store_true", help="count epoll waits with strace (another window)")
    parser.add_argument("--tree", type=Path, default=bg.ROOT, help="the checkout to run the node from")
    parser.add_argument("env", nargs="*", help="SHIELDES_X=Y settings for the node")
    args = parser.parse_args()
    db_url, _ = asyncio.run(bg.prepare_database())
    port = bg.free_port()
    env = {"SHIELDES_DATABASE_URL": db_url, **dict(kv.split("=", 1) for kv in args.env)}
    node = bg.spawn(["-m", "shieldes", "serve", "--host", "127.0.0.1", "--port", str(port), "--node-id", "idle",
                     "--workers", str(args.workers)], env=env, src=args.tree.resolve())
    try:
        bg.wait_port(port)
        time.sleep(args.settle)  # start-up (first contacts, catch-up) is not what is measured
        root = psutil.Process(node.pid)
        procs = [root, *root.children()]
        before, xacts = cpu_by_thread(procs), transactions(db_url)
        time.sleep(args.seconds)
        after, xacts = cpu_by_thread(procs), transactions(db_url) - xacts
        total = 0.0
        for key in sorted(after):
            ms = (after[key] - before.get(key, 0.0)) / args.seconds * 1000
            total += ms
            if ms > 0.2:
                print(f"  pid {key[0]} tid {key[1]} {key[2]:20} {ms:6.1f} ms/s")
        print(f"total {total:.1f} ms/s, {xacts / args.seconds:.1f} database transactions/s "
              f"(load average {' '.join(f'{x:.2f}' for x in psutil.getloadavg())})")
        if args.wakeups:
            waits = epoll_waits([p.pid for p in procs], args.seconds)
            print(f"epoll waits {waits / args.seconds:.1f}/s")
    finally:
        node.terminate()
        node.wait()
        bg.drop_scratch(db_url)


if __name__ == "__main__":
    main()
