"""The aiohttp application of one node: middlewares, routes, and the objects handlers need."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from shieldes.gateway.admin import add_admin_routes
from shieldes.gateway.middleware import Handler, handle_errors
from shieldes.gateway.routes import GATEWAY, READINESS, add_routes
from shieldes.gateway.service import Gateway


class InFlight:
    """Counts requests being handled, so shutdown can wait for them (streams included)."""

    def __init__(self) -> None:
        self.count = 0


IN_FLIGHT: web.AppKey[InFlight] = web.AppKey("in_flight", InFlight)


def build_app(gateway: Gateway, readiness: Callable[[], tuple[bool, dict[str, Any]]]) -> web.Application:
    in_flight = InFlight()
    metrics = gateway.metrics

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        in_flight.count += 1
        metrics.in_flight.inc()
        started = time.perf_counter()
        status = 500
        try:
            resp = await handle_errors(request, handler)
            status = resp.status
            return resp
        finally:
            in_flight.count -= 1
            metrics.in_flight.dec()
            metrics.observe_request(request.path, status, time.perf_counter() - started)

    # client_max_size makes aiohttp refuse bodies over the cap while reading (413 via our errors).
    app = web.Application(middlewares=[observe],
                          client_max_size=gateway.settings.max_body_bytes)
    app[GATEWAY] = gateway
    app[READINESS] = readiness
    app[IN_FLIGHT] = in_flight
    add_routes(app)
    add_admin_routes(app)
    return app
