"""What Postgres's compression of large values (TOAST) costs a stored Responses turn: the writer's
INSERT (`ResponseTable.insert`, the statement a node runs) of one turn carrying a 2 MB screenshot
(2.7 MB of base64) and of one coding agent's 60-call transcript (about 80 kB of text), per way of
compressing: the way a node's connections choose (`open_pool`: lz4 where the server has it and no
one configured `default_toast_compression`), pglz (Postgres's default), lz4, and no compression
(`STORAGE EXTERNAL`). Milliseconds per row (wall: the backend's work) and disk per row.

    PYTHONPATH=. python bench/bench_stored_compression.py [--database-url URL] [--rounds 2]

URL: a Postgres server (a fresh scratch database is made on it and dropped); by default the
embedded server the gateway bench uses, which is built without lz4.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_gateway import agent_responses  # noqa: E402

from shieldes import db  # noqa: E402
from shieldes.events.pg_store import open_pool  # noqa: E402
from shieldes.responses.store import ResponseTable, StoredResponse, day_of, encode, partition_name  # noqa: E402
from tests.pg import drop_database, with_database  # noqa: E402

WAYS = {
    "node's choice": None,
    "pglz": "SET default_toast_compression = pglz",
    "lz4": "SET default_toast_compression = lz4",
    "uncompressed": "ALTER TABLE {part} ALTER COLUMN input SET STORAGE EXTERNAL",
}


def screenshot() -> list[dict[str, Any]]:
    data = base64.b64encode(random.Random(2048).randbytes(2048 * 1024)).decode()
    return [{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "What is on the screen?"},
        {"type": "input_image", "image_url": "data:image/png;base64," + data}]}]


def transcript(turns: int = 60) -> list[dict[str, Any]]:
    """A coding agent's Responses input: `turns` shell calls, each with its result."""
    items: list[dict[str, Any]] = agent_responses({"input": "Fix the failing test, please."}, turns)["input"]
    return items


async def measure(url: str, way: str, inputs: list[dict[str, Any]], rows: int) -> tuple[float, float, str]:
    """(ms per row, KiB of disk per row, the compression Postgres used) for `rows` turns of `inputs`."""
    pool = open_pool(url, size=1)
    await pool.open(wait=True)
    try:
        async with pool.connection() as conn:
            await conn.execute("TRUNCATE stored_responses")
        table = ResponseTable(pool)
        today = day_of(time.time())
        part = partition_name(today)
        await table.ensure_partitions({today})
        statement = WAYS[way]
        if statement is not None:
            async with pool.connection() as conn:
                await conn.execute(statement.format(part=part))  # type: ignore[arg-type]
        encoded = [encode(StoredResponse(f"resp_{uuid.uuid4().hex}", time.time(), "key_1", None, "m", inputs,
                                         {"output": []})) for _ in range(rows + 1)]
        await table.insert(encoded[:1])  # the partition, and the statement prepared
        started = time.perf_counter()
        for row in encoded[1:]:
            await table.insert([row])
        elapsed = (time.perf_counter() - started) / rows
        async with pool.connection() as conn:
            cur = await conn.execute(f"SELECT pg_total_relation_size('{part}'), (SELECT pg_column_compression(input) "
                                     "FROM stored_responses LIMIT 1)")
            size, method = await cur.fetchone() or (0, None)
            if "STORAGE" in (statement or ""):
                await conn.execute(f"ALTER TABLE {part} ALTER COLUMN input SET STORAGE EXTENDED")
        return elapsed * 1e3, size / (rows + 1) / 1024, method or "none (stored as it is)"
    finally:
        await pool.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=os.environ.get("SHIELDES_BENCH_DATABASE_URL"))
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    server = args.database_url or db.embedded_database_url(Path(tempfile.gettempdir()) / "shieldes-bench-pg")
    name = "bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
        lz4 = conn.execute("SELECT 'lz4' = ANY (enumvals) FROM pg_settings WHERE name = "
                           "'default_toast_compression'").fetchone()
    url = with_database(db.libpq_url(server), name)
    try:
        db.upgrade(url)
        print(f"server built with lz4: {bool(lz4 and lz4[0])}")
        print(f"{'round':>5} {'input':<22} {'compression':<14} {'ms/row':>8} {'KiB/row':>9}  Postgres used")
        cases = [("2 MB screenshot", screenshot(), 10), ("agent transcript", transcript(), 100)]
        for round_no in range(args.rounds):
            for what, inputs, rows in cases:
                for way in WAYS:
                    if way == "lz4" and not (lz4 and lz4[0]):
                        continue
                    ms, kib, method = await measure(url, way, inputs, rows)
                    print(f"{round_no:>5} {what:<22} {way:<14} {ms:8.2f} {kib:9.1f}  {method}", flush=True)
    finally:
        drop_database(server, url)


if __name__ == "__main__":
    asyncio.run(main())
