"""Responses custom (freeform) tools on deployments that speak chat completions: the tool as a
function of one string, the call back as a custom_tool_call (answers and streams), history items
as chat tool calls and results."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from shieldes.errors import InvalidRequest
from shieldes.providers.responses_custom import InputStream, custom_function, custom_input
from shieldes.providers.responses_replies import ChatStreamTranslator, chat_to_output
from shieldes.providers.responses_tools import call_kinds
from shieldes.providers.responses_translate import request_to_chat
from shieldes.responses.objects import ResponseContext
from tests.responses_schema import check_event, check_response

GRAMMAR = 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF'
PATCH_TOOL = {"type": "custom", "name": "apply_patch", "description": "Edit files.",
              "format": {"type": "grammar", "syntax": "lark", "definition": GRAMMAR}}
PATCH = '*** Begin Patch\n*** Update File: "a.py"\n-x = 1\n+x = "é😀\\t"\n*** End Patch\n'


def ids() -> Any:
    counter = itertools.count()
    return lambda prefix: f"{prefix}_{next(counter)}"


def test_a_custom_tool_is_a_function_of_one_string_that_says_its_format() -> None:
    fn = custom_function(PATCH_TOOL, "tools[0]")["function"]
    assert fn["name"] == "apply_patch" and fn["description"] == "Edit files."
    assert fn["parameters"]["required"] == ["input"] and fn["parameters"]["type"] == "object"
    said = fn["parameters"]["properties"]["input"]
    assert said["type"] == "string" and said["description"] == f"text following this lark grammar:\n{GRAMMAR}"
    regex = custom_function({"type": "custom", "name": "n", "format": {
        "type": "grammar", "syntax": "regex", "definition": "[0-9]+"}}, "w")["function"]
    assert regex["parameters"]["properties"]["input"]["description"] == "text matching this regular expression: [0-9]+"
    for free in ({"type": "custom", "name": "t"}, {"type": "custom", "name": "t", "format": {"type": "text"}}):
        assert "description" not in custom_function(free, "w")["function"]
        assert "free text" in custom_function(free, "w")["function"]["parameters"]["properties"]["input"]["description"]
    with pytest.raises(InvalidRequest, match=r"tools\[3\]\.format") as refused:
        custom_function({"type": "custom", "name": "t", "format": {"type": "grammar"}}, "tools[3]")
    assert refused.value.param == "tools[3].format"
    with pytest.raises(InvalidRequest, match="name"):
        custom_function({"type": "custom"}, "tools[0]")


def test_requests_offer_custom_tools_and_their_history_as_chat_tool_calls() -> None:
    body = {"model": "m", "tools": [PATCH_TOOL, {"type": "function", "name": "ls", "parameters": {}},
                                    {"type": "namespace", "name": "ns", "tools": [{"type": "custom", "name": "sql"}]}],
            "tool_choice": {"type": "custom", "name": "apply_patch"},
            "input": [{"role": "user", "content": "fix it"},
                      {"type": "custom_tool_call", "call_id": "call_1", "name": "apply_patch", "input": PATCH},
                      {"type": "custom_tool_call_output", "call_id": "call_1", "output": "Done!"},
                      {"type": "custom_tool_call", "call_id": "call_2", "name": "apply_patch", "input": "x"},
                      {"type": "custom_tool_call_output", "call_id": "call_2",
                       "output": [{"type": "input_text", "text": "fail"}]}]}
    chat = request_to_chat(body, "m")
    assert [t["function"]["name"] for t in chat["tools"]] == ["apply_patch", "ls", "sql"]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}
    assert chat["messages"][1:] == [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "apply_patch", "arguments": json.dumps({"input": PATCH}, ensure_ascii=False)}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Done!"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_2", "type": "function", "function": {
            "name": "apply_patch", "arguments": '{"input": "x"}'}}]},
        {"role": "tool", "tool_call_id": "call_2", "content": "fail"}]
    assert json.loads(chat["messages"][1]["tool_calls"][0]["function"]["arguments"]) == {"input": PATCH}
    allowed = request_to_chat({**body, "tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": [
        {"type": "custom", "name": "sql"}]}}, "m")
    assert [t["function"]["name"] for t in allowed["tools"]] == ["sql"]
    assert call_kinds(body).custom == frozenset({"apply_patch", "sql"})
    with pytest.raises(InvalidRequest, match=r"input\[0\]\.name"):
        request_to_chat({"model": "m", "input": [{"type": "custom_tool_call", "call_id": "c", "input": "x"}]}, "m")


def test_custom_tool_calls_come_back_with_their_input_or_the_raw_arguments() -> None:
    body = {"model": "m", "input": "x", "tools": [
        PATCH_TOOL, {"type": "namespace", "name": "ns", "tools": [{"type": "custom", "name": "sql"}]}]}
    calls = [{"id": "call_a", "function": {"name": "apply_patch", "arguments": json.dumps({"input": PATCH})}},
             {"id": "call_b", "function": {"name": "apply_patch", "arguments": "*** Begin Patch\nraw"}},
             {"id": "call_c", "function": {"name": "apply_patch", "arguments": {"input": 3}}},
             {"id": "call_d", "function": {"name": "sql", "arguments": '{"input": "select 1"}'}}]
    out = chat_to_output({"choices": [{"message": {"content": None, "tool_calls": calls}}]}, ids(), call_kinds(body))
    assert out.output[0] == {"id": "fc_0", "type": "custom_tool_call", "status": "completed", "call_id": "call_a",
                             "name": "apply_patch", "input": PATCH}
    assert [i["input"] for i in out.output[1:]] == ["*** Begin Patch\nraw", '{"input":3}', "select 1"]
    assert out.output[3]["namespace"] == "ns" and "arguments" not in out.output[3]
    # a raw newline inside the string (some models write them) is taken as the text it is
    assert custom_input('{"input": "a\nb"}') == "a\nb" and custom_input("") == ""


@pytest.mark.parametrize("arguments", [json.dumps({"input": PATCH}), json.dumps({"input": PATCH}, ensure_ascii=False),
                                       ' {\n "input" : "' + "\\\\\\\"" + '" }'])
def test_the_input_streams_whole_whatever_the_cuts(arguments: str) -> None:
    expected = custom_input(arguments)
    assert expected == json.loads(arguments)["input"]
    for size in (1, 2, 3, 5, 7, 64):
        stream = InputStream()
        pieces = [stream.feed(arguments[i:i + size]) for i in range(0, len(arguments), size)]
        rest = stream.rest(arguments)
        assert "".join(pieces) + rest == expected, size
        if size < len(expected) // 2:  # streamed as it was written, not all at the end
            assert sum(1 for p in pieces if p) > 1 and rest == ""


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def _call(index: int, arguments: str, call_id: str | None = None, name: str | None = None) -> dict[str, Any]:
    fn = {"arguments": arguments, **({"name": name} if name else {})}
    return _chunk({"tool_calls": [{"index": index, **({"id": call_id} if call_id else {}), "function": fn}]})


def test_a_streamed_custom_call_streams_its_input_in_order() -> None:
    body = {"model": "m", "tools": [PATCH_TOOL, {"type": "function", "name": "ls"}], "input": "x"}
    tr = ChatStreamTranslator(ResponseContext.of(body, "resp_1", 1_700_000_000, "m"), ids(), call_kinds(body))
    arguments = json.dumps({"input": PATCH})
    events = tr.start() + tr.feed(_chunk({"content": "Patching."}))
    events += tr.feed(_call(0, "", "call_p", "apply_patch"))
    for i in range(0, len(arguments), 4):
        events += tr.feed(_call(0, arguments[i:i + 4]))
    events += tr.feed(_call(1, '{"path":".', "call_l", "ls")) + tr.feed(_call(1, '"}'))
    events += tr.feed(_call(2, "not json", "call_r", "apply_patch")) + tr.feed(_chunk({}, "tool_calls"))
    events += tr.finish(1_700_000_001)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for e in events:
        check_event(e)
    final = events[-1]["response"]
    check_response(final)
    assert [(i["type"], i.get("input")) for i in final["output"]] == [
        ("message", None), ("custom_tool_call", PATCH), ("function_call", None), ("custom_tool_call", "not json")]
    patch = [e for e in events if e.get("output_index") == 1]
    kinds = [e["type"] for e in patch]
    assert kinds[0] == "response.output_item.added" and patch[0]["item"]["type"] == "custom_tool_call"
    assert patch[0]["item"]["input"] == "" and patch[0]["item"]["status"] == "in_progress"
    assert kinds[-2:] == ["response.custom_tool_call_input.done", "response.output_item.done"]
    assert set(kinds[1:-2]) == {"response.custom_tool_call_input.delta"} and len(kinds) > 10
    assert "".join(e["delta"] for e in patch[1:-2]) == PATCH == patch[-2]["input"] == patch[-1]["item"]["input"]
    assert {e["item_id"] for e in patch[1:-1]} == {"fc_1"} and patch[-1]["item"]["call_id"] == "call_p"
    raw = [e for e in events if e.get("output_index") == 3]
    assert [(e["type"], e.get("delta")) for e in raw][1:] == [
        ("response.custom_tool_call_input.delta", "not json"), ("response.custom_tool_call_input.done", None),
        ("response.output_item.done", None)]
    # the function call of the same answer streams as function calls do
    listed = [e["type"] for e in events if e.get("output_index") == 2]
    assert listed.count("response.function_call_arguments.delta") == 2
