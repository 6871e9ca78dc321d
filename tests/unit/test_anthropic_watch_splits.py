"""The side reading of a relayed Anthropic event stream (usage, content events, its end, an error
event first) over any split of the upstream's bytes equals reading every event of the body in one
piece with `UsageWatch.see`. Bodies mix Anthropic's own framing (`event:` then one `data:` line)
with what proxies in between may send: data-only events, comments, `\\r\\n` line ends."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.gateway import relay
from shieldes.providers.anthropic_native import NativeEventStream, UsageWatch
from shieldes.providers.base import Target, TokenUsage, UpstreamFailure
from shieldes.providers.sse import SSEDecoder

TARGET = Target("d", "http://upstream.test", "m", None)
START = {"type": "message_start", "message": {"id": "m1", "usage": {"input_tokens": 9, "output_tokens": 1,
                                                                   "cache_read_input_tokens": 4}}}
EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("ping", {"type": "ping"}),
    ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0,
                             "delta": {"type": "text_delta", "text": "event: message_stop\\ndata: {"}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                       "usage": {"output_tokens": 17}}),
    ("message_delta", {"type": "message_delta", "usage": {"output_tokens": 21, "input_tokens": 11}}),
]
STOP = ("message_stop", {"type": "message_stop"})
ERROR = ("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})


def framed(name: str, body: dict[str, Any], style: str) -> bytes:
    data = orjson.dumps(body)
    if style == "data-only":
        return b"data: " + data + b"\n\n"
    if style == "crlf":
        return b"event: " + name.encode() + b"\r\ndata: " + data + b"\r\n\r\n"
    if style == "comment":
        return b": keep-alive\n\nevent: " + name.encode() + b"\ndata: " + data + b"\n\n"
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


@st.composite
def bodies(draw: Any) -> bytes:
    events = [("message_start", START), *draw(st.lists(st.sampled_from(EVENTS), max_size=10))]
    if draw(st.integers(0, 5)) == 0:
        events.insert(draw(st.integers(0, len(events))), ERROR)
    if draw(st.booleans()):
        events.append(STOP)
    styles = st.sampled_from(["anthropic"] * 6 + ["data-only", "crlf", "comment"])
    return b"".join(framed(name, body, draw(styles)) for name, body in events)


def reference(body: bytes) -> tuple[Any, ...]:
    watch = UsageWatch()
    events = SSEDecoder().feed(body)
    for event, data in events:
        watch.see(event, data)
    return watch.usage, watch.done, watch.errored, watch.content_events


class Reads:
    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = list(pieces)

    async def read_chunk(self) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


async def relayed(pieces: list[bytes]) -> tuple[bytes, tuple[Any, ...]]:
    stream = NativeEventStream(Reads(pieces), TARGET)  # type: ignore[arg-type]
    await stream.prime()
    out = b""
    try:
        async for raw in stream.client_frames(relay.Tally(), str):
            out += raw
    except UpstreamFailure:
        pass  # no message_stop: the relay reports it; the watch is what is compared here
    watch = stream.watch
    return out, (watch.usage, watch.done, watch.errored, watch.content_events)


@settings(max_examples=400, deadline=None)
@given(body=bodies(), points=st.lists(st.integers(0, 10_000), max_size=6))
def test_any_split_is_watched_as_one_piece(body: bytes, points: list[int]) -> None:
    at = sorted({p % (len(body) + 1) for p in points})
    edges = [0, *at, len(body)]
    pieces = [body[a:b] for a, b in itertools.pairwise(edges) if b > a]
    error_first = orjson.loads(SSEDecoder().feed(body)[0][1])["type"] == "error"
    try:
        out, seen = asyncio.run(relayed(pieces))
    except UpstreamFailure:
        assert error_first  # priming raises an error event that comes first, and only that
        return
    assert not error_first
    assert out == body  # relayed byte for byte
    assert seen == reference(body)


async def relayed_counts(pieces: list[bytes], scrub: Any = str) -> tuple[bytes, tuple[Any, ...], relay.Tally]:
    stream = NativeEventStream(Reads(pieces), TARGET)  # type: ignore[arg-type]
    await stream.prime()
    tally = relay.Tally()
    out = b""
    try:
        async for raw in stream.client_frames(tally, scrub):
            out += raw
    except UpstreamFailure:
        pass
    watch = stream.watch
    return out, (watch.usage, watch.done, watch.errored, watch.content_events), tally


@settings(max_examples=300, deadline=None)
@given(body=bodies())
def test_one_event_a_read_is_watched_as_one_piece(body: bytes) -> None:
    """Read one event a read, as an upstream sending token by token does (a token's read is counted
    by its head alone): relayed byte for byte, watched and tallied as the body in one piece."""
    if orjson.loads(SSEDecoder().feed(body)[0][1])["type"] == "error":
        return  # (priming raises it: test_any_split_is_watched_as_one_piece)
    parts = body.split(b"\n\n")
    pieces = [p + b"\n\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    whole = asyncio.run(relayed_counts([body]))[2]
    # (and two events a read: a token's event first, then one the watch reads)
    for reads in (pieces, [b"".join(pieces[i:i + 2]) for i in range(0, len(pieces), 2)]):
        out, seen, tally = asyncio.run(relayed_counts(reads))
        assert out == body
        assert seen == reference(body)
        assert (tally.content_chunks, tally.finish_reasons) == (whole.content_chunks, whole.finish_reasons)
        assert bool(tally.first_token_at) == bool(tally.content_chunks)


def test_a_token_read_after_a_partial_event_is_read_with_it() -> None:
    """A read that begins as a token's does but continues an event the last read left open is
    one event with it (here unreadable: two data lines), not a token: the stream is broken there,
    and the client gets the events before it, whole (the relay then ends it with an error event)."""
    pieces = [framed("message_start", START, "anthropic"), b'event: ping\ndata: {"type":"ping"}\n',
              framed(*EVENTS[3], "anthropic"), framed(*STOP, "anthropic")]
    out, seen, tally = asyncio.run(relayed_counts(pieces))
    assert seen[1] is False and seen[3] == tally.content_chunks == 0  # (never done)
    assert out == pieces[0]


def test_token_reads_after_an_error_event_are_scrubbed() -> None:
    """After the upstream's own error event every read goes through the scrub, a token's too."""
    events = [("message_start", START), EVENTS[3], ERROR, EVENTS[3], EVENTS[3]]
    pieces = [framed(name, body, "anthropic") for name, body in events]
    out, seen, tally = asyncio.run(relayed_counts(pieces, str.upper))
    assert out == b"".join(pieces[:2]) + b"".join(pieces[2:]).upper()
    assert seen[2:] == (True, 3) and tally.content_chunks == 3


def test_the_usual_framing_takes_the_scan() -> None:
    body = b"".join(framed(n, b, "anthropic") for n, b in [("message_start", START), *EVENTS, STOP])
    watch = UsageWatch()
    assert watch.see_block(body) == ("message_start", START)
    assert (watch.usage, watch.done, watch.content_events) == (*reference(body)[:2], 2)
    assert watch.usage is not None and watch.usage.completion_tokens == 21


@pytest.mark.parametrize("block", [
    b'data: {"type":"ping"}\n\n',
    b'event: ping\ndata: {"type":"ping"}\n\n: keep-alive\n\n',
    b'event: ping\ndata: {"type":"ping"}\ndata: {}\n\n',
    b'data: {"type":"ping"}\nevent: ping\n\n',  # the two lines the other way round
    b'event: ping\n: keep-alive\n\n',  # no data line
    b'event: ping\ndata: {"type":"ping"}\n\n\n\nevent: ping\n\n',
])
def test_other_framings_are_left_to_the_decoder(block: bytes) -> None:
    assert UsageWatch().see_block(block) is None


@pytest.mark.parametrize(("delta", "expected"), [
    ({"output_tokens": 5}, TokenUsage(13, 5, cache_read_tokens=4)),
    ({"output_tokens": 5, "input_tokens": 3, "cache_read_input_tokens": None,
      "cache_creation": {"ephemeral_1h_input_tokens": 2}, "cache_creation_input_tokens": 2,
      "server_tool_use": {"web_search_requests": 1}},
     TokenUsage(9, 5, cache_read_tokens=4, cache_write_tokens=2, cache_write_1h_tokens=2, web_search_requests=1)),
    ({"input_tokens": "x", "cache_read_input_tokens": 6}, TokenUsage(15, 1, cache_read_tokens=6)),
], ids=["output-only", "every-field", "odd-type-left-out"])
def test_message_delta_usage_corrects_the_start(delta: dict[str, Any], expected: TokenUsage) -> None:
    """message_delta's usage is cumulative: its output count, and the input, cache and server tool
    counts it carries (of int or object type; anything else is left out), replace message_start's."""
    watch = UsageWatch()
    watch.see("message_start", orjson.dumps(START))
    watch.see("message_delta", orjson.dumps({"type": "message_delta", "usage": delta}))
    assert watch.usage == expected


def split_reading(block: bytes) -> tuple[Any, ...]:
    """see_block as it read a block before its regex and name-line searches (one split at every
    newline, the names looked up in it), each data line an object's braces: what the watch must
    still give for any block."""
    watch = UsageWatch()
    lines = block.split(b"\n")
    n = len(lines) // 3
    if not n or len(lines) != 3 * n + 1 or lines[-1] or lines[2::3].count(b"") != n or \
            not all(line.startswith(b"event: ") for line in lines[0:-1:3]) or \
            not all(line.startswith(b"data: {") and line.endswith(b"}") for line in lines[1::3]):
        return (None,)  # (the usual framing's data is a JSON object: one that is not is read event by event)
    names = lines[0:-1:3]
    first = None
    for i, name in enumerate(names):
        if name in (b"event: message_start", b"event: message_delta", b"event: error"):
            parsed = watch.see(name[7:].decode(), lines[3 * i + 1][6:])
            if i == 0:
                first = parsed
    watch.content_events += names.count(b"event: content_block_delta")
    watch.done = b"event: message_stop" in names
    return (names[0][7:].decode("utf-8", "replace"), first), watch_state(watch)


def watch_state(watch: UsageWatch) -> tuple[Any, ...]:
    return watch.usage, watch.done, watch.errored, watch.content_events, watch.stop_reason


NAMES = ["message_start", "message_delta", "error", "message_stop", "content_block_delta", "ping",
         "xmessage_delta", "message_delta ", "event: message_stop", "content_block_delta\tx", "é", ""]
DATA = [orjson.dumps(START), orjson.dumps(EVENTS[5][1]), orjson.dumps(EVENTS[6][1]), orjson.dumps(ERROR[1]),
        b"", b"{}", b"event: message_stop", b"{\"type\":\"message_start\"", b'"x"']


@st.composite
def named_blocks(draw: Any) -> bytes:
    """Blocks of `event:` / `data:` lines, most framed the usual way, some not."""
    lines = []
    for _ in range(draw(st.integers(1, 6))):
        name, data = draw(st.sampled_from(NAMES)).encode(), draw(st.sampled_from(DATA))
        lines.append(b"event: " + name + b"\ndata: " + data + b"\n\n")
    block = b"".join(lines)
    flaw = draw(st.integers(0, 9))
    if flaw == 0:  # a line too many or too few somewhere
        at = draw(st.integers(0, len(block)))
        block = block[:at] + draw(st.sampled_from([b"\n", b"\ndata: x", b"\nevent: message_stop\n"])) + block[at:]
    elif flaw == 1:
        at = draw(st.integers(0, len(block) - 1))
        block = block[:at] + block[at + 1:]
    return block


@settings(max_examples=1000, deadline=None)
@given(block=named_blocks())
def test_a_block_is_read_as_by_its_lines(block: bytes) -> None:
    """An equivalence test: the watch reads a block (one event or many, the usual framing or not)
    as a split at every newline read it."""
    watch = UsageWatch()
    got = watch.see_block(block)
    expected = split_reading(block)
    assert (got,) == expected if got is None else (got, watch_state(watch)) == expected
