"""An OpenAI-style SSE stream (chat completions, completions), read two ways: parsed chunk dicts,
for a translation to another API; or frames made of the upstream's own bytes, for an
OpenAI-speaking client (no parse, no re-encoding of the chunks in between).

Nearly every upstream sends `data: {...}` events of one line each, every one ended by a blank
line. The frames path checks that a read is made of such events with a few scans of its bytes and
then forwards them as they are, parsing only the usage chunk. Anything else (carriage returns,
`event:` fields, comments, multi-line data, an error, arguments sent as objects) goes event by
event: parsed, checked and re-encoded, exactly as the parsed path would give it."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncGenerator, Callable
from itertools import islice

import orjson

from shieldes.providers.base import Body, StreamCounts, UpstreamFailure
from shieldes.providers.http import TRANSPORT_ERRORS, event_object, invalid_response, parse_usage, transport_failure
from shieldes.providers.sse_blocks import DONE, BlockStream, decoded, joined_events, one_line_objects
from shieldes.providers.tool_args import OBJECT_ARGUMENTS, string_answer_arguments

DONE_EVENT = b"data: [DONE]\n\n"
_CHUNK_START = b'{"id":"'  # how OpenAI's chunks (and nearly every compatible server's) begin
_FINISH = re.compile(rb'"finish_reason":\s*"([^"\\]{1,64})"')
_FINISH_VALUE = re.compile(rb'\s*"([^"\\]{1,64})"')  # what follows `"finish_reason":` when it is a string
_FINISH_KEY = b'"finish_reason":'
_USAGE = b'"usage"'
_NULL_USAGE = b',"usage":null'
_USAGE_NULL = b'"usage":null'
_USAGE_OBJECT = b'"usage":{'
_ERROR = b'"error"'
_ARGUMENTS = b'"arguments"'
_EMPTY_CHOICES = b'"choices":[]'
_EVENT_HEAD = b"data: {"


# A body that ended cleanly before any choice finished and without [DONE]: cut short (a proxy's
# timeout, a server that died after flushing): an answer that would look complete but is not
_UNFINISHED = "the event stream ended before any finish_reason or [DONE]"
# A reason's key followed by a string, as a finish chunk has it (compact or json.dumps's spacing);
# other `..._reason` keys (vLLM's stop_reason) only cost the finish chunk's parse
_REASON_STRING = b'_reason":"'
_REASON_STRING_SPACED = b'_reason": "'
_NULL_REASON_TAIL = b'"finish_reason":null}]}\n\n'  # how an OpenAI token's read ends


class OpenAIChunkStream(BlockStream):
    """Chunks of one upstream SSE response, ending at `data: [DONE]` (or a clean end of body).

    Iteration gives parsed chunk dicts; `frames()` gives SSE frames built from the upstream's
    own bytes. Both account usage and raise mid-stream errors the same way; use one of them."""

    _first_data: bytes | None = None  # the first chunk's payload, primed by its bytes and not parsed yet
    _saw_finish = False  # a parsed chunk carried a finish_reason

    def _parse_first(self, data: bytes) -> Body | None:
        if data[:7] == _CHUNK_START and data[-1:] == b"}" and data.find(_ERROR) < 0:
            self._first_data = data  # its bytes show it is no error: read with the rest, parsed if asked for
            return None
        return self._parse(data)

    @property
    def first(self) -> Body | None:
        if self._first is None and self._first_data is not None:
            with contextlib.suppress(UpstreamFailure):  # (then the closing chunk is made up)
                self._first = event_object(self._target, self._first_data)
            self._first_data = None
        return self._first

    def frames(self, counts: StreamCounts, strip_usage: bool,
               closing: Callable[[], bytes] | None = None) -> AsyncGenerator[bytes, None]:
        """The stream as OpenAI SSE frames for an OpenAI-speaking client, one piece per upstream
        read, forwarding the upstream's own bytes; then `closing()` (see relay.usage_frame) and
        [DONE]. With `strip_usage` the frames are those relay.openai_frames would send a client
        that did not ask for usage (no usage chunk, no `usage` fields). `counts` notes the content
        chunks, the first one's time and, when `counts.wants_reasons`, the finish reasons as they go by."""
        if self._frame_gen is None:
            self._frame_gen = self._iterate_frames(counts, strip_usage, closing)
        return self._frame_gen

    async def _iterate_frames(self, counts: StreamCounts, strip: bool,
                              closing: Callable[[], bytes] | None) -> AsyncGenerator[bytes, None]:
        # One generator from the upstream's reads to the client's writes (the counting in it, not
        # in a layer of its own: a layer costs every read a resumption, and every stream its
        # creation, the event loop's tracking of it and its closing).
        self._head.clear()  # the primed chunk's bytes are still in what was read: sent from there
        reasons = counts.wants_reasons
        finished = False  # a choice's finish_reason came (a stream may end without [DONE] after one)
        try:
            out, content, failure, done = self._frames_of_reads(strip)
            while True:
                if out:
                    if content:
                        if not counts.content_chunks:
                            counts.first_token_at = time.perf_counter()
                        counts.content_chunks += content
                    # (most reads hold one event, its reason null at its tail: one find; another key
                    # needs 16 bytes past the null, else a find for it; then one split)
                    at = out.find(_FINISH_KEY) if reasons else -1
                    if at >= 0 and (out[at + 16:at + 20] != b"null" or (
                            at + 36 <= len(out) and out.find(_FINISH_KEY, at + 20) >= 0)):
                        counts.finish_reasons += finish_reasons(out)
                    # (a token's read ends in a null reason, as OpenAI's chunks do: one endswith, 40 ns,
                    # where the two substring tests cost 340 ns a read, 1.5% of a stream's instructions)
                    if not finished and not out.endswith(_NULL_REASON_TAIL) and (
                            _REASON_STRING in out or _REASON_STRING_SPACED in out):
                        finished = any(finish_reasons(out))
                    yield out
                if failure is not None:
                    raise failure
                if done or self._ended:
                    if not done and not finished:
                        raise invalid_response(self._target, _UNFINISHED)
                    self._finished = True
                    break
                try:  # (BlockStream._read, in line: a coroutine of its own costs every read its call)
                    raw = await self._resp.read_chunk()
                except TRANSPORT_ERRORS as exc:
                    raise transport_failure(self._target, exc) from exc
                self._ended = not raw
                # One whole `data: {...}` event, as nearly every read is (its only newline the blank
                # line's, no carriage return, nothing carried over): forwarded after a find for each
                # key that would need more, with no call of the general path's (each costs a read
                # its frame, the scans there its argument parsing)
                if raw[:7] == _EVENT_HEAD and raw.find(b"\n") == len(raw) - 2 and raw[-1] == 10 and raw[-3] == 125 \
                        and 13 not in raw and not self._carry and self._decoder is None:
                    event = raw.replace(_NULL_USAGE, b"", 1) if strip else raw
                    # (partition where only absence matters: it takes one argument, parsed by no format
                    # string as find's three are, and copies nothing when absent: 15k a stream)
                    if not event.partition(_ERROR)[1] and not event.partition(_ARGUMENTS)[1]:
                        at = event.find(_USAGE)
                        # (a null usage left is fine when the client asked for usage: usage_keys')
                        if at < 0 or (not strip and event[at + 7:at + 12] == b":null"
                                      and event.find(_USAGE, at + 12) < 0):
                            out, content = event, 1 - event.count(_EMPTY_CHOICES)
                            continue
                self._take(raw)
                out, content, failure, done = self._frames_of_reads(strip)
        finally:
            self._release()
        yield DONE_EVENT if closing is None else closing() + DONE_EVENT

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
            block = self._block()
            if not block:
                return b"", 0, None, False
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
        # (finds, not `in`: bytes' `in` tries its operand as an int first, and formats the TypeError)
        if block.find(_ERROR) >= 0 or (block.find(_ARGUMENTS) >= 0 and OBJECT_ARGUMENTS.search(block)):
            return None
        kept = usage_keys(block, strip, n == 1)
        if kept is None:
            return None
        block, objects = kept
        if objects > 1:
            return None
        if objects:
            # (every event one line, then a blank line: its ends are the newlines around it,
            # found with memchr, where a search for two newlines walks every byte)
            at = block.rfind(b'"usage":{')
            start = block.rfind(b"\n", 0, at) + 1  # 0: the first event
            end = block.find(b"\n", at)
            payload = block[start + 6:end]
            frame = self._usage_frame(payload, strip)
            if frame != [payload]:
                block = block[:start] + joined_events(frame) + block[end + 2:]
                n += len(frame) - 1
        return block, n - block.count(_EMPTY_CHOICES)

    def _usage_frame(self, data: bytes, strip_usage: bool) -> list[bytes]:
        """A payload holding usage, read (the stream's usage is kept); what the client gets of it."""
        chunk = self._parse(data)
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
                chunk = self._parse(data)
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

    def _parse(self, data: bytes) -> Body:
        chunk = event_object(self._target, data)
        if "error" in chunk and not chunk.get("choices"):
            err = chunk["error"]
            message = err.get("message") if isinstance(err, dict) else str(err)
            raise UpstreamFailure(
                str(message or "upstream error mid-stream"), status=None, retryable=True, body=chunk
            )
        usage = chunk.get("usage")
        if usage:
            self._usage = parse_usage(usage, chunk.get("service_tier")) or self._usage
        choices = chunk.get("choices")
        if choices:  # (the usage chunk has none: no deltas to look through)
            string_answer_arguments(chunk)  # arguments sent as an object (Ollama) become JSON text
            if not self._saw_finish and isinstance(choices, list):
                self._saw_finish = any(isinstance(c, dict) and c.get("finish_reason") for c in choices)
        return chunk

    def _end_without_done(self) -> None:
        if not self._saw_finish:
            raise invalid_response(self._target, _UNFINISHED)


def finish_reasons(block: bytes) -> list[str]:
    """`_FINISH.findall(block)`, decoded: each string `finish_reason` of `block`'s chunks, in order.
    One split at the key and a look at what follows each, where the regex's search walks every byte
    (and two counts told whether it was needed); a key followed by neither a null nor a whole
    string (no JSON does that) is left to the regex."""
    out = []
    for part in islice(block.split(_FINISH_KEY), 1, None):
        if part[:4] != b"null":
            m = _FINISH_VALUE.match(part)
            if m is None:
                return [m.decode("utf-8", "replace") for m in _FINISH.findall(block)]
            out.append(m[1].decode("utf-8", "replace"))
    return out


def usage_keys(block: bytes, strip: bool, one_event: bool) -> tuple[bytes, int] | None:
    """`block` (one-line `data: {...}` events) with each `,"usage":null` taken out when `strip`,
    and how many usage objects it holds; None for a `usage` spelled another way, or a null one not
    after a comma when stripping."""
    if one_event and strip:
        # One event, as most reads are: its null taken out by a replace that stops at it, then
        # one walk for another key (where a split over it, a join and a split walked it twice)
        block = block.replace(_NULL_USAGE, b"", 1)
        if block.find(_USAGE) < 0:
            return block, 0
    if not strip and not one_event:
        # Several events, each with its usage null and the last with the object (OpenAI's way):
        # two counts and a find from the end, where a split and a look at each piece took half
        # as much again
        objects = block.count(_USAGE) - block.count(_USAGE_NULL)
        if not objects or (objects == 1 and block.rfind(_USAGE_OBJECT) >= 0):
            return block, objects
    if strip:  # the usage nulls go first (a split and a join: half of a replace)
        pieces = block.split(_NULL_USAGE)
        if len(pieces) > 1:
            block = b"".join(pieces)
    nulls = objects = 0
    for part in islice(block.split(_USAGE), 1, None):
        if part[:5] == b":null":
            nulls += 1
        elif part[:2] == b":{":
            objects += 1
        else:
            return None
    return None if strip and nulls else (block, objects)  # (a null left after the strip was not after a comma)
