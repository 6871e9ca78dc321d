"""The blank line that ends an SSE event, found line by line (memchr) where a two-byte search
walks every byte: the same offsets as bytes.find / bytes.rfind for b"\\n\\n"."""

from __future__ import annotations

import random

from shieldes.providers.sse_blocks import blank_line, last_blank_line


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
