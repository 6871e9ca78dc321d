"""One client connection at the front door (front.py): its requests parsed by httptools and
answered one after another, or the connection handed to aiohttp.

A connection starts here. When the first bytes of a request (at a boundary: nothing parsed,
nothing being answered) are not `POST <hot path>`, the connection's transport is switched to an
aiohttp request handler, which gets those bytes and everything after: admin API, console,
/v1/models, /metrics, errors such as 404 and 405 are aiohttp's as before. A client that pipelines
a request that is not hot behind a hot one in the same read gets a 400 asking it to wait for the
answer (no SDK pipelines)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections import deque
from itertools import islice
from typing import TYPE_CHECKING, cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from shieldes.client_left import Presence
from shieldes.gateway.http1 import answer_bytes, hot_target
from shieldes.gateway.lean_request import LeanRequest
from shieldes.gateway.middleware import error_response, path_shape

if TYPE_CHECKING:
    from shieldes.gateway.front import Front

log = logging.getLogger(__name__)

MAX_TARGET = 8190  # request line target, as aiohttp's max_line_size
MAX_HEAD = 64 * 1024  # all header names and values together
MAX_FIELD = 8190  # one header's name or value, as aiohttp's max_field_size (the other routes')
MAX_HEADERS = 128  # headers in one head, as aiohttp's max_headers
MAX_UNPARSED = 64 * 1024  # bytes held (reading paused) while a previous answer is still going out
HOT_PEEK = 128  # the bytes a read's request line is told by (hot_target, _hot_line: at most 70)


class _HandOff(Exception):
    """Raised while parsing a request the front leaves to aiohttp (one asking for an upgrade)."""


class _BadRequest(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# (path, query, headers, HTTP/1.1, declared length) of no request
_NO_HEAD = ("", "", CIMultiDictProxy(CIMultiDict[str]()), True, None)
# (code, message) of a head over MAX_HEAD, answered 431
_HEAD_TOO_LARGE = ("headers_too_large", f"the request's headers are over {MAX_HEAD} bytes together; send smaller ones")


class _Connection(asyncio.BufferedProtocol):
    """One client connection while it is here: requests parsed, answered one after another."""

    def __init__(self, front: Front) -> None:
        self.front = front
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.remote: str | None = None
        self._unparsed = bytearray()  # bytes after an answered request, not fed to the parser yet
        self._in_message = False
        self._queue: deque[LeanRequest] = deque()
        self._task: asyncio.Task[None] | None = None
        self.closed = False
        self.paused = False
        self._drained: asyncio.Future[None] | None = None
        self.idle_since = self.loop.time()
        # when the request whose line and headers are awaited began (the connection's opening for
        # its first): None while none is awaited (Front._sweep_heads)
        self.head_since: float | None = self.idle_since
        self._refusal: bytes | None = None  # sent once the answer being written is out
        # the bytes of a request's head, while it is read (a view of the read being parsed, bytes after it)
        self._head_raw: list[bytes | memoryview] | None = None
        # the start of the last hot request line read at a boundary, `POST <target> `: a keep-alive
        # client calls the same route again, told by one startswith
        self._hot_line: bytes | None = None
        # A request's header names and values, in order, as the parser gives them: one list append
        # per header here (the callback below is all the Python a header costs); decoded and
        # measured together once the head is complete.
        fields: list[bytes] = []
        self._fields = fields
        add = fields.extend

        def on_header(name: bytes, value: bytes) -> None:
            add((name, value))

        self.on_header = on_header  # (read by the parser below, once)
        self._target = bytearray()
        self._reading_fields = False  # a head, or a chunked body's trailers, is being read
        self._counted = 0  # of _fields measured (_head_too_large)
        self._head_size = 0  # their names and values together
        self._body: list[bytes] = []  # its pieces (emptied as the request is dispatched)
        self._body_size = 0
        # the body's size when a sweep last saw it grow, and that sweep's time (body_sweep); -1:
        # not seen yet for this request
        self._body_mark = -1
        self._body_still_since = 0.0
        self._too_large = False
        # what the head said, for the request made when its body has been read (_NO_HEAD: the
        # request was dispatched at its head, its declared body too large)
        self._head: tuple[str, str, CIMultiDictProxy[str], bool, int | None] = _NO_HEAD
        self._parser = httptools.HttpRequestParser(self)
        # whether the client is still there, for the waits of the requests it sent (client_left.py):
        # their tasks run in a copy of this context, made once per connection
        self.presence = Presence()
        self._context = self.presence.context()

    @property
    def idle(self) -> bool:
        return self._task is None and not self._in_message and not self._queue

    @property
    def reading_body(self) -> bool:
        """A request's head has been read and its body is still arriving."""
        return self._in_message and self.head_since is None and self._refusal is None

    @property
    def idle_but_parsing(self) -> bool:
        """Nothing answered or waiting: only the request being parsed is here."""
        return self._task is None and not self._queue

    # --- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.remote = str(peer[0]) if isinstance(peer, tuple) and peer else None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self.front.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._task is not None:  # a request waiting before any upstream call is given up now
            self.presence.left()
        self.front.connections.discard(self)
        # The parser holds this connection's callbacks, a reference cycle that only the cyclic
        # collector's oldest generation frees (millions of allocations away): what the connection
        # holds goes now, or a body being read (megabytes) would wait there with it.
        self._target = bytearray()
        self._fields.clear()
        self._body = []
        self._head = _NO_HEAD
        self._unparsed = bytearray()
        self._head_raw = None
        self._wake()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._wake()

    def _wake(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    async def drain(self) -> None:
        if self.paused and not self.closed:
            self._drained = self.loop.create_future()
            await self._drained

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.front.read_view  # (shared: each read is taken out of it before the next one)

    def buffer_updated(self, nbytes: int) -> None:
        """A read landed in the front's buffer: the parser reads it there, and only what a request
        keeps (its body, headers, target) is copied out, once, by the parser's callbacks. Nothing
        keeps a view of the buffer past this call (_feed)."""
        data = self.front.read_view[:nbytes]
        self.front.reads += 1
        if self._refusal is not None:
            return
        if self._in_message:
            if self._head_raw is not None:
                self._head_raw.append(data)
            self._feed(data)
            return
        if self._task is None and not self._unparsed:  # the usual case: a request on an idle connection
            start = data[:HOT_PEEK].tobytes()  # (enough to tell the request line's target)
            line = self._hot_line
            if line is not None and start.startswith(line):  # the route this client called last, again
                self._head_raw = [data]
                self._feed(data)
                return
            hot = hot_target(start, self.front.hot_paths)
            if hot:
                self._hot_line = start[:start.index(b" ", 5) + 1]  # `POST <target> `
                self._head_raw = [data]  # (kept until its head is complete: see _HandOff)
                self._feed(data)
                return
            if hot is False:
                self._hand_off(data.tobytes())
                return
        self._unparsed += data
        if self.head_since is None:
            self.head_since = self.loop.time()
        if self._task is None:
            self._next()
        elif len(self._unparsed) > MAX_UNPARSED and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        return None  # close once the answers in progress are written (the transport does)

    # --- parsing ---------------------------------------------------------------------------------

    def _next(self) -> None:
        """At a boundary with nothing being answered: parse the next request if it is hot, else
        give the connection to aiohttp."""
        data = self._unparsed
        if not data:
            return
        hot = hot_target(data, self.front.hot_paths)
        if hot is None:
            return
        raw = bytes(data)
        self._unparsed = bytearray()
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()
        if hot:
            self._head_raw = [raw]
            self._feed(raw)
        else:
            self._hand_off(raw)

    def _hand_off(self, raw: bytes) -> None:
        assert self.transport is not None
        self._head_raw = None
        self.front.connections.discard(self)
        handler = self.front.handoff()
        self.transport.set_protocol(handler)
        handler.connection_made(self.transport)
        handler.data_received(raw)

    def _feed(self, data: bytes | memoryview) -> None:
        try:
            self._parser.feed_data(data)
            if self._reading_fields:  # a head (or trailers) that spans reads: what came is measured now
                self._measure_head()
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _HandOff) and self._head_raw is not None and self.idle_but_parsing:
                self._hand_off(b"".join(self._head_raw))
            elif isinstance(cause, _HandOff):
                self._refuse(400, "upgrade_not_supported", "a request asking to upgrade the connection came "
                             "pipelined behind another; send it on its own connection")
            elif isinstance(cause, _BadRequest):
                self._refuse(cause.status, cause.code, cause.message)
            else:
                log.warning("front: request handling failed while parsing: %r", cause)
                self._refuse(400, "malformed_request", "malformed HTTP request; send a valid HTTP/1.1 request")
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if self._head_too_large():  # the limit was crossed before what is malformed
                self._refuse(431, *_HEAD_TOO_LARGE)
                return
            log.info("refused a malformed HTTP request (%s)", type(exc).__name__)
            self._refuse(400, "malformed_request", "malformed HTTP request; send a valid HTTP/1.1 request")
        finally:
            raw = self._head_raw  # a head that spans reads: its part in this read outlives the buffer
            if raw and type(raw[-1]) is memoryview:
                raw[-1] = raw[-1].tobytes()

    def _measure_head(self) -> None:
        """Refuse a head whose headers so far are over MAX_HEAD, as the read that crossed the limit
        ends (what is held is at most one read more than the limit)."""
        if self._head_too_large():
            self._reading_fields = False
            self._refuse(431, *_HEAD_TOO_LARGE)

    def _head_too_large(self) -> bool:
        """Whether the header names and values parsed so far (a chunked body's trailers on top of
        its head's) are over MAX_HEAD together, each measured once however many reads they span."""
        fields = self._fields
        if len(fields) > self._counted:
            self._head_size += sum(map(len, islice(fields, self._counted, None)))
            self._counted = len(fields)
        return self._head_size > MAX_HEAD

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer a request that cannot be parsed or taken, after the answers before it, then close
        (the rest of the byte stream cannot be trusted to start at a request)."""
        read = self._in_message and bool(self._target)  # its request line (not a previous request's)
        self._in_message = False
        if self.closed or self.transport is None:
            return
        rid = self.front.ids.new()
        path = self._target[:200].decode("utf-8", "replace").partition("?")[0] if read else ""
        resp = error_response(status, "invalid_request_error", code, message, rid, shape=path_shape(path))
        if self.front.refused is not None:
            method = self._parser.get_method().decode("latin-1") if read else "UNKNOWN"  # (as aiohttp)
            self.front.refused(rid, method, path, self.remote, status, code, message)
        self._refusal = answer_bytes(resp, False, self.front.date)
        self.transport.pause_reading()  # nothing after this is read
        if self._task is None:
            self.write(self._refusal)
            self.close()

    def head_late(self) -> None:
        """The request's line and headers did not all arrive within the header timeout."""
        self.head_since = None
        self._refuse(408, "request_timeout", f"the request's line and headers did not arrive within "
                     f"{self.front.header_timeout:g} s; send them whole, promptly")

    def body_sweep(self, now: float, timeout: float) -> None:
        """A sweep while the body arrives: refused once its size has not grown for `timeout` seconds
        (measured from the first sweep that saw it so: a stall is refused within a sweep past it)."""
        size = self._body_size
        if size != self._body_mark:
            self._body_mark, self._body_still_since = size, now
        elif now - self._body_still_since >= timeout:
            self._refuse(408, "request_timeout", f"no byte of the request's body arrived for {timeout:g} s; send "
                         "the body without such pauses (a slow upload is fine as long as bytes keep coming)")

    def on_message_begin(self) -> None:
        if self.head_since is None:
            self.head_since = self.loop.time()
        self._in_message = self._reading_fields = True
        self._target = bytearray()
        self._fields.clear()
        self._body_size = 0
        self._body_mark = -1
        self._too_large = False

    def on_url(self, url: bytes) -> None:
        self._target += url
        if len(self._target) > MAX_TARGET:
            raise _BadRequest(414, "uri_too_long", f"the request target is over {MAX_TARGET} bytes; send a shorter one")

    def on_headers_complete(self) -> None:
        self.head_since = None
        self._reading_fields = False
        fields = self._fields
        # Every name and value joined and decoded in one call: names are tokens (ASCII: latin-1 and
        # UTF-8 agree) and no value holds a NUL (the parser refuses control bytes), so NUL parts
        # them, and the joined length less the NULs is their size (measured in part already when
        # the head spanned reads; trailers are measured on top of it). (Cheaper in CPU than a
        # decode per header, and than a zip the multidict is built from without a list.)
        joined = b"\0".join(fields)
        size = len(joined) - len(fields)
        if self._head_too_large() if self._counted else size >= MAX_HEAD:
            raise _BadRequest(431, *_HEAD_TOO_LARGE)
        if len(fields) > 2 * MAX_HEADERS:
            raise _BadRequest(431, "too_many_headers", f"the request has over {MAX_HEADERS} headers; send fewer")
        if size > MAX_FIELD and max(map(len, fields)) > MAX_FIELD:  # (only a large head can hold a large one)
            raise _BadRequest(431, "header_too_large", f"a header's name or value is over {MAX_FIELD} bytes; send "
                              "a shorter one (long values belong in the body)")
        target = self._target.decode("utf-8", "surrogateescape")
        path, _, query = target.partition("?")
        parser = self._parser
        if parser.get_method() != b"POST" or path not in self.front.matches:
            raise _BadRequest(400, "pipelining_not_supported",
                              "this request came pipelined behind another in the same read; send it after the "
                              "previous answer arrives, or on its own connection")
        decoded = joined.decode("utf-8", "surrogateescape").split("\0")
        headers = CIMultiDictProxy(CIMultiDict(list(zip(decoded[::2], decoded[1::2]))))  # noqa: B905 (no header: [""])
        if "Upgrade" in headers:  # (h2c from `curl --http2`, websocket): aiohttp's to answer
            raise _HandOff
        self._head_raw = None
        http11 = parser.get_http_version() != "1.0"
        declared = headers.get("Content-Length")
        length = int(declared) if declared is not None and declared.isdigit() else None
        if length is not None and length > self.front.max_body:
            self._too_large = True
            self._head = _NO_HEAD
            self._queue.append(LeanRequest(self, path, query, headers, http11, length, b"", False, True))
            if self._task is None:
                self._task = self.presence.task = self.loop.create_task(self._answer_all(),
                                                                        context=self._context.copy())
            return
        if "Expect" in headers and headers["Expect"].lower() == "100-continue":
            self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self._head = (path, query, headers, http11, length)

    def on_chunk_header(self) -> None:
        self._reading_fields = True  # (the last chunk's trailers may follow)

    def on_chunk_complete(self) -> None:
        self._reading_fields = False
        if self._head_too_large():  # trailers over the limit, the head's size included
            raise _BadRequest(431, *_HEAD_TOO_LARGE)

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)  # (counted while a body too large is skipped too: it is arriving)
        if self._too_large:
            return
        if self._body_size > self.front.max_body:
            self._too_large = True
            self._body.clear()
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        if self._counted:  # (measured while its head or trailers spanned reads)
            self._counted = self._head_size = 0
        head = self._head
        if head is _NO_HEAD:  # answered at its head
            return
        pieces = self._body
        self._body = []  # (the pieces, joined: not kept until the connection's next request)
        self._queue.append(LeanRequest(self, *head, pieces[0] if len(pieces) == 1 else b"".join(pieces),
                                       self._parser.should_keep_alive(), self._too_large))
        if self._task is None:
            self._task = self.presence.task = self.loop.create_task(self._answer_all(), context=self._context.copy())

    # --- answering -------------------------------------------------------------------------------

    async def _answer_all(self) -> None:
        front, queue = self.front, self._queue
        try:
            while queue and not self.closed:  # pipelined requests, in order
                request = queue.popleft()
                try:
                    resp = await front.observe(request, front.handlers[request.path])
                    stream = request.stream
                    if stream is not None:
                        if not stream.ended:  # (the relay ends it itself)
                            await stream.write_eof()
                    elif not self.closed and self.transport is not None:
                        self.transport.write(answer_bytes(resp, request.keep_alive, front.date))
                except Exception:  # the observer renders every error; this is a bug's last stop
                    log.exception("front: answering %s %s failed", request.method, request.path)
                    if request.stream is None:
                        rid = front.ids.new()
                        failed = error_response(500, "server_error", "internal_error",
                                                f"internal error; report request id {rid} to the operator", rid)
                        self.write(answer_bytes(failed, False, front.date))
                    request.keep_alive = False  # the connection closes after this
                if not request.keep_alive:
                    self.close()
                    return
        finally:
            self._task = None
            self.idle_since = self.loop.time()
        refusal = self._refusal
        if refusal is not None:
            self.write(refusal)
            self.close()
        elif self._unparsed and not self.closed and not self._in_message:
            self._next()

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.transport is not None:
            self.transport.abort()
        self.closed = True
        self.front.connections.discard(self)

