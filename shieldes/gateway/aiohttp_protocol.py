"""aiohttp's connection handler for the routes the front hands over (admin, console, media, MCP,
Gemini, WebSockets): what aiohttp refuses before any route answered in the OpenAI error shape, a
request's head bounded by SHIELDES_HEADER_TIMEOUT and its body's silences by SHIELDES_BODY_TIMEOUT,
and malformed requests logged in one line."""

from __future__ import annotations

import asyncio
import logging
from email.utils import formatdate
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from shieldes.errors import BodyStalled
from shieldes.gateway.http1 import answer_bytes
from shieldes.gateway.middleware import Refused, RequestIds, error_response


class ProtocolLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Logger for aiohttp's connection handler. A malformed request (line or header too long, bad
    header bytes, ...) is refused by aiohttp before any route with a 400; aiohttp would log it with a
    traceback and the offending bytes, which may hold part of a credential. Log one line instead."""

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            self.logger.info("refused a malformed HTTP request (%s, status %s)", type(exc).__name__, exc.code)
            return
        super().log(level, msg, *args, **kwargs)


def protocol_logger() -> logging.LoggerAdapter:  # type: ignore[type-arg]
    return ProtocolLog(logging.getLogger("shieldes.http"), {})


# What aiohttp refuses before any route runs (a request the front handed over): the front's codes.
_PROTOCOL_REFUSALS = {
    413: ("request_too_large", "the request body is too large; send a smaller one"),
    414: ("uri_too_long", "the request target is too long; send a shorter one"),
    431: ("headers_too_large", "the request's headers are too large; send smaller ones"),
}


class JsonErrorHandler(RequestHandler):
    """aiohttp's connection handler, answering what it refuses before any route (a malformed
    request line, method or header) in the OpenAI error shape instead of aiohttp's text/plain,
    which also echoed the offending bytes back. `refused` (Observer.refused) gets each refusal,
    for its row in the request log."""

    def __init__(self, manager: Any, *, ids: RequestIds, refused: Refused | None = None,
                 header_timeout: float | None = None, body_timeout: float | None = None,
                 **options: Any) -> None:
        super().__init__(manager, **options)
        self.ids, self.refused = ids, refused
        # Each request's head must arrive within header_timeout (aiohttp has no such bound): the
        # first from the connection's hand-off, a later one from its first byte.
        self._header_timeout = header_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._tail = b""  # the last bytes read before the head's end was seen
        # A request's body may not go body_timeout without a byte: checked by a timer from its
        # head's end until the body is whole (bodies here are read whole by their handler).
        self._body_timeout = body_timeout
        self._body_timer: asyncio.TimerHandle | None = None
        self._last_read = 0.0  # when bytes last arrived, while the body timer runs

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self._header_timeout is not None:
            self._head_timer = asyncio.get_running_loop().call_later(self._header_timeout, self._head_late)

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and self._header_timeout is not None and self._awaiting_request():
            self._tail = b""  # the first bytes of a later request: its head is timed from here
            self._head_timer = asyncio.get_running_loop().call_later(self._header_timeout, self._head_late)
        if self._body_timer is not None:
            self._last_read = asyncio.get_running_loop().time()
        if self._head_timer is not None:
            seen = self._tail + data
            if b"\r\n\r\n" in seen or b"\n\n" in seen:  # the first head is whole: the bound is met
                self._head_timer.cancel()
                self._head_timer = None
                self._watch_body()
            self._tail = seen[-3:]
        super().data_received(data)

    def _awaiting_request(self) -> bool:
        """Whether the connection is between requests: aiohttp's loop waits for the next message (a
        request whose body is being read is not; its bytes are the body's). (aiohttp keeps that
        future private; without it, only the first request is timed.)"""
        waiter = getattr(self, "_waiter", None)
        return isinstance(waiter, asyncio.Future) and not waiter.done()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().connection_lost(exc)

    def _watch_body(self) -> None:
        if self._body_timeout is not None and self._body_timer is None:
            loop = asyncio.get_running_loop()
            self._last_read = loop.time()
            self._body_timer = loop.call_later(self._body_timeout, self._body_check)

    def _body_check(self) -> None:
        """The body timer: done once no request's body is still arriving (a request without one,
        a WebSocket, the body whole); a body silent for the timeout is refused: a handler reading it
        gets BodyStalled, rendered in its route's shape, and the connection closes after the answer
        (none reading it: the connection closes)."""
        self._body_timer = None
        timeout, transport = self._body_timeout, self.transport
        if timeout is None or transport is None or transport.is_closing():
            return
        current = self._current_request
        payloads = [p for p in ([current.content] if current is not None else []) + [p for _, p in self._messages]
                    if not p.is_eof()]
        if not payloads:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._reading_paused:  # the handler is not reading (its buffer is full): not the client's pause
            self._last_read = now
        if now - self._last_read < timeout:
            self._body_timer = loop.call_at(self._last_read + timeout, self._body_check)
            return
        text = (f"no byte of the request's body arrived for {timeout:g} s; send the body without such pauses "
                "(a slow upload is fine as long as bytes keep coming)")
        if current is not None and payloads[0] is current.content:
            payloads[0].set_exception(BodyStalled(text))
            self.close()  # after its answer
        else:
            self.force_close()

    def _head_late(self) -> None:
        self._head_timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        rid = self.ids.new()
        text = (f"the request's line and headers did not arrive within {self._header_timeout:g} s; send them "
                "whole, promptly")
        resp = error_response(408, "invalid_request_error", "request_timeout", text, rid)
        if self.refused is not None:
            self.refused(rid, "UNKNOWN", "", _peer(transport), 408, "request_timeout", text)
        transport.write(answer_bytes(resp, False, formatdate(usegmt=True).encode()))
        self.force_close()
        transport.close()

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs it (one line); raises if an answer began
        rid = self.ids.new()
        if status >= 500:
            status, kind = 500, "server_error"
            code, text = "internal_error", f"internal error; report request id {rid} to the operator"
        else:
            kind = "invalid_request_error"
            code, text = _PROTOCOL_REFUSALS.get(status, (
                "malformed_request", f"malformed HTTP request ({type(exc).__name__ if exc else 'refused'}); "
                "send a valid HTTP/1.1 request"))
            if isinstance(exc, LineTooLong):
                text = "the request line or a header is over 8190 bytes; send a shorter one (long values belong " \
                       "in the body)"
        resp = error_response(status, kind, code, text, rid)
        if self.refused is not None:
            self.refused(rid, request.method, request.path[:200], request.remote, status, code, text)
        resp.force_close()
        return resp


def _peer(transport: asyncio.BaseTransport) -> str | None:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else None
