"""The node's HTTP listener: the front answers the model API's hot routes, aiohttp the rest; on stop
it drains (open Responses WebSockets closed once their answer has ended, in-flight requests given
their grace) before it closes."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any

from aiohttp import web

from shieldes.gateway.aiohttp_protocol import JsonErrorHandler, protocol_logger
from shieldes.gateway.front import Front
from shieldes.gateway.middleware import REQUEST_IDS
from shieldes.gateway.observe import IN_FLIGHT, OBSERVER
from shieldes.gateway.responses_socket import SOCKETS
from shieldes.gateway.routes import GATEWAY

log = logging.getLogger(__name__)


class HttpServer:
    """The node's listening socket: the front answers the model API's hot routes, the aiohttp
    runner's handlers everything else (gateway/front.py)."""

    def __init__(self, app: web.Application, host: str, port: int, *, reuse_port: bool, grace: float,
                 tls: ssl.SSLContext | None = None) -> None:
        self.app = app
        self.tls = tls  # HTTPS (gateway/tls.py), None: plain HTTP
        self.host = host
        self.port = port
        self.reuse_port = reuse_port
        self.grace = grace
        # auto_decompress off: read_json decodes request bodies itself, so an encoding aiohttp
        # cannot decode (br, zstd, broken gzip) gets an error in the API's shape, not a text/plain 400.
        self._handler_options: dict[str, Any] = dict(access_log=None, logger=protocol_logger(),
                                                     auto_decompress=False)
        self.runner = web.AppRunner(app, shutdown_timeout=1.0, handle_signals=False, **self._handler_options)
        self.front: Front | None = None

    async def start(self) -> None:
        await self.runner.setup()
        server = self.runner.server
        assert server is not None
        loop = asyncio.get_running_loop()

        observer, ids = self.app[OBSERVER], self.app[REQUEST_IDS]

        settings = self.app[GATEWAY].settings

        def handler() -> JsonErrorHandler:  # what web.Server() makes, with the JSON refusals
            return JsonErrorHandler(server, loop=loop, ids=ids, refused=observer.refused,
                                    header_timeout=settings.header_timeout, body_timeout=settings.body_timeout,
                                    **self._handler_options)

        self.front = Front(self.app, handler, observer.observe, settings.max_body_bytes, observer.refused,
                           files_check_seconds=settings.open_files_check_interval, ids=ids,
                           header_timeout=settings.header_timeout, body_timeout=settings.body_timeout)
        self.port = await self.front.start(self.host, self.port, self.reuse_port, self.tls)

    async def stop(self) -> None:
        front = self.front
        if front is not None:
            front.stop_listening()  # stop accepting; open connections keep going
            front.close_idle()
        await self.app[SOCKETS].close_all()  # Responses WebSockets, each once its current answer has ended
        in_flight = self.app[IN_FLIGHT]
        deadline = time.monotonic() + self.grace
        while in_flight.count and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if in_flight.count:
            log.warning("shutdown: %d requests still running after %.1fs; cancelling them",
                        in_flight.count, self.grace)
        await self.runner.cleanup()
        if front is not None:
            await front.close()
            self.front = None
