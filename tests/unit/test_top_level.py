"""A pass-through body read by its top-level fields: the small ones decoded as a whole decode
would, the history left as the client's bytes, the body rewritten with one field changed and every
other byte and the key order kept, and bad bodies refused as read_json refuses them."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shieldes.errors import InvalidRequest
from shieldes.gateway.top_level import MESSAGES_HISTORY, TopLevel
from shieldes.providers.upstream_connection import Pieces

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=12)
fields = st.sampled_from(["model", "max_tokens", "stream", "messages", "system", "tools", "thinking", "metadata",
                          "tool_choice", "x"])


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.dictionaries(fields, values, max_size=8), spaced=st.booleans(), model=st.text(max_size=12))
def test_the_top_level_reads_as_the_whole_decode_and_rewrites_only_the_field(
        body: dict[str, Any], spaced: bool, model: str) -> None:
    raw = json.dumps(body).encode() if spaced else orjson.dumps(body)
    top = TopLevel(raw, MESSAGES_HISTORY)
    assert top.small == {k: v for k, v in body.items() if k not in MESSAGES_HISTORY}
    assert {k: orjson.loads(memoryview(v)) for k, v in top.fields.items()} == body
    assert top.decoded() == body
    rewritten = top.with_fields({"model": model})
    assert orjson.loads(rewritten) == {**body, "model": model}
    assert list(orjson.loads(rewritten)) == list({**body, "model": model})  # the client's key order
    for name in MESSAGES_HISTORY:
        value = body.get(name)
        expected = ("missing" if value is None else "other" if not isinstance(value, list)
                    else "empty list" if not value else "list")
        assert top.shape(name) == expected


def test_bad_bodies_are_refused_with_what_to_send() -> None:
    with pytest.raises(InvalidRequest, match="malformed JSON body"):
        TopLevel(b'{"model": "m", "messages": [', MESSAGES_HISTORY)
    with pytest.raises(InvalidRequest, match="malformed JSON body"):
        TopLevel(b'{"model": tru}', MESSAGES_HISTORY)
    with pytest.raises(InvalidRequest, match="not UTF-8 at byte 14"):
        TopLevel(b'{"messages":["\xff"]}', MESSAGES_HISTORY)
    assert TopLevel('{"messages":["h\u00e9"]}'.encode(), MESSAGES_HISTORY).shape("messages") == "list"
    with pytest.raises(InvalidRequest, match="must be a JSON object"):
        TopLevel(b'[{"model": "m"}]', MESSAGES_HISTORY)
    assert TopLevel(b'{"messages": [ ] , "model":"m"}', MESSAGES_HISTORY).shape("messages") == "empty list"
    assert TopLevel(b'{"messages": null}', MESSAGES_HISTORY).shape("messages") == "missing"
    assert TopLevel(b'{"messages": "hi"}', MESSAGES_HISTORY).shape("messages") == "other"


def test_fields_a_body_lacks_are_added_after_its_bytes_and_one_it_has_is_written_over() -> None:
    raw = b'{"model": "m", "input": [{"role": "user", "content": "hi"}]} '
    read = TopLevel.read(raw, {"model": "m"}, frozenset({"input"}))  # (small: every field but input)
    for top in (TopLevel(raw, frozenset({"input"})), read):
        added = top.sent_with({"max_output_tokens": 321})
        assert isinstance(added, Pieces) and added.parts[0].obj is raw  # the client's bytes, not copied
        assert bytes(added) == b'{"model": "m", "input": [{"role": "user", "content": "hi"}],"max_output_tokens":321}'
        over = top.sent_with({"model": "n"})
        assert isinstance(over, bytes) and orjson.loads(over) == {"model": "n", "input": [{"role": "user",
                                                                                            "content": "hi"}]}
    assert read.has("input") and not read.has("max_output_tokens")
    assert top.changes({"model": top.small["model"], "max_output_tokens": 5}) == {"max_output_tokens": 5}
