"""The node's HTTP/1.1 client for upstream calls: keep-alive connections pooled per origin (each one
upstream_connection.py's), reached directly or through a proxy's CONNECT tunnel.

A gateway's upstream call is always the same: one POST with a body in memory, the answer read
whole or as a stream. A general-purpose client session (cookies, redirects, proxies, tracing
signals, content negotiation) spends about 110 us of CPU per call on that; this client does the
call in about 15 (docs/benchmarks-gateway.md), which is most of what separates a node from a bare
proxy. A connection taken from the pool that turns out closed before any byte of the answer (the
upstream dropped an idle keep-alive connection) is replaced by a new one once: the upstream never
saw that request."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

from shieldes.providers.proxies import Proxy, ProxySettingError, proxy_for
from shieldes.providers.resolver import Resolver
from shieldes.providers.upstream_connection import (
    CallTimedOut,
    ConnectFailed,
    Disconnected,
    InvalidAnswer,
    InvalidTarget,
    Payload,
    Timeouts,
    TransportError,
    _Connection,
    request_head,
)

_MAX_TARGETS = 4096  # parsed URLs remembered per client


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

    def binary(self) -> None:
        """This answer is read piece by piece and is no event stream (audio relayed as it comes,
        Bedrock's length-prefixed frames): no event end is looked for, nothing held past a read."""
        self._live().events_bounded = False

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
                 proxies: Mapping[str, str] | None = None, max_body: int = 256 * 1024 * 1024) -> None:
        self._keepalive = keepalive_timeout
        self.max_body = max_body  # the most bytes of an answer held at once (upstream_connection)
        self._on_request = on_request
        self._proxy_env = dict(proxies or {})
        self._proxies: dict[Origin, Proxy | None] = {}
        self._idle: dict[Origin, deque[_Connection]] = {}  # oldest idle on the left
        self._targets: dict[str, tuple[Origin, bytes, bytes]] = {}
        self._tls: ssl.SSLContext | None = None
        self._closed = False
        self.resolver = Resolver()

    async def post(self, url: str, body: Payload, headers: Mapping[str, str], timeouts: Timeouts) -> UpstreamResponse:
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
        # time.monotonic, not the loop's clock: on Python 3.11 asyncio.get_running_loop() makes a
        # getpid syscall (its fork check), which a request would pay twice here
        now = time.monotonic()
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
        oldest_usable = time.monotonic() - self._keepalive
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
                    conn = await _tunnel(loop, proxy, origin, tls, self.max_body)
                elif proxy is not None:
                    _transport, conn = await loop.create_connection(lambda: _Connection(loop, self.max_body),
                                                                    proxy.host, proxy.port)
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
                    lambda: _Connection(loop, self.max_body), address, origin.port, family=family,
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


async def _tunnel(loop: asyncio.AbstractEventLoop, proxy: Proxy, origin: Origin, tls: ssl.SSLContext,
                  limit: int) -> _Connection:
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
        conn = _Connection(loop, limit)
        tls_transport = await loop.start_tls(transport, conn, tls, server_hostname=origin.host)
    except BaseException:
        transport.close()
        raise
    if tls_transport is None:
        transport.close()
        raise ConnectFailed(f"TLS through the proxy {proxy.where} to {target} could not start")
    conn.connection_made(tls_transport)
    return conn
