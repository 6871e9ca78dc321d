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
NAMES = [name.encode() for name in _OPENAI_EVENTS]
FIELDS = st.lists(st.sampled_from([
    b'"sequence_number":3', b'"delta":"Hi","logprobs":[]', b'"delta":"}\\n\\n"', b'"response":{"id":"r","usage":null}',
    b'"text":"' + b"x" * 1500 + b'"', b"", b" ", b'"a":"event: response.output_text.delta\\ndata: "', b'"a":1}',
    b"\r"]), max_size=4)
# what may be off in one event: its name, its data line's head or end, a newline in it, its blank line
DEFECTS = st.sampled_from([
    ("name", b"message"), ("name", b"x.delta"), ("name", b'a"b'), ("name", b"response.output_text.delta2"),
    ("type", b"response.output_text.delta"), ("type", b"response.completed"), ("head", b'{"type": "%s",'),
    ("head", b'{"type":"%s"}'), ("head", b'{"type":"%s"'), ("head", b'{ "type":"%s",'), ("head", b'{"kind":"%s",'),
    ("end", b""), ("end", b"]"), ("end", b"} "), ("end", b"}\n}"), ("inside", b"\n"), ("inside", b"\n\n"),
    ("blank", b"\n"), ("blank", b"\n}"), ("blank", b"\n\n\n"), ("blank", b"\r\n\n"), ("blank", b"\n\r\n"),
    ("line", b"event:"), ("line", b"data: "), ("line", b"Event: "),
    ("data", b"data:"), ("data", b"data:  "), ("data", b"event: ")])


def framed(name: bytes, fields: list[bytes], defect: tuple[str, bytes] | None) -> bytes:
    kind, off = defect or ("", b"")
    if kind == "name":
        name = off
    head = (off if kind == "head" else b'{"type":"%s",') % (off if kind == "type" else name)
    inside = b",".join(fields) + (off if kind == "inside" else b"")
    return ((off if kind == "line" else b"event: ") + name + b"\n" + (off if kind == "data" else b"data: ") + head
            + inside + (off if kind == "end" else b"}") + (off if kind == "blank" else b"\n\n"))


def spec(block: bytes) -> int | None:
    return None if TYPED_EVENTS.fullmatch(block) is None else block.count(b".delta\ndata: ")


# built once, not at each example (Hypothesis's strategy cache churned on them): the same examples
NAME_LISTS = st.lists(st.sampled_from(NAMES), min_size=1, max_size=40)
DEFECTS_BY_COUNT = [st.dictionaries(st.integers(0, n - 1), DEFECTS, max_size=2) for n in range(41)]
CUT = st.integers(0, 3)


@st.composite
def blocks(draw: Any) -> bytes:
    """Events framed as OpenAI frames them, a few with one thing off, cut anywhere or not."""
    names = draw(NAME_LISTS)
    defects = draw(DEFECTS_BY_COUNT[len(names)])
    body = b"".join(framed(name, draw(FIELDS), defects.get(i)) for i, name in enumerate(names))
    if draw(CUT) == 0:
        body = body[:draw(st.integers(0, len(body)))]
    return body


@settings(max_examples=3000, deadline=None)
@given(block=blocks())
def test_a_read_of_openai_events_counts_as_the_regex_reads_it(block: bytes) -> None:
    """An equivalence test: blocks of events framed as OpenAI frames them, a few with a name, a
    line or a byte off, whole or cut anywhere, counted as one regex over the block counts them."""
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
