"""A chat agent's turn read from where its last turn ended: a body that starts with the bytes of a
body of the key read before, up to the end of its messages, is read from there on. Whatever the
edits, the read is the one reading the whole body gives."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shieldes.errors import InvalidRequest
from shieldes.gateway.checked_histories import ENTRY, PER_FOUND, CheckedHistories
from shieldes.gateway.top_level import ChatTopLevel, read_chat, utf8_checked
from shieldes.providers import chat_history
from shieldes.providers.chat_history import Found, read_chat_request, read_turn
from shieldes.providers.tool_ids import OPENAI, RESPONSES, CallIds, IdRule, all_fit
from shieldes.usage.tokens import prompt_bytes
from tests.unit.turn_reads import BAD_UTF8, Reads, assert_the_whole_bodys_utf8_error, encoded, spoilt

_ids = st.sampled_from(["call_1", "call_2", "toolu_01A", "functions.ls:0", "a b", ""])
_call = st.one_of(
    st.fixed_dictionaries({"id": _ids, "type": st.just("function"), "function": st.fixed_dictionaries(
        {"name": st.just("ls"), "arguments": st.sampled_from(["{}", '{"path": "."}'])})}),
    st.fixed_dictionaries({"type": st.just("function")}),  # no id
)
_odd = st.sampled_from([  # shapes the typed read does not take: the whole body is then decoded
    {"role": 1, "content": "x"},
    {"content": "no role"},
    {"role": "assistant", "tool_calls": [{"id": 7, "function": {"name": "ls", "arguments": "{}"}}]},
    {"role": "assistant", "tool_calls": [{"id": "call_9", "function": {"name": "ls", "arguments": {"a": 1}}}]},
    {"role": "assistant", "tool_calls": ["call_9"]},
    "not a message",
])
_image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "iVBORw0K" * 1000}}
_message = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]), "content": st.text(max_size=6)}),
    st.fixed_dictionaries({"role": st.just("user"), "content": st.just([_image])}),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": st.none(),
                           "tool_calls": st.lists(_call, max_size=2)}),
    st.fixed_dictionaries({"role": st.just("tool"), "tool_call_id": _ids, "content": st.text(max_size=6)}),
    _odd,
)
# fields after the messages, which may change from turn to turn (a field named twice: the last counts)
_after = st.dictionaries(st.sampled_from(["max_tokens", "n", "stream", "service_tier", "user"]),
                         st.integers(0, 3) | st.none(), max_size=2)
# each step: which conversation (two of the key's, one of another key's), the new messages, and an
# edit of what was sent before: none, the last message changed, an earlier one changed, a shorter
# history (the last two dropped)
_steps = st.lists(st.tuples(st.integers(0, 2), st.lists(_message, max_size=3),
                            st.sampled_from(["none", "last", "earlier", "shorter"]), _after), min_size=1,
                  max_size=12)
# how a client encodes a body: compact, spaced, indented, the messages first (the fields the
# gateway decides on after them), the tools after them
_styles = st.sampled_from(["compact", "spaced", "first", "indented", "tools"])


def _body(messages: list[Any], style: str, after: dict[str, Any]) -> bytes:
    if style == "first":
        return orjson.dumps({"messages": messages, "model": "gpt-4o", "stream": True, **after})
    if style == "tools":
        tool = {"type": "function", "function": {"name": "ls", "parameters": {"type": "object"}}}
        raw = orjson.dumps({"model": "gpt-4o", "n": 1, "messages": messages, "tools": [tool], **after})
        return raw[:-1] + b',"n":2}'
    body = {"model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True}, "messages": messages,
            **after}
    return encoded(body, style)


def _checked(**kw: Any) -> CheckedHistories[Found]:
    return CheckedHistories(lambda found: len(found.ids), end=lambda found: found.end, **kw)


def _remembered(checked: CheckedHistories[Found], key: str, raw: bytes) -> Any:
    return read_chat_request(raw, lambda body: checked.check(key, body, read_turn(body)))


@settings(deadline=None, max_examples=400)
@given(steps=_steps, style=_styles)
@example(steps=[(0, [{"role": "assistant", "content": None, "tool_calls": [
    {"id": "call_1", "type": "function", "function": {"name": "ls", "arguments": "{}"}}]}], "none", {}),
    (0, [{"role": "tool", "tool_call_id": "call_1", "content": "ok"}], "none", {"n": 2})], style="compact")
@example(steps=[(0, [], "shorter", {}), (0, [{"role": "user", "content": "x"}], "none", {})], style="spaced")
def test_a_remembered_read_is_the_whole_read(steps: list[tuple[int, list[Any], str, dict[str, Any]]],
                                             style: str) -> None:
    # (a short head: a change after it is seen only by the whole CRC)
    checked = _checked(per_key=2, remember_from=0)
    conversations: list[list[Any]] = [[{"role": "user", "content": f"task {i}"}] for i in range(3)]
    for which, new, edit, after in steps:
        history = conversations[which]
        if not history:  # (an empty list, then a turn's messages: read after its bare bracket)
            pass
        elif edit == "last":
            history[-1] = {"role": "tool", "tool_call_id": "changed", "content": "edited"}
        elif edit == "earlier":
            history[0] = {"role": "assistant", "tool_calls": [{"id": "call_0", "function": {"arguments": "{}"}}]}
        elif edit == "shorter":
            del history[-2:]
        history += new
        raw = _body(history, style, after)
        read = _remembered(checked, "other" if which == 2 else "key", raw)
        whole = read_chat_request(raw)
        assert read == whole
        assert read is None or read.size == prompt_bytes(raw)  # (counted from where the last turn's ended)
        if read is not None and whole is not None:  # the ids' lengths measured as they came, turn by turn
            lengths = [len(i) for i in whole.ids]
            assert isinstance(read.ids, CallIds)
            assert (read.ids.shortest, read.ids.longest) == (min(lengths, default=0), max(lengths, default=0))
            for rule in (OPENAI, RESPONSES, IdRule("short", None, 6)):
                assert all_fit(read.ids, rule) is all_fit(list(read.ids), rule)


def test_an_agents_turn_reads_only_the_messages_it_added() -> None:
    checked = _checked(remember_from=0)
    reads = Reads(read_turn)
    history: list[Any] = [{"role": "system", "content": "you are a coding agent " * 50}]
    for turn in range(5):
        history += [{"role": "assistant", "content": None, "tool_calls": [
                        {"id": f"call_{turn}", "type": "function", "function": {"name": "ls", "arguments": "{}"}}]},
                    {"role": "tool", "tool_call_id": f"call_{turn}", "content": "file " * 50}]
        raw = orjson.dumps({"model": "gpt-4o", "messages": history, "stream": True})
        before = reads.bytes
        read = read_chat_request(raw, lambda body: checked.check("key", body, reads(body)))
        assert read is not None and read.messages == len(history) and read.fields == {"model": "gpt-4o",
                                                                                      "stream": True}
        assert read.ids == [i for t in range(turn + 1) for i in (f"call_{t}", f"call_{t}")]
        # the new messages, a comma before them, the closing bracket, the fields after them
        new = len(orjson.dumps(history[-2:])) + len(b',"stream":true}')
        assert reads.bytes - before == (len(raw) if turn == 0 else new)
    assert checked.weight == len(raw) + ENTRY + 10 * PER_FOUND  # one body kept as it is, its ten ids


def test_a_malformed_or_too_deep_body_gets_the_whole_reads_error() -> None:
    checked = _checked(remember_from=0)
    for raw in (b'{"model": "m", "messages": [{"role": "user", "content": "x"},]}',
                b'{"model": "m", "messages": [{"role": "user", "content": ' + b"[" * 5000 + b"]" * 5000 + b"}]}"):
        with pytest.raises(InvalidRequest) as whole:
            read_chat(raw)
        with pytest.raises(InvalidRequest) as remembered:
            read_chat(raw, lambda body: checked.check("key", body, read_turn(body)))
        assert str(remembered.value) == str(whole.value)
    top = read_chat(b'{"model": "m"}', lambda body: checked.check("key", body, read_turn(body)))
    assert isinstance(top, ChatTopLevel) and top.shape("messages") == "missing"


def test_a_turn_that_goes_on_wrongly_after_the_part_read_before_gets_the_whole_reads_answer() -> None:
    history = [{"role": "user", "content": "task " * 20},
               {"role": "assistant", "tool_calls": [{"id": "call_1", "function": {"arguments": "{}"}}]}]
    first = orjson.dumps({"model": "gpt-4o", "messages": history})
    prefix = first[:-2]  # up to the list's closing bracket
    turns = [
        prefix + b',]}',  # a trailing comma
        prefix + b',{"role":"tool","tool_call_id":"call_1"}],"model":"x"',  # cut short
        prefix + b'{"role":"user"}]}',  # no comma
        prefix + b'],"messages":[{"role":1}]}',  # `messages` again: the last counts, refused by the typed read
        prefix + b'],"messages":[{"role":"user"}]}',  # `messages` again: the last counts
        prefix + b',{"role":"tool","tool_call_id":"call_1"}],"model":"gpt-4o-mini","model":"o3"}',
        prefix + b',{"role":"user","content":' + b"[" * 5000 + b"]" * 5000 + b"}]}",  # too deep
    ]
    empty = b'{"model":"gpt-4o","messages":[]}'
    cases = [(first, turn) for turn in turns] + [(empty, b'{"model":"gpt-4o","messages":[,{"role":"user"}]}'),
                                                  (empty, b'{"model":"gpt-4o","messages":[{"role":"user"}]}')]
    for before, turn in cases:
        checked = _checked(remember_from=0)
        assert _remembered(checked, "key", before) == read_chat_request(before)
        assert checked.weight  # remembered: the turn is read from where its messages ended
        try:
            whole: Any = read_chat(turn)
        except InvalidRequest as exc:
            whole = str(exc)
        try:
            remembered: Any = read_chat(turn, lambda body, checked=checked: checked.check("key", body,
                                                                                           read_turn(body)))
        except InvalidRequest as exc:
            remembered = str(exc)
        if isinstance(whole, ChatTopLevel):
            assert isinstance(remembered, ChatTopLevel)
            assert (remembered.small, remembered.ids, remembered.shape("messages")) == (
                whole.small, whole.ids, whole.shape("messages")), turn
        else:
            assert type(remembered) is type(whole), turn
            assert not isinstance(whole, str) or remembered == whole, turn


def test_the_read_from_where_a_turn_ended_decodes_the_fields_the_whole_read_does() -> None:
    assert set(chat_history._ChatTop.__struct_fields__) == set(chat_history._ChatRequest.__struct_fields__)
    assert set(chat_history.READ) == set(chat_history._ChatRequest.__struct_fields__) - {"messages"}


@settings(deadline=None, max_examples=100)
@given(bad=BAD_UTF8, at=st.integers(0, 40), text=st.text(max_size=6))
def test_a_turns_utf8_is_checked_from_where_the_last_one_ended_with_the_whole_bodys_error(
        bad: bytes, at: int, text: str) -> None:
    checked = _checked(remember_from=0)

    def turn(body: bytes) -> Found | None:
        return checked.check("key", body, utf8_checked(body, read_turn(body)))

    history: list[Any] = [{"role": "system", "content": "you are a coding agent é " * 20}]
    raw = orjson.dumps({"model": "gpt-4o", "messages": history})
    assert isinstance(read_chat(raw, turn), ChatTopLevel)
    history.append({"role": "user", "content": "x" * 40 + text})
    good = orjson.dumps({"model": "gpt-4o", "messages": history, "stream": True})
    # a byte sequence that is no UTF-8 in the new message (or in the fields after it)
    body = spoilt(good, bad, at)
    assert_the_whole_bodys_utf8_error(body, lambda: read_chat(body, turn))
    assert isinstance(read_chat(good, turn), ChatTopLevel)  # and the same turn, as UTF-8: read on
