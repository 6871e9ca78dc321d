"""What the front's handlers get in place of aiohttp's request and response machinery (front.py
says why): `LeanRequest`, the few attributes of a request the model API's handlers read, and
`StreamSink`, the body of a streamed answer written straight to the connection."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from shieldes.gateway.http1 import decompressed, head

if TYPE_CHECKING:
    from shieldes.gateway.front_connection import _Connection


class RouteMatch:
    """What the observer and tracing read of aiohttp's match info: the route."""

    __slots__ = ("route",)

    def __init__(self, route: web.AbstractRoute) -> None:
        self.route = route

    def get(self, name: str, default: Any = None) -> Any:
        return default


class RequestStore:
    """Per-request storage read as aiohttp's request is (`request[key]`, `request.get(key)`), for
    the requests parsed outside aiohttp: the front's and a Responses WebSocket's messages."""

    _store: dict[Any, Any]

    def __getitem__(self, key: Any) -> Any:
        return self._store[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._store[key] = value

    def __contains__(self, key: Any) -> bool:
        return key in self._store


class LeanRequest(RequestStore):
    """The part of aiohttp's `web.Request` the model API's handlers use, for a request parsed
    here: the app, method, path, query, headers, body, peer, and per-request storage."""

    method = "POST"  # (the only method the front answers)
    stream: StreamSink | None = None  # a streamed answer's body, once begun

    def __init__(self, conn: _Connection, path: str, query_string: str, headers: CIMultiDictProxy[str],
                 http11: bool, content_length: int | None, body: bytes, keep_alive: bool, too_large: bool) -> None:
        front = conn.front
        self._conn = conn
        self.app = front.app
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.content_length = content_length  # (its Content-Length header, a number, as aiohttp's)
        self._body = body
        self._too_large = too_large
        self.keep_alive = keep_alive
        self.http11 = http11  # an HTTP/1.0 client gets a stream unchunked, ended by the close
        self.remote = conn.remote
        self.match_info = front.matches[path]
        # the store's own get: request_id() and record_of() read it several times per request,
        # and a method of our own would put a Python frame in front of each dict lookup
        store: dict[Any, Any] = {}
        self._store = store
        self.get: Callable[..., Any] = store.get

    @property
    def transport(self) -> asyncio.Transport | None:
        """The connection's, None once the client closed it (as aiohttp's request says)."""
        conn = self._conn
        return None if conn.closed else conn.transport

    @property
    def can_read_body(self) -> bool:
        return False  # the whole body is read before the handler runs

    @property
    def body_exists(self) -> bool:
        return bool(self._body)

    async def read(self) -> bytes:
        """The body, decompressed when the client sent it with `Content-Encoding: gzip` or
        `deflate` (as aiohttp does), never past the body limit."""
        if self._too_large:
            limit = self._conn.front.max_body
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=limit + 1)
        encoding = self.headers.get("Content-Encoding")
        if encoding is None or not self._body:
            return self._body
        limit = self._conn.front.max_body
        body = decompressed(self._body, encoding.strip().lower(), limit)
        if len(body) > limit:
            raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
        return body

    def start_stream(self, resp: web.StreamResponse) -> StreamSink:
        """A streamed answer's head (chunked; for HTTP/1.0, ended by closing the connection), and
        the sink that writes its body."""
        if not self.http11:
            self.keep_alive = False
        sink = StreamSink(self._conn, self.http11, head(resp.status, resp.reason, resp.headers, None,
                                                        self.keep_alive, self._conn.front.date,
                                                        chunked=self.http11))
        self.stream = sink
        return sink


class LeanResponse(web.Response):
    """A whole answer to a request the front parsed, whose body is ready bytes (the upstream's own
    JSON): what the front, the observer and the error middleware read of a web.Response (status,
    reason, headers, body, prepared), without its construction, which copies the headers into a
    CIMultiDict, checks them for a Content-Type, and sets the body through a property (some 14,000
    instructions a request). Its headers stay the handler's dict (read by http1.head, which takes
    any mapping). Only for a LeanRequest: aiohttp never writes one."""

    def __init__(self, body: bytes, headers: dict[str, str]) -> None:
        # (web.Response.__init__ not called: the attributes its readers use are set here, the
        # rest are its class's defaults)
        self._state = {}
        self._headers = cast("CIMultiDict[str]", headers)
        self._status = 200
        self._reason = "OK"
        self._body = body


def as_request(request: LeanRequest) -> web.Request:
    """A LeanRequest where the handlers' annotations say web.Request: it has every attribute
    they read (tests/test_front.py drives each hot route through it)."""
    return cast(web.Request, request)


class StreamSink:
    """A streamed answer's body, chunked, paced by the socket's flow control (a slow client
    pauses the relay, which pauses the upstream read).

    What is written in one turn of the event loop goes out in one socket write at its end: the
    head with the first frame, the frames of one upstream read, the last frame with the end of
    the body. Each write wakes the client, so fewer writes cost the node and the client less
    CPU; no frame waits for a later one."""

    ended = False  # once write_eof ran

    def __init__(self, conn: _Connection, chunked: bool, head: bytes) -> None:
        self._conn = conn
        self._chunked = chunked
        self._pending = [head]
        self._scheduled = True
        conn.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        pending = self._pending
        if pending:
            conn = self._conn
            if not conn.closed and conn.transport is not None:  # (the connection's write, without its frame)
                conn.transport.write(b"".join(pending))
            pending.clear()

    async def write(self, data: bytes) -> None:
        conn = self._conn
        if conn.closed:
            raise ConnectionResetError("the client closed the connection")
        if not data:
            return
        self._pending.append(b"%x\r\n%s\r\n" % (len(data), data) if self._chunked else data)
        if not self._scheduled:
            self._scheduled = True
            conn.loop.call_soon(self._flush)
        if conn.paused:
            await conn.drain()

    async def write_eof(self) -> None:
        """The end of the body, written now with whatever is pending."""
        if self.ended:
            return
        self.ended = True
        if self._chunked:
            self._pending.append(b"0\r\n\r\n")
        self._flush()
