"""The event stream of an upstream's own /v1/responses (native mode), read two ways: typed event
dicts (iteration), or frames made of the upstream's own bytes for the client (`frames()`). Both
keep the latest response object, the final one and its usage, and the last sequence number.

OpenAI frames every event as `event: NAME` then one `data: {"type":"NAME",...}` line. The frames
path checks that a read is made of such events with a few scans of its bytes and forwards them as
they are. Only the events carrying a `response` object are parsed (the gateway keeps it and may
change it: `previous_response_id`, a usage estimate), and of those the ones with the response so
far (created, in progress) only when the gateway changes them or a failure needs the latest; the
last sequence number is read where it stands in the last bytes forwarded, only when a failure asks
for it, and delta events are counted by name. Anything else (carriage returns, comments, data-only
or multi-line events, a name that is not the event's type, a response event that does not parse)
goes event by event: parsed and re-encoded, exactly as the parsed path gives it."""

from __future__ import annotations

import io
import re
import time
from collections.abc import AsyncGenerator, Callable
from itertools import compress, count
from operator import itemgetter
from typing import Protocol

import orjson

from shieldes.providers.base import Body, StreamCounts, TokenUsage, UpstreamFailure
from shieldes.providers.http import TRANSPORT_ERRORS, event_object, invalid_response, transport_failure
from shieldes.providers.sse import encode_event
from shieldes.providers.sse_blocks import DONE, BlockStream, decoded
from shieldes.responses.objects import ResponsesUsage, usage_from_responses

TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
# A body that ended cleanly before a terminal event (after an `error` event passed on too): the
# client is told the response failed, as for a cut connection
_UNFINISHED = "the event stream ended before its terminal event (response.completed, .incomplete or .failed)"
# Events whose `response` is the response so far (status queued or in progress): kept as bytes and
# parsed only if the stream fails (its snapshot) or the relay edits them (`Relay.edits_progress`).
# With an agent's instructions and tools echoed in each, they are most of the JSON a stream carries.
PROGRESS = frozenset({"response.created", "response.queued", "response.in_progress"})
_PROGRESS_NAMES = frozenset(kind.encode() for kind in PROGRESS)

# Events of one `data:` line holding an object whose first key is `type`, each named by its type,
# are forwarded: the client gets `event: <type>` as re-encoding would give it. (No carriage return:
# the caller checked.) A regex walks a line byte by byte, about 0.7 us a kB, and an event checked on
# its own costs about 0.7 us: runs of events of short lines take one regex match, a long line (an
# agent's response events carry its instructions and tools, tens of kB) has its head matched and
# the rest of it found with memchr (`typed_deltas`).
_LONG_LINE = 1024
_TYPED_RUN = re.compile(rb'(?:event: ([^"\\\n]*)\ndata: \{"type": ?"\1"[,}][^\n]{0,%d}\}\n\n)+' % _LONG_LINE)
_TYPED_HEAD = re.compile(rb'event: ([^"\\\n]*)\ndata: \{"type": ?"\1"[,}]')
_CLOSE = ord("}")
# From the first event of a longer block whose data line is short, the events are checked line by
# line instead when their names are OpenAI's own (below): the lines cut by memchr (a BytesIO's
# iteration, in C) and each name line looked up for the head its data line must start with,
# `data: {"type":"NAME",` (OpenAI writes the type first, unspaced, then more fields). A few C calls
# an event and no walk over the bytes (the regex's is some 7 instructions a byte): the bench's whole
# stream of 28 events in 100k instructions against 156k. Any other block (another name, a spaced
# type, an event of its type alone) goes the regex's way; a long line first, the head's way.
_OPENAI_EVENTS = (
    "error", "response.created", "response.queued", "response.in_progress", "response.completed",
    "response.incomplete", "response.failed", "response.output_item.added", "response.output_item.done",
    "response.content_part.added", "response.content_part.done", "response.output_text.delta",
    "response.output_text.done", "response.output_text.annotation.added", "response.refusal.delta",
    "response.refusal.done", "response.function_call_arguments.delta", "response.function_call_arguments.done",
    "response.custom_tool_call_input.delta", "response.custom_tool_call_input.done",
    "response.reasoning_summary_part.added", "response.reasoning_summary_part.done",
    "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
    "response.reasoning_text.delta", "response.reasoning_text.done", "response.file_search_call.in_progress",
    "response.file_search_call.searching", "response.file_search_call.completed",
    "response.web_search_call.in_progress", "response.web_search_call.searching",
    "response.web_search_call.completed", "response.code_interpreter_call.in_progress",
    "response.code_interpreter_call.interpreting", "response.code_interpreter_call.completed",
    "response.code_interpreter_call_code.delta", "response.code_interpreter_call_code.done",
    "response.image_generation_call.in_progress", "response.image_generation_call.generating",
    "response.image_generation_call.partial_image", "response.image_generation_call.completed",
    "response.mcp_call_arguments.delta", "response.mcp_call_arguments.done", "response.mcp_call.in_progress",
    "response.mcp_call.completed", "response.mcp_call.failed", "response.mcp_list_tools.in_progress",
    "response.mcp_list_tools.completed", "response.mcp_list_tools.failed",
)
# an event's name line, as a line of the block (its newline kept) -> the start of its data line
_HEADS = {b"event: %s\n" % name.encode(): b'data: {"type":"%s",' % name.encode() for name in _OPENAI_EVENTS}
_DELTA_LINES = frozenset(line for line in _HEADS if line.endswith(b".delta\n"))
# The name lines of the events that carry a response object (OpenAI's only ones), and of those the
# PROGRESS ones: in a read checked by its lines, only these are searched for a `response` key.
_RESPONSE_LINES = frozenset(b"event: %s\n" % name.encode() for name in (*PROGRESS, *TERMINAL))
_PROGRESS_LINES = frozenset(b"event: %s\n" % name.encode() for name in PROGRESS)
_BEFORE_NEWLINE = itemgetter(-2)
_NEWLINE = b"\n"
_SEQUENCE = re.compile(rb'"sequence_number": ?(-?\d+) ?[,}]')
_SEQUENCE_KEY = b'"sequence_number":'
# A key, never text: inside a JSON string every quote is escaped.
_RESPONSE_KEY = b'"response":'
_RESPONSE_EVENT = (b'{"type":"response.', b'{"type": "response.')  # an event's payload that is no error
_DELTA = b".delta\ndata: "  # the end of a delta event's name line (one-line events only)
# Forwarded blocks kept for their last sequence number, read only when asked for (a failure numbers
# its events after it): past this many, or this many bytes, the newest of them is read and they are
# let go.
_UNREAD = 16
_UNREAD_BYTES = 1 << 16

Edit = Callable[[Body, int], Body | None]


def typed_deltas(block: bytes, lines_tried: bool = False) -> int | None:
    """How many delta events `block` holds when it is nothing but events as OpenAI frames them
    (see _TYPED_RUN); else None. `lines_tried`: when lines_first(block), _lines(block) gave None."""
    size = len(block)
    if size <= _LONG_LINE:  # (every line in it is short: one match, as a token's read usually is)
        return None if _TYPED_RUN.fullmatch(block) is None else block.count(_DELTA)
    deltas = at = 0
    while at < size:
        name_end = block.find(b"\n", at)
        end = block.find(b"\n", name_end + 1)  # the end of the data line
        if end - name_end <= _LONG_LINE:
            if not lines_tried:  # (once: the events from here on, read by their lines)
                lines_tried = True
                rest = _openai_deltas(block[at:] if at else block)
                if rest is not None:
                    return deltas + rest
            run = _TYPED_RUN.match(block, at)
            if run is not None:
                deltas += block.count(_DELTA, at, run.end())
                at = run.end()
                continue
        head = _TYPED_HEAD.match(block, at)
        if head is None or end <= head.end() or block[end - 1] != _CLOSE or block[end + 1:end + 2] != b"\n":
            return None
        deltas += block.endswith(b".delta", at, head.end(1))
        at = end + 2
    return deltas


def _openai_deltas(block: bytes) -> int | None:
    """typed_deltas' answer for a block of events named as OpenAI names them (_lines)."""
    lines = _lines(block)
    return None if lines is None else sum(map(_DELTA_LINES.__contains__, lines[::3]))


def lines_first(block: bytes) -> bool:
    """Whether typed_deltas reads `block` by its lines first (_lines): longer than one short read,
    its first event's data line short. (A block whose first data line is long, an agent's response
    event read alone, is checked the head's way: by its lines it costs more.)"""
    if len(block) <= _LONG_LINE:
        return False
    name_end = block.find(b"\n")
    return block.find(b"\n", name_end + 1) - name_end <= _LONG_LINE


def _lines(block: bytes) -> list[bytes] | None:
    """The lines of a block of events named as OpenAI names them (_HEADS), each of a name line, a
    data line starting with its head and ending `}`, and a blank line; None for any other block
    (then it may still be framed the usual way: the regex reads it)."""
    lines = list(io.BytesIO(block))  # (each ends with its newline, but a last line without one)
    events = len(lines) // 3
    # (every blank line a newline: a line of one byte is the cached b"\n" object, told by identity)
    if len(lines) != 3 * events or lines[2::3].count(_NEWLINE) != events:
        return None
    names = lines[::3]
    try:
        heads = list(map(_HEADS.__getitem__, names))
    except KeyError:
        return None
    data = lines[1::3]
    if not all(map(bytes.startswith, data, heads)) or set(map(_BEFORE_NEWLINE, data)) != {_CLOSE}:
        return None
    return lines


class Relay(Protocol):
    """What the gateway does to a native stream while `frames()` forwards it."""

    edits_progress: bool  # whether `edit` may change a PROGRESS event (they are parsed only then)

    def edit(self, event: Body, deltas: int) -> Body | None:
        """An event carrying a `response` object (`deltas`: the delta events before it): the
        event to send instead, or None to send it as the upstream did. The event dict may be
        changed in place: it is the stream's snapshot."""

    @property
    def held(self) -> bool:
        """Whether `edit` changed a terminal event whose frames wait for `release()` to go out."""

    async def release(self) -> None:
        """What must happen before the frames holding an edited terminal event go out (the
        turn's items added to its conversation); an exception ends the stream there."""

    def failed(self, failure: UpstreamFailure) -> bytes:
        """The frames that end the client's stream when the upstream's breaks off."""

    def ended(self) -> None:
        """The stream was read to its end or to its failure (not called when it is closed early)."""


class ResponsesEventStream(BlockStream):
    """An `error` event as the very first event is raised as UpstreamFailure (the gateway may
    still try another deployment); later ones are passed on to the client as they are."""

    _DONE_ENDS = False
    # What every stream starts with, on the class (see UpstreamChunkStream): an instance's own
    # value is set when it changes.
    final: Body | None = None
    responses_usage: ResponsesUsage | None = None
    deltas = 0  # delta events frames() handed out
    _sequence = -1  # the last sequence number parsed, or read off the bytes forwarded before `_unread`
    # blocks forwarded since (newest last), read for the last sequence number only when it is asked for
    _unread: tuple[bytes, ...] = ()
    _unread_bytes = 0
    _snapshot: Body | None = None
    # the JSON of the newest two snapshots not parsed yet (newest last), parsed when read: views of
    # the blocks read (an agent's echo its instructions and tools, kB each, not copied)
    _snapshot_data: tuple[memoryview, ...] = ()
    _primed: Body | None = None  # the first event, parsed by prime(), until frames() meets it

    @property
    def usage(self) -> TokenUsage | None:
        """The terminal event's usage, as every stream gives it (made when read: the gateway
        bills a Responses stream from `responses_usage`)."""
        usage = self.responses_usage
        return None if usage is None else TokenUsage(usage.input_tokens, usage.output_tokens)

    @property
    def snapshot(self) -> Body | None:
        """The newest response object the stream carried (what a failure reports as failed), or
        of the newest two not parsed yet the newest that parses."""
        for data in reversed(self._snapshot_data):
            try:
                response = event_object(self._target, data).get("response")
            except UpstreamFailure:
                continue
            if isinstance(response, dict):
                self._snapshot = response
                break
        self._snapshot_data = ()
        return self._snapshot

    @property
    def last_sequence(self) -> int:
        """The last sequence number of the upstream's events handed out (-1: none)."""
        for block in reversed(self._unread):
            number = _block_sequence(block)
            if number is not None:
                self._sequence = number
                break
        self._unread, self._unread_bytes = (), 0
        return self._sequence

    def _parse_first(self, data: bytes) -> Body | None:
        if data.startswith(_RESPONSE_EVENT):  # no error: an agent's is tens of kB, read when needed
            return None
        self._primed = self._event(data, True)
        return self._primed

    def _parse(self, data: bytes) -> Body:
        return self._event(data, False)

    def frames(self, relay: Relay, counts: StreamCounts) -> AsyncGenerator[bytes, None]:
        """The stream as SSE frames for the client, one piece per upstream read, the upstream's
        own bytes wherever `relay.edit` leaves an event as it came; a failure ends it with
        `relay.failed`'s frames. `counts` notes the delta events and the first one's time as
        they go by."""
        if self._frame_gen is None:
            self._frame_gen = self._iterate_frames(relay, counts)
        return self._frame_gen

    async def _iterate_frames(self, relay: Relay, counts: StreamCounts) -> AsyncGenerator[bytes, None]:
        # One generator from the upstream's reads to the client's writes (the counting in it, not
        # in a layer of its own: a layer costs every read a resumption, and every stream its
        # creation, the event loop's tracking of it and its closing).
        self._head.clear()  # the primed event's bytes are still in what was read: sent from there
        failure: UpstreamFailure | None = None
        try:
            while True:
                # the frames of the whole events read so far (in line: a call and a tuple a read)
                out, deltas = b"", 0
                if self._decoder is not None:
                    payloads, self._rest = self._rest, []
                    self._primed = None
                    out, deltas, failure = self._parsed_frames(payloads, relay.edit)
                elif block := self._block():
                    fast = self._forwarded(block, relay)
                    self._primed = None  # only the first block starts with it
                    if fast is None:  # event by event
                        out, deltas, failure = self._parsed_frames(decoded(block, self._ended), relay.edit)
                    else:
                        out, deltas = fast
                if out:
                    if deltas:
                        if not counts.content_chunks:
                            counts.first_token_at = time.perf_counter()
                        counts.content_chunks += deltas
                    if relay.held:  # (what it raises ends the stream as it is: no `response.failed`)
                        await relay.release()
                    yield out
                if failure is not None:
                    break
                if self._ended:
                    if self.final is None:
                        failure = invalid_response(self._target, _UNFINISHED)
                        break
                    self._finished = True
                    break
                try:  # (BlockStream._read, in line: a coroutine of its own costs every read its call)
                    raw = await self._resp.read_chunk()
                except TRANSPORT_ERRORS as exc:  # the connection failed
                    failure = transport_failure(self._target, exc)
                    break
                self._ended = not raw
                self._take(raw)
        finally:
            self._release()
        if failure is not None:
            yield relay.failed(failure)
        relay.ended()

    def _end_without_done(self) -> None:
        if self.final is None:
            raise invalid_response(self._target, _UNFINISHED)

    def _forwarded(self, block: bytes, relay: Relay) -> tuple[bytes, int] | None:
        """`block` as the client gets it when every event in it is framed the usual way, else
        None (the event-by-event path). Events carrying a `response` are parsed (PROGRESS ones
        only when the relay edits them), and re-encoded only when `relay.edit` changes them; in a
        read checked by its lines, of those only the events whose names carry one (OpenAI's)."""
        if len(block) <= _LONG_LINE:  # (a read of one event or a few: typed_deltas' one match, in line)
            deltas = None if _TYPED_RUN.fullmatch(block) is None else block.count(_DELTA)
        elif not relay.edits_progress and lines_first(block):
            lines = _lines(block)
            if lines is not None:  # (OpenAI's events by name: only those that carry a response are searched)
                total = sum(map(_DELTA_LINES.__contains__, lines[::3]))
                edited = self._edited_lines(block, lines, total, relay)
                return None if edited is None else self._passed(block, edited, total)
            deltas = typed_deltas(block, True)
        else:
            deltas = typed_deltas(block)
        if deltas is None:
            return None
        sent = block
        key = block.find(_RESPONSE_KEY)  # (a find, not `in`: see sse_blocks._CR)
        if key >= 0:
            edited = self._edited(block, key, deltas, relay)
            if edited is None:
                return None
            sent = edited
        return self._passed(block, sent, deltas)

    def _passed(self, block: bytes, sent: bytes, deltas: int) -> tuple[bytes, int]:
        """`block` forwarded as `sent`: its last sequence number is read when asked for (the
        upstream's bytes are newer than any event parsed), its delta events counted."""
        self._unread += (block,)
        self._unread_bytes += len(block)
        if self._unread_bytes > _UNREAD_BYTES or len(self._unread) > _UNREAD:
            self.last_sequence  # noqa: B018 (read: the bytes kept are let go)
        self.deltas += deltas
        return sent, deltas

    def _edited(self, block: bytes, at: int, total: int, relay: Relay) -> bytes | None:
        """`block` (typed_deltas: one-line events) with its events that carry a `response` parsed
        and, where `relay.edit` changes one, re-encoded; None when one does not parse (the
        event-by-event path ends the stream there). A PROGRESS event the relay does not edit is
        kept unparsed (`snapshot`). `at`: where the first `response` key is; `total`: the delta
        events in `block`."""
        parts: list[bytes] = []
        start = counted = 0  # sent up to start; delta events counted up to counted
        deltas = self.deltas
        view = memoryview(block)  # (an event's JSON parsed or kept as a view of the block, not a copy)
        while at >= 0:
            # (one-line events: the newlines around `at` end its name line and the event before it,
            # found with memchr, where a search for two newlines walks every byte)
            line = block.rfind(b"\n", 0, at)  # `event: NAME` (no quote in it), then `data: `
            begin = block.rfind(b"\n", 0, line) + 1  # 0: the block's first event
            end = block.index(b"\n", at) + 2  # the end of its data line, then a blank line
            # the delta events before this one, counted up to it and never over its data line (a
            # line of JSON holds no newline, so no delta event's name): an agent's response events
            # echo tens of kB of instructions and tools, counted over again before. The last
            # event of a block read whole (a stream's end) is counted from the block's end.
            if begin - counted <= len(block) - begin:
                deltas += block.count(_DELTA, counted, begin)
            else:
                deltas = self.deltas + total - block.count(_DELTA, begin)
            counted = end
            if begin == 0 and self._primed is not None:  # the event prime() read: parsed already
                event = self._primed
            else:
                if block[begin + 7:line] in _PROGRESS_NAMES and not relay.edits_progress:
                    # (its own name is no delta event's)
                    kept, data = self._snapshot_data, view[line + 7:end - 2]
                    self._snapshot_data = (kept[-1], data) if kept else (data,)
                    at = block.find(_RESPONSE_KEY, end)
                    continue
                try:
                    event = self._event(view[line + 7:end - 2], False)
                except UpstreamFailure:
                    return None
            if isinstance(event.get("response"), dict):
                sent = relay.edit(event, deltas)
                if sent is not None:
                    parts += (block[start:begin], encode_event(str(sent.get("type")), sent))
                    start = end
            deltas += block.count(_DELTA, begin, line + 7)  # (its own name)
            at = block.find(_RESPONSE_KEY, end)
        if not parts:
            return block
        parts.append(block[start:])
        return b"".join(parts)

    def _edited_lines(self, block: bytes, lines: list[bytes], total: int, relay: Relay) -> bytes | None:
        """_edited's answer for a block of OpenAI's own events read by their lines (_lines, the
        relay not editing PROGRESS events): only the events named as those that carry a response
        (_RESPONSE_LINES) are searched for its key, in their own data line, and read as _edited
        reads them; the rest (a stream's deltas and items, most of its bytes) are not searched.
        `total`: the delta events in `block`."""
        names = lines[::3]
        parts: list[bytes] | None = None
        for at in compress(count(), map(_RESPONSE_LINES.__contains__, names)):
            data = lines[3 * at + 1]
            if data.find(_RESPONSE_KEY) < 0:
                continue
            if names[at] in _PROGRESS_LINES:  # kept unparsed (`snapshot`), as _edited keeps it
                kept, view = self._snapshot_data, memoryview(data)[6:-1]
                self._snapshot_data = (kept[-1], view) if kept else (view,)
                continue
            try:
                event = self._event(memoryview(data)[6:-1], False)
            except UpstreamFailure:
                return None
            if isinstance(event.get("response"), dict):
                # (the delta events before it, counted from the nearer end: a terminal event is last)
                before = sum(map(_DELTA_LINES.__contains__, names[:at])) if 2 * at <= len(names) \
                    else total - sum(map(_DELTA_LINES.__contains__, names[at:]))
                sent = relay.edit(event, self.deltas + before)
                if sent is not None:
                    if parts is None:
                        parts = lines.copy()
                    parts[3 * at:3 * at + 3] = (encode_event(str(sent.get("type")), sent), b"", b"")
        return block if parts is None else b"".join(parts)

    def _parsed_frames(self, payloads: list[bytes], edit: Edit) -> tuple[bytes, int, UpstreamFailure | None]:
        """Event by event, as the route encodes parsed events; a failure comes back with the
        frames before it."""
        out: list[bytes] = []
        deltas = 0
        for data in payloads:
            if data == DONE:
                continue
            try:
                event = self._event(data, False)
            except UpstreamFailure as failure:
                return b"".join(out), deltas, failure
            if isinstance(event.get("response"), dict):
                event = edit(event, self.deltas) or event
            if str(event.get("type", "")).endswith(".delta"):
                deltas += 1
                self.deltas += 1
            out.append(encode_event(str(event.get("type")), event))
        return b"".join(out), deltas, None

    def _event(self, data: bytes | memoryview, first: bool) -> Body:
        event = event_object(self._target, data)
        kind = event.get("type")
        if first and kind == "error":
            message = event.get("message") or (event.get("error") or {}).get("message") or "upstream error"
            raise UpstreamFailure(str(message), status=None, retryable=True, body=event)
        if isinstance(event.get("sequence_number"), int):
            self._sequence = event["sequence_number"]
            self._unread, self._unread_bytes = (), 0  # (older than this event)
        response = event.get("response")
        if isinstance(response, dict):
            self._snapshot = response
            self._snapshot_data = ()
            if kind in TERMINAL:
                self.final = response
                usage = usage_from_responses(response.get("usage"))
                if usage is not None:
                    self.responses_usage = usage
        return event


def _block_sequence(block: bytes) -> int | None:
    """The last sequence number in `block` (events as typed_deltas reads them), None if it holds
    none: the last `sequence_number` key's integer, or where that is written some other way (a
    float, a string) the last integer one of its events has, as parsing them would give it."""
    at = block.rfind(_SEQUENCE_KEY)
    if at < 0:
        return None
    number = _SEQUENCE.match(block, at)
    if number is not None:
        return int(number[1])
    for data in reversed(decoded(block, True)):
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(event, dict) and isinstance(event.get("sequence_number"), int):
            return int(event["sequence_number"])
    return None
