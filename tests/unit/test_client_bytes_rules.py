"""When the client's bytes can go upstream as they are: the pure rules the request path runs."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from shieldes.providers.openai import appended, usage_asked
from shieldes.responses.request import forwards_as_sent, parse_request

_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8)


@given(st.dictionaries(st.text(max_size=8).filter(lambda k: k != "stream_options"), _values, min_size=1, max_size=5),
       st.sampled_from([b"", b" ", b"\n", b"\r\n\t "]))
def test_the_usage_option_added_to_any_object_reads_as_the_body_with_it(body: dict[str, object], tail: bytes) -> None:
    raw = orjson.dumps(body) + tail
    asked = usage_asked(raw, body)
    assert asked is not None and orjson.loads(asked) == {**body, "stream_options": {"include_usage": True}}


def test_the_bytes_stay_as_they_are_only_when_they_ask_for_the_usage_already() -> None:
    raw = b'{"model": "m", "stream_options": {"include_usage": true}}'
    assert usage_asked(raw, orjson.loads(raw)) is raw
    for options in (b"null", b"{}", b'{"include_usage": false}', b'{"include_obfuscation": false}', b"1"):
        other = b'{"model": "m", "stream_options": ' + options + b"}"
        assert usage_asked(other, orjson.loads(other)) is None
    assert usage_asked(b"{}", {}) is None  # (no request is empty; nothing to add a field after)


def test_a_responses_body_forwards_as_sent_only_when_the_gateway_adds_nothing() -> None:
    items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]
    body = {"model": "m", "input": items, "stream": True}
    assert forwards_as_sent(body, parse_request(body).input)
    text = {"model": "m", "input": "hi"}  # the gateway makes the item
    assert not forwards_as_sent(text, parse_request(text).input)
    for extra in ({"previous_response_id": "resp_1"}, {"stream_options": {"include_obfuscation": False}}):
        body = {"model": "m", "input": items, **extra}
        assert not forwards_as_sent(body, parse_request(body).input)
    easy = {"model": "m", "input": [{"role": "user", "content": "hi"}]}  # normalised into another item?
    assert forwards_as_sent(easy, parse_request(easy).input) == (parse_request(easy).input[0] is easy["input"][0])


def test_members_are_added_only_under_names_the_body_does_not_have() -> None:
    raw = b'{"model": "m", "messages": []}  '
    body = orjson.loads(raw)
    both = usage_asked(raw, body, {"max_completion_tokens": 7})
    assert both is not None and orjson.loads(both) == {**body, "max_completion_tokens": 7,
                                                        "stream_options": {"include_usage": True}}
    assert appended(raw, body, {}) is raw
    assert appended(raw, body, {"model": "other"}) is None  # never a name twice
    assert appended(b'{"model": "m"} trailing', {"model": "m"}, {"n": 1}) is None


def test_dropped_fields_name_what_is_set_and_not_carried() -> None:
    from shieldes.providers.dropped import JSON_OBJECT, dropped_fields

    body = {"seed": 0, "presence_penalty": 0.1, "logprobs": False, "logit_bias": None, "verbosity": "low",
            "response_format": {"type": "json_object"}}
    assert dropped_fields(body, ()) == ["seed", "presence_penalty", "verbosity", JSON_OBJECT]
    assert dropped_fields(body, {"seed", "presence_penalty", JSON_OBJECT}) == ["verbosity"]
    assert dropped_fields({"response_format": {"type": "json_schema"}}, ()) == []
