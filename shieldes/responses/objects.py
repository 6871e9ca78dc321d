"""Pure builders of Responses API objects: the response object with every field the Open Responses
schema requires, its usage, output items, and numbered stream events. No I/O, no clock: ids and
timestamps come from the caller."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

Body = dict[str, Any]
ENCRYPTED = "reasoning.encrypted_content"  # the `include` entry that returns reasoning's encrypted_content

# Request fields a response object echoes back, with the value the API shows when unset.
_ECHOED: dict[str, Any] = {
    "instructions": None,
    "max_output_tokens": None,
    "max_tool_calls": None,
    "parallel_tool_calls": True,
    "previous_response_id": None,
    "reasoning": None,
    "safety_identifier": None,
    "prompt_cache_key": None,
    "tool_choice": "auto",
    "tools": [],
    "truncation": "disabled",
    "user": None,
    "top_logprobs": 0,
    "temperature": 1.0,
    "top_p": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "background": False,
    "service_tier": "default",
    "metadata": {},
    "store": True,
}


def new_id(prefix: str) -> str:
    """`resp`, `msg`, `fc`, `rs`, ... followed by 48 random hex digits, as the API's ids look."""
    return f"{prefix}_{secrets.token_hex(24)}"


def _mark(digits: str, stored: bool) -> str:
    return hashlib.blake2b((digits + ("s" if stored else "n")).encode(), digest_size=3).hexdigest()


def response_id(stored: bool, now: float) -> str:
    """`resp_` and 48 hex digits, as OpenAI's look (the first 8 the creation time in seconds, as
    OpenAI's are): 34 random ones, then 6 that say whether the response is stored. A response
    that is not stored is never written, so a node asked for one it does not hold answers at once
    instead of polling for a row another node may still be writing (never_stored)."""
    digits = f"{int(now) & 0xFFFFFFFF:08x}{secrets.token_hex(17)}"
    return f"resp_{digits}{_mark(digits, stored)}"


def never_stored(response_id: str) -> bool:
    """Whether `response_id` is one a node minted for a response it does not store (response_id).
    Another id (one minted before ids said so, one from elsewhere) reads as maybe stored; one
    minted before reads so by chance once in 16 million."""
    digits = response_id[5:] if response_id.startswith("resp_") else ""
    return len(digits) == 48 and digits[42:] == _mark(digits[:42], False)


@dataclass(slots=True)
class ResponsesUsage:
    """(Not frozen: one is read off every stream's terminal event, and a frozen field costs its
    __init__ a call of object.__setattr__.)"""

    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0  # of the input tokens, written to the prompt cache

    def to_dict(self) -> Body:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens,
                                     "cache_write_tokens": self.cache_write_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.input_tokens + self.output_tokens,
        }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_from_chat(usage: Any) -> ResponsesUsage | None:
    """Chat completions `usage` (with its details) -> Responses usage. Cache writes come as
    `cache_creation_input_tokens` (as the translating providers report them, see chat_parts)."""
    if not isinstance(usage, dict) or not isinstance(usage.get("prompt_tokens"), int):
        return None
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return ResponsesUsage(
        usage["prompt_tokens"],
        int(usage.get("completion_tokens") or 0),
        _count(prompt_details.get("cached_tokens")) if isinstance(prompt_details, dict) else 0,
        _count(completion_details.get("reasoning_tokens")) if isinstance(completion_details, dict) else 0,
        _count(usage.get("cache_creation_input_tokens")),
    )


def reports_usage(usage: Any) -> bool:
    """Whether a Responses `usage` object is one usage_from_responses reads (not None)."""
    return isinstance(usage, dict) and isinstance(usage.get("input_tokens"), int)


def usage_from_responses(usage: Any) -> ResponsesUsage | None:
    """A Responses `usage` object as an upstream sent it -> ResponsesUsage."""
    if not isinstance(usage, dict):
        return None
    tokens_in = usage.get("input_tokens")
    if not isinstance(tokens_in, int):
        return None
    # the details' counts read as _count reads them (a positive int, not a bool: JSON's own types),
    # in line: one call a count was a third of this read; a zero or a missing count (most of
    # them) is told by its truth alone
    cached: Any = 0
    written: Any = 0
    reasoning: Any = 0
    details = usage.get("input_tokens_details")
    if isinstance(details, dict):
        cached, written = details.get("cached_tokens") or 0, details.get("cache_write_tokens") or 0
        if cached and (type(cached) is not int or cached < 0):
            cached = 0
        if written and (type(written) is not int or written < 0):
            written = 0
    details = usage.get("output_tokens_details")
    if isinstance(details, dict):
        reasoning = details.get("reasoning_tokens") or 0
        if reasoning and (type(reasoning) is not int or reasoning < 0):
            reasoning = 0
    return ResponsesUsage(tokens_in, int(usage.get("output_tokens") or 0), cached, reasoning, written)


@dataclass(frozen=True, slots=True)
class ResponseContext:
    """What the response object says about the request: its id, creation time, requested model and
    the echoed request fields."""

    id: str
    created_at: int
    model: str
    echo: Body = field(default_factory=dict)

    @classmethod
    def of(cls, request: Body, response_id: str, created_at: int, model: str) -> ResponseContext:
        echo = {k: v for k, v in request.items() if k in _ECHOED and v is not None}  # (read by name only)
        text = request.get("text")
        echo["text"] = text if isinstance(text, dict) and "format" in text else {
            **(text if isinstance(text, dict) else {}), "format": {"type": "text"}}
        return cls(response_id, created_at, model, echo)


class ContextOf:
    """A request's ResponseContext, built (its id minted, its echoed fields picked) when first read:
    a native upstream's response objects carry their own id and fields, so a pass-through turn
    needs only `previous`, the previous_response_id the gateway adds to them. `request` is not
    changed after (upstream bodies are copies of it)."""

    __slots__ = ("_built", "_model", "_request", "_stored", "created_at", "previous")

    def __init__(self, request: Body, stored: bool, created_at: int, model: str) -> None:
        self._request, self._stored, self.created_at, self._model = request, stored, created_at, model
        self._built: ResponseContext | None = None
        previous = request.get("previous_response_id")
        self.previous: str | None = previous if isinstance(previous, str) else None

    @property
    def context(self) -> ResponseContext:
        built = self._built
        if built is None:
            built = self._built = ResponseContext.of(self._request, response_id(self._stored, self.created_at),
                                                     self.created_at, self._model)
        return built


def response_object(ctx: ResponseContext, status: str, output: list[Body], usage: ResponsesUsage | None, *,
                    completed_at: int | None = None, error: Body | None = None,
                    incomplete: str | None = None) -> Body:
    """The `response` object: every field the Open Responses schema requires is present."""
    obj: Body = {
        "id": ctx.id,
        "object": "response",
        "created_at": ctx.created_at,
        "completed_at": completed_at if status == "completed" else None,
        "status": status,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "model": ctx.model,
        "output": output,
        "error": error,
        "usage": usage.to_dict() if usage is not None else None,
    }
    for name, default in _ECHOED.items():
        obj[name] = ctx.echo.get(name, default)
    obj["text"] = ctx.echo.get("text", {"format": {"type": "text"}})
    return obj


def output_text(response: Body) -> str:
    return "".join(
        part.get("text", "")
        for item in response.get("output") or []
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content") or []
        if isinstance(part, dict) and part.get("type") == "output_text"
    )


def text_part(text: str, logprobs: list[Body] | None = None) -> Body:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": logprobs or []}


def message_item(item_id: str, text: str, status: str = "completed", logprobs: list[Body] | None = None) -> Body:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": [text_part(text, logprobs)] if status == "completed" or text else []}


def refusal_item(item_id: str, refusal: str) -> Body:
    return {"id": item_id, "type": "message", "status": "completed", "role": "assistant",
            "content": [{"type": "refusal", "refusal": refusal}]}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str,
                       status: str = "completed") -> Body:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id, "name": name,
            "arguments": arguments}


def custom_call_item(item_id: str, call_id: str, name: str, text: str, status: str = "completed") -> Body:
    return {"id": item_id, "type": "custom_tool_call", "status": status, "call_id": call_id, "name": name,
            "input": text}


def reasoning_part(text: str) -> Body:
    return {"type": "reasoning_text", "text": text}


def summary_part(text: str) -> Body:
    return {"type": "summary_text", "text": text}


def reasoning_item(item_id: str, text: str, summary: bool = False, encrypted: str | None = None) -> Body:
    """Reasoning text as its `content`, or, when the request asked for a summary (`reasoning.summary`),
    as the item's summary, where clients of the API read it; `encrypted`: its `encrypted_content`."""
    item: Body = {"id": item_id, "type": "reasoning", "summary": []}
    if text and summary:
        item["summary"] = [summary_part(text)]
    elif text:
        item["content"] = [reasoning_part(text)]
    if encrypted is not None:
        item["encrypted_content"] = encrypted
    return item


def asks_encrypted(request: Body) -> bool:
    """Whether a Responses request (or a retrieve's query) includes `reasoning.encrypted_content`."""
    include = request.get("include")
    return isinstance(include, list) and ENCRYPTED in include


def _sealed(item: Any) -> bool:
    """A reasoning item carrying its encrypted content. (A `compaction` item's encrypted_content
    is the compaction itself, which the API always returns.)"""
    return isinstance(item, dict) and item.get("type") == "reasoning" and isinstance(item.get("encrypted_content"), str)


def _unsealed(item: Body) -> Body:
    return {k: v for k, v in item.items() if k != "encrypted_content"}


def without_encrypted(response: Body) -> Body:
    """The response as a client that did not include `reasoning.encrypted_content` sees it: a
    stored response keeps its reasoning items' encrypted_content for previous_response_id turns,
    and the API returns it only when asked. The same object when there is nothing to take out."""
    output = response.get("output")
    if not isinstance(output, list) or not any(map(_sealed, output)):
        return response
    return dict(response, output=[_unsealed(i) if _sealed(i) else i for i in output])


def event_without_encrypted(event: Body) -> Body:
    """A stream event as without_encrypted shows its item or response."""
    if _sealed(event.get("item")):
        return dict(event, item=_unsealed(event["item"]))
    response = event.get("response")
    if isinstance(response, dict):
        shown = without_encrypted(response)
        if shown is not response:
            return dict(event, response=shown)
    return event


def asks_summary(request: Body) -> bool:
    """Whether a Responses request asks for a reasoning summary (`reasoning.summary` auto, concise or detailed)."""
    reasoning = request.get("reasoning")
    return isinstance(reasoning, dict) and reasoning.get("summary") in ("auto", "concise", "detailed")


def error_body(message: str, code: str = "server_error") -> Body:
    return {"code": code, "message": message}


class EventNumberer:
    """Numbers stream events in the order they are sent (`sequence_number` from 0)."""

    def __init__(self) -> None:
        self.next = 0

    def __call__(self, event_type: str, **fields: Any) -> Body:
        event = {"type": event_type, "sequence_number": self.next, **fields}
        self.next += 1
        return event


def error_event(number: EventNumberer, message: str, code: str = "server_error",
                kind: str = "server_error", param: str | None = None) -> Body:
    """An `error` event readable both flat (the OpenAI SDKs) and nested (Open Responses); `param`
    the request field at fault, when one is."""
    return number("error", code=code, message=message, param=param,
                  error={"type": kind, "code": code, "message": message, "param": param})
