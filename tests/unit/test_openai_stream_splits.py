"""An OpenAI-style SSE stream read any way the upstream's bytes may arrive: frames() (the
upstream's own bytes forwarded) and iteration (parsed chunks, as translations read them), with the
body cut into reads anywhere, give the client the same chunks, the same content count, the same
usage and the same failure as iterating the body read in one piece. Bodies mix what real upstreams
send: one-line events, usage nulls in any position, the usage chunk, comments, `event:` fields,
\\r\\n line ends, multi-line data, an error, arguments sent as objects, [DONE] or a bare end."""

from __future__ import annotations

import asyncio
import itertools
import re
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.gateway import relay
from shieldes.providers.base import Target, TokenUsage, UpstreamFailure
from shieldes.providers.openai_stream import OpenAIChunkStream, finish_reasons, usage_keys
from shieldes.providers.sse_blocks import decoded, first_payload, one_line_objects
from shieldes.providers.upstream_connection import TransportError

TARGET = Target("d", "http://upstream.test/v1", "m", None)
CHUNK = b'{"id":"c1","object":"chat.completion.chunk","usage":null,"choices":[{"index":0,"delta":{"content":"%s"}}]}'
PAYLOADS = [
    CHUNK % b"Hello",
    CHUNK % b" wor\\nld [DONE] data: {",
    b'{"usage":null,"id":"c1","choices":[{"index":0,"delta":{"content":"x"}}]}',
    b'{"id": "c1", "usage": null, "choices": [{"index": 0, "delta": {"content": "y"}}]}',
    b'{"id":"c1","choices":[{"index":0,"delta":{"content":"z"}}],"usage":null}',
    b'{"id":"c1","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}',
    b'{"id":"c1","choices":[{"index":0,"delta":{"content":"w"}}],"usage":{"prompt_tokens":5,"completion_tokens":2}}',
    b'{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"a\\":1}"}}]}}]}',
    b'{"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":{"a":1}}}]}}]}',
    b'{"id":"c1","prompt_filter_results":[],"choices":[]}',
    b'{"id":"c1","choices":[{"index":0,"delta":{"content":"v"},"finish_reason":null}]}',
    b'{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}',
    b'{"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}',
    b'{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":null},{"index":1,"delta":{},"finish_reason":"stop"}]}',
]
ERROR = b'{"error":{"message":"overloaded mid-stream","type":"server_error"}}'


class Reads:
    """An upstream answer's body as read_chunk() gives it: these pieces, then b"" for good."""

    content_type = "text/event-stream"

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = list(pieces)
        self.released = self.closed = False

    async def read_chunk(self) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""

    def release(self) -> None:
        self.released = True

    def close(self) -> None:
        self.closed = True


def event(payload: bytes, style: str) -> bytes:
    if style == "crlf":
        return b"data: " + payload + b"\r\n\r\n"
    if style == "comment":
        return b": keep-alive\n\ndata: " + payload + b"\n\n"
    if style == "named":
        return b"event: message\ndata: " + payload + b"\n\n"
    if style == "nospace":
        return b"data:" + payload + b"\n\n"
    return b"data: " + payload + b"\n\n"


@st.composite
def bodies(draw: Any) -> bytes:
    payloads = draw(st.lists(st.sampled_from(PAYLOADS), min_size=0, max_size=8))
    if draw(st.booleans()) and payloads:  # an error somewhere (rarely first, where priming raises it)
        payloads.insert(draw(st.integers(0, len(payloads))), ERROR)
    styles = st.sampled_from(["plain"] * 6 + ["crlf", "comment", "named", "nospace"])
    body = b"".join(event(p, draw(styles)) for p in payloads)
    ending = draw(st.sampled_from(["done", "done", "done+junk", "bare", "unterminated"]))
    if ending == "done":
        body += b"data: [DONE]\n\n"
    elif ending == "done+junk":
        body += b"data: [DONE]\n\ndata: " + CHUNK % b"after" + b"\n\n"
    elif ending == "unterminated" and body.endswith(b"\n\n"):
        body = body[:-1]
    return body


def cuts(body: bytes, points: list[int]) -> list[bytes]:
    at = sorted({p % (len(body) + 1) for p in points})
    edges = [0, *at, len(body)]
    return [body[a:b] for a, b in itertools.pairwise(edges) if b > a]


class Outcome:
    def __init__(self) -> None:
        self.chunks: list[Any] = []
        self.content = 0
        self.usage: TokenUsage | None = None
        self.failure: str | None = None
        self.reasons: list[str] = []  # the finish reasons noted on the tally

    def key(self) -> tuple[Any, ...]:
        return self.chunks, self.content, self.usage, self.failure, self.reasons


async def read_frames(pieces: list[bytes], strip: bool, reasons: bool = True) -> Outcome:
    out = Outcome()
    stream = OpenAIChunkStream(Reads(pieces), TARGET)  # type: ignore[arg-type]
    try:
        await stream.prime()
        tally = relay.Tally()
        tally.wants_reasons = reasons
        frames = b"".join([f async for f in stream.frames(tally, strip)])
        out.content, out.reasons = tally.content_chunks, tally.finish_reasons
    except UpstreamFailure as failure:
        out.failure = failure.message
        frames = b""
    finally:
        await stream.aclose()
    out.chunks = [orjson.loads(f[6:]) for f in frames.split(b"\n\n") if f and f != b"data: [DONE]"]
    out.usage = stream.usage
    return out


async def read_parsed(pieces: list[bytes], strip: bool, reasons: bool = True) -> Outcome:
    out = Outcome()
    stream = OpenAIChunkStream(Reads(pieces), TARGET)  # type: ignore[arg-type]
    tally = relay.Tally()
    tally.wants_reasons = reasons
    frames: list[bytes] = []
    try:
        await stream.prime()
        async for f in relay.openai_frames(stream, tally, not strip):
            frames.append(f)
    except UpstreamFailure as failure:
        out.failure = failure.message
    finally:
        await stream.aclose()
    out.chunks = [orjson.loads(f[6:]) for f in b"".join(frames).split(b"\n\n") if f and f != b"data: [DONE]"]
    out.content, out.reasons = tally.content_chunks, tally.finish_reasons
    out.usage = stream.usage
    return out


@settings(max_examples=400, deadline=None)
@given(body=bodies(), points=st.lists(st.integers(0, 10_000), max_size=6), strip=st.booleans())
def test_any_split_reads_as_one_piece(body: bytes, points: list[int], strip: bool) -> None:
    pieces = cuts(body, points)
    reference = asyncio.run(read_parsed([body], strip))
    frames = asyncio.run(read_frames(pieces, strip))
    parsed = asyncio.run(read_parsed(pieces, strip))
    if reference.failure is not None:  # the chunks before a failure may be cut at a read boundary
        assert frames.failure == parsed.failure == reference.failure
        assert frames.usage == parsed.usage == reference.usage
        return
    assert parsed.key() == reference.key()
    assert frames.key() == reference.key()


@settings(max_examples=300, deadline=None)
@given(body=bodies(), strip=st.booleans())
def test_one_event_a_read_reads_as_one_piece(body: bytes, strip: bool) -> None:
    """Read one event a read, as an upstream sending token by token does (the reads frames() tells
    apart with a few finds and forwards without the general path): the same as the body in one piece."""
    parts = body.split(b"\n\n")
    pieces = [p + b"\n\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    reference = asyncio.run(read_parsed([body], strip))
    # (and two events a read, and a read's first bytes after a partial event)
    for reads in (pieces, [b"".join(pieces[i:i + 2]) for i in range(0, len(pieces), 2)],
                  cuts(body, [len(pieces[0]) - 1, len(pieces[0])] if pieces else [])):
        frames = asyncio.run(read_frames(reads, strip))
        if reference.failure is not None:
            assert frames.failure == reference.failure and frames.usage == reference.usage
        else:
            assert frames.key() == reference.key()


@pytest.mark.parametrize("reads", [
    # a read that begins as a whole event's but continues the event the last read left open
    [b"data: " + CHUNK % b"a" + b"\n\n", b"data: " + CHUNK % b"b" + b"\n", b"data: " + CHUNK % b"c" + b"\n\n"],
    # a carriage return ends a line: two data lines
    [b"data: " + CHUNK % b"a" + b"\n\n", b'data: {"id":"c1",\r"choices":[]}\n\n'],
])
@pytest.mark.parametrize("strip", [False, True])
def test_a_read_like_one_event_that_is_not_reads_as_one_piece(reads: list[bytes], strip: bool) -> None:
    reference = asyncio.run(read_parsed([b"".join(reads)], strip))
    frames = asyncio.run(read_frames(reads, strip))
    assert reference.failure is not None  # (an unreadable event: the chunks before it may be cut at a read)
    assert (frames.failure, frames.usage) == (reference.failure, reference.usage)


def test_the_usual_body_is_forwarded_byte_for_byte() -> None:
    """The common case takes the forwarding path: the upstream's bytes, not a re-encoding (the
    spaced chunk would lose its spaces if it were parsed)."""
    spaced = b'{"id": "c1", "choices": [{"index": 0, "delta": {"content": "y"}}]}'
    body = b"".join(b"data: " + p + b"\n\n" for p in (spaced, CHUNK % b"a", PAYLOADS[5])) + b"data: [DONE]\n\n"

    async def run() -> bytes:
        stream = OpenAIChunkStream(Reads([body]), TARGET)  # type: ignore[arg-type]
        await stream.prime()
        got = b"".join([f async for f in stream.frames(relay.Tally(), False)])
        await stream.aclose()
        return got

    assert asyncio.run(run()) == body


def test_a_finish_reason_after_a_null_one_in_a_read_is_noted() -> None:
    """Each `finish_reason` of a read is looked at: a null one first (another choice, an event
    before) does not hide the real one after it."""
    body = b"".join(b"data: " + p + b"\n\n" for p in (PAYLOADS[10], PAYLOADS[11], PAYLOADS[13]))
    for pieces in ([body], [body + b"data: [DONE]\n\n"]):
        assert asyncio.run(read_frames(pieces, True)).reasons == ["stop", "stop"]


@settings(max_examples=200, deadline=None)
@given(body=bodies(), strip=st.booleans(), whole=st.booleans())
def test_finish_reasons_nobody_reads_are_left_out(body: bytes, strip: bool, whole: bool) -> None:
    """A stream whose finish reasons nothing reads (no attempt span: tracing off) notes none, and
    gives the client the same frames, content count, usage and failure."""
    pieces = [body] if whole else [p + b"\n\n" for p in body.split(b"\n\n")[:-1]]
    wanted = asyncio.run(read_frames(pieces, strip))
    unwanted = asyncio.run(read_frames(pieces, strip, reasons=False))
    assert unwanted.reasons == []
    unwanted.reasons = wanted.reasons
    assert unwanted.key() == wanted.key()


def test_a_stream_without_reasons_wanted_notes_none() -> None:
    body = b"".join(b"data: " + p + b"\n\n" for p in (PAYLOADS[10], PAYLOADS[11], PAYLOADS[13]))
    for pieces in ([body], [body + b"data: [DONE]\n\n"], [b"data: " + PAYLOADS[11] + b"\n\n"] * 2):
        for read in (read_frames, read_parsed):  # forwarded, and parsed as a translation's chunks are
            wanted = asyncio.run(read(pieces, True))
            unwanted = asyncio.run(read(pieces, True, reasons=False))
            assert wanted.reasons and unwanted.reasons == [] and unwanted.content == wanted.content


FINISH_SPEC = re.compile(rb'"finish_reason":\s*"([^"\\]{1,64})"')  # what a finish reason is, by regex


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b'"finish_reason":', b'"finish_reason":null', b'"stop"', b' \n"len', b'gth"',
                                 b'"', b"\\", b"x" * 40, b"}]}\n\ndata: {", b'"finish_reason": "tool_calls"']),
                max_size=12))
def test_finish_reasons_are_the_regexs(parts: list[bytes]) -> None:
    block = b"".join(parts)
    assert finish_reasons(block) == [m.decode() for m in FINISH_SPEC.findall(block)]


def one_line_objects_by_split(block: bytes) -> int:
    """What one_line_objects counts, by its definition: the events between the separators."""
    if block[:7] != b"data: {" or block[-3:] != b"}\n\n":
        return 0
    pieces = block[7:-3].split(b"}\n\ndata: {")
    return 0 if any(b"\n" in p for p in pieces) else len(pieces)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b"data: {", b"}", b"\n", b"\n\n", b"}\n\ndata: {", b'"a":1', b"data: ",
                                 b"{", b"}\n\n", b"\r"]), max_size=14))
def test_one_line_objects_counts_the_events_between_separators(parts: list[bytes]) -> None:
    """(An equivalence test: the count by newlines against the split at the separators.)"""
    for block in (b"".join(parts), b"data: {" + b"".join(parts) + b"}\n\n"):
        assert one_line_objects(block) == one_line_objects_by_split(block)


def test_one_line_objects() -> None:
    assert one_line_objects(b'data: {"a":1}\n\ndata: {"b":2}\n\n') == 2
    assert one_line_objects(b'data: {"a":1}\n\n') == 1
    assert one_line_objects(b'data: {"a":1}\n\n: ping\n\ndata: {"b":2}\n\n') == 0
    assert one_line_objects(b'data: {"a":1}\ndata: {"b":2}\n\n') == 0
    assert one_line_objects(b'data: {"a":1}\n\ndata: [DONE]\n\n') == 0
    assert one_line_objects(b'data: {"a":1}\n\n\n') == 0
    assert one_line_objects(b'data: {"a":\n1}\n\n') == 0


def usage_spec(block: bytes) -> tuple[bytes, int] | None:
    """What usage_keys answers for a client that asked for usage: the block and its usage objects,
    None when a `usage` is neither null nor an object."""
    values = block.split(b'"usage"')[1:]
    if not all(v.startswith((b":null", b":{")) for v in values):
        return None
    return block, sum(v.startswith(b":{") for v in values)


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from([b'"usage":null', b'"usage":{"a":1}', b'"usage":', b'"usage": {}', b'"usage":5',
                                 b'"usage":nul', b"}\n\ndata: {", b'"x":1,']), max_size=10))
def test_usage_keys_of_several_events_is_the_specs(parts: list[bytes]) -> None:
    """A read of several events is answered by counts (nulls, objects) where it can be, and the
    answer is the one a look at every `usage` gives."""
    block = b"".join(parts)
    assert usage_keys(block, False, False) == usage_spec(block), block


def one_line_spec(block: bytes) -> int:
    """What one_line_objects answers: the events, when every one is a `data: {...}` line and a blank line."""
    events = block.split(b"\n\n")
    ok = len(events) > 1 and not events[-1] and all(
        e[:7] == b"data: {" and e[-1:] == b"}" and b"\n" not in e for e in events[:-1])
    return len(events) - 1 if ok else 0


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from([b"data: {", b"}", b"\n", b"\n\n", b"}\n\ndata: {", b'"x":1', b"data: [DONE]", b"{",
                                 b"}\n\n", b": ping"]), max_size=14))
def test_one_line_objects_of_several_events_is_the_specs(parts: list[bytes]) -> None:
    """A read of several events (a stream written at once) is checked by one split at the
    separators: a newline anywhere else, however placed, makes it no such block."""
    block = b"".join(parts)
    for framed in (block, b"data: {" + block + b"}\n\n", b"data: {}\n\ndata: {" + block + b"}\n\n"):
        assert one_line_objects(framed) == one_line_spec(framed), framed


def test_first_payload() -> None:
    assert first_payload(b'data: {"a":1}\n\ndata: {"b"', False) == (b'{"a":1}', 15)
    assert first_payload(b': ping\n\nevent: x\ndata: {"a":1}\n\nrest', False) == (b'{"a":1}', 32)
    assert first_payload(b'data: {"a"', False) == (None, 0)
    assert first_payload(b'data: {"a":1}', True) == (b'{"a":1}', 13)
    assert first_payload(b": ping\n\n", True) == (None, 0)
    assert first_payload(b'event: x\ndata: {"a":1}\n\nrest', False) == (b'{"a":1}', 24)
    assert first_payload(b'event: x\ndata:y\ndata: {"a":1}\n\n', False) == (b'y\n{"a":1}', 31)


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.sampled_from([b"event: x", b"event: response.created", b"data: {}", b'data: {"a":1}', b"data:",
                                       b"data:x", b": ping", b"id: 7", b"", b"event:", b"retry: 5"]), max_size=6),
       at_end=st.booleans())
def test_first_payload_reads_as_the_decoder_does(lines: list[bytes], at_end: bool) -> None:
    """Whatever the events' lines, first_payload finds the decoder's first data and where its event ends."""
    body = b"\n".join(lines) + b"\n\n" + b'data: {"next":1}\n\n'
    payloads = decoded(body, at_end)
    found, stop = first_payload(body, at_end)
    assert found == payloads[0]
    assert decoded(body[stop:], at_end) == payloads[1:]


class Broken(Reads):
    """These pieces, then the connection resets."""

    async def read_chunk(self) -> bytes:
        if not self.pieces:
            raise TransportError("connection reset by peer")
        return self.pieces.pop(0)


def test_a_connection_reset_mid_stream_fails_it_as_the_parsed_path_does() -> None:
    body = b"".join(event(p, "plain") for p in PAYLOADS[:2])

    async def run(forwarded: bool) -> tuple[list[bytes], str, bool]:
        stream = OpenAIChunkStream(Broken([body[:40], body[40:]]), TARGET)  # type: ignore[arg-type]
        await stream.prime()
        got: list[bytes] = []
        frames = stream.frames(relay.Tally(), False) if forwarded else relay.openai_frames(stream, relay.Tally(), True)
        with pytest.raises(UpstreamFailure) as failed:
            async for f in frames:
                got.append(f)
        await stream.aclose()
        return got, failed.value.message, stream._resp.closed  # type: ignore[attr-defined]

    sent, message, closed = asyncio.run(run(True))
    assert (b"".join(sent), message, closed) == (body, *asyncio.run(run(False))[1:])
    assert "connection reset by peer" in message and closed  # a broken answer is closed, never pooled
