"""CPU an idle `shieldes serve` spends, per thread (ms of CPU per second, from /proc): what a node
costs with no requests at all, and with `--workers N` what its workers' gossip with each other adds.

    PYTHONPATH=$PWD python bench/bench_idle.py --workers 2 [--seconds 10] [SHIELDES_X=Y ...]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=6.0, help="seconds after the port opens before measuring")
    parser.add_argument("env", nargs="*", help="SHIELDES_X=Y settings for the node")
    args = parser.parse_args()
    db_url, _ = asyncio.run(bg.prepare_database())
    port = bg.free_port()
    env = {"SHIELDES_DATABASE_URL": db_url, **dict(kv.split("=", 1) for kv in args.env)}
    node = bg.spawn(["-m", "shieldes", "serve", "--host", "127.0.0.1", "--port", str(port), "--node-id", "idle",
                     "--workers", str(args.workers)], env=env)
    try:
        bg.wait_port(port)
        time.sleep(args.settle)  # start-up (first contacts, catch-up) is not what is measured
        root = psutil.Process(node.pid)
        procs = [root, *root.children()]
        before = cpu_by_thread(procs)
        time.sleep(args.seconds)
        after = cpu_by_thread(procs)
        total = 0.0
        for key in sorted(after):
            ms = (after[key] - before.get(key, 0.0)) / args.seconds * 1000
            total += ms
            if ms > 0.2:
                print(f"  pid {key[0]} tid {key[1]} {key[2]:20} {ms:6.1f} ms/s")
        print(f"total {total:.1f} ms/s (load average {' '.join(f'{x:.2f}' for x in psutil.getloadavg())})")
    finally:
        node.terminate()
        node.wait()
        bg.drop_scratch(db_url)


if __name__ == "__main__":
    main()
