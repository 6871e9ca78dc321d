"""/mcp/{name}: MCP's Streamable HTTP transport relayed to a registered MCP server.

The client authenticates with its virtual key; the server gets its own registered headers instead.
POST carries JSON-RPC messages (answered as JSON or as an event stream), GET opens the server's
stream, DELETE ends a session; MCP-Protocol-Version and Last-Event-ID pass through, and Mcp-Session-Id
is the server's wrapped with a MAC binding it to the key and server (mcp/sessions.py), unwrapped on the way in.
Refusals are JSON-RPC errors, decided before anything reaches the server (shieldes/mcp/). Streams
are relayed event by event as they arrive. Only these routes do this work: other routes are untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
from typing import Any

import aiohttp
from aiohttp import web

from shieldes.errors import (
    BodyStalled,
    BodyTooLarge,
    NotFound,
    PermissionDenied,
    RateLimited,
    ShieldesError,
    retry_after_seconds,
)
from shieldes.gateway import client_trace
from shieldes.gateway.client_watch import WATCH_INTERVAL, client_gone
from shieldes.gateway.middleware import REQUEST_ID, record_of, request_id
from shieldes.gateway.request_fields import read_json
from shieldes.gateway.routes import GATEWAY
from shieldes.gateway.service import Gateway, sent_keys
from shieldes.mcp.access import allows_server
from shieldes.mcp.jsonrpc import (
    INTERNAL_ERROR,
    RATE_LIMITED,
    UPSTREAM_FAILED,
    McpRefused,
    Posted,
    check_access,
    error_body,
    filtered,
    parse_post,
    rewrite_json,
)
from shieldes.mcp.sessions import session_key, unwrap, wrap
from shieldes.mcp.sse import EventSplitter, rewrite_event
from shieldes.projections.state import McpServer, VirtualKey
from shieldes.requestlog.record import RequestRecord
from shieldes.secrets import SecretError, resolve_secret

log = logging.getLogger(__name__)
# relayed from the client to the server, and back (lower case)
TO_SERVER = ("accept", "content-type", "mcp-protocol-version", "last-event-id")
# (`allow`: a server's 405 to GET, which has no stream for the client, or to DELETE, which ends no session)
TO_CLIENT = ("content-type", "mcp-protocol-version", "cache-control", "allow")
SESSION_ID = "Mcp-Session-Id"  # wrapped towards the client, unwrapped towards the server
CONNECT_TIMEOUT = 10.0  # seconds to reach the server; an answer or a stream may then take as long as it takes
EVENT_STREAM = "text/event-stream"


class McpUpstream:
    """The node's HTTP client for MCP servers and their resolved header values (owned by the app:
    opened on first use, closed on cleanup)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._session: aiohttp.ClientSession | None = None
        self._values: dict[str, str] = {}  # secret ref -> value
        # session ids are bound under a key every node derives from the cluster secret; a node without
        # one (a single node) uses a key of its own, so its sessions end with it (clients start new ones)
        secret = gateway.settings.cluster_secret
        self.session_key = session_key(secret) if secret else secrets.token_bytes(32)

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT, sock_connect=CONNECT_TIMEOUT)
            self._session = aiohttp.ClientSession(timeout=timeout)  # (answers arrive decompressed)
        return self._session

    def headers(self, server: McpServer) -> dict[str, str]:
        """The server's registered headers with their values (read once per secret)."""
        out: dict[str, str] = {}
        for name, ref in server.headers.items():
            value = self._values.get(ref)
            if value is None:
                try:
                    value = resolve_secret(ref, self.gateway.keyring())
                except SecretError as exc:
                    raise McpRefused(
                        f"MCP server {server.name!r} cannot be used on this node: its header {name!r} cannot be "
                        f"read ({exc.message}); fix it on the node or register the server again with "
                        "`shieldes mcp add`", code="mcp_server_misconfigured", rpc_code=INTERNAL_ERROR,
                        status=502) from None
                if value is None:
                    continue
                self._values[ref] = value
            out[name] = value
        return out

    def scrub(self, text: str) -> str:
        for value in self._values.values():
            if len(value) >= 8:
                text = text.replace(value, "[redacted]")
        return text

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


MCP_UPSTREAM: web.AppKey[McpUpstream] = web.AppKey("mcp_upstream", McpUpstream)


def _answer(exc: McpRefused, rid: str, headers: dict[str, str] | None = None, *, batch: bool = False) -> web.Response:
    data = {"code": exc.code}
    body = error_body(exc.ids, exc.rpc_code, exc.message, data, batch=batch)
    resp = web.Response(body=body, status=exc.status, content_type="application/json", headers=headers)
    resp.headers[REQUEST_ID] = rid
    return resp


def _refusal(exc: ShieldesError, ids: tuple[Any, ...]) -> McpRefused:
    """A gateway error (bad key, unknown server, rate limit...) as the JSON-RPC error answered for it."""
    rpc = RATE_LIMITED if isinstance(exc, RateLimited) else INTERNAL_ERROR if exc.status >= 500 else -32001
    return McpRefused(exc.message, code=exc.code or exc.type, rpc_code=rpc, status=exc.status, ids=ids)


def _outcome(status: int, code: str | None) -> str:
    if code in ("rate_limit_exceeded",):
        return "rate_limited"
    if (code and code.startswith("mcp_upstream")) or status in (502, 504):
        return "upstream_error"
    if status >= 500:
        return "error"
    if code is not None or status >= 400:
        return "refused"
    return "ok"


class McpRoute:
    """One request on /mcp/{name}."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.gateway = request.app[GATEWAY]
        self.upstream = request.app[MCP_UPSTREAM]
        self.rid = request_id(request)
        self.rec: RequestRecord | None = record_of(request)
        self.name = request.match_info["name"]
        self.body: bytes | None = None  # a POST's body as read (decompressed): what the server gets

    async def handle(self) -> web.StreamResponse:
        rec = self.rec
        method: str | None = None
        ids: tuple[Any, ...] = (None,)
        batch = False  # a batch's refusal is an array, as JSON-RPC answers a batch
        status, code = 500, None
        try:
            key = self.gateway.authenticate(*sent_keys(self.request.headers))
            if rec is not None:
                rec.key = key
            server = self._server(key)
            posted = None
            if self.request.method == "POST":
                posted = await self._posted()
                method, batch = posted.method, posted.batch
                ids = tuple(m["id"] for m in posted.messages if "method" in m and "id" in m) or (None,)
                if rec is not None:
                    rec.model, rec.upstream_model = posted.method, posted.tool
            session = self._session(key, server, ids)
            if posted is not None:
                entries = self.gateway.state.config.mcp_access.get(key.id)
                check_access(posted, entries, server.name, key.name)
                self._admit(key, posted)
            resp = await self._relay(key, server, posted, session)
            status = resp.status
            return resp
        except McpRefused as exc:
            status, code = exc.status, exc.code
            self._note(exc)
            return _answer(exc, self.rid, batch=batch)
        except ShieldesError as exc:
            refused = _refusal(exc, ids)
            status, code = refused.status, refused.code
            self._note(refused)
            headers = dict(exc.headers)
            if isinstance(exc, RateLimited):
                headers["Retry-After"] = str(retry_after_seconds(exc.retry_after))
            return _answer(refused, self.rid, headers, batch=batch)
        finally:
            known = self.name in self.gateway.state.config.mcp_servers
            self.gateway.metrics.mcp_request(self.name if known else "unknown",
                                             method or self.request.method, _outcome(status, code))

    def _note(self, exc: McpRefused) -> None:
        rec = self.rec
        if rec is not None and rec.error_code is None:
            rec.error_code, rec.error_message = exc.code, exc.message

    def _server(self, key: VirtualKey) -> McpServer:
        config = self.gateway.state.config
        server = config.mcp_servers.get(self.name)
        if server is None:
            raise NotFound(f"no MCP server named {self.name!r}; see `shieldes mcp list` for the servers "
                           "registered (and `shieldes mcp add` to register one)", code="mcp_server_not_found")
        if self.rec is not None:
            self.rec.deployment = server.name
        if not allows_server(config.mcp_access.get(key.id), server.name):
            raise PermissionDenied(f"key {key.name!r} may not use MCP server {server.name!r}; allow it with "
                                   f"`shieldes key update {key.name} --mcp {server.name}` (or SERVER/TOOL entries)",
                                   code="mcp_server_not_allowed")
        return server

    def _session(self, key: VirtualKey, server: McpServer, ids: tuple[Any, ...]) -> str | None:
        """The server's own session id in the client's Mcp-Session-Id, which must have been minted
        for this key and server (else 404 here, and nothing reaches the server)."""
        given = self.request.headers.get(SESSION_ID)
        if given is None:
            return None
        try:
            return unwrap(self.upstream.session_key, key.id, server.name, given)
        except McpRefused as exc:
            exc.ids = ids
            raise

    async def _posted(self) -> Posted:
        limit = self.gateway.settings.max_body_bytes
        try:
            _, raw = await read_json(self.request, limit)
        except (BodyTooLarge, BodyStalled):
            raise
        except ShieldesError:  # not an object: a batch, or not JSON at all (parse_post says which)
            raw = await self.request.read()
        self.body = raw
        return parse_post(raw)

    def _admit(self, key: VirtualKey, posted: Posted) -> None:
        """Each tools/call counts as one request against the key's rpm limit, cluster-wide (tokens
        and budgets are about model calls: a tool call has no price)."""
        if not posted.tool_calls or key.rpm is None:
            return
        gw = self.gateway
        counted = dataclasses.replace(key, tpm=None, budget=None, team_id=None)
        for _ in range(posted.tool_calls):
            res = gw.meter.admit(gw.state.config, gw.state.usage, counted, 0, gw.state.position)
            gw.meter.release(res)

    async def _relay(self, key: VirtualKey, server: McpServer, posted: Posted | None,
                     session: str | None) -> web.StreamResponse:
        request = self.request
        headers = {h: v for h in TO_SERVER if (v := request.headers.get(h)) is not None}
        if session is not None:
            headers[SESSION_ID] = session
        headers.update(self.upstream.headers(server))
        tracing = self.gateway.tracing
        if tracing is None:
            client_trace.inject(headers)  # the client's own trace context, as it came
            return await self._call(server, posted, key, headers)
        method = posted.method if posted is not None and posted.method else request.method
        with tracing.mcp_span(server.name, server.url, method, posted.tool if posted is not None else None) as span:
            tracing.inject_headers(headers)  # the server joins the trace (W3C traceparent, tracestate)
            resp = await self._call(server, posted, key, headers)
            rec = self.rec
            tracing.mcp_answered(span, resp.status, rec.error_code if rec else None, rec.error_message if rec else None)
            return resp

    async def _call(self, server: McpServer, posted: Posted | None, key: VirtualKey,
                    headers: dict[str, str]) -> web.StreamResponse:
        request, body = self.request, self.body
        if self.rec is not None:
            self.rec.attempt(server.name)
        try:
            upstream = await self.upstream.session().request(request.method, server.url, data=body, headers=headers,
                                                             allow_redirects=False)
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:  # (ValueError: a bad header value)
            timeout = isinstance(exc, TimeoutError)
            raise McpRefused(
                f"MCP server {server.name!r} could not be reached ({'timed out' if timeout else type(exc).__name__}"
                f"{': ' + self.upstream.scrub(str(exc))[:200] if str(exc) else ''}); check that it is up at its "
                "registered URL (`shieldes mcp list`)", code="mcp_upstream_unreachable", rpc_code=UPSTREAM_FAILED,
                status=504 if timeout else 502, ids=self._ids(posted)) from None
        try:
            return await self._answer_from(upstream, server, posted, key)
        finally:
            upstream.release()

    @staticmethod
    def _ids(posted: Posted | None) -> tuple[Any, ...]:
        if posted is None:
            return (None,)
        return tuple(m["id"] for m in posted.messages if "method" in m and "id" in m) or (None,)

    async def _answer_from(self, upstream: aiohttp.ClientResponse, server: McpServer, posted: Posted | None,
                           key: VirtualKey) -> web.StreamResponse:
        if upstream.status in (401, 403):
            raise McpRefused(
                f"MCP server {server.name!r} refused the gateway's credentials (HTTP {upstream.status}); the "
                f"operator should register it again with the right header (`shieldes mcp remove {server.name}` "
                f"then `shieldes mcp add {server.name} --url ... --header 'Authorization: ...'`)",
                code="mcp_upstream_auth", rpc_code=UPSTREAM_FAILED, status=502, ids=self._ids(posted))
        headers = {h: v for h in TO_CLIENT if (v := upstream.headers.get(h)) is not None}
        if (session := upstream.headers.get(SESSION_ID)) is not None:
            headers[SESSION_ID] = wrap(self.upstream.session_key, key.id, server.name, session)
        headers[REQUEST_ID] = self.rid
        if upstream.status >= 500:
            text = self.upstream.scrub((await upstream.content.read(4096)).decode("utf-8", "replace"))[:300]
            raise McpRefused(f"MCP server {server.name!r} failed (HTTP {upstream.status}: {text or 'no body'}); "
                             "retry, or ask its operator", code="mcp_upstream_error", rpc_code=UPSTREAM_FAILED,
                             status=502, ids=self._ids(posted))
        entries = self.gateway.state.config.mcp_access.get(key.id)
        list_ids = posted.tools_list_ids if posted is not None else ()

        def change(message: Any) -> Any:
            return filtered(message, list_ids, entries, server.name)

        content_type = upstream.headers.get("Content-Type", "")
        if content_type.startswith(EVENT_STREAM):
            return await self._stream(upstream, headers, change if list_ids else None)
        limit = self.gateway.settings.max_upstream_body_bytes
        body = await _read_within(upstream, limit)
        if body is None:
            upstream.close()  # (the rest is not read: the connection goes)
            raise McpRefused(f"MCP server {server.name!r} sent an answer over {limit} bytes, more than this node "
                             "holds (SHIELDES_MAX_UPSTREAM_BODY_BYTES); ask the tool for less, or have the operator "
                             "raise that bound if such answers are expected", code="mcp_upstream_too_large",
                             rpc_code=UPSTREAM_FAILED, status=502, ids=self._ids(posted))
        if list_ids and content_type.startswith("application/json"):
            body = rewrite_json(body, change)
        return web.Response(body=body, status=upstream.status, headers=headers)

    async def _stream(self, upstream: aiohttp.ClientResponse, headers: dict[str, str],
                      change: Any) -> web.StreamResponse:
        """The server's event stream as it comes: chunk by chunk, or event by event when one of its
        events (a tools/list answer) is to be rewritten. Relayed until the server ends it or the
        client leaves, whichever comes first: a GET's stream may carry nothing for ever, and agents
        leave it open when they exit, so the client's connection is watched as well as the writes."""
        resp = web.StreamResponse(status=upstream.status, headers=headers)
        resp.headers.setdefault("Cache-Control", "no-cache")
        resp.headers["X-Accel-Buffering"] = "no"
        await resp.prepare(self.request)
        if self.rec is not None:
            self.rec.stream = True
        copy = asyncio.ensure_future(_copy(upstream, resp, change))
        left = asyncio.ensure_future(_client_left(self.request))
        try:
            await asyncio.wait((copy, left), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (copy, left):
                task.cancel()
            await asyncio.gather(copy, left, return_exceptions=True)
        failure = None if copy.cancelled() else copy.exception()
        if copy.cancelled() or isinstance(failure, ConnectionError):  # the client left before the server ended
            upstream.close()  # (the server sees its stream end now)
            self._broken("client_disconnected", "the client closed the stream before the server ended it")
            return resp
        if isinstance(failure, TimeoutError | aiohttp.ClientError):  # the server's stream broke: end ours
            log.info("MCP stream of request %s ended early: %s", self.rid, type(failure).__name__)
            self._broken("mcp_upstream_stream_broken", "the MCP server's stream broke off")
        elif failure is not None:
            raise failure
        # a client that has its answer may close the stream before the end is written: nothing is lost
        with contextlib.suppress(ConnectionError):
            await resp.write_eof()
        return resp

    def _broken(self, code: str, message: str) -> None:
        if self.rec is not None and self.rec.error_code is None:
            self.rec.error_code, self.rec.error_message = code, message


async def _read_within(upstream: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The server's whole answer, or None once it is over `limit` bytes (a broken or hostile server
    cannot fill the node's memory): what was read of it is dropped."""
    declared = upstream.content_length
    if declared is not None and declared > limit:
        return None
    parts: list[bytes] = []
    size = 0
    async for chunk in upstream.content.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


async def _copy(upstream: aiohttp.ClientResponse, resp: web.StreamResponse, change: Any) -> None:
    """Write the server's stream to the client as it arrives (event by event when `change` rewrites
    some)."""
    splitter = EventSplitter() if change is not None else None
    async for chunk in upstream.content.iter_any():
        if splitter is None:
            await resp.write(chunk)
            continue
        for event in splitter.feed(chunk):
            await resp.write(rewrite_event(event, change))
    if splitter is not None and (rest := splitter.rest()):
        await resp.write(rest)


async def _client_left(request: web.Request) -> None:
    """Returns once the client's connection is gone. aiohttp does not cancel a handler whose client
    left, and a write is what would notice: a quiet stream would be relayed for ever."""
    while not client_gone(request.transport):
        await asyncio.sleep(WATCH_INTERVAL)


async def handle(request: web.Request) -> web.StreamResponse:
    return await McpRoute(request).handle()


def add_mcp_routes(app: web.Application) -> None:
    upstream = McpUpstream(app[GATEWAY])
    app[MCP_UPSTREAM] = upstream

    async def close(_app: web.Application) -> None:
        await upstream.close()

    app.on_cleanup.append(close)
    for method in ("POST", "GET", "DELETE"):
        app.router.add_route(method, "/mcp/{name}", handle)
