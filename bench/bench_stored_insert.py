"""Node CPU of the stored-response writer's statement (`ResponseTable.insert`): one batch of 1, 12
(the gateway bench's Responses streams at saturation with the writer's 25 ms wait) and 100 answers,
and Postgres's CPU for it.

    python bench/bench_stored_insert.py [--batches 300] [--rounds 3] [--tree DIR ...] [--instructions]

A real Postgres (SHIELDES_BENCH_DATABASE_URL, or the embedded one under $TMPDIR/shieldes-bench-pg,
as bench_gateway.py uses); `time.process_time` of this process per batch, best of the rounds (the
least disturbed by other work on the machine), and the CPU time of the one Postgres backend that
serves it (`/proc/PID/schedstat`, nanoseconds on a CPU; the server must be on this machine), best of
the rounds too. Each `--tree` (`git archive <commit> | tar -x -C DIR`) runs the same in its own
process, alternating with this tree, for a before/after in one run.

`--instructions`: the node's side counted instead of timed (load does not move a count): each size
runs in a process of its own under `valgrind --tool=callgrind` twice, writing `--batches` and three
times as many (both making the rows of three times as many); per batch, the difference over the
batches it had more (start-up, imports, the rows' encoding, the pool's connection and the
statement's first run cancel).

The batches go as the node's writer sends them while they keep coming: on the connection it keeps
from one batch to the next (`insert(keep=True)`), where the tree has it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIZES = (1, 12, 100)


def answer(n: int) -> dict[str, Any]:
    rid = f"resp_{n:032x}"
    return {"id": rid, "object": "response", "status": "completed", "model": "gpt-4o",
            "output": [{"id": f"msg_{n:032x}", "type": "message", "role": "assistant",
                        "content": [{"type": "output_text", "text": "word " * 20, "annotations": []}]}],
            "usage": {"input_tokens": 9, "output_tokens": 20, "total_tokens": 29}}


class Rows:
    """Encoded rows of this process's run, numbered on (`rows(k)`: the next k)."""

    def __init__(self, run: str, input: list[Any], answer: Callable[[int], dict[str, Any]]) -> None:
        self.run, self.input, self.answer, self.made = run, input, answer, 0

    def __call__(self, k: int) -> list[Any]:
        from shieldes.responses.store import StoredResponse, encode

        out = []
        for _ in range(k):
            self.made += 1
            out.append(encode(StoredResponse(f"resp_{self.run}_{self.made}", time.time(), "key_1", None, "gpt-4o",
                                             self.input, self.answer(self.made))))
        return out


def backend_cpu(pid: int) -> float:
    """Seconds a process has run on a CPU (the scheduler's own count, in nanoseconds)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


async def measure(url: str, batches: int, sizes: tuple[int, ...] = SIZES, make: int = 0) -> dict[str, float]:
    from shieldes.events.pg_store import open_pool
    from shieldes.responses.store import ResponseTable

    pool = open_pool(url, size=1)  # one connection: one backend does every write
    await pool.open(wait=True)
    table = ResponseTable(pool)
    run = uuid.uuid4().hex  # this process's ids: rows of earlier runs are in the same table
    rows = Rows(run, [{"role": "user", "content": "Say hello"}], answer)
    per_batch: dict[str, float] = {}
    try:
        async with pool.connection() as conn:
            cur = await conn.execute("SELECT pg_backend_pid()")
            got = await cur.fetchone()
        backend = int(got[0]) if got is not None else 0
        # the writer's connection kept between batches, as a node's writer keeps it while they come
        # (a tree whose table cannot keep it: taken from the pool and given back each batch)
        write = (lambda b: table.insert(b, keep=True)) if hasattr(table, "release") else table.insert
        for k in sizes:
            await write(rows(k))  # partitions made, statement prepared
            todo = [rows(k) for _ in range(max(make, batches if k < 100 else batches // 3))]
            todo = todo[:batches if k < 100 else batches // 3]  # (`make`: as many rows made, whatever is written)
            start, pg_start = time.process_time(), backend_cpu(backend)
            for batch in todo:
                await write(batch)
            per_batch[str(k)] = (time.process_time() - start) / len(todo)
            per_batch[f"pg{k}"] = (backend_cpu(backend) - pg_start) / len(todo)
    finally:
        if hasattr(table, "release"):
            await table.release()
        await pool.close()
    return per_batch


def callgrind_total(script: str, args: list[str], tree: str) -> int:
    """Instructions of `script` run with `args` on `tree`'s code (callgrind, every thread)."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "cg"
        subprocess.run(["valgrind", "--tool=callgrind", "--dump-instr=no", "--dump-line=no", "--collect-jumps=no",
                        f"--callgrind-out-file={out}", sys.executable, script, *args],
                       env={**os.environ, "PYTHONPATH": tree, "PYTHONHASHSEED": "0"}, cwd=tree, check=True,
                       capture_output=True)
        for line in out.read_text(errors="replace").splitlines():
            if line.startswith("summary:"):
                return int(line.split()[1])
    raise SystemExit(f"callgrind wrote no summary for {tree}")


def counted(tree: str, url: str, size: int, batches: int, make: int) -> int:
    """Instructions of a process of `tree` writing `batches` batches of `size` (callgrind, every thread),
    having made `make` batches' rows (the same in both runs: their encoding cancels)."""
    return callgrind_total(str(Path(__file__).resolve()), ["--url", url, "--batches", str(batches), "--size",
                                                           str(size), "--make", str(make)], tree)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tree", action="append", default=[], help="another source tree, measured the same way")
    parser.add_argument("--instructions", action="store_true", help="count the node's instructions (callgrind)")
    parser.add_argument("--url", help=argparse.SUPPRESS)  # a subprocess's single measure, on this database
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)  # ... of this size only
    parser.add_argument("--make", type=int, default=0, help=argparse.SUPPRESS)  # ... rows of this many batches made
    args = parser.parse_args()
    if args.url:
        import uvloop

        sizes = SIZES if args.size is None else (args.size,)
        print(json.dumps(uvloop.run(measure(args.url, args.batches, sizes, args.make))))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_gateway as bg

    url, _ = asyncio.run(bg.prepare_database())
    best: dict[str, dict[str, float]] = {}
    try:
        if args.instructions:
            trees = [str(ROOT), *args.tree]
            print("| tree | " + " | ".join(f"batch of {k}: instructions per batch (per answer)" for k in SIZES[:2])
                  + " |")
            print("|---|" + "---:|" * 2)
            for tree in trees:
                cells = []
                for k in SIZES[:2]:
                    few, many = (counted(tree, url, k, n, 3 * args.batches) for n in (args.batches, 3 * args.batches))
                    each = (many - few) / (2 * args.batches)
                    cells.append(f"{each:,.0f} ({each / k:,.0f})")
                print(f"| {'this tree' if tree == str(ROOT) else tree} | {' | '.join(cells)} |", flush=True)
            return
        for _ in range(args.rounds):
            for tree in [str(ROOT), *args.tree]:  # each tree's own shieldes (the script's folder holds none)
                out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--url", url, "--batches",
                                      str(args.batches)], env={**os.environ, "PYTHONPATH": tree}, cwd=tree,
                                     check=True, capture_output=True, text=True).stdout
                got = json.loads(out.strip().splitlines()[-1])
                best[tree] = {k: min(v, best.get(tree, {}).get(k, v)) for k, v in got.items()}
    finally:
        bg.drop_scratch(url)
    print("| tree | side | " + " | ".join(f"batch of {k}: us CPU per batch (per answer)" for k in SIZES) + " |")
    print("|---|---|" + "---:|" * len(SIZES))
    for tree, got in best.items():
        for side, prefix in (("node", ""), ("Postgres backend", "pg")):
            cells = " | ".join(f"{got[prefix + str(k)] * 1e6:.0f} ({got[prefix + str(k)] * 1e6 / k:.0f})"
                               for k in SIZES)
            print(f"| {'this tree' if tree == str(ROOT) else tree} | {side} | {cells} |")


if __name__ == "__main__":
    main()
