"""`shieldes logs` shows the clients' requests by default: a web console left open polls the admin
API every 2 s and a load balancer probes /ready, and their rows would push the gateway's requests
off the newest page. `--route gateway` is that default (gateway routes, versioned or not, and
unmatched paths), `--route '*'` every request, and `--request-id` finds a request whatever its route.
`--since`/`--until` also take a time ago (15m, 2h, 7d)."""

from __future__ import annotations

import asyncio
import time

from shieldes.events.pg_store import open_pool
from shieldes.requestlog.record import RequestRecord
from shieldes.requestlog.writer import RequestLogWriter
from tests.cli import ok

ROUTES = {  # request id -> route
    "chat": "/v1/chat/completions", "bare": "/chat/completions", "lost": "unmatched",
    "poll": "/admin/v1/cluster", "asset": "/ui/{name}", "ui": "/ui", "signin": "/ui/sign-in.json",
    "probe": "/ready", "alive": "/health", "scrape": "/metrics",
}
CLIENTS = {"chat", "bare", "lost"}


async def _log(database_url: str) -> None:
    pool = open_pool(database_url, size=2)
    await pool.open(wait=True)
    try:
        writer = RequestLogWriter(pool, "n1", capacity=20, interval=3600)
        start = time.time() - 2 * 3600  # two hours ago
        for i, (rid, route) in enumerate(ROUTES.items()):
            rec = RequestRecord(rid, start + i, 1.0, "GET", route.replace("{name}", "app.js"))
            rec.route, rec.t_end, rec.status = route, 1.001, 200
            writer.add(rec)
        assert await writer.flush_all(10)
    finally:
        await pool.close()


def test_logs_default_to_the_clients_requests(database_url: str) -> None:
    asyncio.run(_log(database_url))
    assert {r["request_id"] for r in ok(database_url, "logs")} == CLIENTS
    assert {r["request_id"] for r in ok(database_url, "logs", "--route", "gateway")} == CLIENTS
    assert {r["request_id"] for r in ok(database_url, "logs", "--route", "*")} == set(ROUTES)
    assert {r["request_id"] for r in ok(database_url, "logs", "--route", "/admin/*")} == {"poll"}
    assert [r["request_id"] for r in ok(database_url, "logs", "--request-id", "poll")] == ["poll"]
    assert {r["request_id"] for r in ok(database_url, "logs", "--status", "ok")} == CLIENTS
    # times ago, as an operator asks after an incident
    assert {r["request_id"] for r in ok(database_url, "logs", "--since", "3h")} == CLIENTS
    assert ok(database_url, "logs", "--since", "1h") == [] and ok(database_url, "logs", "--until", "3h") == []
    assert len(ok(database_url, "audit", "log", "--since", "1h")) == 0
