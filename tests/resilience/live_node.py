"""A node served from a background thread (its own event loop), so synchronous tests — hypothesis
among them — can hit it over real sockets. Every log record of that thread is kept for inspection
(not the test's own thread: an SDK client another test left open logs its failed close there when
the collector frees it, long after its loop has gone)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests import pg
from tests.integration.gateway_harness import UPSTREAM_KEY, harness

ADMIN_TOKEN = "adm-live-" + "x9" * 12


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.thread: int | None = None  # the node's

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.lines.append(self.format(record))


@dataclass
class Live:
    base: str
    port: int
    secret: str
    database_url: str
    logs: Records
    harness: Any = None
    secrets: list[str] = field(default_factory=list)


@contextmanager
def live_node(pg_server: str, **settings: Any) -> Iterator[Live]:
    url = pg.fresh_database(pg_server)
    records = Records()
    records.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(records)
    root.setLevel(logging.INFO)
    started = threading.Event()
    loop = asyncio.new_event_loop()
    holder: dict[str, Any] = {}
    stop = asyncio.Event()

    async def main() -> None:
        try:
            async with harness(url, admin_token=ADMIN_TOKEN, **settings) as h:
                holder["h"] = h
                holder["secret"] = await h.create_key("fuzz", rpm=1_000_000)
                await h.sync()
                started.set()
                await stop.wait()
        except BaseException as exc:
            holder["error"] = exc
            started.set()
            raise

    def serve() -> None:
        records.thread = threading.get_ident()
        loop.run_until_complete(main())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    started.wait(60)
    try:
        if "error" in holder:
            raise holder["error"]
        h = holder["h"]
        live = Live(h.base, h.node.port, holder["secret"], url, records, h,
                    [holder["secret"], ADMIN_TOKEN, UPSTREAM_KEY])
        yield live
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
        root.removeHandler(records)
        root.setLevel(old_level)
        pg.drop_database(pg_server, url)
