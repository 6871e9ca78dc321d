"""Claude's signed thinking in a Responses reasoning item's encrypted_content: the pure encoding,
the items read back into chat's thinking_blocks (first in their assistant turn), and the answers
(JSON and streamed) giving the item its encrypted_content."""

from __future__ import annotations

import base64
import itertools
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.providers.chat_parts import Thinking, thinking_block
from shieldes.providers.responses_options import unfilled_includes
from shieldes.providers.responses_replies import ChatStreamTranslator, chat_to_output
from shieldes.providers.responses_translate import request_to_chat
from shieldes.providers.signed_reasoning import (
    PREFIX,
    encrypted_content,
    own_reasoning,
    thinking_of,
    without_own_reasoning,
)
from shieldes.responses.objects import ResponseContext, event_without_encrypted, without_encrypted
from shieldes.responses.upstream import native_body
from tests.responses_schema import check_event, check_response

SIGNED = Thinking("Let me think.", "c2lnbmF0dXJl")
REDACTED = Thinking("", "", "EmwKAhgBEgy3va3pzix")


def ids() -> Any:
    counter = itertools.count()
    return lambda prefix: f"{prefix}_{next(counter)}"


def test_blocks_round_trip_through_encrypted_content() -> None:
    value = encrypted_content([SIGNED, REDACTED])
    assert value.startswith(PREFIX) and "Let me think" not in value  # opaque to a client reading it
    assert thinking_of(value) == [SIGNED, REDACTED]
    assert thinking_of(encrypted_content([Thinking("ü " * 50, "s")])) == [Thinking("ü " * 50, "s")]


def _ours(payload: bytes) -> str:
    return PREFIX + base64.b64encode(payload).decode()


@pytest.mark.parametrize("value", [
    None, 7, "", "gAAAAABoZ3-openai-own-fernet-token==",  # OpenAI's own encrypted reasoning
    PREFIX, PREFIX + "!!!not base64", PREFIX + "ü", encrypted_content([SIGNED])[:-7],  # truncated
    _ours(b"{not json"), _ours(b'{"type": "thinking"}'), _ours(b"[1, null, []]"),
    _ours(orjson.dumps([{"type": "thinking", "thinking": "x"}])),  # no signature: cannot go back
    _ours(orjson.dumps([{"type": "thinking", "thinking": "x", "signature": ""}])),
    _ours(orjson.dumps([{"type": "redacted_thinking", "data": 5}])),
])
def test_foreign_or_malformed_values_carry_no_blocks(value: Any) -> None:
    assert thinking_of(value) == []


def _reasoning(blocks: list[Thinking]) -> dict[str, Any]:
    return {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": encrypted_content(blocks)}


def test_reasoning_items_put_their_blocks_first_in_the_assistant_turn() -> None:
    call: Any = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    body: Any = {"model": "m", "reasoning": {"effort": "low"}, "input": [
        {"role": "user", "content": "hi"}, _reasoning([SIGNED]), call,
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        _reasoning([REDACTED]), {"type": "message", "role": "assistant", "content": [{"type": "output_text",
                                                                                      "text": "ok"}]},
        {**call, "call_id": "c2"}, {"type": "function_call_output", "call_id": "c2", "output": "two"},
        {"type": "reasoning", "id": "rs_9", "summary": [], "encrypted_content": "gAAAAABforeign"},
        {"role": "user", "content": "and?"}]}
    messages = request_to_chat(body, "claude", signed_thinking=True)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "tool", "user"]
    assert messages[1]["thinking_blocks"] == [{"type": "thinking", "thinking": "Let me think.",
                                               "signature": "c2lnbmF0dXJl"}]
    assert messages[3]["thinking_blocks"] == [{"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}]
    assert messages[3]["content"] == "ok" and [c["id"] for c in messages[3]["tool_calls"]] == ["c2"]
    # an upstream that takes no signed thinking (a chat server) gets none, nor does a request that
    # does not think (Claude would be sent none: nothing is decoded), nor a user turn
    assert all("thinking_blocks" not in m for m in request_to_chat(body, "llama")["messages"])
    for reasoning in ({}, {"effort": "none"}, {"summary": "auto"}):
        unthinking = request_to_chat({**body, "reasoning": reasoning}, "claude", signed_thinking=True)
        assert all("thinking_blocks" not in m for m in unthinking["messages"])
    stray = request_to_chat({"model": "m", "reasoning": {"effort": "high"},
                             "input": [_reasoning([SIGNED]), {"role": "user", "content": "x"}]},
                            "claude", signed_thinking=True)
    assert stray["messages"] == [{"role": "user", "content": "x"}]


def test_a_json_answer_carries_its_signed_blocks_when_asked() -> None:
    message = {"content": None, "reasoning_content": "Let me think.",
               "thinking_blocks": [{"type": "thinking", "thinking": "Let me think.", "signature": "c2lnbmF0dXJl"}],
               "tool_calls": [{"id": "toolu_1", "function": {"name": "f", "arguments": "{}"}}]}
    chat = {"choices": [{"message": message, "finish_reason": "tool_calls"}]}
    [item, _call] = chat_to_output(chat, ids(), encrypted=True).output
    assert thinking_of(item["encrypted_content"]) == [SIGNED] and item["content"][0]["text"] == "Let me think."
    assert "encrypted_content" not in chat_to_output(chat, ids()).output[0]
    # redacted thinking alone still makes a reasoning item, for its blocks
    redacted = {"choices": [{"message": {"content": "ok", "thinking_blocks": [
        {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}]}}]}
    out = chat_to_output(redacted, ids(), encrypted=True).output
    assert [i["type"] for i in out] == ["reasoning", "message"]
    assert thinking_of(out[0]["encrypted_content"]) == [REDACTED]
    assert [i["type"] for i in chat_to_output(redacted, ids()).output] == ["message"]


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


@pytest.mark.parametrize("summary", [False, True])
def test_a_stream_gives_the_blocks_at_the_reasoning_items_done_event(summary: bool) -> None:
    request: Any = {"model": "m", "reasoning": {"effort": "low", **({"summary": "auto"} if summary else {})}}
    tr = ChatStreamTranslator(ResponseContext.of(request, "resp_1", 1, "m"), ids(), encrypted=True)
    events = tr.start()
    block = {"type": "thinking", "thinking": "Let me think.", "signature": "c2lnbmF0dXJl"}
    for chunk in [_chunk({"role": "assistant", "content": ""}), _chunk({"reasoning_content": "Let me "}),
                  _chunk({"reasoning_content": "think."}), _chunk({"thinking_blocks": [block]}),
                  _chunk({"content": "ok"}), _chunk({}, "stop")]:
        events += tr.feed(chunk)
    events += tr.finish(2)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for e in events:
        check_event(e)
    check_response(events[-1]["response"])
    kinds = [e["type"] for e in events]
    added, done = kinds.index("response.output_item.added"), kinds.index("response.output_item.done")
    assert events[added]["item"]["type"] == "reasoning" and "encrypted_content" not in events[added]["item"]
    assert thinking_of(events[done]["item"]["encrypted_content"]) == [SIGNED]  # whole, at done
    assert events[done]["output_index"] == 0 and kinds[done + 1] == "response.output_item.added"  # then the text
    final = events[-1]["response"]
    assert final["output"][0]["encrypted_content"] == events[done]["item"]["encrypted_content"]
    # hidden from a client that did not include it (the stored response keeps it)
    assert "encrypted_content" not in event_without_encrypted(events[done])["item"]
    assert "encrypted_content" not in without_encrypted(final)["output"][0]
    assert "encrypted_content" in final["output"][0]
    assert without_encrypted(events[0]["response"]) is events[0]["response"]  # nothing to take out


def test_a_stream_of_redacted_thinking_alone_opens_an_item_without_parts() -> None:
    tr = ChatStreamTranslator(ResponseContext.of({"model": "m"}, "resp_1", 1, "m"), ids(), encrypted=True)
    events = tr.start()
    for chunk in [_chunk({"thinking_blocks": [{"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}]}),
                  _chunk({"content": "ok"}), _chunk({}, "stop")]:
        events += tr.feed(chunk)
    events += tr.finish(2)
    for e in events:
        check_event(e)
    assert [e["type"] for e in events[2:5]] == ["response.output_item.added", "response.output_item.done",
                                                "response.output_item.added"]
    assert thinking_of(events[3]["item"]["encrypted_content"]) == [REDACTED]
    # not asked (store false, no include): the blocks are not kept, the stream is as before
    plain = ChatStreamTranslator(ResponseContext.of({"model": "m"}, "resp_1", 1, "m"), ids())
    quiet = [*plain.start(), *plain.feed(_chunk({"thinking_blocks": [{"type": "redacted_thinking", "data": "x"}]}))]
    assert [e["type"] for e in quiet] == ["response.created", "response.in_progress"]


def test_signed_upstreams_fill_the_encrypted_content_include() -> None:
    body = {"include": ["reasoning.encrypted_content", "message.output_text.logprobs"]}
    assert unfilled_includes(body) == ["reasoning.encrypted_content"]
    assert unfilled_includes(body, signed_thinking=True) == []


OURS: Any = {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": encrypted_content([SIGNED])}
OPENAIS: Any = {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "gAAAAABpOwn=="}
CALL: Any = {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"}


def test_only_the_gateways_reasoning_items_are_left_out_for_a_native_upstream() -> None:
    assert own_reasoning(OURS) and not own_reasoning(OPENAIS) and not own_reasoning(CALL)
    assert not own_reasoning({"type": "message", "encrypted_content": OURS["encrypted_content"]})
    assert not own_reasoning(dict(OURS, encrypted_content=None)) and not own_reasoning("rs_1")
    body: Any = {"model": "m", "input": [OURS, CALL, OPENAIS, dict(OURS, id="rs_3")], "store": False}
    out = without_own_reasoning(body)
    assert out == {"model": "m", "input": [CALL, OPENAIS], "store": False}
    assert body["input"][0] is OURS  # the client's body is not changed (another deployment may get it)
    assert without_own_reasoning({"input": [OPENAIS, CALL]}) is None
    assert without_own_reasoning({"input": "hi"}) is None and without_own_reasoning({}) is None


def test_the_gateways_reasoning_items_without_a_value_are_known_by_their_id() -> None:
    """Items the client got without encrypted_content (it did not include it, or a chat upstream
    gave reasoning text): the id the gateway gave them; with a value, the value says whose it is."""
    bare: Any = {"type": "reasoning", "id": "rs_shd_" + "ab" * 24, "summary": []}
    assert own_reasoning(bare) and own_reasoning(dict(bare, encrypted_content=None))
    assert own_reasoning(dict(bare, encrypted_content=""))
    assert not own_reasoning(dict(bare, id="rs_" + "ab" * 24)) and not own_reasoning(dict(bare, id=None))
    assert not own_reasoning(dict(bare, encrypted_content="gAAAAABpOwn=="))  # OpenAI's own value: OpenAI's item
    assert own_reasoning(dict(OURS, id="rs_" + "ab" * 24))  # made before ids were marked: the value tells
    assert not own_reasoning({"type": "message", "id": bare["id"]})
    for words in (1, 1000):  # the client's bytes searched, or the parsed items
        body: Any = {"model": "m", "input": [{"role": "user", "content": "word " * words}, bare, CALL]}
        assert native_body(body, orjson.dumps(body)) == (dict(body, input=[body["input"][0], CALL]), None,
                                                         {"x-shieldes-dropped": "input.reasoning"})


@pytest.mark.parametrize("words", [1, 1000])  # small items: the bytes are searched; large: the items
def test_a_native_body_keeps_the_clients_bytes_without_such_items(words: int) -> None:
    ask: Any = {"role": "user", "content": "word " * words}
    plain: Any = {"model": "m", "input": [ask, OPENAIS, CALL]}
    raw = orjson.dumps(plain)
    got, got_raw, headers = native_body(plain, raw)
    assert got is plain and got_raw is raw and headers == {}
    mentioned: Any = {"model": "m", "input": [ask, {"role": "user", "content": f"what is {PREFIX}?"}]}
    sent = orjson.dumps(mentioned)  # the prefix in text only: no item to drop
    got, got_raw, headers = native_body(mentioned, sent)
    assert got is mentioned and got_raw is sent and headers == {}
    ours: Any = {"model": "m", "input": [ask, OURS, CALL]}
    assert native_body(ours, orjson.dumps(ours)) == ({"model": "m", "input": [ask, CALL]}, None,
                                                     {"x-shieldes-dropped": "input.reasoning"})
    assert native_body(ours, None)[0] == {"model": "m", "input": [ask, CALL]}  # history: no bytes
    assert native_body({"model": "m", "input": "hi"}, b'{"model":"m","input":"hi"}')[2] == {}


# --- the encoding's properties: round trip, values made before, cut or altered values ------------

_SIGNATURE = st.text(st.sampled_from("ABCxyz019+/=._-"), min_size=1, max_size=40)
_BLOCK = st.one_of(st.builds(Thinking, st.text(max_size=40), _SIGNATURE),
                   st.builds(Thinking, st.just(""), st.just(""), _SIGNATURE))


def _whole(blocks: list[Thinking]) -> str:
    """A value as the gateway made it before signatures were lifted out (clients still hold them)."""
    return _ours(orjson.dumps([thinking_block(b) for b in blocks]))


@settings(max_examples=300, deadline=None)
@given(st.lists(_BLOCK, max_size=4))
def test_any_blocks_read_back_from_their_value_and_from_one_made_before(blocks: list[Thinking]) -> None:
    value = encrypted_content(blocks)
    assert thinking_of(value) == blocks and thinking_of(_whole(blocks)) == blocks
    # a signature is lifted out unless it holds the separator; the thinking text never is
    assert value.count(".") == 1 + sum("." not in (b.redacted or b.signature) for b in blocks)


@settings(max_examples=300, deadline=None)
@given(st.lists(_BLOCK, min_size=1, max_size=4), st.data())
def test_a_cut_value_reads_as_no_blocks(blocks: list[Thinking], data: st.DataObject) -> None:
    value = encrypted_content(blocks)
    assert thinking_of(value[:data.draw(st.integers(0, len(value) - 1))]) == []


@settings(max_examples=300, deadline=None)
@given(st.lists(_BLOCK, min_size=1, max_size=4), st.data())
def test_a_lifted_signature_cut_out_or_added_reads_as_no_blocks(blocks: list[Thinking], data: st.DataObject) -> None:
    head, *lifted = encrypted_content(blocks).split(".", 1)[1].split(".")
    extra = data.draw(st.text(st.sampled_from("AB+/"), min_size=1, max_size=8))
    spliced = [[*lifted, extra], [extra, *lifted]]
    if lifted:
        i = data.draw(st.integers(0, len(lifted) - 1))
        spliced += [lifted[:i] + lifted[i + 1:], [*lifted[:i], lifted[i][:-1], *lifted[i + 1:]]]
    for segments in spliced:
        assert thinking_of(".".join([PREFIX + head, *segments])) == []


@settings(max_examples=300, deadline=None)
@given(st.lists(_BLOCK, min_size=1, max_size=4), st.data())
def test_an_altered_value_reads_as_no_blocks_or_as_other_blocks(blocks: list[Thinking], data: st.DataObject) -> None:
    """Never as the blocks it was made from with something else in them: a changed signature stays
    changed (Claude refuses it), and no change turns the value into anything but thinking blocks."""
    value = encrypted_content(blocks)
    at = data.draw(st.integers(len(PREFIX), len(value) - 1))
    char = data.draw(st.sampled_from("A/+=.%ü").filter(lambda c: c != value[at]))
    got = thinking_of(value[:at] + char + value[at + 1:])
    assert all(isinstance(t, Thinking) and (t.signature or t.redacted) for t in got)
    if -1 < value.find(".", len(PREFIX)) < at:  # in the lifted signatures: read as none or as the changed one
        assert got == [] or got != blocks
