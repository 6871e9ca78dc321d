"""What a turn knows of the conversation before its input (responses/history.History): found as the
history was put together, turn by turn, it equals what the checks find reading the whole input, and
the checks that read only the turn's own items after it decide as the full reads do."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shieldes.errors import InvalidRequest
from shieldes.providers.signed_reasoning import without_own_reasoning
from shieldes.providers.tool_ids import CALL_KINDS, RESPONSES, scan_call_items
from shieldes.responses.compaction import made_here, with_summaries
from shieldes.responses.history import NONE, History
from shieldes.usage.tokens import prompt_bytes
from tests.strategies import responses_items

_turns = st.lists(st.lists(responses_items, max_size=4), min_size=1, max_size=5)


def _summaries(body: dict[str, Any], start: int = 0) -> Any:
    try:
        return with_summaries(body, start)
    except InvalidRequest as exc:  # a compaction item of the gateway's that cannot be opened
        return exc.message


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(turns=_turns)
def test_a_history_built_turn_by_turn_knows_what_reading_it_whole_finds(turns: list[list[Any]]) -> None:
    history = NONE
    for turn in turns:
        history = history.then(turn)
    items = [item for turn in turns for item in turn]
    whole = History.of(items)
    assert history.items == whole.items == items
    assert (history.calls, history.plain) == (whole.calls, whole.plain)
    assert whole.size == (prompt_bytes(orjson.dumps(items)) if items else 0)
    assert history == whole  # (the size too: a turn's admission is the same however its history was found)

    passes = scan_call_items(items, RESPONSES) == (True, None)
    assert (history.calls is not None) == passes
    if passes:
        assert history.calls == {item["call_id"] for item in items if isinstance(item, dict)
                                 and item.get("type") in CALL_KINDS and isinstance(item.get("call_id"), str)}
    body = {"input": items}
    assert history.plain == (not any(map(made_here, items)) and without_own_reasoning(body) is None)


@settings(deadline=None, max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(before=st.lists(responses_items, max_size=6), own=st.lists(responses_items, max_size=4))
@example(before=[{"type": "function_call", "call_id": "call_1", "name": "ls", "arguments": "{}"}],
         own=[{"type": "function_call_output", "call_id": "call_1", "output": "ok"}])
def test_checking_only_a_turns_own_items_after_a_checked_history_decides_as_reading_everything(
        before: list[Any], own: list[Any]) -> None:
    history = History.of(before)
    if not history.checked:
        return  # (such a history is read whole again: upstream.respond)
    items = before + own
    body = {"input": items}
    start = len(before)
    assert scan_call_items(items, RESPONSES, start, history.calls or ()) == scan_call_items(items, RESPONSES)
    assert _summaries(body, start) == _summaries(body)
    assert without_own_reasoning(body, start) == without_own_reasoning(body)


def test_an_agents_history_is_checked_and_its_unanswered_foreign_or_gateway_items_are_not() -> None:
    turn = [{"type": "message", "role": "user", "content": "fix it"},
            {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "ok"}]
    history = History.of(turn).then([{"type": "message", "role": "assistant", "content": "done"}])
    assert history.checked and history.calls == {"call_1"}
    assert not History.of(turn[2:]).checked
    assert not History.of([{"type": "function_call", "call_id": "c" * 65}]).checked
    assert not History.of([{"type": "reasoning", "id": "rs_shd_ab", "summary": []}]).checked
