"""A Messages agent's turn read from where its last turn ended: a body that starts with the bytes
of a body of the key read before, up to the end of its messages, is read from there on. Whatever
the edits, the read is the one reading the whole body gives: the same fields, the same prompt
bytes, the same answer on its tool call ids, the same error."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shieldes.errors import InvalidRequest
from shieldes.gateway import messages_turns
from shieldes.gateway.checked_histories import ENTRY, PER_FOUND, CheckedHistories
from shieldes.gateway.messages_turns import MessagesTopLevel, Turn, read_messages, read_turn
from shieldes.gateway.top_level import MESSAGES_HISTORY, TopLevel
from shieldes.providers.tool_ids import anthropic_ids_fit_in
from shieldes.usage.tokens import prompt_bytes
from tests.unit.turn_reads import BAD_UTF8, Reads, assert_the_whole_bodys_utf8_error, encoded, spoilt

_ids = st.sampled_from(["toolu_01", "toolu_02", "call_1", "functions.ls:0", "a b", ""])
_image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                      "data": base64.b64encode(bytes(range(256)) * 40).decode()}}
_block = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=6)}),
    st.fixed_dictionaries({"type": st.just("tool_use"), "id": _ids, "name": st.just("ls"), "input": st.just({})}),
    st.fixed_dictionaries({"type": st.just("tool_result"), "tool_use_id": _ids, "content": st.text(max_size=6)}),
    st.just(_image),
)
_message = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": st.text(max_size=6)}),
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]),
                           "content": st.lists(_block, min_size=1, max_size=3)}),
    st.just("not a message"),
)
# fields after the messages, which may change from turn to turn (a field named twice: the last counts)
_after = st.dictionaries(st.sampled_from(["max_tokens", "stream", "temperature", "system", "tools", "metadata"]),
                         st.integers(0, 3) | st.none() | st.sampled_from([[{"type": "text", "text": "be brief"}],
                                                                          [_image]]), max_size=3)
# each step: which conversation (two of the key's, one of another key's), the new messages, and an
# edit of what was sent before: none, the last message changed, an earlier one changed, a shorter
# history (the last two dropped), the history emptied
_steps = st.lists(st.tuples(st.integers(0, 2), st.lists(_message, max_size=3),
                            st.sampled_from(["none", "last", "earlier", "shorter", "empty"]), _after), min_size=1,
                  max_size=12)
# how a client encodes a body: compact, spaced, indented, the messages first, the system prompt
# and tools ahead of them, a field named twice
_styles = st.sampled_from(["compact", "spaced", "indented", "first", "ahead", "twice"])


def _body(messages: list[Any], style: str, after: dict[str, Any]) -> bytes:
    if style == "first":
        return orjson.dumps({"messages": messages, "model": "claude-sonnet-4-5", "max_tokens": 9, **after})
    if style == "ahead":
        tool = {"name": "ls", "input_schema": {"type": "object"}}
        return orjson.dumps({"model": "claude-sonnet-4-5", "system": "you are a coding agent", "tools": [tool],
                             "messages": messages, **after})
    if style == "twice":
        raw = orjson.dumps({"model": "claude-sonnet-4-5", "max_tokens": 9, "messages": messages, **after})
        return raw[:-1] + b',"max_tokens":10,"model":"claude-opus-4-1"}'
    body = {"model": "claude-sonnet-4-5", "max_tokens": 9, "messages": messages, **after}
    return encoded(body, style)


def _checked(**kw: Any) -> CheckedHistories[Turn]:
    return CheckedHistories(messages_turns.weigh, end=lambda turn: turn.end, **kw)


def _remembered(checked: CheckedHistories[Turn], key: str, raw: bytes) -> MessagesTopLevel:
    top = read_messages(raw, checked, key)
    assert isinstance(top, MessagesTopLevel)
    return top


def _read(top: TopLevel, asked: bool = True) -> Any:
    """What a read answers: the fields as bytes, those decoded, the prompt bytes, the ids' check
    (when `asked`: a native deployment asks it, a translated one does not)."""
    history = top.fields.get("messages")
    if isinstance(top, MessagesTopLevel):
        size, fit = top.turn.size, top.turn.ids_fit() if asked else None
    else:
        size, fit = prompt_bytes(top.raw), (history is None or anthropic_ids_fit_in(history)) if asked else None
    return ({name: bytes(value) for name, value in top.fields.items()}, list(top.fields), top.small,
            list(top.small), size, fit, top.shape("messages"))


@settings(deadline=None, max_examples=400)
@given(steps=_steps, style=_styles, ask=st.lists(st.booleans(), min_size=12, max_size=12))
@example(steps=[(0, [{"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_01", "name": "ls",
                                                         "input": {}}]}], "none", {}),
                (0, [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a b", "content": ""}]}],
                 "none", {"stream": True})], style="compact", ask=[True] * 12)
@example(steps=[(0, [], "empty", {}), (0, [{"role": "user", "content": "x"}], "none", {})], style="spaced",
         ask=[False] * 12)
@example(steps=[(0, [], "none", {"stream": 1}), (0, [{"role": "user", "content": "x"}], "none", {"stream": 2})],
         style="compact", ask=[False] * 12)  # (the fields after the list changed, to as many bytes)
@example(steps=[(0, [], "none", {}), (0, [{"role": "user", "content": "x"}], "none", {"metadata": [_image]})],
         style="compact", ask=[False, True] + [False] * 10)
def test_a_remembered_read_is_the_whole_read(steps: list[tuple[int, list[Any], str, dict[str, Any]]],
                                             style: str, ask: list[bool]) -> None:
    checked = _checked(per_key=2, remember_from=0)
    conversations: list[list[Any]] = [[{"role": "user", "content": f"task {i}"}] for i in range(3)]
    for (which, new, edit, after), asked in zip(steps, ask, strict=False):
        history = conversations[which]
        if edit == "empty":
            history.clear()
        elif history and edit == "last":
            history[-1] = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x y", "content": ""}]}
        elif history and edit == "earlier":
            history[0] = {"role": "assistant", "content": [{"type": "tool_use", "id": "call.0", "name": "ls",
                                                            "input": {}}]}
        elif edit == "shorter":
            del history[-2:]
        history += new
        raw = _body(history, style, after)
        top = _remembered(checked, "other" if which == 2 else "key", raw)
        assert _read(top, asked) == _read(TopLevel(raw, MESSAGES_HISTORY), asked)


def test_an_agents_turn_reads_only_the_messages_it_added() -> None:
    checked = _checked(remember_from=0)
    reads = Reads(read_turn)
    history: list[Any] = [{"role": "user", "content": [_image, {"type": "text", "text": "fix the test " * 50}]}]
    for turn in range(5):
        history += [{"role": "assistant", "content": [{"type": "tool_use", "id": f"toolu_{turn}", "name": "ls",
                                                       "input": {}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{turn}",
                                                  "content": "file " * 50}]}]
        raw = orjson.dumps({"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": history,
                            "system": "you are a coding agent", "stream": True})
        before = reads.bytes
        found = checked.check("key", raw, reads(raw))
        assert found is not None
        top = MessagesTopLevel(raw, found)
        assert top.small == {"model": "claude-sonnet-4-5", "max_tokens": 64, "stream": True}
        assert top.turn.size == prompt_bytes(raw) < len(raw) - 6000  # (the image counted as 1600 tokens)
        assert top.turn.ids_fit()
        # the new messages, a comma before them, the closing bracket, the fields after them
        new = len(orjson.dumps(history[-2:])) + len(b',"system":"you are a coding agent","stream":true}')
        assert reads.bytes - before == (len(raw) if turn == 0 else new)
    # one body kept as it is, and what follows its list (its bytes and those decoded)
    after = b'],"system":"you are a coding agent","stream":true}'
    assert checked.weight == len(raw) + ENTRY + PER_FOUND * (2 * len(after) // PER_FOUND)


def test_a_turn_whose_earlier_ids_did_not_fit_does_not_fit() -> None:
    checked = _checked(remember_from=0)
    history: list[Any] = [{"role": "assistant", "content": [{"type": "tool_use", "id": "functions.ls:0",
                                                             "name": "ls", "input": {}}]}]
    assert not _remembered(checked, "key", _body(history, "compact", {})).turn.ids_fit()
    history.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "content": ""}]})
    assert not _remembered(checked, "key", _body(history, "compact", {})).turn.ids_fit()


def test_a_malformed_or_too_deep_body_gets_the_whole_reads_error() -> None:
    checked = _checked(remember_from=0)
    for raw in (b'{"model": "m", "messages": [{"role": "user", "content": "x"},]}',
                b'{"model": "m", "messages": [{"role": "user", "content": ' + b"[" * 5000 + b"]" * 5000 + b"}]}",
                b'["not", "an", "object"]', b'{"model": 1e999999, "messages": []}'):
        with pytest.raises(InvalidRequest) as whole:
            TopLevel(raw, MESSAGES_HISTORY)
        with pytest.raises(InvalidRequest) as remembered:
            _remembered(checked, "key", raw)
        assert str(remembered.value) == str(whole.value)


def test_a_turn_that_goes_on_wrongly_after_the_part_read_before_gets_the_whole_reads_answer() -> None:
    history = [{"role": "user", "content": "task " * 20},
               {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "ls", "input": {}}]}]
    first = orjson.dumps({"model": "claude-sonnet-4-5", "max_tokens": 9, "messages": history})
    prefix = first[:-2]  # up to the list's closing bracket
    turns = [
        prefix + b',]}',  # a trailing comma
        prefix + b',{"role":"user","content":"x"}],"model":"x"',  # cut short
        prefix + b'{"role":"user"}]}',  # no comma
        prefix + b'],"messages":[{"role":"user"}]}',  # `messages` again: the last counts
        prefix + b',{"role":"user","content":"x"}],"model":"claude-opus-4-1","model":"o3"}',
        prefix + b',{"role":"user","content":' + b"[" * 5000 + b"]" * 5000 + b"}]}",  # too deep
        prefix + b'],"max_tokens":1e999999}',  # a number orjson refuses
        prefix + b'] , "stream" : true }  ',
        prefix + b'  ,  {"role":"user","content":"x"}  ]}',
        prefix + b']}{}',  # more after the object
    ]
    empty = b'{"model":"m","max_tokens":9,"messages":[ ]}'
    cases = [(first, turn) for turn in turns] + [(empty, empty[:-3] + b',{"role":"user"}]}'),
                                                  (empty, empty[:-3] + b'{"role":"user"}]}')]
    for before, turn in cases:
        checked = _checked(remember_from=0)
        assert _read(_remembered(checked, "key", before)) == _read(TopLevel(before, MESSAGES_HISTORY))
        try:
            whole: Any = _read(TopLevel(turn, MESSAGES_HISTORY))
        except InvalidRequest as exc:
            whole = str(exc)
        try:
            remembered: Any = _read(_remembered(checked, "key", turn))
        except InvalidRequest as exc:
            remembered = str(exc)
        assert remembered == whole, turn


@settings(deadline=None, max_examples=100)
@given(bad=BAD_UTF8, at=st.integers(0, 40), text=st.text(max_size=6))
def test_a_turns_utf8_is_checked_from_where_the_last_one_ended_with_the_whole_bodys_error(
        bad: bytes, at: int, text: str) -> None:
    checked = _checked(remember_from=0)
    history: list[Any] = [{"role": "user", "content": "you are a coding agent é " * 20}]
    # (the fields after the list as they will be: a turn that ends so has only its new messages read)
    _remembered(checked, "key", orjson.dumps({"model": "m", "max_tokens": 9, "messages": history, "stream": True}))
    history.append({"role": "assistant", "content": "x" * 40 + text})
    good = orjson.dumps({"model": "m", "max_tokens": 9, "messages": history, "stream": True})
    # a byte sequence that is no UTF-8 in the new message (or in the fields after it)
    body = spoilt(good, bad, at)
    assert_the_whole_bodys_utf8_error(body, lambda: _remembered(checked, "key", body))
    assert _remembered(checked, "key", good).turn.end  # and the same turn, as UTF-8: read on


def test_a_short_body_is_read_whole_and_not_remembered() -> None:
    checked = _checked()  # (bodies of 16 kB or more remembered)
    history: list[Any] = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a b",
                                                        "content": "x"}]}]
    for style in ("compact", "spaced", "ahead"):
        raw = _body(history, style, {"stream": True})
        assert _read(read_messages(raw, checked, "key")) == _read(TopLevel(raw, MESSAGES_HISTORY))
    assert checked.weight == 0
