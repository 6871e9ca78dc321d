"""Where the stored-response writer's instructions go in the node: each part of a write counted on
its own under `valgrind --tool=callgrind`, in a process of its own doing it N and then 3N times
(the difference over 2N: start-up, imports, the pool's connection and the statement's first run
cancel), on a real Postgres (the embedded one bench_gateway.py uses).

    python bench/bench_stored_parts.py [--n 100] [--parts getconn,build-1,...] [--tree DIR]

Parts: `getconn` (the pool's getconn + putconn), `build-K` (the batch of K rows as the statement's
one parameter), `execute-K` (psycopg's execute of the statement on a connection held), `select-1`
(`SELECT 1` on a connection held: psycopg's floor), `cursor-K` (the statement's execute on one
cursor kept, as the writer keeps it with its connection), `within` (the writer's bound on a write: a
task and a timer, around a coroutine that does nothing), `insert-K` and `insert-kept-K`
(ResponseTable.insert taking a connection from the pool each batch, or keeping it; the second only
where the tree has it), `write-K` (the writer's whole write of a batch, ResponseStore._write: its
bound, its bookkeeping and the statement, on the connection it keeps where the tree keeps one).
Rows are made (encoded) the same in both runs, so their encoding cancels. A `--tree` without
`rows_json` (before it) has only getconn, select-1, within, insert-K and write-K.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("getconn", "select-1", "within", "build-1", "build-12", "execute-1", "execute-12", "cursor-1", "cursor-12",
         "insert-1", "insert-kept-1", "insert-12", "insert-kept-12", "write-1", "write-12", "save-1", "stored-1",
         "stored-12")


async def run(url: str, part: str, n: int, make: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_stored_insert import Rows, answer

    from shieldes.dbwait import DbWait
    from shieldes.events.pg_store import open_pool
    from shieldes.responses import store
    from shieldes.responses.service import ResponseStore
    from shieldes.settings import Settings

    pool = open_pool(url, size=2)
    await pool.open(wait=True)
    table = store.ResponseTable(pool)
    run_id = uuid.uuid4().hex
    rows = Rows(run_id, [{"role": "user", "content": "Say hello"}], answer)
    k = int(part.rsplit("-", 1)[1]) if part[-1].isdigit() else 1
    batches = [rows(k) for _ in range(make + 6)]  # (as many made in both runs; the last makes the partitions)
    conn = await pool.getconn()
    cur = conn.cursor()
    wait = DbWait(5.0)
    writer = ResponseStore(table, Settings(database_url=url), DbWait(5.0))

    async def nothing() -> None:
        return None

    def build(i: int) -> None:
        store.rows_json(batches[i])

    answers = [[stream_answer(f"{run_id}_{i}_{j}") for j in range(k)] for i in range(make + 6)]

    async def stored(i: int) -> None:
        for j, response in enumerate(answers[i]):
            writer.save(store.StoredResponse(f"{run_id}_{i}_{j}", time.time(), "key_1", None, "gpt-4o",
                                             STREAM_INPUT, response))
        if part.startswith("stored"):
            await writer.flush()

    steps: dict[str, Callable[[int], Awaitable[Any] | None]] = {
        "getconn": lambda i: _getput(pool),
        "select-1": lambda i: conn.execute("SELECT 1"),
        "within": lambda i: wait.within(nothing(), "nothing"),
        "build": build,
        "execute": lambda i: conn.execute(store._INSERT, (store.rows_json(batches[i]),)),
        "cursor": lambda i: cur.execute(store._INSERT, (store.rows_json(batches[i]),)),
        "insert": lambda i: table.insert(batches[i]),
        "insert-kept": lambda i: table.insert(batches[i], keep=True),
        "write": lambda i: writer._write(batches[i]),
        "save": stored,
        "stored": stored,
    }
    step = steps[part if part in steps else part.rsplit("-", 1)[0]]
    await table.insert(batches[-1])  # partitions made
    for i in range(n + 5):  # the first five warm up (the statement prepared after its fifth run)
        got = step(i)
        if got is not None:
            await got
    await pool.putconn(conn)
    if hasattr(table, "release"):
        await table.release()
    await pool.close()


# the gateway bench's Responses body's input, as the node normalizes and stores it
STREAM_INPUT = [{"type": "message", "role": "user",
                 "content": [{"type": "input_text", "text": "Say hello to the benchmark please"}]}]


def stream_answer(rid: str) -> dict[str, Any]:
    """The fake upstream's response object for the gateway bench's Responses body (20 tokens), as
    the node parses it from the stream's `response.completed`."""
    import orjson

    from tests import fake_responses

    body = {"model": "gpt-4o", "input": "Say hello to the benchmark please", "stream": True}
    text = " ".join(["Hello"] * 20)
    made = fake_responses.response_body(body, rid, "msg_" + rid, "call_" + rid, text, 20, "stop")
    response: dict[str, Any] = orjson.loads(orjson.dumps(made))
    return response


async def _getput(pool: Any) -> None:
    await pool.putconn(await pool.getconn())


def counted(tree: str, url: str, part: str, n: int, make: int) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_stored_insert import callgrind_total

    return callgrind_total(str(Path(__file__).resolve()), ["--url", url, "--part", part, "--n", str(n), "--make",
                                                           str(make)], tree)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--tree", default=str(ROOT))
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--make", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.url:
        import uvloop

        uvloop.run(run(args.url, args.part, args.n, args.make))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_gateway as bg

    url, _ = asyncio.run(bg.prepare_database())
    try:
        print("| part | instructions each |\n|---|---:|")
        for part in args.parts.split(","):
            start = time.monotonic()
            few, many = (counted(args.tree, url, part, m, 3 * args.n) for m in (args.n, 3 * args.n))
            print(f"| {part} | {(many - few) / (2 * args.n):,.0f} |  <!-- {time.monotonic() - start:.0f} s -->",
                  flush=True)
    finally:
        bg.drop_scratch(url)


if __name__ == "__main__":
    main()
