"""A read of OpenAI's own Responses events checked by its lines (openai_responses._lines) has only the
events that carry a response object (created, queued, in progress, completed, incomplete, failed)
searched for its `response` key, in their own data lines; the deltas and items, most of a stream's
bytes, are not searched. An equivalence test: over many generated streams of OpenAI's events (read
whole or cut anywhere, response objects short and long, with usage or without, a connection that
breaks), the client gets what the parsed path gives (every event parsed and re-encoded), with the
same delta count, final response and usage; a search of the whole read (ResponsesEventStream._edited,
the path before) gives the same frames. Then the one reading that differs from that search, for an
upstream that breaks OpenAI's protocol: a `response` object in an event of another name is forwarded
unread."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.gateway.relay import Tally
from shieldes.providers import openai_responses
from shieldes.providers.base import Target, UpstreamFailure
from shieldes.providers.openai_responses import TERMINAL, ResponsesEventStream
from shieldes.responses.upstream import NativeEvents
from tests.unit.test_responses_stream_splits import Reads, bill
from tests.unit.test_responses_stream_splits import parsed as parsed_pieces

TARGET = Target("d", "http://upstream.test/v1", "m", None)
USAGE = {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 0},
         "output_tokens": 4, "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 13}
IDS = {"item_id": "msg_1", "output_index": 0}


def response(status: str, usage: Any, pad: int, text: str = "") -> dict[str, Any]:
    output = [{"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
               "content": [{"type": "output_text", "annotations": [], "text": text}]}] if text else []
    return {"id": "resp_1", "object": "response", "created_at": 1796611866, "status": status,
            "instructions": "x" * pad, "output": output, "temperature": 1.0, "usage": usage, "metadata": {}}


MIDDLE = st.sampled_from([
    {"type": "response.output_item.added", "output_index": 0, "item": {"id": "msg_1", "type": "message"}},
    {"type": "response.content_part.added", **IDS, "content_index": 0, "part": {"type": "output_text", "text": ""}},
    {"type": "response.output_text.delta", **IDS, "content_index": 0, "delta": "Hi", "logprobs": []},
    {"type": "response.output_text.delta", **IDS, "content_index": 0, "delta": ' "response": {}', "logprobs": []},
    {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "output_index": 1, "delta": '{"a":'},
    {"type": "response.reasoning_summary_text.delta", "item_id": "rs_1", "output_index": 0, "delta": "so"},
    {"type": "response.output_text.done", **IDS, "content_index": 0, "text": "Hi"},
    {"type": "response.output_item.done", "output_index": 0,
     "item": {"type": "function_call", "arguments": '{"response": 1}', "call_id": "c"}},
    {"type": "error", "code": "server_error", "message": "passed on", "param": None},
])


@st.composite
def streams(draw: Any) -> list[dict[str, Any]]:
    """OpenAI's events for one response: created and in progress (maybe queued), items and deltas,
    maybe a terminal event; response objects short or past a long line, with usage or not."""
    def pad() -> int:
        return draw(st.sampled_from([0, 0, 300, 1200, 3000]))

    events = [{"type": "response.created", "response": response("in_progress", None, pad())}]
    if draw(st.integers(0, 4)) == 0:
        events.append({"type": "response.queued", "response": response("queued", None, pad())})
    events.append({"type": "response.in_progress", "response": response("in_progress", None, pad())})
    events += draw(st.lists(MIDDLE, max_size=30))
    if draw(st.integers(0, 5)):
        kind = draw(st.sampled_from(sorted(TERMINAL)))
        usage = draw(st.sampled_from([USAGE, None]))
        events.append({"type": kind, "response": response(kind.split(".")[1], usage, pad(), "Hi")})
    if draw(st.integers(0, 3)) == 0:  # the sequence number after the response, as some servers write it
        return [{**e, "sequence_number": i} for i, e in enumerate(events)]
    return [{"type": e["type"], "sequence_number": i, **e} for i, e in enumerate(events)]


def body_of(events: list[dict[str, Any]]) -> bytes:
    return b"".join(b"event: %s\ndata: %s\n\n" % (e["type"].encode(), orjson.dumps(e)) for e in events)


async def opened(pieces: list[bytes], broken: bool) -> NativeEvents:
    up = ResponsesEventStream(Reads(pieces, broken), TARGET)  # type: ignore[arg-type]
    await up.prime()
    return NativeEvents(up, None)


async def parsed(body: bytes, broken: bool) -> tuple[Any, ...]:
    """The route's encoding of the parsed events of `body` read whole (the stream-split tests')."""
    return await parsed_pieces([body], None, broken)


async def forwarded(pieces: list[bytes], broken: bool) -> tuple[Any, ...]:
    events = await opened(pieces, broken)
    tally = Tally()
    out = b"".join([data async for data in events.frames(bill, tally)])
    await events.aclose()
    assert events.deltas == tally.content_chunks
    return out, tally.content_chunks, events.final, events.usage


def client_view(result: tuple[Any, ...]) -> tuple[Any, ...]:
    """Each event's name and JSON as the client reads them (forwarded bytes keep their spacing)."""
    frames = [f.split(b"\n", 1) for f in result[0].split(b"\n\n") if f]
    return [(name, orjson.loads(data.removeprefix(b"data: "))) for name, data in frames], *result[1:]


@settings(max_examples=300, deadline=None)
@given(events=streams(), points=st.lists(st.integers(0, 20_000), max_size=4), broken=st.booleans())
def test_a_read_of_openais_events_by_lines_gives_what_the_parsed_path_gives(
        events: list[dict[str, Any]], points: list[int], broken: bool) -> None:
    body = body_of(events)
    at = sorted({p % (len(body) + 1) for p in points})
    pieces = [body[a:b] for a, b in itertools.pairwise([0, *at, len(body)]) if b > a]
    reference = asyncio.run(parsed(body, broken))
    for reads in (pieces, [body]):
        got = asyncio.run(forwarded(reads, broken))
        assert client_view(got) == client_view(reference)
        if not broken:
            assert got[2] == reference[2] and got[3] == reference[3]


@settings(max_examples=300, deadline=None)
@given(events=streams(), cut=st.integers(0, 20_000))
def test_the_lines_read_sends_what_a_search_of_the_whole_read_sends(events: list[dict[str, Any]], cut: int) -> None:
    """Byte for byte, with the state a later failure reads (the snapshot, the last sequence number)."""
    body = body_of(events)
    block = body[:body.rfind(b"\n\n", 0, cut % (len(body) + 1)) + 2] or body
    lines = openai_responses._lines(block)
    if lines is None:
        return
    relay = Relay()
    out = []
    for search in (False, True):
        up = ResponsesEventStream(Reads([]), TARGET)  # type: ignore[arg-type]
        if search:
            key = block.find(openai_responses._RESPONSE_KEY)
            sent = block if key < 0 else up._edited(block, key, block.count(b".delta\ndata: "), relay)
        else:
            sent = up._edited_lines(block, lines, block.count(b".delta\ndata: "), relay)
        out.append((sent, up.final, up.responses_usage, up.snapshot, relay.calls))
        relay.calls = []
    assert out[0] == out[1]


class Relay:
    """A relay that bills as the route does when the upstream reported no usage, noting its calls."""

    edits_progress = False
    held = False

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def edit(self, event: dict[str, Any], deltas: int) -> dict[str, Any] | None:
        self.calls.append((str(event.get("type")), deltas))
        if event.get("type") in TERMINAL and event["response"].get("usage") is None:
            return dict(event, response=bill(event["response"], deltas))
        return None

    async def release(self) -> None:
        return None

    def failed(self, failure: UpstreamFailure) -> bytes:
        return b""

    def ended(self) -> None:
        return None


def test_a_response_object_in_an_event_of_another_name_is_forwarded_unread() -> None:
    """OpenAI sends a response object only in the response events. An upstream that puts one in a
    delta event of a read checked by its lines has that event forwarded as it came (so far, any event
    holding a `response` key was parsed): a failure later in the stream reports the last response
    event's object as failed, not the delta's."""
    events = [{"type": "response.created", "sequence_number": 0, "response": response("in_progress", None, 0)},
              *({"type": "response.output_text.delta", "sequence_number": i, **IDS, "content_index": 0,
                 "delta": "Hi", "response": {"id": "resp_odd", "status": "odd"}} for i in range(1, 20))]
    body = body_of(events)
    out = asyncio.run(forwarded([body], True))[0]
    assert out.startswith(body)
    failed = orjson.loads(out.rsplit(b"\n\n", 2)[-2].split(b"\ndata: ", 1)[1])
    assert failed["type"] == "response.failed" and failed["response"]["id"] == "resp_1", failed
