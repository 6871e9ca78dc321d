"""Stored responses: how long after its answer a response is durable in Postgres (what bounds a
next turn sent to another node), and the latency of POST /v1/responses, on a real node with the
fake upstream and the test Postgres.

    PYTHONPATH=. python bench/bench_responses.py [--requests 200]

Prints p50/p95/max of the request latency and of answer -> row visible to another connection.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg

from tests import pg
from tests.integration.gateway_harness import Harness, harness
from tests.integration.test_responses_api import oai


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


@asynccontextmanager
async def bench_node(**settings: Any) -> AsyncIterator[tuple[Harness, str]]:
    """A node on a fresh database of the test Postgres with the fake upstream, and the secret of a
    key for gpt-4o; the database is dropped after."""
    server = pg.server_url()
    pg.make_template(server)
    url = pg.fresh_database(server)
    try:
        async with harness(url, **settings) as h:
            secret = await h.create_key("bench", models=("gpt-4o",))
            await h.sync()
            yield h, secret
    finally:
        pg.drop_database(server, url)


async def run(requests: int) -> None:
    async with bench_node() as (h, secret):
        client = oai(h.base, secret)
        await client.responses.create(model="gpt-4o", input="warm up")
        latency, durable = [], []
        async with await psycopg.AsyncConnection.connect(h.database_url, autocommit=True) as conn:
            for i in range(requests):
                started = time.perf_counter()
                resp = await client.responses.create(model="gpt-4o", input=f"hello {i}")
                answered = time.perf_counter()
                while not await (await conn.execute("SELECT 1 FROM stored_responses WHERE id = %s",
                                                    (resp.id,))).fetchone():
                    await asyncio.sleep(0.0005)
                durable.append((time.perf_counter() - answered) * 1000)
                latency.append((answered - started) * 1000)
    for name, values in (("POST /v1/responses (JSON)", latency), ("answer -> row durable", durable)):
        print(f"{name:28} p50 {_pct(values, 0.5):6.1f} ms  p95 {_pct(values, 0.95):6.1f} ms  "
              f"max {max(values):6.1f} ms  (n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    asyncio.run(run(parser.parse_args().requests))


if __name__ == "__main__":
    main()
