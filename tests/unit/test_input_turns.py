"""A long Responses body read from where the input of a body of the key read before ended
(responses/input_turns.py) decides what the whole read decides: the same top-level fields, the
same call ids, the same input bytes, and None exactly when the whole read does not take it."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shieldes.errors import InvalidRequest
from shieldes.gateway.checked_histories import PER_FOUND, CheckedHistories
from shieldes.gateway.top_level import INPUT, TopLevel, utf8_checked
from shieldes.responses import input_turns
from shieldes.responses.input_bytes import calls_made
from shieldes.responses.input_turns import InputTurn, TurnRead, read_whole
from shieldes.usage.tokens import prompt_bytes
from tests.unit.turn_reads import BAD_UTF8, assert_the_whole_bodys_utf8_error, encoded, spoilt

_ids = st.sampled_from(["call_1", "call_2", "call_3", "a b", ""])
_item = st.one_of(
    st.fixed_dictionaries({"type": st.just("message"), "role": st.sampled_from(["user", "assistant"]),
                           "content": st.lists(st.fixed_dictionaries({"type": st.just("input_text"),
                                                                      "text": st.text(max_size=6)}), max_size=2)}),
    st.fixed_dictionaries({"type": st.just("function_call"), "call_id": _ids, "name": st.just("shell"),
                           "arguments": st.sampled_from(["{}", '{"command": "ls"}'])}),
    st.fixed_dictionaries({"type": st.just("function_call_output"), "call_id": _ids, "output": st.text(max_size=6)}),
    # a screenshot: its base64 counts as the tokens an image is (prompt_bytes), in whichever turn it came
    st.just({"type": "message", "role": "user", "content": [
        {"type": "input_image", "image_url": "data:image/png;base64," + "iVBORw0K" * 1000}]}),
    # shapes that do not go upstream as sent: the whole read says None
    st.just({"type": "message", "role": "user", "content": "bare text"}),
    st.just({"role": "user", "content": []}),
)
# fields after the input, which may change from turn to turn (a field named twice: the last counts)
_after = st.dictionaries(st.sampled_from(["stream", "store", "max_output_tokens", "service_tier", "user"]),
                         st.integers(0, 3) | st.none() | st.booleans(), max_size=2)
_steps = st.lists(st.tuples(st.integers(0, 2), st.lists(_item, max_size=3),
                            st.sampled_from(["none", "last", "earlier", "shorter"]), _after), min_size=1, max_size=10)
# how a client encodes a body: compact, spaced, indented, Codex's order (instructions and a dict
# ahead of the input), tools whose schema names a property `input` after it, a field named twice
_styles = st.sampled_from(["compact", "spaced", "indented", "codex", "tools", "twice"])
_TOOL = {"type": "function", "name": "apply_patch", "parameters": {
    "type": "object", "properties": {"input": {"type": "string"}}, "required": ["input"]}}


def _body(items: list[Any], style: str, after: dict[str, Any]) -> bytes:
    if style == "codex":
        return orjson.dumps({"model": "gpt-5", "instructions": "be careful", "reasoning": {"effort": "low"},
                             "input": items, "tools": [_TOOL], **after})
    if style == "tools":
        return orjson.dumps({"model": "gpt-5", "input": items, "tools": [_TOOL], **after})
    if style == "twice":
        raw = orjson.dumps({"model": "gpt-5", "stream": True, "input": items, **after})
        return raw[:-1] + b',"stream":false}'
    body = {"model": "gpt-5", "stream": True, "input": items, **after}
    return encoded(body, style)


def _whole(raw: bytes) -> tuple[Any, ...] | None:
    """The reference: the general read's fields, and its items' check (input_bytes)."""
    try:
        top = TopLevel(raw, INPUT)
    except InvalidRequest:  # (malformed: the general read's error)
        return None
    if top.shape("input") != "list":
        return None
    calls = calls_made(top.fields["input"])
    return None if calls is None else (top.small, calls, bytes(memoryview(top.fields["input"])))


def _of(found: InputTurn | None, read: TurnRead) -> tuple[Any, ...] | None:
    return None if found is None else (read.small, found.calls, read.raw[found.start:found.end + 1])


def _read(checked: CheckedHistories[InputTurn], key: str, raw: bytes) -> tuple[Any, ...] | None:
    read = TurnRead(raw)
    return _of(checked.check(key, raw, read), read)


def _checked(**kw: Any) -> CheckedHistories[InputTurn]:
    return CheckedHistories(lambda found: len(found.calls), end=lambda found: found.end, **kw)


@settings(deadline=None, max_examples=400)
@given(steps=_steps, style=_styles)
@example(steps=[(0, [{"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": "{}"}], "none", {}),
                (0, [{"type": "function_call_output", "call_id": "call_1", "output": "ok"}], "none", {"store": False})],
         style="codex")
@example(steps=[(0, [], "none", {}), (0, [], "none", {"stream": False})], style="twice")
def test_a_remembered_read_is_the_whole_read(steps: list[tuple[int, list[Any], str, dict[str, Any]]],
                                             style: str) -> None:
    checked = _checked(per_key=2, remember_from=0)
    conversations: list[list[Any]] = [[{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": f"task {i}"}]}] for i in range(3)]
    for which, new, edit, after in steps:
        items = conversations[which]
        if not items:  # (an empty list, then a turn's items)
            pass
        elif edit == "last":
            items[-1] = {"type": "function_call_output", "call_id": "call_2", "output": "edited"}
        elif edit == "earlier":
            items[0] = {"type": "function_call", "call_id": "call_3", "name": "ls", "arguments": "{}"}
        elif edit == "shorter":
            del items[-2:]
        items += new
        raw = _body(items, style, after)
        read = TurnRead(raw)
        found = checked.check("other" if which == 2 else "key", raw, read)
        assert _of(found, read) == _whole(raw)
        assert found is None or read.size == prompt_bytes(raw)  # (counted from where the last turn's ended)
        if found is not None:  # (what a later turn shares with this one is never changed by this one's use)
            for value in read.small.values():
                if isinstance(value, dict):
                    value["changed"] = True
                elif isinstance(value, list):
                    value.append("changed")


def test_an_agents_turn_reads_only_what_it_added() -> None:
    checked = _checked()
    items = [{"type": "function_call_output", "call_id": f"call_{i}", "output": "x" * 400} for i in range(60)]
    calls = [{"type": "function_call", "call_id": f"call_{i}", "name": "shell", "arguments": "{}"} for i in range(60)]
    history = [item for pair in zip(calls, items, strict=True) for item in pair]
    new = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "next"}]}
    seen: list[int] = []

    def counting(body: bytes) -> Any:
        read = TurnRead(body)
        return lambda data, prior: (seen.append(len(data)), read(data, prior))[1]

    for ahead in ({"model": "gpt-5"}, {"model": "gpt-5", "instructions": "be careful " * 400}):  # (Codex's order)
        seen.clear()
        raw = orjson.dumps({**ahead, "input": history, "tools": [_TOOL], "store": False})
        assert checked.check(ahead["model"], raw, counting(raw)) is not None
        later = orjson.dumps({**ahead, "input": [*history, new], "tools": [_TOOL], "store": False})
        found = checked.check(ahead["model"], later, counting(later))
        assert found is not None and found.calls == frozenset(f"call_{i}" for i in range(60))
        assert seen[0] == len(raw) and seen[1] < 500  # (the history not read again)
        # the fields ahead of the list, plain values, shared with the next turn (their text weighed)
        assert found.before == ahead
        assert input_turns.weigh(found) * PER_FOUND >= sum(map(len, ahead.values())) + len(found.after.raw)
        assert _read(checked, ahead["model"], later) == _whole(later)


def test_the_fields_after_an_agents_input_are_read_once_while_they_stay_the_same() -> None:
    checked = _checked(remember_from=0)
    seen: list[bytes] = []
    decoded = orjson.loads

    def counting(value: Any) -> Any:
        seen.append(bytes(value))
        return decoded(value)

    items: list[Any] = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]
    after = {"instructions": "be careful " * 400, "tools": [_TOOL], "store": False}
    for turn in range(4):
        items.append({"type": "function_call", "call_id": f"call_{turn}", "name": "shell", "arguments": "{}"})
        raw = orjson.dumps({"model": "gpt-5", "input": items, **after})
        input_turns.orjson.loads = counting  # type: ignore[attr-defined]
        try:
            read = TurnRead(raw)
            found = checked.check("key", raw, read)
        finally:
            input_turns.orjson.loads = decoded  # type: ignore[attr-defined]
        assert _of(found, read) == _whole(raw) and found is not None and found.after is not None
        assert read.small["tools"] is not found.after.fields[1][1]  # (a list: each read its own)
        # the first turn decodes every field; then only the tools, a list no two reads share
        assert turn == 0 or seen == [orjson.dumps([_TOOL])], seen
        seen.clear()


def test_a_body_that_names_its_input_again_after_the_list_is_read_as_the_whole_read_reads_it() -> None:
    first = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]
    again = orjson.dumps(first)
    call = {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": "{}"}
    checked = _checked(remember_from=0)
    for items in (first, [*first, call], [*first, call, call]):
        raw = orjson.dumps({"model": "gpt-5", "input": items})[:-1] + b',"input":' + again + b"}"
        got = _read(checked, "key", raw)  # (None: read the general way, the whole read's answer)
        assert got == _whole(raw) if items is first else got is None


def test_a_turn_that_goes_on_wrongly_after_the_part_read_before_gets_the_whole_reads_answer() -> None:
    first = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}]
    raw = orjson.dumps({"model": "gpt-5", "input": first, "store": False})
    head = raw[:raw.index(b"]}],") + 2]  # the body up to the end of its input's last item
    odd = [
        head + b",]}",  # a trailing comma
        head + b'{"type":"message"}]}',  # no comma
        head + b',{"type":"message","role":"user","content":[]}',  # cut short
        head + b'],"input":[{"type":"function_call_output","call_id":"x","output":"y"}]}',  # a second input
        head + b'],"input":[{"type":"message","role":"user","content":[]}]}',  # a second input that passes
        head + b"," + b"[" * 2000 + b"]" * 2000 + b"]}",  # too deep
        head + b'],"store":tru}',  # a field after it that does not decode
        head + b"]}" + b"  ",  # spaces after the body
    ]
    for body in odd:
        checked = _checked(remember_from=0)
        assert _read(checked, "key", raw) is not None
        assert _read(checked, "key", body) == _whole(body), body[-80:]
        read = TurnRead(body)
        assert _of(read_whole(body, read), read) == _whole(body)


@settings(deadline=None, max_examples=100)
@given(bad=BAD_UTF8, at=st.integers(0, 40), text=st.text(max_size=6), same_after=st.booleans(),
       wrapped=st.booleans())
def test_a_turns_utf8_is_checked_from_where_the_last_one_ended_with_the_whole_bodys_error(
        bad: bytes, at: int, text: str, same_after: bool, wrapped: bool) -> None:
    checked = _checked(remember_from=0)
    items: list[Any] = [{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": "you are a coding agent é " * 20}]}]
    after = {"store": False, "instructions": "soyez prudent é"}
    raw = orjson.dumps({"model": "gpt-4o", "input": items, **(after if same_after else {})})

    def read(body: bytes) -> Any:  # (TurnRead checks the UTF-8 itself; utf8_checked's check before it changes nothing)
        return utf8_checked(body, TurnRead(body)) if wrapped else TurnRead(body)

    first = checked.check("key", raw, read(raw))
    assert first is not None
    items.append({"type": "message", "role": "user", "content": [{"type": "input_text", "text": "x" * 40 + text}]})
    good = orjson.dumps({"model": "gpt-4o", "input": items, **after})
    body = spoilt(good, bad, at)
    assert_the_whole_bodys_utf8_error(body, lambda: checked.check("key", body, read(body)))
    found = checked.check("key", good, read(good))
    assert found is not None and (found.after is first.after) == same_after  # (what followed the list not read again)
    assert_the_whole_bodys_utf8_error(body, lambda: checked.check("key", body, read(body)))  # (after a turn)
