"""The node's CPU to store one Responses turn that carries a 2 MB screenshot (2.7 MB of base64):
`ResponseStore.save` (the memory cache counts the response's JSON) then the writer's `flush`, whose
INSERT goes to a real Postgres (the test server, a fresh database); `time.process_time` counts this
process only, not Postgres's work.

    PYTHONPATH=. python bench/bench_stored_encode.py [--runs 40] [--rounds 5] [--tree DIR ...]

Each `--tree` (e.g. `git archive <commit> | tar -x -C DIR`) is measured the same way in a
subprocess, alternating with this tree, for a before/after in one run. Prints the best CPU per
turn over the rounds (`time.process_time`: the least disturbed by other work on the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent


def turn(n: int, image: str) -> Any:
    from shieldes.responses.store import StoredResponse

    rid = f"resp_{n}"
    return StoredResponse(rid, time.time(), "key_1", None, "gpt-4o", [{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "what is on this screen?"},
        {"type": "input_image", "image_url": "data:image/png;base64," + image}]}],
        {"id": rid, "object": "response", "status": "completed", "model": "gpt-4o", "output": [
            {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": "A terminal with a failing test."}]}]})


async def measure(url: str, runs: int) -> float:
    """Seconds of CPU per stored turn."""
    from shieldes.dbwait import DbWait
    from shieldes.events.pg_store import open_pool
    from shieldes.responses.service import ResponseStore
    from shieldes.responses.store import ResponseTable
    from shieldes.settings import Settings

    image = base64.b64encode(random.Random(2048).randbytes(2048 * 1024)).decode()
    turns = [turn(n, image) for n in range(runs)]
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("TRUNCATE stored_responses")
    pool = open_pool(url, size=2, name="bench")
    await pool.open(wait=True)
    try:
        store = ResponseStore(ResponseTable(pool), Settings(database_url=url), DbWait(30.0))
        store.save(turn(runs, image))  # the day's partition, created once
        assert await store.flush()
        began = time.process_time()
        for stored in turns:
            store.save(stored)
            assert await store.flush()
        spent = time.process_time() - began
    finally:
        await pool.close()
    return spent / runs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=40)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--tree", action="append", default=[], help="another checkout to measure the same way")
    p.add_argument("--one", metavar="URL", help=argparse.SUPPRESS)  # a subprocess's single measure
    args = p.parse_args()
    if args.one:
        print(asyncio.run(measure(args.one, args.runs)))
        return
    sys.path.insert(0, str(ROOT))
    from tests import pg

    server = pg.server_url()
    pg.make_template(server)
    url = pg.fresh_database(server)
    trees = [str(ROOT), *args.tree]
    best: dict[str, float] = {}
    try:
        for _ in range(args.rounds):
            for tree in trees:
                out = subprocess.run([sys.executable, __file__, "--one", url, "--runs", str(args.runs)], check=True,
                                     capture_output=True, text=True, env={**os.environ, "PYTHONPATH": tree}, cwd=tree)
                best[tree] = min(best.get(tree, float("inf")), float(out.stdout))
    finally:
        pg.drop_database(server, url)
    for tree in trees:
        print(f"{tree}: {best[tree] * 1000:.3f} ms of CPU per stored 2 MB-image turn (best of {args.rounds} "
              f"rounds of {args.runs})")


if __name__ == "__main__":
    main()
