"""One keep-alive HTTP/1.1 connection to an upstream (transport.py pools them): a request's bytes,
the answer parsed by llhttp (httptools) as it arrives, read ahead of a slow reader up to a bound,
and the errors of a call that got no usable answer.

It sends no Accept-Encoding, so upstreams answer uncompressed; gzip and deflate bodies are still
decoded if an upstream compresses anyway. Deadlines are one timer per call: `total` bounds the
whole call (JSON answers), `idle` the silence between reads (streams, which may legitimately run
for long). What is held of an answer is bounded (`limit`): a JSON answer read whole, and what a
stream holds between two events' ends, so a broken or hostile upstream cannot fill the node's
memory."""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NoReturn, cast

import httptools

_READ_AHEAD = 1 << 20  # bytes buffered ahead of a slow reader before the socket is paused
# Request bodies below this size are joined to their head for one write; a larger one goes as its
# own buffer beside it: uvloop writes both with one writev, where a join copies the body (a coding
# agent's 73 kB turn: 73k instructions of memcpy, 5% of what a node does for it; asyncio's own
# transport joins them itself). Below it, a join is cheaper than the vector's setup.
JOIN_BELOW = 16 * 1024
_DRAIN_SECONDS = 5.0  # how long a released answer's unread tail may take before its connection is dropped
# the answer's headers the connection reads as they come (framing, coding, media type)
_READ_FIELDS = frozenset((b"content-length", b"transfer-encoding", b"content-encoding", b"content-type"))


class Pieces:
    """A request body as buffers written one after the other, never joined: the client's bytes
    and what the gateway adds after them (top_level.appended), so a coding agent's 73 kB turn is
    not copied to add a field."""

    __slots__ = ("parts", "size")

    def __init__(self, *parts: bytes | memoryview) -> None:
        self.parts = parts
        self.size = sum(map(len, parts))  # (memoryviews of bytes: their length in bytes)

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        return b"".join(self.parts)


Payload = bytes | Pieces  # a request body as the upstream client sends it


def written(head: bytes, body: Payload) -> tuple[bytes | memoryview, ...]:
    """The buffers a request is written as: a small body joined to its head (one buffer), a
    larger one as it is beside it, never copied (a 20 MB body of screenshots would be a fresh
    20 MB buffer and its page faults)."""
    if type(body) is bytes:
        return (head + body,) if len(body) < JOIN_BELOW else (head, body)
    parts = body.parts if isinstance(body, Pieces) else (body,)
    return (b"".join((head, *parts)),) if len(body) < JOIN_BELOW else (head, *parts)


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


class AnswerTooLarge(TransportError):
    """An answer read whole, or a stream's bytes between two events' ends, over the node's bound."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"an answer (or one event of its stream) over {limit} bytes")
        self.limit = limit


class InvalidTarget(TransportError):
    """A request that cannot be sent: its message says what to fix."""


class InvalidAnswer(TransportError):
    """What came back is not HTTP/1.x."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    total: float | None = None  # the whole call
    idle: float | None = None  # between two reads of the answer


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

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self._loop = loop
        # the most bytes of an answer held at once: read whole (read_all), or since a stream's
        # last event end (the bytes that end an SSE event: a blank line in any line ending)
        self.limit = limit
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
        self._held = 0  # bytes since the last event end (events_bounded)
        self.events_bounded = True  # off for a binary stream read piece by piece (audio, Bedrock's frames)
        self._error: TransportError | None = None
        self._keep_alive = False  # read with the head: llhttp resets it once the message is complete
        self._framed = False  # Content-Length or chunked: the answer's end is known without EOF
        self._decoder: zlib._Decompress | None = None
        self._timeouts = timeouts
        self._then: Callable[[], None] | None = None  # once the rest of a released answer is in

    # --- a call ----------------------------------------------------------------------------------

    def send(self, head: bytes, body: Payload, timeouts: Timeouts) -> asyncio.Future[None]:
        """Write one request (`written`); the returned future resolves when the answer's head is in."""
        self._begin(timeouts)
        self._head = self._loop.create_future()
        now = self._loop.time()
        self._started = self._last_read = now
        if timeouts.total is not None or timeouts.idle is not None:
            self._timer = self._loop.call_at(self._next_deadline(), self._check_deadline)
        assert self.transport is not None
        self.transport.writelines(written(head, body))
        return self._head

    def _next_deadline(self) -> float:
        total, idle = self._timeouts.total, self._timeouts.idle
        if total is None:
            assert idle is not None
            return self._last_read + idle
        end = self._started + total
        if idle is not None and self._last_read + idle < end:  # (not min(): it parses its keywords)
            return self._last_read + idle
        return end

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
        # What a stream's reader holds while it looks for an event's end: bounded (JSON answers,
        # read whole, are bounded by read_all; this is a stream's cost alone)
        if chunk[-2:] == b"\n\n":  # (nearly every read of a stream ends an event: one compare)
            self._held = 0
        elif self.events_bounded:
            # (the last blank line: \n\n, \r\r, or \n\r of \r\n\r\n and \n\r\n)
            end = max(chunk.rfind(b"\n\n"), chunk.rfind(b"\r\r"), chunk.rfind(b"\n\r"))
            self._held = len(chunk) - end - 2 if end >= 0 else self._held + len(chunk)
            if self._held > self.limit:
                self._too_large()
        if self._paused:
            self._resume()
        return chunk

    def _resume(self) -> None:
        self._paused = False
        if self.transport is not None:
            self.transport.resume_reading()

    def _too_large(self) -> NoReturn:
        self._fail(AnswerTooLarge(self.limit))
        raise AnswerTooLarge(self.limit)

    async def read_all(self) -> bytes:
        """The whole body, read on past the read-ahead bound up to `limit` (beyond it: AnswerTooLarge)."""
        while not self.complete:
            if self._error is not None:
                raise self._error
            if self._buffered > self.limit:
                self._too_large()
            if self._paused:
                self._resume()
            self._waiter = self._loop.create_future()
            await self._waiter
        if self._error is not None:
            raise self._error
        if self._paused:  # (paused by the last read: the next call reads)
            self._resume()
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
        if self._paused:
            self._resume()
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
                body = self._decoder.decompress(body, self.limit + 1)
            except zlib.error as exc:
                self._fail(InvalidAnswer(f"a compressed body that does not decode ({exc})"))
                return
            if self._decoder.unconsumed_tail:  # one read decodes to more than the bound
                self._fail(AnswerTooLarge(self.limit))
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
