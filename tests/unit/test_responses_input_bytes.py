"""A Responses input read off the client's bytes: it goes upstream as sent only when the decoded
path would send it unchanged (items already in form, call ids that fit and answer, no item the
gateway made), and an ordinary agent's input does."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shieldes.errors import InvalidRequest
from shieldes.providers.signed_reasoning import without_own_reasoning
from shieldes.providers.tool_ids import RESPONSES, calls_answered_and_fit, scan_call_items
from shieldes.responses.compaction import with_summaries
from shieldes.responses.input_bytes import input_as_sent
from shieldes.responses.request import normalize_input
from tests.strategies import responses_call_ids, responses_items


def _decoded_path_sends_it_unchanged(items: list[Any]) -> bool:
    try:
        normalized = normalize_input(items)
    except InvalidRequest:
        return False
    body = {"input": items}
    try:
        opened = with_summaries(body)
    except InvalidRequest:  # a compaction item of the gateway's, cut: refused on the decoded path
        return False
    return (all(a is b for a, b in zip(normalized, items, strict=True))
            and scan_call_items(items, RESPONSES) == (True, None)
            and opened is None and without_own_reasoning(body) is None)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(responses_items, min_size=1, max_size=6), spaced=st.booleans())
def test_the_bytes_go_as_sent_exactly_when_the_decoded_path_changes_nothing(items: list[Any], spaced: bool) -> None:
    raw = json.dumps(items).encode() if spaced else orjson.dumps(items)
    if input_as_sent(raw):
        assert _decoded_path_sends_it_unchanged(items)
    # (the bytes are also left to the decoded path for a call_id that is not text: odd but valid)
    elif all(not isinstance(item, dict) or isinstance(item.get("call_id"), str | None) for item in items):
        assert not _decoded_path_sends_it_unchanged(items)


def test_an_agents_turn_goes_as_sent() -> None:
    items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "fix it"}]},
             {"type": "reasoning", "id": "rs_9", "summary": [], "encrypted_content": "gAAAA" * 100},
             {"type": "function_call", "call_id": "call_1", "name": "shell", "arguments": "{}"},
             {"type": "function_call_output", "call_id": "call_1", "output": "ok"}]
    assert input_as_sent(orjson.dumps(items))
    assert not input_as_sent(orjson.dumps(items[:1] + items[3:]))  # an output that answers no call


def test_the_gateways_marks_written_with_escapes_are_not_missed() -> None:
    for raw in (b'[{"type":"reasoning","id":"\\u0072s_shd_ab","summary":[]}]',
                b'[{"type":"reasoning","summary":[],"encrypted_content":"\\u0073hd-thinking-v1.x"}]',
                b'[{"type":"compaction","encrypted_content":"\\u0073hd1.x"}]'):
        items = orjson.loads(raw)
        assert without_own_reasoning({"input": items}) is not None or items[0]["type"] == "compaction"
        assert not input_as_sent(raw)


@given(st.lists(st.tuples(st.sampled_from(["function_call", "custom_tool_call_output", "function_call_output",
                                           "message"]), responses_call_ids), max_size=6))
def test_calls_read_as_pairs_decide_as_the_item_scan(calls: list[tuple[str, Any]]) -> None:
    items = [{"type": kind, "call_id": call_id} for kind, call_id in calls]
    assert calls_answered_and_fit(calls, RESPONSES) == (scan_call_items(items, RESPONSES) == (True, None))
