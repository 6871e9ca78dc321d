"""When the client's bytes can go upstream as they are: the pure rules the request path runs."""

from __future__ import annotations

import json

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shieldes.gateway.top_level import CHAT_HISTORY, Outgoing, TopLevel, read_chat
from shieldes.providers.chat_history import READ, read_chat_request
from shieldes.providers.tool_ids import ANTHROPIC, ANY, MISTRAL, OPENAI, all_fit, chat_history_fits
from shieldes.providers.upstream_connection import Pieces
from shieldes.responses.request import forwards_as_sent, parse_request

_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8)


_names = st.sampled_from(["model", "messages", "tools", "stream", "stream_options", "max_completion_tokens", "n",
                          "user", "x"])
_bodies = st.dictionaries(_names, _values, min_size=1, max_size=6)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_bodies, tail=st.sampled_from([b"", b" ", b"\n", b"\r\n\t "]), spaced=st.booleans(),
       changes=st.dictionaries(_names.filter(lambda n: n not in CHAT_HISTORY), _values, max_size=3),
       drop=st.frozensets(st.sampled_from(["stream", "stream_options"])))
def test_what_goes_upstream_reads_as_the_body_with_the_gateways_fields(
        body: dict[str, object], tail: bytes, spaced: bool, changes: dict[str, object], drop: frozenset[str]) -> None:
    raw = (json.dumps(body).encode() if spaced else orjson.dumps(body)) + tail
    for top in (TopLevel(raw, CHAT_HISTORY), read_chat(raw)):  # (read_chat: one typed pass, when it can)
        out = Outgoing(top, {})
        sent = {**out.top.small, **changes}
        expected = {name: value for name, value in {**body, **changes}.items() if name not in drop}
        encoded = out.encoded(sent, drop)
        assert orjson.loads(bytes(encoded)) == expected
        assert out.whole(sent) == {**body, **changes}
        if not changes and not drop.intersection(body):
            assert encoded is raw  # nothing changed: the very bytes
        elif body.keys().isdisjoint(changes) and not drop.intersection(body):
            assert bytes(encoded).startswith(raw.rstrip()[:-1])  # only added: every client byte kept
            # and not copied: they go upstream as a view of the client's body, beside the additions
            assert isinstance(encoded, Pieces) and memoryview(encoded.parts[0]).obj is raw


def test_the_history_stays_the_clients_bytes_when_a_top_level_field_changes() -> None:
    raw = b'{"model": "m", "messages": [{"role": "user", "content": "Caf\\u00e9"}], "stream_options": null}'
    out = Outgoing(TopLevel(raw, CHAT_HISTORY), {})
    sent = {**out.top.small, "model": "upstream-m", "stream_options": {"include_usage": True}}
    encoded = bytes(out.encoded(sent))
    assert b'[{"role": "user", "content": "Caf\\u00e9"}]' in encoded  # as the client wrote it
    assert orjson.loads(encoded)["model"] == "upstream-m" and next(iter(orjson.loads(encoded))) == "model"


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


_small_ints = st.integers(-(2**53), 2**53)
_ids = st.one_of(st.text(min_size=1, max_size=70), _small_ints, st.none())
_calls = st.lists(st.fixed_dictionaries({"id": _ids, "type": st.just("function")}, optional={
    "function": st.fixed_dictionaries({"name": st.just("ls")}, optional={
        "arguments": st.one_of(st.text(max_size=5), st.none(), st.dictionaries(st.text(max_size=3), _small_ints,
                                                                                max_size=2))})}), max_size=3)
_messages = st.lists(st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system"]),
                           "content": st.one_of(st.text(max_size=5), st.none(), _small_ints)}),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": st.none()}, optional={"tool_calls": _calls}),
    st.fixed_dictionaries({"role": st.just("tool"), "tool_call_id": _ids, "content": st.text(max_size=5)}),
    st.fixed_dictionaries({"content": st.text(max_size=3)}), _small_ints), min_size=1, max_size=6)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=_messages, spaced=st.booleans())
def test_ids_read_off_the_bytes_decide_as_the_decoded_history_does(messages: list[object], spaced: bool) -> None:
    body = {"model": "m", "messages": messages, "temperature": 1, "n": None}
    raw = json.dumps(body).encode() if spaced else orjson.dumps(body)
    read = read_chat_request(raw)
    assert read is None or read.fields == {name: body[name] for name in READ if name in body}
    ids = None if read is None else read.ids
    ordinary = all(isinstance(m, dict) and isinstance(m.get("role"), str)
                   and all(isinstance(c["id"], str | None)
                           and isinstance(c.get("function", {}).get("arguments"), str | None)
                           for c in m.get("tool_calls", []))
                   and isinstance(m.get("tool_call_id"), str | None) for m in messages)
    assert (ids is not None) == ordinary  # read so exactly when every message has the shape it takes
    if ids is not None:
        for rule in (OPENAI, MISTRAL, ANTHROPIC, ANY):
            assert all_fit(ids, rule) == chat_history_fits(messages, rule, text_arguments=True)


def test_dropped_fields_name_what_is_set_and_not_carried() -> None:
    from shieldes.providers.dropped import JSON_OBJECT, dropped_fields

    body = {"seed": 0, "presence_penalty": 0.1, "logprobs": False, "logit_bias": None, "verbosity": "low",
            "response_format": {"type": "json_object"}}
    assert dropped_fields(body, ()) == ["seed", "presence_penalty", "verbosity", JSON_OBJECT]
    assert dropped_fields(body, {"seed", "presence_penalty", JSON_OBJECT}) == ["verbosity"]
    assert dropped_fields({"response_format": {"type": "json_schema"}}, ()) == []
