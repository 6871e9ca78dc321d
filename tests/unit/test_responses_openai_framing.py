"""A read of several Responses events named as OpenAI names them is checked line by line
(openai_responses._openai_deltas) instead of by the framing regex: typed_deltas' answer for any
block (how many delta events, or None: not OpenAI's framing) stays the one regex over the whole
block gives, for blocks made mostly of OpenAI's own events with every way a line can be off."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.providers import openai_responses
from shieldes.providers.openai_responses import _OPENAI_EVENTS, typed_deltas

# the framing typed_deltas reads, one regex over the whole block: its specification
TYPED_EVENTS = re.compile(rb'(?:event: ([^"\\\n]*)\ndata: \{"type": ?"\1"[,}][^\n]*\}\n\n)+')
NAMES = [name.encode() for name in _OPENAI_EVENTS] + [b"message", b"response.output_text.delta2", b'a"b.delta',
                                                      b"x.delta", b""]
FILLER = st.sampled_from([b'"sequence_number":3', b'"delta":"Hi","logprobs":[]', b'"delta":"}\\n\\n"',
                          b'"response":{"id":"r","usage":null}', b'"text":"' + b"x" * 1200 + b'"', b"", b" ",
                          b'"a":"event: response.output_text.delta\\ndata: "', b'"a":1}', b"\n", b"\r", b"}\n\n"])


def spec(block: bytes) -> int | None:
    return None if TYPED_EVENTS.fullmatch(block) is None else block.count(b".delta\ndata: ")


@st.composite
def event(draw: Any) -> bytes:
    name = draw(st.sampled_from(NAMES))
    kind = name if draw(st.integers(0, 9)) else draw(st.sampled_from(NAMES))  # mostly its own name
    head = draw(st.sampled_from([b'{"type":"%s",', b'{"type":"%s",', b'{"type":"%s",', b'{"type": "%s",',
                                 b'{"type":"%s"}', b'{"type":"%s"', b'{"kind":"%s",', b'{ "type":"%s",'])) % kind
    data = head + b",".join(draw(st.lists(FILLER, max_size=4))) + draw(st.sampled_from([b"}", b"}", b"}", b"", b"} ",
                                                                                         b"]"]))
    blank = draw(st.sampled_from([b"\n\n", b"\n\n", b"\n\n", b"\n", b"\n\n\n", b"\r\n\n"]))
    line = draw(st.sampled_from([b"event: ", b"event: ", b"event: ", b"event:", b"data: "]))
    return line + name + b"\n" + draw(st.sampled_from([b"data: ", b"data: ", b"data:"])) + data + blank


@settings(max_examples=2000, deadline=None)
@given(events=st.lists(event(), min_size=1, max_size=40), cut=st.integers(0, 100_000), whole=st.booleans())
def test_a_read_of_openai_events_counts_as_the_regex_reads_it(events: list[bytes], cut: int, whole: bool) -> None:
    """An equivalence test: blocks of events (most of them framed as OpenAI frames them, some with a
    line or a name off) longer than one regex match is given, whole or cut anywhere."""
    body = b"".join(events)
    block = body if whole else body[:cut % (len(body) + 1)]
    if block:
        assert typed_deltas(block) == spec(block), block


def test_the_usual_events_are_counted_without_the_regex(monkeypatch: pytest.MonkeyPatch) -> None:
    """A read of OpenAI's usual events, created to completed, is counted without running the
    framing regex over it (its walk over every byte is the cost the line check saves)."""

    class Unused:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"the regex ran: {name}")

    response = b'"response":{"id":"resp_1","status":"in_progress","instructions":"%s","usage":null}' % (b"x" * 600)
    events = [(b"response.created", response), (b"response.in_progress", response),
              *[(b"response.output_text.delta", b'"item_id":"msg_1","delta":"Hi","logprobs":[]')] * 20,
              (b"response.output_text.done", b'"item_id":"msg_1","text":"HiHi"'),
              (b"response.completed", response.replace(b"in_progress", b"completed"))]
    block = b"".join(b'event: %s\ndata: {"type":"%s","sequence_number":%d,%s}\n\n' % (name, name, i, data)
                     for i, (name, data) in enumerate(events))
    assert spec(block) == 20
    monkeypatch.setattr(openai_responses, "_TYPED_RUN", Unused())
    monkeypatch.setattr(openai_responses, "_TYPED_HEAD", Unused())
    assert typed_deltas(block) == 20
