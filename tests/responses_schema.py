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
