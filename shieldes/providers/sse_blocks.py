"""Upstream SSE bodies read as blocks of whole events, for the forwarding paths that send a client
the upstream's own bytes: the byte scans that tell a block is framed the usual way (so it can be
forwarded without a parse), and the reading machinery shared by those streams.

A block starts at an event boundary and ends at one (after a blank line; the end of the body also
ends one). Until the upstream sends a carriage return, whole events are cut from the bytes read
with one scan for the last blank line; from the first carriage return on, a decoder reads the rest
of the stream and the payloads it decoded wait in a list."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any, ClassVar

from shieldes.providers.base import Body, Target
from shieldes.providers.http import TRANSPORT_ERRORS, invalid_response, transport_failure
from shieldes.providers.sse import SSEDecoder
from shieldes.providers.streams import UpstreamChunkStream
from shieldes.providers.transport import UpstreamResponse

DONE = b"[DONE]"
# A carriage return as an int: `int in bytes` is a memchr, where on Python 3.11 `bytes in bytes`
# first tries its argument as an integer, raising and clearing a TypeError (some 2,000 instructions
# a call) and a find parses its arguments (some 500).
_CR = ord("\r")
_LF = ord("\n")

# --- scans of a block ----------------------------------------------------------------------------


# A blank line is found line by line with memchr: CPython looks for a two-byte string one byte at a
# time (about 1 ns a byte on this machine, 25 us for the 24 kB of an agent's response event, whose
# `response` echoes its instructions and tools), for one byte with memchr (0.01 ns a byte); an
# event has a few lines.
def blank_line(data: bytes, start: int = 0) -> int:
    """data.find(b"\\n\\n", start)."""
    at = data.find(b"\n", start)
    while at >= 0 and not data.startswith(b"\n", at + 1):
        at = data.find(b"\n", at + 1)
    return at


def last_blank_line(data: bytes) -> int:
    """data.rfind(b"\\n\\n")."""
    at = data.rfind(b"\n")
    while at > 0 and data[at - 1] != 10:  # (10: a newline)
        at = data.rfind(b"\n", 0, at)
    return at - 1 if at > 0 else -1


def one_line_objects(block: bytes) -> int:
    """How many events `block` holds when it is nothing but `data: {...}` events of one line each,
    every one ended by a blank line (no carriage return in it: the caller checked); else 0."""
    if block[:7] != b"data: {" or block[-3:] != b"}\n\n":
        return 0
    if block.find(b"\n") == len(block) - 2:  # one event, as most reads are (memchr, not two counts)
        return 1
    # Several, as a stream written at once is read: the separators (`}\n\ndata: {`, which cannot
    # overlap) and the last event's end hold two newlines each, so there is no other newline when
    # the newlines are twice the events. The separators counted, the newlines by how many bytes a
    # delete of them takes out (found with memchr, where a count of them walks byte by byte at
    # 5 instructions a byte): 22k of a 24-event read, where a split at the separators and a
    # memchr in the join of the pieces took 27k
    n = block.count(b"}\n\ndata: {") + 1
    return n if len(block) - len(block.replace(b"\n", b"")) == 2 * n else 0


def decoded(block: bytes, at_end: bool) -> list[bytes]:
    """The data of each event in `block`, which starts at an event boundary (and, unless it is
    the end of the body, ends at one)."""
    decoder = SSEDecoder()
    events = decoder.feed(block)
    if at_end:
        events += decoder.close()
    return [data for _event, data in events]


def first_payload(data: bytes, at_end: bool) -> tuple[bytes | None, int]:
    """The data of the first event in `data` (no carriage return in it) that has any, and the
    offset just past that event; (None, 0) while no such event is complete. At the end of the
    body the last event needs no blank line."""
    # The usual first event, found by the newlines after its one data line (and its name line):
    # `data: ...` then a blank line, or `event: NAME`, `data: ...` then a blank line.
    line = data.find(b"\n")
    if line > 0:
        if data[line + 1:line + 2] == b"\n":
            if data[:6] == b"data: ":
                return data[6:line], line + 2
        elif data[:7] == b"event: " and data.startswith(b"data: ", line + 1):
            end = data.find(b"\n", line + 7)
            if end > 0 and data[end + 1:end + 2] == b"\n":
                return data[line + 7:end], end + 2
    start = 0
    while start < len(data):
        end = blank_line(data, start)
        if end < 0:
            if not at_end:
                return None, 0
            end = stop = len(data)
        else:
            stop = end + 2
        event = data[start:end]
        if event[:6] == b"data: " and _LF not in event:
            return event[6:], stop
        named = event.find(b"\ndata: ") + 1  # `event: NAME` then one data line (OpenAI's Responses events)
        if event[:7] == b"event: " and named and event.find(b"\n", 0, named - 1) < 0 and \
                event.find(b"\n", named) < 0:
            return event[named + 6:], stop
        found = decoded(event + b"\n\n", False)  # a comment, an `event:` field, several lines...
        if found:
            return found[0], stop
        start = stop
    return None, 0


def joined_events(payloads: list[bytes]) -> bytes:
    return b"data: " + b"\n\ndata: ".join(payloads) + b"\n\n" if payloads else b""


# --- reading -------------------------------------------------------------------------------------


class BlockStream(UpstreamChunkStream):
    """An upstream SSE body kept as the bytes read until someone reads it: iteration gives the
    parsed payloads (`_parse`), a subclass's `frames()` forwards blocks of whole events (`_block`).

    `_DONE_ENDS`: whether `data: [DONE]` ends the stream (chat completions) or is skipped (the
    Responses API sends none; a server that does still gets read to the end)."""

    _DONE_ENDS: ClassVar[bool] = True

    # (defaults on the class, as UpstreamChunkStream's)
    _decoder: SSEDecoder | None = None
    _primed_end = 0  # where the primed chunk's event ends in _carry (or 1: _rest[0] is it)
    _ended = False  # the body ended (read_chunk gave b"")
    _frame_gen: AsyncGenerator[Any, None] | None = None  # a subclass's frames()
    # Bytes read and not handed out yet, starting at an event boundary. Once the upstream sends a
    # carriage return, a decoder reads the rest of the stream and `_rest` holds the payloads it
    # decoded that are not handed out yet.
    _carry = b""

    def __init__(self, resp: UpstreamResponse, target: Target) -> None:
        # UpstreamChunkStream.__init__'s fields, set here (one is made per stream: a super() call
        # costs it as much again)
        self._resp = resp
        self._target = target
        self._head: list[Body] = []
        self._rest: list[bytes] = []

    def _parse(self, data: bytes) -> Body:
        """One event's payload, read (raising UpstreamFailure for one that ends the stream)."""
        raise NotImplementedError

    def _end_without_done(self) -> None:
        """The body ended without [DONE] (or, where none is sent, at all): raise if that cuts the
        stream short."""

    def _parse_first(self, data: bytes) -> Body | None:
        """The first event's payload, read while another deployment can still be tried; None when
        its bytes alone show it is no error (then it is read with the rest)."""
        return self._parse(data)

    async def _read(self) -> bytes:
        try:
            raw = await self._resp.read_chunk()
        except TRANSPORT_ERRORS as exc:
            raise transport_failure(self._target, exc) from exc
        self._ended = not raw
        return raw

    def _decode(self, raw: bytes) -> list[bytes]:
        """Payloads of a read (or of the end of the body) in decoder mode."""
        assert self._decoder is not None
        events = self._decoder.feed(raw) if raw else self._decoder.close()
        return [data for _event, data in events]

    def _take(self, raw: bytes) -> None:
        """Keep a read for later: raw bytes, or decoded payloads from the first carriage return on."""
        if self._decoder is None and _CR in raw:
            self._decoder = SSEDecoder()
            raw, self._carry = self._carry + raw, b""
        if self._decoder is None:
            self._carry += raw
        else:
            self._rest += self._decode(raw)

    def _block(self) -> bytes:
        """The whole events read so far (not in decoder mode): the block is taken out of `_carry`."""
        data = self._carry
        # (a read usually ends at an event's end: one compare, no search)
        cut = len(data) if self._ended or data[-2:] == b"\n\n" else last_blank_line(data) + 2
        if cut < 2:
            return b""
        block, self._carry = data[:cut], data[cut:]
        return block

    async def prime(self) -> None:
        """Read up to the first event with data and parse it: an error the upstream sends first
        is raised while another deployment can still be tried. What was read stays for the
        stream's reader (frames() forwards those bytes)."""
        payload: bytes | None = None
        try:
            while payload is None and not self._ended:
                self._take(await self._read())
                if self._decoder is None:
                    payload, self._primed_end = first_payload(self._carry, self._ended)
                elif self._rest:
                    payload, self._primed_end = self._rest[0], 1
            if payload is None:
                # The body ended without one event (not even [DONE]): an HTML page or other text
                # under status 200, e.g. a base URL pointing at a web UI. Relayed, it would be an
                # empty answer that looks complete.
                kind = self._resp.content_type
                raise invalid_response(self._target, "an answer without any server-sent event (" + (
                    f"Content-Type {kind}" if kind else "no Content-Type") + ") where an event stream was "
                    "expected; check the provider's base URL")
            first = self._parse_first(payload) if payload != DONE else None
            if first is not None:
                self._first = first
                self._head.append(first)
            else:
                self._primed_end = 0
        except BaseException:
            self._release()  # nobody reads a stream whose opening failed: its connection closes
            raise

    async def _chunks(self) -> AsyncGenerator[Body, None]:
        if self._decoder is None:  # the bytes after the primed event, decoded from here on
            self._decoder = SSEDecoder()
            rest, self._carry = self._carry[self._primed_end:], b""
            batch = self._decode(rest) if rest else []
            if self._ended:
                batch += self._decode(b"")
        else:
            batch, self._rest = self._rest[self._primed_end:], []
        try:
            while True:
                for data in batch:
                    if data == DONE:
                        if self._DONE_ENDS:
                            self._finished = True
                            return
                        continue
                    yield self._parse(data)
                if self._ended:
                    self._end_without_done()
                    self._finished = True
                    return
                batch = self._decode(await self._read())
        finally:
            self._release()

    async def aclose(self) -> None:
        if self._frame_gen is not None:
            await self._frame_gen.aclose()
            if self._released:  # (its end released the response: nothing else was read)
                return
        await super().aclose()
