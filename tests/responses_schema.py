"""Required fields of Responses API objects and stream events per the Open Responses specification
(openresponses.org, schema/components/schemas/*.json and schema/events.tsp): a strict client
rejects an object missing any of them, so tests check every object and event the gateway sends.
Each is also validated against the openai SDK's own pydantic models (the SDK parses without
validating, so a missing required field would otherwise only surface as a None where the SDK's
types promise a value)."""

from __future__ import annotations

import typing
from typing import Any

import pydantic
from openai.types.responses import Response, ResponseStreamEvent


def _sdk_events() -> dict[str, type[pydantic.BaseModel]]:
    union = ResponseStreamEvent
    if typing.get_origin(union) is typing.Annotated:
        union = typing.get_args(union)[0]
    return {kind: cls for cls in typing.get_args(union)
            for kind in typing.get_args(cls.model_fields["type"].annotation)}


SDK_EVENTS = _sdk_events()

RESPONSE = (
    "id", "object", "created_at", "completed_at", "status", "incomplete_details", "model",
    "previous_response_id", "instructions", "output", "error", "tools", "tool_choice", "truncation",
    "parallel_tool_calls", "text", "top_p", "presence_penalty", "frequency_penalty", "top_logprobs",
    "temperature", "reasoning", "user", "usage", "max_output_tokens", "max_tool_calls", "store", "background",
    "service_tier", "metadata", "safety_identifier", "prompt_cache_key",
)
NON_NULL = ("id", "object", "created_at", "status", "model", "output", "tools", "tool_choice", "truncation",
            "parallel_tool_calls", "text", "top_p", "presence_penalty", "frequency_penalty", "top_logprobs",
            "temperature", "store", "background", "service_tier", "metadata")
USAGE = ("input_tokens", "output_tokens", "total_tokens", "input_tokens_details", "output_tokens_details")
ITEMS = {
    "message": ("type", "id", "status", "role", "content"),
    "function_call": ("type", "id", "call_id", "name", "arguments", "status"),
    "function_call_output": ("type", "id", "call_id", "output", "status"),
    "reasoning": ("type", "id", "summary"),
    "custom_tool_call": ("type", "id", "call_id", "name", "input"),
}
PARTS = {"output_text": ("type", "text", "annotations", "logprobs"), "refusal": ("type", "refusal"),
         "input_text": ("type", "text"), "reasoning_text": ("type", "text"), "summary_text": ("type", "text")}
_ITEM_EVENT = ("item_id", "output_index")
EVENTS = {
    "response.created": ("response",), "response.in_progress": ("response",),
    "response.completed": ("response",), "response.failed": ("response",), "response.incomplete": ("response",),
    "response.output_item.added": ("output_index", "item"), "response.output_item.done": ("output_index", "item"),
    "response.content_part.added": (*_ITEM_EVENT, "content_index", "part"),
    "response.content_part.done": (*_ITEM_EVENT, "content_index", "part"),
    "response.output_text.delta": (*_ITEM_EVENT, "content_index", "delta"),
    "response.output_text.done": (*_ITEM_EVENT, "content_index", "text"),
    "response.refusal.delta": (*_ITEM_EVENT, "content_index", "delta"),
    "response.refusal.done": (*_ITEM_EVENT, "content_index", "refusal"),
    "response.function_call_arguments.delta": (*_ITEM_EVENT, "delta"),
    "response.function_call_arguments.done": (*_ITEM_EVENT, "arguments"),
    "response.custom_tool_call_input.delta": (*_ITEM_EVENT, "delta"),
    "response.custom_tool_call_input.done": (*_ITEM_EVENT, "input"),
    "response.reasoning_text.delta": (*_ITEM_EVENT, "content_index", "delta"),
    "response.reasoning_text.done": (*_ITEM_EVENT, "content_index", "text"),
    "response.reasoning_summary_part.added": (*_ITEM_EVENT, "summary_index", "part"),
    "response.reasoning_summary_part.done": (*_ITEM_EVENT, "summary_index", "part"),
    "response.reasoning_summary_text.delta": (*_ITEM_EVENT, "summary_index", "delta"),
    "response.reasoning_summary_text.done": (*_ITEM_EVENT, "summary_index", "text"),
    "error": ("error",),
}


def _need(obj: dict[str, Any], fields: tuple[str, ...], what: str) -> None:
    missing = [f for f in fields if f not in obj]
    assert not missing, f"{what} lacks required fields {missing}: {obj}"


def check_item(item: dict[str, Any]) -> None:
    kind = item.get("type")
    assert kind in ITEMS, f"unknown item type {kind!r}"
    _need(item, ITEMS[kind], f"{kind} item")
    for part in [*(item.get("content") or []), *(item.get("summary") or [])]:
        check_part(part)


def check_part(part: dict[str, Any]) -> None:
    assert part.get("type") in PARTS, f"unknown content part {part}"
    _need(part, PARTS[part["type"]], f"{part['type']} part")


def check_response(obj: dict[str, Any]) -> None:
    Response.model_validate(obj)
    _need(obj, RESPONSE, "response object")
    nulls = [f for f in NON_NULL if obj[f] is None]
    assert not nulls, f"response fields {nulls} must not be null"
    # integer seconds on the wire (the SDK models hold them as floats)
    assert float(obj["created_at"]).is_integer() and obj["object"] == "response"
    if obj["usage"] is not None:
        _need(obj["usage"], USAGE, "usage")
        assert "cached_tokens" in obj["usage"]["input_tokens_details"]
        assert "reasoning_tokens" in obj["usage"]["output_tokens_details"]
    for item in obj["output"]:
        check_item(item)


def check_event(event: dict[str, Any]) -> None:
    kind = event.get("type")
    assert kind in EVENTS, f"unexpected event type {kind!r}"
    SDK_EVENTS[str(kind)].model_validate(event)
    _need(event, ("type", "sequence_number", *EVENTS[str(kind)]), str(kind))
    if "response" in event:
        check_response(event["response"])
    if "item" in event:
        check_item(event["item"])
    if "part" in event:
        check_part(event["part"])
    if kind == "error":
        _need(event["error"], ("type", "code", "message", "param"), "error payload")


# --- a whole stream, as OpenAI sends one -----------------------------------------------------------

_TERMINAL = ("response.completed", "response.incomplete", "response.failed")
# delta event -> (its done event, the field the done event holds the whole text in, the index field)
_DELTAS = {
    "response.output_text.delta": ("response.output_text.done", "text", "content_index"),
    "response.refusal.delta": ("response.refusal.done", "refusal", "content_index"),
    "response.reasoning_text.delta": ("response.reasoning_text.done", "text", "content_index"),
    "response.reasoning_summary_text.delta": ("response.reasoning_summary_text.done", "text", "summary_index"),
    "response.function_call_arguments.delta": ("response.function_call_arguments.done", "arguments", None),
    "response.custom_tool_call_input.delta": ("response.custom_tool_call_input.done", "input", None),
}
_DONE = {done: (field, index) for done, field, index in _DELTAS.values()}
_PART_EVENTS = {"response.content_part.added": "content_index", "response.content_part.done": "content_index",
                "response.reasoning_summary_part.added": "summary_index",
                "response.reasoning_summary_part.done": "summary_index"}


def check_stream(events: list[dict[str, Any]]) -> dict[str, Any]:
    """A Responses event stream as OpenAI sends one, which clients rely on: `sequence_number` 0, 1,
    2, ...; response.created (then response.in_progress) first and one terminal event last (an
    `error` may come just before response.failed); output items one at a time, in order (each
    output_item.added at the next output_index, only once the item before it is done); every event
    of an item naming the open item's id and index; content (and summary) parts one at a time, in
    order; each .done holding exactly what its deltas sent; the terminal response's output the items
    the events built (for a failed response: those added, as they stood). Every event and object is
    also checked against the schema (check_event). Returns the terminal response."""
    assert events, "an empty stream"
    for event in events:
        check_event(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events))), "sequence_number must be 0, 1, 2, ..."
    kinds = [e["type"] for e in events]
    assert kinds[0] == "response.created", f"the stream must begin with response.created, not {kinds[0]}"
    assert kinds[-1] in _TERMINAL, f"the stream must end with a terminal event, not {kinds[-1]}"
    assert sum(k in _TERMINAL for k in kinds) == 1, f"one terminal event: {kinds}"
    rid = events[0]["response"]["id"]
    assert all(e["response"]["id"] == rid for e in events if "response" in e), "one response id throughout"
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    built: list[dict[str, Any]] = []  # items as output_item.done gave them (or .added, while open)
    open_item: dict[str, Any] | None = None
    parts: list[str] = []  # the open item's parts: "open" / "done"
    texts: dict[tuple[str, int | None], str] = {}  # (done type, part index) -> text the deltas sent
    for i, event in enumerate(events[1:-1], 1):
        kind = event["type"]
        if kind in ("response.in_progress", "error"):
            assert kind != "error" or kinds[-1] == "response.failed", "an error event ends a failed stream"
            assert kind != "response.in_progress" or i == 1, "response.in_progress comes right after response.created"
            continue
        if kind == "response.output_item.added":
            assert open_item is None, f"event {i}: item {len(built)} added before item {len(built) - 1} is done"
            assert event["output_index"] == len(built), f"event {i}: output_index {event['output_index']}, " \
                f"expected {len(built)}"
            open_item, parts, texts = event["item"], [], {}
            built.append(event["item"])
            continue
        assert open_item is not None, f"event {i} ({kind}) comes when no item is open"
        assert event["output_index"] == len(built) - 1, f"event {i} ({kind}) names output_index " \
            f"{event['output_index']}, the open item is {len(built) - 1}"
        if kind == "response.output_item.done":
            assert event["item"]["id"] == open_item["id"], f"event {i}: done for another item"
            assert all(p == "done" for p in parts), f"event {i}: item done with a part still open"
            built[-1], open_item = event["item"], None
            continue
        assert event["item_id"] == open_item["id"], f"event {i} ({kind}) names item {event['item_id']}, " \
            f"the open item is {open_item['id']}"
        if kind in _PART_EVENTS:
            at = event[_PART_EVENTS[kind]]
            if kind.endswith(".added"):
                assert at == len(parts) and all(p == "done" for p in parts), f"event {i}: part {at} out of order"
                parts.append("open")
            else:
                assert at == len(parts) - 1 and parts[at] == "open", f"event {i}: part {at} is not open"
                parts[at] = "done"
            continue
        if kind in _DELTAS:
            done, _field, index = _DELTAS[kind]
            at = event[index] if index else None
            assert index is None or (at == len(parts) - 1 and parts[at] == "open"), f"event {i}: delta outside its part"
            texts[(done, at)] = texts.get((done, at), "") + event["delta"]
        elif kind in _DONE:
            field_, index = _DONE[kind]
            at = event[index] if index else None
            assert event[field_] == texts.get((kind, at), ""), f"event {i}: {kind} holds {event[field_]!r}, " \
                f"its deltas sent {texts.get((kind, at), '')!r}"
    final: dict[str, Any] = events[-1]["response"]
    if kinds[-1] == "response.failed":
        assert [item["id"] for item in final["output"]] == [item["id"] for item in built], \
            "a failed response holds the items the stream added"
    else:
        assert open_item is None, "the stream ended with an item still open"
        assert final["output"] == built, "the final output must be the items the events built"
    return final
