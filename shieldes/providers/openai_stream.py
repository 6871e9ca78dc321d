"""An OpenAI-style SSE stream (chat completions, completions), read two ways: parsed chunk dicts,
for a translation to another API; or frames made of the upstream's own bytes, for an
OpenAI-speaking client (no parse, no re-encoding of the chunks in between).

Nearly every upstream sends `data: {...}` events of one line each, every one ended by a blank
line. The frames path checks that a read is made of such events with a few scans of its bytes and
then forwards them as they are, parsing only the usage chunk. Anything else (carriage returns,
`event:` fields, comments, multi-line data, an error, arguments sent as objects) goes event by
event: parsed, checked and re-encoded, exactly as the parsed path would give it."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from itertools import islice

import orjson

from shieldes.providers.base import Body, Target, UpstreamFailure
from shieldes.providers.http import TRANSPORT_ERRORS, event_object, parse_usage, transport_failure
from shieldes.providers.sse import SSEDecoder
from shieldes.providers.streams import UpstreamChunkStream
from shieldes.providers.tool_args import OBJECT_ARGUMENTS, string_answer_arguments
from shieldes.providers.transport import UpstreamResponse

DONE = b"[DONE]"
DONE_EVENT = b"data: [DONE]\n\n"
_NULL_USAGE = b',"usage":null'


def one_line_objects(block: bytes) -> int:
    """How many events `block` holds when it is nothing but `data: {...}` events of one line each,
    every one ended by a blank line (no carriage return in it: the caller checked); else 0."""
    if block[:7] != b"data: {" or block[-3:] != b"}\n\n":
        return 0
    n = block.count(b"}\n\ndata: {") + 1
    # Every newline belongs to a separator counted above (or the last one): one line per event.
    return n if block.count(b"\n") == 2 * n else 0


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
    start = 0
    while start < len(data):
        end = data.find(b"\n\n", start)
        if end < 0:
            if not at_end:
                return None, 0
            end = stop = len(data)
        else:
            stop = end + 2
        event = data[start:end]
        if event[:6] == b"data: " and b"\n" not in event:
            return event[6:], stop
        found = decoded(event + b"\n\n", False)  # a comment, an `event:` field, several lines...
        if found:
            return found[0], stop
        start = stop
    return None, 0


def joined_events(payloads: list[bytes]) -> bytes:
    return b"data: " + b"\n\ndata: ".join(payloads) + b"\n\n" if payloads else b""


class OpenAIChunkStream(UpstreamChunkStream):
    """Chunks of one upstream SSE response, ending at `data: [DONE]` (or a clean end of body).

    Iteration gives parsed chunk dicts; `frames()` gives SSE frames built from the upstream's
    own bytes. Both account usage and raise mid-stream errors the same way; use one of them."""

    def __init__(self, resp: UpstreamResponse, target: Target) -> None:
        super().__init__(resp, target)
        # Bytes read and not handed out yet, starting at an event boundary. Once the upstream
        # sends a carriage return, a decoder reads the rest of the stream and `_rest` holds the
        # payloads it decoded that are not handed out yet.
        self._carry = b""
        self._decoder: SSEDecoder | None = None
        self._rest: list[bytes] = []
        self._primed_end = 0  # where the primed chunk's event ends in _carry (or 1: _rest[0] is it)
        self._ended = False  # the body ended (read_chunk gave b"")
        self._frame_gen: AsyncGenerator[tuple[bytes, int], None] | None = None

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
        if self._decoder is None and b"\r" in raw:
            self._decoder = SSEDecoder()
            raw, self._carry = self._carry + raw, b""
        if self._decoder is None:
            self._carry += raw
        else:
            self._rest += self._decode(raw)

    async def prime(self) -> None:
        """Read up to the first event with data and parse it: an error the upstream sends first
        is raised while another deployment can still be tried. What was read stays for the
        stream's reader (frames() forwards those bytes)."""
        payload: bytes | None = None
        while payload is None and not self._ended:
            self._take(await self._read())
            if self._decoder is None:
                payload, self._primed_end = first_payload(self._carry, self._ended)
            elif self._rest:
                payload, self._primed_end = self._rest[0], 1
        if payload is not None and payload != DONE:
            self.first = self._chunk(payload)
            self._head.append(self.first)
        else:
            self._primed_end = 0

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
                        self._finished = True
                        return
                    yield self._chunk(data)
                if self._ended:
                    self._finished = True
                    return
                batch = self._decode(await self._read())
        finally:
            self._release()

    def frames(self, strip_usage: bool) -> AsyncGenerator[tuple[bytes, int], None]:
        """The stream as OpenAI SSE frames for an OpenAI-speaking client, one (bytes, number of
        content chunks) per upstream read, forwarding the upstream's own bytes. With
        `strip_usage` the frames are those relay.openai_frames would send a client that did not
        ask for usage (no usage chunk, no `usage` fields)."""
        if self._frame_gen is None:
            self._frame_gen = self._iterate_frames(strip_usage)
        return self._frame_gen

    async def _iterate_frames(self, strip_usage: bool) -> AsyncGenerator[tuple[bytes, int], None]:
        self._head.clear()  # the primed chunk's bytes are still in what was read: sent from there
        try:
            while True:
                out, content, failure, done = self._frames_of_reads(strip_usage)
                if out:
                    yield out, content
                if failure is not None:
                    raise failure
                if done or self._ended:
                    self._finished = True
                    return
                self._take(await self._read())
        finally:
            self._release()

    def _frames_of_reads(self, strip: bool) -> tuple[bytes, int, UpstreamFailure | None, bool]:
        """Frames of the whole events read so far: (bytes, content chunks, the failure that ends
        the stream, whether [DONE] came)."""
        if self._decoder is not None:
            payloads, self._rest = self._rest, []
            done = DONE in payloads
            if done:
                payloads = payloads[:payloads.index(DONE)]
            block = joined_events(payloads)
        else:
            data = self._carry
            cut = len(data) if self._ended else data.rfind(b"\n\n") + 2
            if cut < 2:
                return b"", 0, None, False
            block, self._carry = data[:cut], data[cut:]
            done = False
            if block.endswith(DONE_EVENT) and (len(block) == len(DONE_EVENT) or block[-16:-14] == b"\n\n"):
                block, done = block[:-len(DONE_EVENT)], True
            payloads = []
        n = one_line_objects(block)
        if n and (self._decoder is None or n == len(payloads)):  # (decoded data may hold newlines)
            fast = self._forwarded(block, n, strip)
            if fast is not None:
                return fast[0], fast[1], None, done
        if self._decoder is None:
            payloads = decoded(block, self._ended)
            if DONE in payloads:
                payloads, done = payloads[:payloads.index(DONE)], True
        out, content, failure = self._parsed_frames(payloads, strip)
        return out, content, failure, done

    def _forwarded(self, block: bytes, n: int, strip: bool) -> tuple[bytes, int] | None:
        """`block` (n one-line `data: {...}` events) as the client gets it, or None when it needs
        the event-by-event path: an error, arguments sent as objects, a `usage` spelled another
        way, more than one usage object. The usage chunk alone is parsed."""
        if b'"error"' in block or (b'"arguments"' in block and OBJECT_ARGUMENTS.search(block)):
            return None
        parts = block.split(b'"usage"')
        if len(parts) > 1:
            nulls = objects = 0
            for part in islice(parts, 1, None):
                if part[:5] == b":null":
                    nulls += 1
                elif part[:2] == b":{":
                    objects += 1
                else:
                    return None
            if objects > 1:
                return None
            if objects:
                at = block.rfind(b'"usage":{')
                start = block.rfind(b"\n\ndata: {", 0, at) + 2  # 1: the first event
                start = 0 if start == 1 else start
                end = block.find(b"\n\n", at)
                payload = block[start + 6:end]
                kept = self._usage_frame(payload, strip)
                if kept != [payload]:
                    block = block[:start] + joined_events(kept) + block[end + 2:]
                    n += len(kept) - 1
            if strip and nulls:
                cut = block.replace(_NULL_USAGE, b"")
                if len(block) - len(cut) != len(_NULL_USAGE) * nulls:  # a null not after a comma
                    return None
                block = cut
        return block, n - block.count(b'"choices":[]')

    def _usage_frame(self, data: bytes, strip_usage: bool) -> list[bytes]:
        """A payload holding usage, read (the stream's usage is kept); what the client gets of it."""
        chunk = self._chunk(data)
        if not strip_usage:
            return [data]
        if not chunk.get("choices"):
            return []
        chunk.pop("usage", None)
        return [orjson.dumps(chunk)]

    def _parsed_frames(self, batch: list[bytes], strip_usage: bool) -> tuple[bytes, int, UpstreamFailure | None]:
        """Frame by frame, as relay.openai_frames does; a failure comes back with the frames before it."""
        out: list[bytes] = []
        content = 0
        for data in batch:
            try:
                chunk = self._chunk(data)
            except UpstreamFailure as failure:
                return b"".join(out), content, failure
            if chunk.get("choices"):
                content += 1
                if strip_usage:
                    chunk.pop("usage", None)
            elif strip_usage and "usage" in chunk:
                continue
            out.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
        return b"".join(out), content, None

    async def aclose(self) -> None:
        if self._frame_gen is not None:
            await self._frame_gen.aclose()
        await super().aclose()

    def _chunk(self, data: bytes) -> Body:
        chunk = event_object(self._target, data)
        if "error" in chunk and not chunk.get("choices"):
            err = chunk["error"]
            message = err.get("message") if isinstance(err, dict) else str(err)
            raise UpstreamFailure(
                str(message or "upstream error mid-stream"), status=None, retryable=True, body=chunk
            )
        usage = chunk.get("usage")
        if usage:
            self._usage = parse_usage(usage) or self._usage
        string_answer_arguments(chunk)  # arguments sent as an object (Ollama) become JSON text
        return chunk
