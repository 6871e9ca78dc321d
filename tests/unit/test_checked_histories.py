"""Conversations checked once: a key's next turn, which starts with the bytes of a list that passed
(a Messages history, a Responses input), is read from there on, and the answer is always the one
reading the whole list gives."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shieldes.gateway.checked_histories import CheckedHistories
from shieldes.gateway.messages import history_ids_fit
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
    # (a short head: a change after it is seen by the whole CRC)
    checked: CheckedHistories[bool] = CheckedHistories(per_key=2, head=8, remember_from=0)
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
    checked: CheckedHistories[frozenset[str]] = CheckedHistories(head=8, remember_from=0)
    inputs: list[list[Any]] = [[{"type": "message", "role": "user", "content": [
        {"type": "input_text", "text": f"task {i}"}]}] for i in range(2)]
    for which, new, replaced in turns:
        items = inputs[which]
        if replaced:
            items[-1] = {"type": "function_call_output", "call_id": "call_1", "output": "x"}
        items += new
        raw = orjson.dumps(items)
        assert checked.check("key", raw, input_calls_made) == calls_made(raw)


def test_what_a_node_holds_is_bounded_by_weight_the_keys_used_longest_ago_forgotten() -> None:
    checked: CheckedHistories[frozenset[str]] = CheckedHistories(len, most=40, per_key=2, remember_from=0)
    for key in range(10):
        calls = [{"type": "function_call", "call_id": f"call_{i}", "name": "ls", "arguments": "{}"} for i in range(9)]
        assert checked.check(f"key{key}", orjson.dumps(calls), input_calls_made) == {f"call_{i}" for i in range(9)}
        assert checked.weight <= 40
    assert checked.weight == 40  # four keys' lists of 1 + 9 each
    reads = _Reads()
    checked_messages: CheckedHistories[bool] = CheckedHistories(most=3, remember_from=0)
    for key in ("a", "b", "c", "d"):
        checked_messages.check(key, b'[{"role":"user","content":"hi"}]', reads)
    before = reads.bytes
    checked_messages.check("a", b'[{"role":"user","content":"hi"},{"role":"user","content":"again"}]', reads)
    assert reads.bytes - before > 40  # key a was forgotten: its history read whole


def test_a_short_list_is_read_whole_and_not_remembered() -> None:
    checked: CheckedHistories[bool] = CheckedHistories(remember_from=100)
    reads = _Reads()
    short = b'[{"role":"user","content":"hi"}]'
    for _ in range(2):
        assert checked.check("key", short, reads)
    assert reads.bytes == 2 * len(short) and checked.weight == 0
