"""A second listener with the process's own /metrics, /health and /ready (SHIELDES_METRICS_PORT).

`serve --workers N` runs N nodes on one shared port: a scrape of that port's /metrics reaches one
worker at random, so its counters would jump between workers' values. Each worker also listens
here on a port of its own (metrics_port + K - 1), which Prometheus scrapes as one target each."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from shieldes.errors import ListenFailed


class MetricsListener:
    def __init__(self, host: str, port: int, render: Callable[[str | None], tuple[bytes, str]],
                 readiness: Callable[[], tuple[bool, dict[str, Any]]]) -> None:
        self.host, self.port = host, port
        self._render, self._readiness = render, readiness
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        app.router.add_get("/ready", self._ready)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = self._render(request.headers.get("Accept"))
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = content_type
        return resp

    async def _health(self, _request: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps({"status": "alive", "time": time.time()}),
                            content_type="application/json")

    async def _ready(self, _request: web.Request) -> web.Response:
        ok, info = self._readiness()
        return web.Response(body=orjson.dumps(info), status=200 if ok else 503, content_type="application/json")

    async def start(self) -> int:
        """Listen; the port bound (the one asked for, or the one the system chose for 0)."""
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self.runner.cleanup()
            raise ListenFailed(f"cannot listen for metrics on {self.host}:{self.port} ({exc.strerror or exc}); stop "
                               "what uses the port or pick another with SHIELDES_METRICS_PORT (or --metrics-port; "
                               "with --workers N it and the N - 1 ports after it are used)") from None
        sockets = getattr(site._server, "sockets", None) or ()  # (aiohttp keeps the bound sockets there)
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        await self.runner.cleanup()
