"""The node's HTTP/1.1 front door: the listening socket, and what runs over all its connections
(idle keep-alive and late-head sweeps, the open-files check, the Date every answer carries). Each
connection (front_connection.py) answers the model API's POST routes (chat completions,
completions, embeddings, Messages, Responses) itself, and gives every other connection to the
aiohttp application at a request boundary.

Why: aiohttp's request machinery (request and response objects, router, middleware chain,
payload streams) costs about 25-30 us of CPU per request, a sixth of a node's work per chat
completion. Here a connection is parsed by httptools (llhttp, the parser aiohttp itself ships),
and a hot request is handed to the same handler the app registered for its route, through the
same observer (request log, metrics, access line, traces) and error rendering, with a
`LeanRequest` standing in for aiohttp's request: the few attributes the handlers use."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import cast

from aiohttp import web

from shieldes.errors import ListenFailed
from shieldes.gateway.front_connection import _Connection
from shieldes.gateway.http1 import HOT_SET
from shieldes.gateway.lean_request import LeanRequest, RouteMatch
from shieldes.gateway.middleware import Refused, RequestIds
from shieldes.open_files import Headroom, open_count, soft_limit

log = logging.getLogger(__name__)

KEEPALIVE_TIMEOUT = 3630.0  # idle keep-alive connections close after this, as aiohttp's default
SWEEP_SECONDS = 60.0
# Pending connections the kernel holds for accept(): a burst of clients (agents starting together)
# is not refused or delayed by SYN retries; the kernel caps it at net.core.somaxconn.
LISTEN_BACKLOG = 1024
# Every connection reads into the front's one buffer (as uvloop reads into its loop's one buffer),
# and its parser reads the request there: a body is copied out once, by the parser.
READ_BUFFER = 256 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Observe = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
class Front:
    """The listening socket and its connections."""

    def __init__(self, app: web.Application, handoff: Callable[[], asyncio.Protocol], observe: Observe,
                 max_body: int, refused: Refused | None = None, files_check_seconds: float = 5.0, *,
                 ids: RequestIds, header_timeout: float = 30.0, body_timeout: float = 60.0) -> None:
        self.app = app
        self.ids = ids  # names the requests refused here (the handlers' come from the app's, the same)
        self.handoff = handoff  # a fresh aiohttp request handler, for a connection leaving here
        # typed for the requests parsed here: a LeanRequest has every attribute the handlers read
        # (lean_request.as_request), and a cast here costs no call per request
        self.observe = cast(Callable[[LeanRequest, Handler], Awaitable[web.StreamResponse]], observe)
        self.refused = refused  # a request refused before a handler (Observer.refused): its row
        self.max_body = max_body
        # seconds a request's line and headers may take (slow clients holding connections open)
        self.header_timeout = header_timeout
        # seconds a request's body may go without a byte (a stalled upload holding its buffers)
        self.body_timeout = body_timeout
        self.matches: dict[str, RouteMatch] = {}
        self.handlers: dict[str, Handler] = {}
        for route in app.router.routes():
            resource = route.resource
            if route.method == "POST" and resource is not None and resource.canonical in HOT_SET:
                self.matches[resource.canonical] = RouteMatch(route)
                self.handlers[resource.canonical] = route.handler
        self.hot_paths = frozenset(self.matches)  # what hot_target takes: the app's, not the list's
        self.connections: set[_Connection] = set()
        self.reads = 0  # of request bytes, ever: a node idle over an interval read none (malloc.IdleTrim)
        self.read_view = memoryview(bytearray(READ_BUFFER))  # every connection's reads land here
        self.server: asyncio.AbstractServer | None = None
        # every answer's Date, formatted as the second turns (a timer while listening), not per answer
        self.date = _http_date(time.time())
        self._date_timer: asyncio.TimerHandle | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._head_sweeper: asyncio.TimerHandle | None = None
        self._files_timer: asyncio.TimerHandle | None = None
        self._closed = False  # no further open-files check once set
        self._headroom = Headroom()
        self.files_check_seconds = files_check_seconds  # how often the open files are counted (open_files)

    def _next_date(self) -> None:
        now = time.time()
        self.date = _http_date(now)
        # (just after the next second begins; a timer that fires early comes back at once)
        self._date_timer = asyncio.get_running_loop().call_later(1.0 - now % 1.0, self._next_date)

    async def start(self, host: str, port: int, reuse_port: bool, tls: ssl.SSLContext | None = None) -> int:
        """Listen; with `tls`, HTTPS (connections are handed to aiohttp the same way once decrypted)."""
        loop = asyncio.get_running_loop()
        try:
            self.server = await loop.create_server(lambda: _Connection(self), host, port, reuse_address=True,
                                                   reuse_port=reuse_port or None,
                                                   backlog=LISTEN_BACKLOG, ssl=tls)
        except OSError as exc:  # in use, an address this machine lacks, a port below 1024 without rights
            raise ListenFailed(f"cannot listen for HTTP on {host}:{port} ({exc.strerror or exc}); stop what uses "
                               "the port or pick another with SHIELDES_PORT (or --port), and check SHIELDES_HOST "
                               "(or --host)") from None
        self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep)
        self._head_sweeper = loop.call_later(self._head_sweep_seconds, self._sweep_heads)
        self._files_timer = loop.call_later(self.files_check_seconds, self._check_files)
        self._next_date()
        sockets = self.server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else port

    def stop_listening(self) -> None:
        if self.server is not None:
            self.server.close()

    def close_idle(self) -> None:
        for conn in list(self.connections):
            if conn.idle:
                conn.close()

    async def close(self) -> None:
        """Close every connection still here (answers in progress are cut)."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._head_sweeper is not None:
            self._head_sweeper.cancel()
        if self._files_timer is not None:
            self._files_timer.cancel()
        if self._date_timer is not None:
            self._date_timer.cancel()
        for conn in list(self.connections):
            if conn.idle:
                conn.close()  # what is still buffered for it goes out first
            else:
                conn.abort()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.wait_closed()
            self.server = None

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        cutoff = loop.time() - KEEPALIVE_TIMEOUT
        for conn in list(self.connections):
            if conn.idle and conn.idle_since < cutoff:
                conn.close()
        self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep)

    @property
    def _head_sweep_seconds(self) -> float:
        return min(1.0, self.header_timeout / 2, self.body_timeout / 2)

    def _sweep_heads(self) -> None:
        """Refuse the requests whose head is still arriving past the header timeout, or whose body
        has gone the body timeout without a byte: one sweep a second, not a timer per request (the
        hot path sets and clears a time, nothing more; a body's bytes are told by its size, compared
        here, so a body chunk costs no clock read)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        cutoff = now - self.header_timeout
        for conn in list(self.connections):
            since = conn.head_since
            if since is not None:
                if since < cutoff:
                    conn.head_late()
            elif conn.reading_body:
                conn.body_sweep(now, self.body_timeout)
        self._head_sweeper = loop.call_later(self._head_sweep_seconds, self._sweep_heads)

    def _check_files(self) -> None:
        """Warn while the open files near the limit: past it, connections are dropped unseen. The
        count lists /proc/self/fd, tens of ms at a hundred thousand files: off the event loop."""
        self._files_timer = None
        counting = asyncio.get_running_loop().run_in_executor(None, open_count)
        counting.add_done_callback(self._files_counted)

    def _files_counted(self, counting: asyncio.Future[int | None]) -> None:
        if self._closed or counting.cancelled():  # stopped meanwhile: no next check
            return
        limit, now = soft_limit(), counting.result()
        if limit is not None and now is not None:
            line = self._headroom.check(now, limit)
            if line is not None:
                (log.warning if self._headroom.warning else log.info)(line)
        self._files_timer = asyncio.get_running_loop().call_later(self.files_check_seconds, self._check_files)


def _http_date(now: float) -> bytes:
    return formatdate(int(now), usegmt=True).encode("ascii")
