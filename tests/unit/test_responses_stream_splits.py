"""A native Responses event stream read any way the upstream's bytes may arrive: NativeEvents.frames()
(the upstream's own bytes forwarded), with the body cut into reads anywhere, gives the client the
same events, the same delta count, the same final response, usage and sequence-numbered failure
events, as the parsed path (every event parsed and re-encoded, as the route did before the
forwarding path) reading the body in one piece. Bodies mix what upstreams send: OpenAI's framing
(`event: TYPE` then one compact `data:` line), JSON with spaces, data-only events, comments,
\\r\\n line ends, multi-line data, a name that is not the type, `[DONE]`, an error first (raised
while another deployment can be tried) or later (passed on), a truncated event, a usage-less end."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.gateway.relay import Tally
from shieldes.providers.base import Target, UpstreamFailure
from shieldes.providers.openai_responses import TERMINAL, ResponsesEventStream, typed_deltas
from shieldes.providers.sse import encode_event
from shieldes.providers.upstream_connection import TransportError
from shieldes.responses.upstream import NativeEvents

TARGET = Target("d", "http://upstream.test/v1", "m", None)
USAGE = {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 4,
         "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 13}


def response(status: str, usage: Any = None, text: str = "") -> dict[str, Any]:
    output = [{"type": "message", "id": "msg_1", "content": [{"type": "output_text", "text": text}]}] if text else []
    return {"id": "resp_1", "object": "response", "status": status, "previous_response_id": None,
            "output": output, "usage": usage}


IDS = {"item_id": "msg_1", "output_index": 0, "content_index": 0}
MIDDLE: list[dict[str, Any]] = [
    {"type": "response.in_progress", "response": response("in_progress")},
    {"type": "response.output_item.added", "output_index": 0, "item": {"type": "message", "id": "msg_1"}},
    {"type": "response.content_part.added", **IDS, "part": {"type": "output_text", "text": ""}},
    {"type": "response.output_text.delta", **IDS, "delta": "Hi", "logprobs": []},
    {"type": "response.output_text.delta", **IDS, "delta": ' "response": {\n\nevent: x\ndata: {"type":"'},
    {"type": "response.output_text.delta", **IDS, "delta": "\"sequence_number\":7}"},
    {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 0, "delta": '{"a":'},
    {"type": "response.output_text.done", **IDS, "text": "Hi"},
    {"type": "response.output_item.done", "output_index": 0,
     "item": {"type": "function_call", "arguments": '{"response": 1}', "call_id": "c"}},
    {"type": "error", "code": "server_error", "message": "passed on", "param": None},
    {"error": {"message": "no type", "type": "server_error"}},
]
ENDS: list[dict[str, Any]] = [
    {"type": "response.completed", "response": response("completed", USAGE, "Hi")},
    {"type": "response.completed", "response": response("completed", None, "Hi")},
    {"type": "response.incomplete", "response": response("incomplete", USAGE)},
    {"type": "response.failed", "response": response("failed", None)},
]
CREATED = {"type": "response.created", "response": response("in_progress")}
ERROR_FIRST = {"type": "error", "code": "server_error", "message": "overloaded", "param": None}
TRUNCATED = b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":\n\n'
BROKEN_RESPONSE = b'event: response.completed\ndata: {"type":"response.completed","response":{]}\n\n'
BROKEN_PROGRESS = b'event: response.in_progress\ndata: {"type":"response.in_progress","response":{]}\n\n'


def framed(event: dict[str, Any], style: str) -> bytes:
    name = str(event.get("type", "message")).encode()
    data = orjson.dumps(event)
    if style == "spaced":
        return b"event: " + name + b"\ndata: " + json.dumps(event).encode() + b"\n\n"
    if style == "data-only":
        return b"data: " + data + b"\n\n"
    if style == "crlf":
        return b"event: " + name + b"\r\ndata: " + data + b"\r\n\r\n"
    if style == "comment":
        return b": keep-alive\n\nevent: " + name + b"\ndata: " + data + b"\n\n"
    if style == "multiline":
        head, sep, rest = data.partition(b",")
        return b"event: " + name + b"\ndata: " + head + sep + b"\ndata: " + rest + b"\n\n"
    if style == "renamed":
        return b"event: message\ndata: " + data + b"\n\n"
    if style == "type-later":
        moved = {k: v for k, v in event.items() if k != "type"} | {"type": event.get("type")}
        return b"event: " + name + b"\ndata: " + orjson.dumps(moved) + b"\n\n"
    return b"event: " + name + b"\ndata: " + data + b"\n\n"


@st.composite
def bodies(draw: Any) -> bytes:
    events = [ERROR_FIRST if draw(st.integers(0, 9)) == 0 else CREATED,
              *draw(st.lists(st.sampled_from(MIDDLE), max_size=12))]
    if draw(st.booleans()):
        events.append(draw(st.sampled_from(ENDS)))
    numbered = []
    for i, event in enumerate(events):
        kind = draw(st.integers(0, 19))
        if kind == 0:
            numbered.append(event)  # no sequence number
        elif kind == 1:
            numbered.append({**event, "sequence_number": i + 0.5})
        else:
            numbered.append({**event, "sequence_number": i})
    styles = st.sampled_from(["openai"] * 12 + ["spaced", "data-only", "crlf", "comment", "multiline", "renamed",
                                                "type-later"])
    parts = [framed(event, draw(styles)) for event in numbered]
    extra = draw(st.integers(0, 9))
    if extra in (0, 1, 2):
        parts.insert(draw(st.integers(1, len(parts))), [b"data: [DONE]\n\n", TRUNCATED, BROKEN_RESPONSE][extra])
    body = b"".join(parts)
    if draw(st.integers(0, 5)) == 0:
        body = body[:-1]  # the last event without its blank line
    return body


class Reads:
    """An upstream answer's body as read_chunk() gives it: these pieces, then b"" for good (or,
    `broken`, the connection fails)."""

    def __init__(self, pieces: list[bytes], broken: bool = False) -> None:
        self.pieces = list(pieces)
        self.broken = broken

    async def read_chunk(self) -> bytes:
        if not self.pieces and self.broken:
            raise TransportError("connection reset by peer")
        return self.pieces.pop(0) if self.pieces else b""

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


def bill(response: dict[str, Any], deltas: int) -> dict[str, Any]:
    """The route's estimate for a response without usage (any change the client must see)."""
    return response if response.get("usage") is not None else dict(response, usage={"estimated": deltas})


async def opened(pieces: list[bytes], previous: str | None, broken: bool = False) -> NativeEvents:
    up = ResponsesEventStream(Reads(pieces, broken), TARGET)  # type: ignore[arg-type]
    await up.prime()
    return NativeEvents(up, previous or None)


async def parsed(pieces: list[bytes], previous: str | None, broken: bool = False) -> tuple[Any, ...]:
    """The route's encoding of parsed events, before the forwarding path."""
    try:
        events = await opened(pieces, previous, broken)
    except UpstreamFailure as failure:
        return ("failed to open", failure.message)
    out, deltas = [], 0
    async for event in events:
        kind = str(event.get("type", ""))
        if kind.endswith(".delta"):
            deltas += 1
        elif kind in TERMINAL and isinstance(event.get("response"), dict):
            event = dict(event, response=bill(event["response"], deltas))
        out.append(encode_event(str(event.get("type")), event))
    await events.aclose()
    return b"".join(out), deltas, events.final, events.usage


async def forwarded(pieces: list[bytes], previous: str | None, broken: bool = False) -> tuple[Any, ...]:
    try:
        events = await opened(pieces, previous, broken)
    except UpstreamFailure as failure:
        return ("failed to open", failure.message)
    tally = Tally()
    out = [data async for data in events.frames(bill, tally)]
    deltas = tally.content_chunks
    await events.aclose()
    assert events.deltas == deltas
    return b"".join(out), deltas, events.final, events.usage


def client_view(result: tuple[Any, ...]) -> tuple[Any, ...]:
    """What the client reads: each event's name and JSON (forwarded bytes keep the upstream's spacing)."""
    if result[0] == "failed to open":
        return result
    frames = [f for f in result[0].split(b"\n\n") if f]
    events = []
    for f in frames:
        name, data = f.split(b"\n", 1)
        events.append((name, orjson.loads(data.removeprefix(b"data: "))))
    return events, *result[1:]


@settings(max_examples=500, deadline=None)
@given(body=bodies(), points=st.lists(st.integers(0, 10_000), max_size=6), previous=st.sampled_from([None, "resp_0"]),
       broken=st.sampled_from([False, False, False, True]))
def test_any_split_reads_as_the_parsed_body_in_one_piece(body: bytes, points: list[int], previous: str | None,
                                                         broken: bool) -> None:
    at = sorted({p % (len(body) + 1) for p in points})
    pieces = [body[a:b] for a, b in itertools.pairwise([0, *at, len(body)]) if b > a]
    reference = asyncio.run(parsed([body], previous, broken))
    assert client_view(asyncio.run(parsed(pieces, previous, broken))) == client_view(reference)
    assert client_view(asyncio.run(forwarded(pieces, previous, broken))) == client_view(reference)


# OpenAI's framing as typed_deltas reads it, one regex over the whole block: its specification
TYPED_EVENTS = re.compile(rb'(?:event: ([^"\\\n]*)\ndata: \{"type": ?"\1"[,}][^\n]*\}\n\n)+')


@settings(max_examples=500, deadline=None)
@given(body=bodies(), cut=st.integers(0, 10_000), long_lines=st.integers(0, 4), pad=st.integers(900, 3000))
def test_typed_deltas_reads_a_block_as_one_regex_over_it_would(body: bytes, cut: int, long_lines: int,
                                                               pad: int) -> None:
    """Runs of short events (one regex match) and long lines (checked event by event) give the
    answer of one regex over the whole block: how many delta events, or not OpenAI's framing."""
    padded = body.replace(b'"sequence_number":', b'"pad":"%s","sequence_number":' % (b"x" * pad), long_lines)
    for block in (body, padded, padded[:cut % (len(padded) + 1)], padded.replace(b"\r", b"")):
        if block:
            whole = TYPED_EVENTS.fullmatch(block)
            assert typed_deltas(block) == (None if whole is None else block.count(b".delta\ndata: ")), block


def test_typed_deltas_reads_odd_blocks_as_the_regex_does() -> None:
    """Every prefix of blocks near OpenAI's framing, and each with one byte dropped: names with a
    quote or a backslash, a type spaced or not, a name that only begins the type, no `}` or no
    blank line at the end."""
    blocks = [b'event: a.delta\ndata: {"type":"a.delta","x":1}\n\nevent: b\ndata: {"type": "b"}}\n\n',
              b'event: a"b\ndata: {"type":"a"b","x":1}\n\n', b'event: a\\\ndata: {"type":"a\\","x":1}\n\n',
              b'event: a\ndata: {"type":"ab","x":1}\n\n', b'event: ab\ndata: {"type":"a","x":1}\n\n',
              b'event: a\ndata: {"type":"a"}\n\n', b'event: a\ndata: {"type":  "a","x":1}\n\n',
              b'event: \ndata: {"type":"","x":1}\n\n', b'event: a\ndata: {"type":"a","x":1]\n\n']
    for body in blocks:
        for block in [body[:n] for n in range(1, len(body) + 1)] + [body[:n] + body[n + 1:] for n in range(len(body))]:
            whole = TYPED_EVENTS.fullmatch(block)
            assert typed_deltas(block) == (None if whole is None else block.count(b".delta\ndata: ")), block


def test_the_usual_stream_is_forwarded_byte_for_byte() -> None:
    """Events that need nothing from the gateway go out as the upstream's bytes (the spaced ones
    would lose their spaces if they were re-encoded); response events are parsed, and re-encoded
    only when the gateway changes them."""
    events = [CREATED, *MIDDLE[1:8], ENDS[0]]
    body = b"".join(framed({**e, "sequence_number": i}, "spaced" if i % 2 else "openai")
                    for i, e in enumerate(events))

    async def run(previous: str | None) -> tuple[bytes, int, int]:
        native = await opened([body], previous)
        out = b"".join([f async for f in native.frames(bill, Tally())])
        await native.aclose()
        return out, native.deltas, native._up.last_sequence

    assert asyncio.run(run(None)) == (body, 4, len(events) - 1)
    out, _deltas, _seq = asyncio.run(run("resp_0"))
    sent = [orjson.loads(f.split(b"\ndata: ", 1)[1]) for f in out.split(b"\n\n") if f]
    assert [e["response"]["previous_response_id"] for e in sent if "response" in e] == ["resp_0", "resp_0"]
    assert out.split(b"\n\n")[1:-2] == body.split(b"\n\n")[1:-2]  # all but the response events: as sent


def test_progress_events_are_parsed_only_when_edited_or_a_failure_needs_them() -> None:
    """The response so far (created, in progress) is kept as bytes: a malformed one is forwarded as
    the upstream sent it, like any event the gateway does not read, unless the gateway changes it
    (`previous_response_id`: then it ends the stream as the parsed path does). A failure reports
    the newest snapshot that parses (of the newest two not parsed yet)."""
    newer = {"type": "response.in_progress", "response": {**response("in_progress"), "id": "resp_2"}}
    body = b"".join(framed({**e, "sequence_number": i}, "openai") for i, e in enumerate([CREATED, newer]))

    async def run(pieces: list[bytes], previous: str | None, broken: bool = False) -> list[Any]:
        native = await opened(pieces, previous, broken)
        out = b"".join([f async for f in native.frames(bill, Tally())])
        await native.aclose()
        return [f.split(b"\ndata: ", 1) for f in out.split(b"\n\n") if f]

    sent = asyncio.run(run([body + BROKEN_PROGRESS], None))
    assert sent[-3][0] + b"\ndata: " + sent[-3][1] + b"\n\n" == BROKEN_PROGRESS
    # the body ended before a terminal event: the response failed (its newest snapshot that parses)
    assert [orjson.loads(d)["type"] for _n, d in sent[-2:]] == ["error", "response.failed"]
    assert orjson.loads(sent[-1][1])["response"]["id"] == "resp_2"
    sent = asyncio.run(run([body + BROKEN_PROGRESS], "resp_0"))
    assert [orjson.loads(d)["type"] for _n, d in sent[-2:]] == ["error", "response.failed"]
    for extra in (b"", BROKEN_PROGRESS):  # the connection breaks
        sent = asyncio.run(run([body + extra], None, broken=True))
        failed = orjson.loads(sent[-1][1])
        assert failed["type"] == "response.failed" and failed["response"]["id"] == "resp_2", failed


def test_a_failure_mid_stream_is_numbered_after_the_upstreams_events() -> None:
    """A truncated event or a broken connection after forwarded events: `error` and
    `response.failed` follow the last number the upstream sent, with the usage estimate."""
    events = [CREATED, MIDDLE[3], MIDDLE[3], MIDDLE[2]]
    body = b"".join(framed({**e, "sequence_number": i}, "openai") for i, e in enumerate(events))

    async def run(pieces: list[bytes], broken: bool) -> list[Any]:
        native = await opened(pieces, None, broken)
        out = b"".join([f async for f in native.frames(bill, Tally())])
        await native.aclose()
        return [orjson.loads(f.split(b"\ndata: ", 1)[1]) for f in out.split(b"\n\n") if f]

    for pieces, broken in (([body, TRUNCATED], False), ([body], True), ([body[:40], body[40:] + TRUNCATED], False)):
        sent = asyncio.run(run(pieces, broken))
        assert [(e["type"], e["sequence_number"]) for e in sent[-2:]] == [("error", 4), ("response.failed", 5)]
        assert sent[-1]["response"]["usage"] == {"estimated": 2}


def test_an_agents_long_response_events_leave_the_deltas_counted_for_the_bill() -> None:
    """Response events that echo an agent's instructions (tens of kB a line) around delta events:
    a response without usage is billed by the deltas before it, counted as the parsed path counts
    them, in one read and cut anywhere, whether the relay edits the progress events or not."""
    long = dict(response("in_progress"), instructions="You are a careful coding agent. " * 600)
    delta = {"type": "response.output_text.delta", **IDS, "delta": "word ", "logprobs": []}
    events = [{"type": "response.created", "response": long}, delta,
              {"type": "response.in_progress", "response": long}, delta, delta,
              {"type": "response.in_progress", "response": long}, delta,
              {"type": "response.completed", "response": dict(long, status="completed", usage=None)}]
    body = b"".join(framed({**e, "sequence_number": i}, "openai") for i, e in enumerate(events))
    for previous in (None, "resp_0"):
        reference = asyncio.run(parsed([body], previous))
        billed = client_view(reference)[0][-1][1]["response"]["usage"]
        assert billed == {"estimated": 4}
        for cut in (0, 100, len(body) // 2, len(body) - 500):
            pieces = [p for p in (body[:cut], body[cut:]) if p]
            assert client_view(asyncio.run(forwarded(pieces, previous))) == client_view(reference)


def test_an_agents_progress_events_are_kept_as_views_of_the_read_not_copies() -> None:
    """The response so far (created, in progress), kept unparsed for a failure's snapshot, is a view
    of the block read: an agent's echoes its instructions and tools (kB each), copied twice a
    stream before. A failure still reports the newest of them."""
    long = dict(response("in_progress"), instructions="You are a careful coding agent. " * 150)
    events = [{"type": "response.created", "response": long},
              {"type": "response.in_progress", "response": dict(long, id="resp_2")}]
    block = b"".join(framed({**e, "sequence_number": i}, "openai") for i, e in enumerate(events))

    async def run() -> list[Any]:
        native = await opened([block], None, broken=True)
        out = []
        async for frame in native.frames(bill, Tally()):
            if not out:
                kept = native._up._snapshot_data
                assert [type(data) for data in kept] == [memoryview, memoryview]
                assert all(data.obj is block for data in kept)
            out.append(frame)
        await native.aclose()
        return [orjson.loads(f.split(b"\ndata: ", 1)[1]) for f in b"".join(out).split(b"\n\n") if f]

    sent = asyncio.run(run())
    assert sent[-1]["type"] == "response.failed" and sent[-1]["response"]["id"] == "resp_2"
    assert sent[-1]["response"]["instructions"] == long["instructions"]


def test_the_last_sequence_number_is_read_off_the_forwarded_bytes_when_a_failure_asks() -> None:
    """Forwarded reads are read for their last sequence number only when a failure numbers its
    events: one read at a time (kept reads let go past a bound) or whole, the last one written as a
    float (the last integer one before it counts, as parsing gives it), the connection breaks."""
    delta = {"type": "response.output_text.delta", **IDS, "delta": "Hi", "logprobs": []}
    events = [CREATED, *[delta] * 40]

    async def failed_numbers(body: bytes, pieces: list[bytes]) -> list[tuple[str, Any]]:
        native = await opened(pieces, None, broken=True)
        out = b"".join([f async for f in native.frames(bill, Tally())])
        await native.aclose()
        assert out.startswith(body)  # (the upstream's bytes, forwarded)
        sent = [orjson.loads(f.split(b"\ndata: ", 1)[1]) for f in out.split(b"\n\n") if f]
        return [(e["type"], e["sequence_number"]) for e in sent[-2:]]

    numbered = [framed({**e, "sequence_number": i}, "spaced") for i, e in enumerate(events)]
    last_float = [*numbered[:-1], framed({**delta, "sequence_number": 39.5}, "openai")]
    for frames, last in ((numbered, 40), (last_float, 39)):
        body = b"".join(frames)
        for pieces in ([body], frames, [b"".join(frames[:30]), *frames[30:]]):
            assert asyncio.run(failed_numbers(body, pieces)) == [("error", last + 1), ("response.failed", last + 2)]
