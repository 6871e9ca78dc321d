"""Conversations checked once: a key's next turn, which starts with the bytes of a list that passed
(a Messages history, a Responses input), is read from there on, and the answer is always the one
reading the whole list gives."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shieldes.gateway.checked_histories import ENTRY, PER_FOUND, CheckedHistories, is_member, read_on_from
from shieldes.gateway.responses_routes import input_calls_made
from shieldes.providers.tool_ids import anthropic_ids_fit_in
from shieldes.responses.input_bytes import calls_made
from tests.strategies import responses_items

_ids = st.sampled_from(["toolu_01A", "toolu_02B", "call_x", "functions.lookup:0", "a b", ""])
_messages = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant"]), "content": st.text(max_size=8)}),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": st.lists(st.fixed_dictionaries(
        {"type": st.just("tool_use"), "id": _ids, "name": st.just("ls"), "input": st.just({})}), max_size=2)}),
    st.fixed_dictionaries({"role": st.just("user"), "content": st.lists(st.fixed_dictionaries(
        {"type": st.just("tool_result"), "tool_use_id": _ids, "content": st.text(max_size=8)}), max_size=2)}),
)
# each step: which conversation (of the key's three, or another key's) gets which new messages, and
# whether the step resends its last message changed, with an id that does not fit (its bytes are no
# longer a prefix, and a check that read only the new messages would miss the id)
_steps = st.lists(st.tuples(st.integers(0, 3), st.lists(_messages, max_size=3), st.booleans()), min_size=1,
                  max_size=12)


def history_ids_fit(data: memoryview, _before: bool | None) -> bool | None:
    """A read of a Messages history (a part of a body, as count_request reads one): True when the
    ids in `data` fit Anthropic's rule."""
    return True if anthropic_ids_fit_in(data) else None


class _Reads:
    """history_ids_fit, counting the bytes it was given."""

    def __init__(self) -> None:
        self.bytes = 0

    def __call__(self, data: memoryview, before: bool | None) -> bool | None:
        self.bytes += len(data)
        return history_ids_fit(data, before)


@settings(deadline=None, max_examples=300)
@given(steps=_steps)
def test_every_answer_is_the_whole_historys(steps: list[tuple[int, list[Any], bool]]) -> None:
    checked: CheckedHistories[bool] = CheckedHistories(per_key=2, remember_from=0)
    conversations: list[list[Any]] = [[{"role": "user", "content": f"task {i}"}] for i in range(4)]
    for which, new, changed in steps:
        history = conversations[which]
        if changed:
            history[-1] = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "a b",
                                                        "content": "edited"}]}
        history += new
        raw = orjson.dumps(history)
        key = "other" if which == 3 else "key"
        assert (checked.check(key, raw, history_ids_fit) is not None) == anthropic_ids_fit_in(raw)


def test_an_agents_next_turn_is_read_from_where_the_last_one_ended() -> None:
    checked: CheckedHistories[bool] = CheckedHistories(remember_from=0)
    reads = _Reads()
    history: list[Any] = [{"role": "user", "content": "fix the bug " * 100}]
    for turn in range(5):
        history += [{"role": "assistant", "content": [{"type": "tool_use", "id": f"toolu_{turn}", "name": "ls",
                                                       "input": {}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"toolu_{turn}",
                                                  "content": "file " * 50}]}]
        raw = orjson.dumps(history)
        before = reads.bytes
        assert checked.check("key", raw, reads)
        new = len(orjson.dumps(history[-2:]))  # the new messages, a comma before them, the closing bracket
        assert reads.bytes - before == (len(raw) if turn == 0 else new)
    # a history with a foreign id after the part that passed: read, and refused
    foreign = [*history, {"role": "assistant", "content": [{"type": "tool_use", "id": "functions.ls:9",
                                                            "name": "ls", "input": {}}]}]
    assert checked.check("key", orjson.dumps(foreign), reads) is None
    # another key never starts from this key's histories
    before = reads.bytes
    assert checked.check("other", raw, reads) and reads.bytes - before == len(raw)


@settings(deadline=None, max_examples=300)
@given(turns=st.lists(st.tuples(st.integers(0, 1), st.lists(responses_items, max_size=3), st.booleans()),
                      min_size=1, max_size=10))
@example(turns=[(0, [{"type": "function_call", "call_id": "call_1", "name": "ls", "arguments": "{}"}], False),
                (0, [{"type": "function_call_output", "call_id": "call_1", "output": "ok"}], False)])
def test_a_responses_input_checked_turn_by_turn_reads_as_the_whole_input(
        turns: list[tuple[int, list[Any], bool]]) -> None:
    """Inputs of two conversations of one key, each turn the last plus new items (or with its last
    item replaced): what the check finds (whether the items go as sent, and the calls they made)
    is what reading the whole input finds."""
    checked: CheckedHistories[frozenset[str]] = CheckedHistories(remember_from=0)
    inputs: list[list[Any]] = [[{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": f"task {i}"}]}] for i in range(2)]
    for which, new, replaced in turns:
        items = inputs[which]
        if replaced:
            items[-1] = {"type": "function_call_output", "call_id": "call_1", "output": "x"}
        items += new
        raw = orjson.dumps(items)
        assert checked.check("key", raw, input_calls_made) == calls_made(raw)


def test_what_a_node_holds_is_bounded_by_bytes_the_keys_used_longest_ago_forgotten() -> None:
    calls = [{"type": "function_call", "call_id": f"call_{i}", "name": "ls", "arguments": "{}"} for i in range(9)]
    raw = orjson.dumps(calls)
    each = len(raw) - 1 + ENTRY + 9 * PER_FOUND  # a copy up to the closing bracket, its nine ids
    checked: CheckedHistories[frozenset[str]] = CheckedHistories(len, most=4 * each, per_key=2, remember_from=0)
    for key in range(10):
        # (a memoryview: a part of a body, copied)
        assert checked.check(f"key{key}", memoryview(raw), input_calls_made) == {f"call_{i}" for i in range(9)}
        assert checked.weight <= 4 * each
    assert checked.weight == 4 * each  # four keys' lists
    reads = _Reads()
    first = b'[{"role":"user","content":"hi"}]'
    longer = first[:-1] + b',{"role":"user","content":"again"}]'
    # bodies (bytes) are kept as they are: each weighs its whole length
    checked_messages: CheckedHistories[bool] = CheckedHistories(most=3 * (len(first) + ENTRY), remember_from=0)
    for key in ("a", "b", "c", "d"):
        checked_messages.check(key, first, reads)
        assert checked_messages.weight <= 3 * (len(first) + ENTRY)
    before = reads.bytes
    checked_messages.check("a", longer, reads)
    assert reads.bytes - before == len(longer)  # key a was forgotten: its history read whole
    before = reads.bytes
    checked_messages.check("d", longer, reads)
    assert reads.bytes - before == len(longer) - len(first) + 1  # key d was not: only its new message
    # one list larger than the bound is read and not held
    checked_messages.check("e", b"[" + b'"x",' * 100 + b'"x"]', reads)
    assert checked_messages.weight <= 3 * (len(first) + ENTRY)


def _history(turns: int) -> bytes:
    return orjson.dumps([{"role": "user", "content": f"turn {i} " + "x" * 200} for i in range(turns)])


@settings(deadline=None, max_examples=200)
@given(where=st.sampled_from(["start", "middle", "end"]), turns=st.integers(2, 30), bytes_as=st.booleans())
def test_a_list_differing_in_one_byte_of_the_part_read_before_is_read_whole(where: str, turns: int,
                                                                             bytes_as: bool) -> None:
    checked: CheckedHistories[bool] = CheckedHistories(remember_from=0)
    reads = _Reads()
    old = _history(turns)
    checked.check("key", old if bytes_as else memoryview(old), reads)
    # the next turn, one byte of the part before changed (a letter inside a string: still valid JSON)
    new = bytearray(_history(turns + 1))
    at = {"start": old.index(b"turn 0") + 1, "middle": old.index(b"x", len(old) // 2),
          "end": old.rindex(b"x")}[where]
    new[at] ^= 0x20
    before = reads.bytes
    assert checked.check("key", bytes(new), reads)
    assert reads.bytes - before == len(new)  # read whole
    # the conversation as it was, a turn on: read from where its list ended (the changed one is
    # remembered beside it)
    before = reads.bytes
    assert checked.check("key", _history(turns + 2), reads)
    assert reads.bytes - before == len(_history(turns + 2)) - len(old) + 1


def test_a_list_that_shrinks_or_forks_is_read_whole() -> None:
    checked: CheckedHistories[bool] = CheckedHistories(remember_from=0)
    reads = _Reads()
    checked.check("key", _history(10), reads)
    for raw in (_history(9), _history(5)):  # shorter lists (what they hold was read before: not remembered)
        before = reads.bytes
        assert checked.check("key", raw, reads)
        assert reads.bytes - before == len(raw)
    # a list equal in length to the one remembered but for its last byte before the bracket
    checked = CheckedHistories(remember_from=0)
    checked.check("key", _history(12), reads)
    forked = orjson.dumps([*orjson.loads(_history(11)), {"role": "user", "content": "turn 11 " + "x" * 199 + "y"}])
    assert len(forked) == len(_history(12))
    before = reads.bytes
    assert checked.check("key", forked, reads) and reads.bytes - before == len(forked)
    # and a later turn of it goes on from it
    later = forked[:-1] + b',{"role":"user","content":"next"}]'
    before = reads.bytes
    assert checked.check("key", later, reads) and reads.bytes - before == len(later) - len(forked) + 1


def test_a_short_list_is_read_whole_and_not_remembered() -> None:
    checked: CheckedHistories[bool] = CheckedHistories(remember_from=100)
    reads = _Reads()
    short = b'[{"role":"user","content":"hi"}]'
    for _ in range(2):
        assert checked.check("key", short, reads)
    assert reads.bytes == 2 * len(short) and checked.weight == 0


def test_a_read_goes_on_after_a_comma_or_at_the_closing_bracket_only() -> None:
    raw = b'{"messages":[{"a":1}'
    cases = {b' , {"b":2}]}': b'{"b":2}]}', b"\n]}": b"]}", b",]}": None, b'{"b":2}]}': None, b"": None}
    for rest, expected in cases.items():
        assert read_on_from(raw + rest, len(raw)) == expected, rest
    empty = b'{"messages":['  # (a list read before with no entry: entries follow its bracket)
    assert read_on_from(empty + b' {"b":2}]}', len(empty), empty=True) == b'{"b":2}]}'
    assert read_on_from(empty + b"]}", len(empty), empty=True) == b"]}"
    assert read_on_from(empty + b',{"b":2}]}', len(empty), empty=True) is None


def test_a_list_is_a_members_value_only_after_its_name_and_a_colon() -> None:
    assert is_member(b'{"model": "m", "messages" :\n [', 29, b'"messages"')
    assert not is_member(b'{"x": ["messages", [', 19, b'"messages"')
    assert not is_member(b'{"input": [', 10, b'"messages"')
