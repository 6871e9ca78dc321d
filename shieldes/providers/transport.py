"""The node's HTTP/1.1 client for upstream calls: keep-alive connections pooled per origin, each an
asyncio protocol around llhttp's response parser (httptools).

A gateway's upstream call is always the same: one POST with a body in memory, the answer read
whole or as a stream. A general-purpose client session (cookies, redirects, proxies, tracing
signals, content negotiation) spends about 110 us of CPU per call on that; this client does the
call in about 15 (docs/benchmarks-gateway.md), which is most of what separates a node from a bare
proxy. It sends no Accept-Encoding, so upstreams answer uncompressed; gzip and deflate bodies are
still decoded if an upstream compresses anyway.

Deadlines are one timer per call: `total` bounds the whole call (JSON answers), `idle` the
silence between reads (streams, which may legitimately run for long). A connection taken from
the pool that turns out closed before any byte of the answer (the upstream dropped an idle
keep-alive connection) is replaced by a new one once: the upstream never saw that request."""

from __future__ import annotations

import asyncio
import ssl
import zlib
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, cast
from urllib.parse import quote, urlsplit

import httptools

from shieldes.providers.proxies import Proxy, ProxySettingError, proxy_for
from shieldes.providers.resolver import Resolver

_READ_AHEAD = 1 << 20  # bytes buffered ahead of a slow reader before the socket is paused
_MAX_TARGETS = 4096  # parsed URLs remembered per client
_JOIN_BELOW = 256 * 1024  # request bodies up to this size are joined to their head for one write
# the answer's headers the connection reads as they come (framing, coding, media type)
_READ_FIELDS = frozenset((b"content-length", b"transfer-encoding", b"content-encoding", b"content-type"))
_DRAIN_SECONDS = 5.0  # how long a released answer's unread tail may take before its connection is dropped


class TransportError(Exception):
    """No usable HTTP answer came back (the cases http.transport_failure tells apart)."""


class ConnectFailed(TransportError):
    def __init__(self, message: str, os_error: OSError | None = None) -> None:
        super().__init__(message)
        self.os_error = os_error


class CallTimedOut(TransportError):
    pass


class Disconnected(TransportError):
    """The upstream closed the connection before the answer was complete."""


class InvalidTarget(TransportError):
    """A request that cannot be sent: its message says what to fix."""


class InvalidAnswer(TransportError):
    """What came back is not HTTP/1.x."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    total: float | None = None  # the whole call
    idle: float | None = None  # between two reads of the answer


class Origin(NamedTuple):
    """Where connections go (a pool's key: a tuple's hash is computed in C, a frozen dataclass's
    by a Python __hash__ on every lookup)."""

    scheme: str
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "https"


def parse_target(url: str) -> tuple[Origin, bytes, bytes]:
    """(origin, request target "/path?query", Host header) of an absolute http(s) URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidTarget(f"invalid URL {url!r} ({exc}); fix the base URL with `shieldes provider update`") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidTarget(f"invalid URL {url!r}: give the base URL as http(s)://host[/path] with "
                            "`shieldes provider update`")
    default = 443 if parts.scheme == "https" else 80
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port in (None, default) else f"{shown}:{port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if not path.isascii():
        path = quote(path, safe="!#$%&'()*+,/:;=?@[]~")
    return Origin(parts.scheme, host, port or default), path.encode("ascii"), host_header.encode("idna")


def request_head(path: bytes, host: bytes, headers: Mapping[str, str], length: int) -> bytes:
    """The bytes of a POST's request line and headers. Host and Content-Length are the client's."""
    lines = []
    for name, value in headers.items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
            raise InvalidTarget(f"header {name!r} holds a line break, so it cannot be sent; remove it from the "
                                "request (or from the provider's stored key)")
        lowered = name.lower()
        if lowered != "host" and lowered != "content-length":
            lines.append(f"{name}: {value}\r\n")
    return b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n%s\r\n" % (
        path, host, length, "".join(lines).encode("latin-1"))


class _Connection(asyncio.Protocol):
    """One keep-alive connection: one call at a time, its answer parsed as it arrives."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        # The parser calls on_body once per chunk of a chunked body, and a stream is one chunk per
        # event: the list's own append (no Python frame per chunk); pieces are decoded per read.
        self._parts: list[bytes] = []  # body pieces of the read being parsed
        self.on_body = self._parts.append
        self._parser = httptools.HttpResponseParser(self)
        self._timer: asyncio.TimerHandle | None = None
        self._begin(Timeouts(connect=0))

    def _begin(self, timeouts: Timeouts) -> None:
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.content_type = b""  # the Content-Type header's raw value
        self.complete = False
        self.got_bytes = False
        self._head: asyncio.Future[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._chunks: deque[bytes] = deque()
        self._parts.clear()
        self._buffered = 0
        self._paused = False
        self._error: TransportError | None = None
        self._keep_alive = False  # read with the head: llhttp resets it once the message is complete
        self._framed = False  # Content-Length or chunked: the answer's end is known without EOF
        self._decoder: zlib._Decompress | None = None
        self._timeouts = timeouts
        self._then: Callable[[], None] | None = None  # once the rest of a released answer is in

    # --- a call ----------------------------------------------------------------------------------

    def send(self, head: bytes, body: bytes, timeouts: Timeouts) -> asyncio.Future[None]:
        """Write one request; the returned future resolves when the answer's head is in. A small
        body goes in one write with its head (one system call); a large one is not copied to
        join them (a 20 MB body of screenshots is a fresh 20 MB buffer and its page faults)."""
        self._begin(timeouts)
        self._head = self._loop.create_future()
        now = self._loop.time()
        self._started = self._last_read = now
        if timeouts.total is not None or timeouts.idle is not None:
            self._timer = self._loop.call_at(self._next_deadline(), self._check_deadline)
        assert self.transport is not None
        if len(body) <= _JOIN_BELOW:
            self.transport.write(head + body)
        else:
            self.transport.writelines((head, body))
        return self._head

    def _next_deadline(self) -> float:
        ends = []
        if self._timeouts.total is not None:
            ends.append(self._started + self._timeouts.total)
        if self._timeouts.idle is not None:
            ends.append(self._last_read + self._timeouts.idle)
        return min(ends)

    def _check_deadline(self) -> None:
        self._timer = None
        if self.complete or self.closed:
            return
        now = self._loop.time()
        total, idle = self._timeouts.total, self._timeouts.idle
        if total is not None and now >= self._started + total:
            self._fail(CallTimedOut(f"no complete answer within {total:g} s"))
        elif idle is not None and now >= self._last_read + idle and not self._paused:
            self._fail(CallTimedOut(f"the upstream sent nothing for {idle:g} s"))
        else:
            self._timer = self._loop.call_at(max(self._next_deadline(), now + 0.001), self._check_deadline)

    async def read_chunk(self) -> bytes:
        """All of the body that has arrived since the last read (at least one byte), b"" at its
        end. Taking everything at once means a relay behind its upstream writes fewer, larger
        pieces instead of one per packet."""
        chunks = self._chunks
        while not chunks:
            if self._error is not None:
                raise self._error
            if self.complete:
                return b""
            self._waiter = self._loop.create_future()
            await self._waiter
        chunk = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    async def read_all(self) -> bytes:
        while not self.complete:
            if self._error is not None:
                raise self._error
            self._waiter = self._loop.create_future()
            await self._waiter
        if self._error is not None:
            raise self._error
        body = b"".join(self._chunks)
        self._chunks.clear()
        return body

    def drain(self, then: Callable[[], None]) -> None:
        """Drop the rest of the body as it comes and call `then` once it is complete (an event
        stream's last bytes often trail its final event); a connection that takes longer than a
        few seconds is closed instead."""
        self._chunks.clear()
        self._buffered = 0
        self._then = then
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        self._cancel_timer()
        self._timeouts = Timeouts(connect=0, total=self._loop.time() - self._started + _DRAIN_SECONDS)
        self._timer = self._loop.call_at(self._next_deadline(), self._check_deadline)

    def close(self) -> None:
        self.closed = True
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    def reusable(self) -> bool:
        return self.complete and not self.closed and self._error is None and self._keep_alive

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses

    def data_received(self, data: bytes) -> None:
        if self._head is None or (self.complete and self._then is None):
            self.close()  # bytes with no call waiting for them: an upstream talking out of turn
            return
        self.got_bytes = True
        self._last_read = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(InvalidAnswer("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(InvalidAnswer(f"not an HTTP/1.1 answer ({exc})"))
        else:
            self._settle_body()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._head is None or self.complete:
            self._cancel_timer()
            return
        if self._head.done() and not self._framed:  # a body delimited by the end of the connection
            self.on_message_complete()
            return
        self._fail(Disconnected("the upstream closed the connection" + (f" ({exc})" if exc else "")))

    def pause_writing(self) -> None:  # the request is written in one piece; nothing to throttle
        pass

    # --- httptools callbacks -------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))
        lowered = name.lower()
        if lowered not in _READ_FIELDS:  # (one lookup: most headers are none of these)
            return
        if lowered == b"content-type":
            self.content_type = value  # (a repeated header: its last value)
        elif lowered == b"content-length" or (lowered == b"transfer-encoding" and b"chunked" in value.lower()):
            self._framed = True
        elif lowered == b"content-encoding":
            coding = value.strip().lower()
            if coding in (b"gzip", b"x-gzip"):
                self._decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
            elif coding == b"deflate":
                self._decoder = zlib.decompressobj()
            elif coding not in (b"", b"identity"):
                self._fail(InvalidAnswer(f"a body in content-encoding {coding.decode('latin-1')!r}, "
                                         "which this gateway does not decode"))

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        if self.status < 200:  # 1xx interim answers: the real one follows
            self.raw_headers = []
            self.content_type = b""
            return
        if self._parser.should_upgrade():
            return
        if self.status in (204, 304):
            self._framed = True
        self._keep_alive = self._parser.should_keep_alive()
        head = self._head
        if head is not None and not head.done():
            head.set_result(None)

    def on_message_complete(self) -> None:
        if self.status < 200:
            return
        self._settle_body()
        if self._decoder is not None:
            self._push(self._decoder.flush())
            self._decoder = None
        self.complete = True
        self._cancel_timer()
        self._wake()
        then, self._then = self._then, None
        if then is not None:
            then()

    # --- internals -------------------------------------------------------------------------------

    def _settle_body(self) -> None:
        """What on_body collected of the read just parsed, pushed as one piece (decoded)."""
        parts = self._parts
        if not parts:
            return
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        if self._decoder is not None:
            try:
                body = self._decoder.decompress(body)
            except zlib.error as exc:
                self._fail(InvalidAnswer(f"a compressed body that does not decode ({exc})"))
                return
        self._push(body)

    def _push(self, data: bytes) -> None:
        if not data or self._then is not None:
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > _READ_AHEAD and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _fail(self, error: TransportError) -> None:
        if self._error is not None or self.complete:
            return
        self._error = error
        self._cancel_timer()
        head = self._head
        if head is not None and not head.done():
            head.set_exception(error)
        self._wake()
        if not self.closed:
            self.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class UpstreamResponse:
    """An answer whose head is in; its body is read with `read()` or `read_chunk()` in a loop.
    `release()` hands a fully read connection back to the pool (any other is closed)."""

    def __init__(self, client: UpstreamClient, origin: Origin, conn: _Connection) -> None:
        self._client = client
        self._origin = origin
        self._conn: _Connection | None = conn
        self.status = conn.status
        self._raw_headers = conn.raw_headers
        self._content_type = conn.content_type
        self._headers: dict[str, str] | None = None

    @property
    def headers(self) -> Mapping[str, str]:
        """Response headers by lower-case name (a repeated header keeps its last value)."""
        if self._headers is None:
            self._headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self._raw_headers}
        return self._headers

    @property
    def content_type(self) -> str:
        """The media type (no parameters), lower-case; read off the raw headers, which is all a
        streamed answer needs of them."""
        raw = self._content_type
        return raw.decode("latin-1").split(";", 1)[0].strip().lower() if raw else ""

    async def read(self) -> bytes:
        """The whole body; the connection goes back to the pool. A read that fails or is
        cancelled (the client went away) closes the connection: that is what tells the upstream
        to stop generating."""
        conn = self._live()
        try:
            body = await conn.read_all()
        except BaseException:
            self.close()
            raise
        self.release()
        return body

    def read_chunk(self) -> Coroutine[Any, Any, bytes]:
        """The next piece of the body as it arrived, b"" once it is complete. (A loop over this,
        not an async generator: a stream that stops at its last event would leave such a
        generator to the garbage collector, whose finalizer costs a task and a loop wake-up. And
        the connection's own coroutine, not one around it: a stream takes one per upstream read.)"""
        return self._live().read_chunk()

    def release(self) -> None:
        """Done with this answer: its connection is reused once the body is complete."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.complete or conn.closed:
            self._client.give_back(self._origin, conn)
        else:
            origin, client = self._origin, self._client
            conn.drain(lambda: client.give_back(origin, conn))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _live(self) -> _Connection:
        if self._conn is None:
            raise Disconnected("the answer was already released")
        return self._conn


class UpstreamClient:
    """Pools of keep-alive connections per origin, shared by every provider adapter of a node.
    Must be created and used inside one running event loop; the owner closes it on shutdown.
    `on_request` may add headers to each call (trace propagation). `proxies`: urllib's view of the
    proxy variables (proxies.proxy_for); https upstreams are reached through a CONNECT tunnel, http
    ones by sending the proxy the absolute URL."""

    def __init__(self, *, keepalive_timeout: float = 30.0,
                 on_request: Callable[[dict[str, str]], None] | None = None,
                 proxies: Mapping[str, str] | None = None) -> None:
        self._keepalive = keepalive_timeout
        self._on_request = on_request
        self._proxy_env = dict(proxies or {})
        self._proxies: dict[Origin, Proxy | None] = {}
        self._idle: dict[Origin, deque[_Connection]] = {}  # oldest idle on the left
        self._targets: dict[str, tuple[Origin, bytes, bytes]] = {}
        self._tls: ssl.SSLContext | None = None
        self._closed = False
        self.resolver = Resolver()

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeouts: Timeouts) -> UpstreamResponse:
        """Send one POST and wait for the answer's head (status and headers)."""
        target = self._targets.get(url)
        if target is None:
            target = parse_target(url)
            if len(self._targets) >= _MAX_TARGETS:
                self._targets.clear()
            self._targets[url] = target
        origin, path, host = target
        if self._on_request is not None:
            headers = dict(headers)
            self._on_request(headers)
        if self._proxy_env:
            proxy = self._proxy_of(origin)
            if proxy is not None and not origin.tls:  # a plain-HTTP proxy is sent the whole URL
                path = b"http://" + host + path
                if proxy.authorization:
                    headers = {**headers, "Proxy-Authorization": proxy.authorization}
        head = request_head(path, host, headers, len(body))
        conn = self._pooled(origin)
        if conn is not None:
            try:
                await conn.send(head, body, timeouts)
                return UpstreamResponse(self, origin, conn)
            except Disconnected:
                if conn.got_bytes:
                    raise
                # a kept-alive connection the upstream had already closed: it never saw this request
            except BaseException:
                conn.close()  # cancelled or failed while waiting: the answer would be nobody's
                raise
        conn = await self._connect(origin, timeouts.connect)
        try:
            await conn.send(head, body, timeouts)
        except BaseException:
            conn.close()
            raise
        return UpstreamResponse(self, origin, conn)

    def give_back(self, origin: Origin, conn: _Connection) -> None:
        if not conn.reusable() or self._closed:
            conn.close()
            return
        now = asyncio.get_running_loop().time()
        conn.idle_since = now
        conns = self._idle.get(origin)
        if conns is None:
            conns = self._idle[origin] = deque()
        conns.append(conn)
        # Connections a past burst opened sit at the old end, unused: close them once past the
        # keep-alive time instead of holding their sockets for good.
        oldest_usable = now - self._keepalive
        while conns[0].closed or conns[0].idle_since < oldest_usable:
            conns.popleft().close()

    async def __aenter__(self) -> UpstreamClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    def _pooled(self, origin: Origin) -> _Connection | None:
        conns = self._idle.get(origin)
        if not conns:
            return None
        oldest_usable = asyncio.get_running_loop().time() - self._keepalive
        while conns:
            conn = conns.pop()  # the most recently used: the least likely to have been dropped
            if not conn.closed and conn.idle_since >= oldest_usable:
                return conn
            conn.close()
        return None

    def _proxy_of(self, origin: Origin) -> Proxy | None:
        if origin not in self._proxies:
            try:
                self._proxies[origin] = proxy_for(origin.scheme, origin.host, origin.port, self._proxy_env)
            except ProxySettingError as exc:
                raise ConnectFailed(f"{exc}; fix the node's {origin.scheme.upper()}_PROXY") from None
        return self._proxies[origin]

    async def _connect(self, origin: Origin, timeout: float) -> _Connection:
        if self._closed:
            raise ConnectFailed("the node is shutting down")
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if origin.tls:
            if self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls
        proxy = self._proxy_of(origin) if self._proxy_env else None
        try:
            async with asyncio.timeout(timeout):
                if proxy is not None and tls is not None:
                    conn = await _tunnel(loop, proxy, origin, tls)
                elif proxy is not None:
                    _transport, conn = await loop.create_connection(lambda: _Connection(loop), proxy.host, proxy.port)
                else:
                    conn = await self._direct(loop, origin, tls)
        except TimeoutError:
            raise CallTimedOut(f"no connection to {origin.host}:{origin.port} within {timeout:g} s") from None
        except ssl.SSLCertVerificationError as exc:
            raise ConnectFailed(f"its TLS certificate is not trusted ({exc.verify_message}); if it is signed by "
                                "a private CA, point SSL_CERT_FILE at that CA's bundle and restart the node",
                                exc) from exc
        except OSError as exc:
            raise ConnectFailed(f"{exc.strerror or exc}", exc) from exc
        return conn


    async def _direct(self, loop: asyncio.AbstractEventLoop, origin: Origin, tls: ssl.SSLContext | None) -> _Connection:
        """A connection to the first of the origin's addresses that takes one (names resolved
        through the cache: resolver.py)."""
        failed: OSError | None = None
        for family, address in await self.resolver.addresses(origin.host, origin.port):
            try:
                _transport, conn = await loop.create_connection(
                    lambda: _Connection(loop), address, origin.port, family=family,
                    ssl=tls, server_hostname=origin.host if tls else None)
                return conn
            except ssl.SSLError:
                raise
            except OSError as exc:
                failed = exc
        self.resolver.forget(origin.host, origin.port)
        assert failed is not None
        raise failed


class _ProxyAnswer(asyncio.Protocol):
    """Reads a proxy's answer to CONNECT: its head, up to the blank line."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.head: asyncio.Future[bytes] = loop.create_future()
        self._data = b""

    def data_received(self, data: bytes) -> None:
        self._data += data
        end = self._data.find(b"\r\n\r\n")
        if end >= 0 and not self.head.done():
            self.head.set_result(self._data[:end])
        elif len(self._data) > 65536 and not self.head.done():
            self.head.set_exception(InvalidAnswer("the proxy's answer to CONNECT is not HTTP"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            self.head.set_exception(Disconnected("the proxy closed the connection before answering CONNECT"))


async def _tunnel(loop: asyncio.AbstractEventLoop, proxy: Proxy, origin: Origin, tls: ssl.SSLContext) -> _Connection:
    """A TLS connection to `origin` inside a CONNECT tunnel through `proxy`."""
    shown = f"[{origin.host}]" if ":" in origin.host else origin.host
    target = f"{shown}:{origin.port}"
    try:
        transport, handshake = await loop.create_connection(lambda: _ProxyAnswer(loop), proxy.host, proxy.port)
    except OSError as exc:
        raise ConnectFailed(f"cannot reach the proxy {proxy.where}: {exc.strerror or exc}", exc) from exc
    try:
        auth = f"Proxy-Authorization: {proxy.authorization}\r\n" if proxy.authorization else ""
        transport.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{auth}\r\n".encode("latin-1"))
        try:
            head = await handshake.head
        except TransportError as exc:
            raise ConnectFailed(f"no tunnel to {target} through the proxy {proxy.where}: {exc}") from exc
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        fields = status_line.split(" ", 2)
        if len(fields) < 2 or not fields[1].startswith("2"):
            hint = " (check the user and password in the proxy URL)" if fields[1:2] == ["407"] else ""
            raise ConnectFailed(f"the proxy {proxy.where} refused a tunnel to {target}: {status_line}{hint}")
        conn = _Connection(loop)
        tls_transport = await loop.start_tls(transport, conn, tls, server_hostname=origin.host)
    except BaseException:
        transport.close()
        raise
    if tls_transport is None:
        transport.close()
        raise ConnectFailed(f"TLS through the proxy {proxy.where} to {target} could not start")
    conn.connection_made(tls_transport)
    return conn
