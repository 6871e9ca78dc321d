"""Node CPU of the stored-response writer's statement (`ResponseTable.insert`): one batch of 1, 12
(the gateway bench's Responses streams at saturation with the writer's 25 ms wait) and 100 answers.

    python bench/bench_stored_insert.py [--batches 300] [--rounds 3] [--tree DIR ...]

A real Postgres (SHIELDES_BENCH_DATABASE_URL, or the embedded one under $TMPDIR/shieldes-bench-pg,
as bench_gateway.py uses); `time.process_time` of this process per batch, best of the rounds (the
least disturbed by other work on the machine). Each `--tree` (`git archive <commit> | tar -x -C
DIR`) runs the same in its own process, alternating with this tree, for a before/after in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
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


async def measure(url: str, batches: int) -> dict[int, float]:
    from shieldes.events.pg_store import open_pool
    from shieldes.responses.store import ResponseTable

    pool = open_pool(url, size=2)
    await pool.open(wait=True)
    table = ResponseTable(pool)
    run = uuid.uuid4().hex  # this process's ids: rows of earlier runs are in the same table
    rows = Rows(run, [{"role": "user", "content": "Say hello"}], answer)
    per_batch: dict[int, float] = {}
    try:
        for k in SIZES:
            await table.insert(rows(k))  # partitions made, statement prepared
            todo = [rows(k) for _ in range(batches if k < 100 else batches // 3)]
            start = time.process_time()
            for batch in todo:
                await table.insert(batch)
            per_batch[k] = (time.process_time() - start) / len(todo)
    finally:
        await pool.close()
    return per_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tree", action="append", default=[], help="another source tree, measured the same way")
    parser.add_argument("--url", help=argparse.SUPPRESS)  # a subprocess's single measure, on this database
    args = parser.parse_args()
    if args.url:
        import uvloop

        print(json.dumps(uvloop.run(measure(args.url, args.batches))))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_gateway as bg

    url, _ = asyncio.run(bg.prepare_database())
    best: dict[str, dict[str, float]] = {}
    try:
        for _ in range(args.rounds):
            for tree in [str(ROOT), *args.tree]:  # each tree's own shieldes (the script's folder holds none)
                out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--url", url, "--batches",
                                      str(args.batches)], env={**os.environ, "PYTHONPATH": tree}, cwd=tree,
                                     check=True, capture_output=True, text=True).stdout
                got = json.loads(out.strip().splitlines()[-1])
                best[tree] = {k: min(v, best.get(tree, {}).get(k, v)) for k, v in got.items()}
    finally:
        bg.drop_scratch(url)
    print("| tree | " + " | ".join(f"batch of {k}: us CPU per batch (per answer)" for k in SIZES) + " |")
    print("|---|" + "---:|" * len(SIZES))
    for tree, got in best.items():
        cells = " | ".join(f"{got[str(k)] * 1e6:.0f} ({got[str(k)] * 1e6 / k:.0f})" for k in SIZES)
        print(f"| {'this tree' if tree == str(ROOT) else tree} | {cells} |")


if __name__ == "__main__":
    main()
