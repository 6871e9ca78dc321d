"""The blank line that ends an SSE event, found line by line (memchr) where a two-byte search
walks every byte: the same offsets as bytes.find / bytes.rfind for b"\\n\\n"."""

from __future__ import annotations

import random

from shieldes.providers.sse import SSEDecoder
from shieldes.providers.sse_blocks import blank_line, first_payload, last_blank_line


def test_the_same_offsets_as_a_search_for_two_newlines() -> None:
    rng = random.Random(3)
    cases = [b"", b"\n", b"\n\n", b"a\n\n", b"\n\na", b"\n\n\n", b"a\nb\nc", b"event: x\ndata: {}\n\n"]
    cases += [bytes(rng.choice(b"a\n\r ") for _ in range(rng.randint(0, 40))) for _ in range(20_000)]
    for data in cases:
        assert last_blank_line(data) == data.rfind(b"\n\n"), data
        for start in range(len(data) + 2):
            assert blank_line(data, start) == data.find(b"\n\n", start), (data, start)


def test_an_agents_response_event_is_crossed_line_by_line() -> None:
    event = b'event: response.created\ndata: {"type":"response.created","response":{"instructions":"' + \
        b"You are a careful coding agent. " * 800 + b'"}}\n\n'
    data = event + b'event: response.output_text.delta\ndata: {"type":"response.output_text.delta"}\n\n'
    assert blank_line(data) == len(event) - 2
    assert last_blank_line(data) == len(data) - 2
    assert last_blank_line(data[:-30]) == len(event) - 2


def _first_event(data: bytes, at_end: bool) -> tuple[bytes | None, int]:
    """first_payload as the SSE decoder reads it, line by line: the first event with data and the
    offset past the blank line that ends it (past the body's end, when it ends the last one)."""
    decoder, at = SSEDecoder(), 0
    while (newline := data.find(b"\n", at)) >= 0:
        events, at = decoder.feed(data[at:newline + 1]), newline + 1
        if events:
            return events[0][1], at
    if at_end and (events := decoder.feed(data[at:]) + decoder.close()):
        return events[0][1], len(data)
    return None, 0


def test_the_first_event_is_the_one_the_decoder_reads() -> None:
    """The usual first events (one data line; a name line, then one data line) are found by their
    newlines; any other framing the long way: each gives what the SSE decoder gives."""
    rng = random.Random(5)
    pieces = [b"data: ", b"event: ", b"x", b"\n", b"\n\n", b": c", b"data:", b"{}", b"id: 1", b" ",
              b"event: a\ndata: b\n\n", b"data: [DONE]\n\n", b'data: {"id":"c"}\n\n']
    cases = [b"data: {}\n\n", b"event: response.created\ndata: {}\n\nevent: x\n", b"event: a\ndata: \n\n",
             b"data: {}\n", b"event: a\ndata: b\n", b": ping\n\ndata: 1\n\n", b"event: a\n\ndata: b\n\n"]
    cases += [b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 8))) for _ in range(50_000)]
    for data in cases:
        for at_end in (False, True):
            assert first_payload(data, at_end) == _first_event(data, at_end), (data, at_end)
