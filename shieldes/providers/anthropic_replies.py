"""OpenAI chat answers as Anthropic Messages answers, for the gateway's POST /v1/messages when a
non-Anthropic deployment served it: a chat.completion as a message, chat chunks as the Anthropic
SSE event sequence. Pure; upstream data is read defensively (a 500 must not follow from an odd
OpenAI-compatible server)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

from shieldes.providers.base import Body, TokenUsage
from shieldes.providers.chat_parts import read_thinking_blocks, reasoning_text, thinking_block
from shieldes.providers.tiers import to_anthropic
from shieldes.providers.tool_args import arguments_object, arguments_text

_STOP: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _objs(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def finish_to_stop_reason(finish: str | None) -> str:
    return _STOP.get(finish or "stop", "end_turn")


def _matched_stop(choice: Body) -> str | None:
    """The stop sequence that ended the answer, when the chat server says: vLLM's `stop_reason`
    (which the anthropic and bedrock providers fill too), SGLang's `matched_stop`; a token id
    there is not a sequence. A plain `finish_reason: stop` does not say (OpenAI, Ollama, ...)."""
    if choice.get("finish_reason") != "stop":
        return None
    for key in ("stop_reason", "matched_stop"):
        value = choice.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _stop(finish: str | None, sequence: str | None) -> Body:
    """`stop_reason` and `stop_sequence` of the Anthropic message."""
    if sequence is not None:
        return {"stop_reason": "stop_sequence", "stop_sequence": sequence}
    return {"stop_reason": finish_to_stop_reason(finish), "stop_sequence": None}


# --- response: OpenAI chat.completion -> Anthropic message ------------------------------------------


def _message_id(openai_id: Any) -> str:
    """The Messages id of an answer: the upstream's id (prefixed), or a fresh one when it sent none
    (clients tell messages apart by id: a fixed one made every such answer the same message)."""
    if isinstance(openai_id, str) and openai_id.startswith("msg"):
        return openai_id
    return f"msg_{openai_id}" if isinstance(openai_id, str) and openai_id else "msg_" + secrets.token_hex(12)


def _anthropic_usage(usage: Any) -> Body:
    """OpenAI usage in Anthropic terms: cached prompt tokens are `cache_read_input_tokens` and
    written ones `cache_creation_input_tokens`, apart from `input_tokens` (Anthropic counts them apart)."""
    usage = _obj(usage)
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    prompt = prompt if isinstance(prompt, int) else 0
    details = _obj(usage.get("prompt_tokens_details"))
    cached = details.get("cached_tokens")
    cached = cached if isinstance(cached, int) and 0 <= cached <= prompt else 0
    written = usage.get("cache_creation_input_tokens")  # as shieldes and LiteLLM report cache writes
    written = written if isinstance(written, int) and 0 <= written <= prompt - cached else 0
    return {
        "input_tokens": prompt - cached - written,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
        "output_tokens": completion if isinstance(completion, int) else 0,
    }


def anthropic_usage(usage: TokenUsage) -> Body:
    """Counts the gateway settled (its estimate, when the upstream reported none) in Anthropic terms."""
    return _anthropic_usage({
        "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "cache_creation_input_tokens": usage.cache_write_tokens,
    })


def _thinking_block(text: str) -> Body:
    # no signature: the thinking did not come from Anthropic (it is not sent upstream again)
    return {"type": "thinking", "thinking": text, "signature": ""}


def _signed_blocks(message: Body) -> list[Body]:
    """Claude's own thinking blocks, signed, as a translated answer carries them (`thinking_blocks`
    from Bedrock's Claude): given to the client as they are, to send back."""
    return [thinking_block(t) for t in read_thinking_blocks(message.get("thinking_blocks"))]


def openai_response_to_messages(resp: Body, model: str, thinking: bool = False) -> Body:
    """An OpenAI chat.completion as an Anthropic message. `thinking`: the client enabled extended
    thinking, so the upstream's reasoning text comes back as a thinking block."""
    choices = _objs(resp.get("choices"))
    choice = choices[0] if choices else {}
    message = _obj(choice.get("message"))
    content: list[Body] = []
    signed = _signed_blocks(message) if thinking else []
    if signed:
        content += signed
    elif thinking and reasoning_text(message):
        content.append(_thinking_block(reasoning_text(message)))
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in _objs(message.get("tool_calls")):
        fn = _obj(call.get("function"))
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": fn.get("name"),
                "input": arguments_object(fn.get("arguments")),
            }
        )
    return {
        "id": _message_id(resp.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        **_stop(choice.get("finish_reason"), _matched_stop(choice)),
        "usage": with_tier(_anthropic_usage(resp.get("usage")), to_anthropic(resp.get("service_tier"))),
    }


def with_tier(usage: Body, tier: str | None) -> Body:
    """Anthropic usage saying the tier that served the answer (`service_tier`), when it is known."""
    return {**usage, "service_tier": tier} if tier is not None else usage


# --- stream: OpenAI chunks -> Anthropic events -------------------------------------------------------


def stream_error_event(message: str, kind: str = "api_error") -> tuple[str, Body]:
    """The event that ends an Anthropic stream which failed after it started (the anthropic SDK
    raises it as an APIError). `kind`: api_error, overloaded_error, rate_limit_error, ..."""
    return "error", {"type": "error", "error": {"type": kind, "message": message}}


async def openai_chunks_to_message_events(
    chunks: AsyncIterator[Body], model: str, thinking: bool = False
) -> AsyncIterator[tuple[str, Body]]:
    """OpenAI chat chunks as the Anthropic SSE event sequence: message_start, ping, per content
    block content_block_start / content_block_delta... / content_block_stop, message_delta (stop
    reason and usage), message_stop. Tool calls are expected one after another (as OpenAI streams
    them; a new id at an index already used starts a new call); late fragments of an already closed
    tool call are dropped. An UpstreamFailure from `chunks` propagates: the caller ends the stream
    with `stream_error_event`. `thinking`: the client enabled extended thinking, so reasoning
    deltas stream as a thinking block."""
    started = False
    block = -1  # index of the open Anthropic content block, -1 when none is open
    open_kind: str | None = None  # "text", "thinking" or "tool"
    open_tool: int | None = None  # OpenAI tool_calls index of the open tool block
    closed_tools: set[int] = set()
    call_ids: set[str] = set()  # tool call ids the upstream sent
    finish: str | None = None
    sequence: str | None = None  # the stop sequence that ended the answer, when the upstream says
    usage: Any = None
    tier: str | None = None  # the tier the chunks say serves the answer, in Anthropic's words

    def start(chunk: Body) -> tuple[str, Body]:
        return "message_start", {
            "type": "message_start",
            "message": {
                "id": _message_id(chunk.get("id")),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": with_tier({"input_tokens": 0, "output_tokens": 0}, tier),
            },
        }

    def close() -> tuple[str, Body]:
        return "content_block_stop", {"type": "content_block_stop", "index": block}

    async for chunk in chunks:
        if not started and not chunk.get("id") and not chunk.get("choices") and not chunk.get("usage"):
            continue  # Azure's prompt_filter_results chunk, before the answer's first (which has its id)
        # OpenAI says the tier on every chunk; Bedrock and Vertex only at the end (then message_delta says it)
        tier = to_anthropic(chunk.get("service_tier")) or tier
        if not started:
            started = True
            yield start(chunk)
            yield "ping", {"type": "ping"}
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in _objs(chunk.get("choices")):
            delta = _obj(choice.get("delta"))
            reasoning = reasoning_text(delta) if thinking else ""
            if reasoning:
                if open_kind != "thinking":
                    if open_kind is not None:
                        yield close()
                        if open_tool is not None:
                            closed_tools.add(open_tool)
                    block, open_kind, open_tool = block + 1, "thinking", None
                    yield "content_block_start", {"type": "content_block_start", "index": block,
                                                  "content_block": _thinking_block("")}
                yield "content_block_delta", {"type": "content_block_delta", "index": block,
                                              "delta": {"type": "thinking_delta", "thinking": reasoning}}
            for signed in _signed_blocks(delta) if thinking else []:
                # Claude's block whole (Bedrock): its signature ends the thinking block streamed so
                # far; a redacted one (or one whose text did not stream) is a block of its own
                if not (signed["type"] == "thinking" and open_kind == "thinking"):
                    if open_kind is not None:
                        yield close()
                        if open_tool is not None:
                            closed_tools.add(open_tool)
                    block, open_kind, open_tool = block + 1, "thinking", None
                    opening = signed if signed["type"] == "redacted_thinking" else _thinking_block("")
                    yield "content_block_start", {"type": "content_block_start", "index": block,
                                                  "content_block": opening}
                    if signed["type"] == "thinking":
                        yield "content_block_delta", {"type": "content_block_delta", "index": block, "delta": {
                            "type": "thinking_delta", "thinking": signed["thinking"]}}
                if signed["type"] == "thinking":
                    yield "content_block_delta", {"type": "content_block_delta", "index": block, "delta": {
                        "type": "signature_delta", "signature": signed["signature"]}}
                yield close()
                open_kind = None
            text = delta.get("content")
            if isinstance(text, str) and text:
                if open_kind != "text":
                    if open_kind is not None:
                        yield close()
                        if open_tool is not None:
                            closed_tools.add(open_tool)
                    block, open_kind, open_tool = block + 1, "text", None
                    yield (
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": block,
                            "content_block": {"type": "text", "text": ""},
                        },
                    )
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": block,
                        "delta": {"type": "text_delta", "text": text},
                    },
                )
            for call in _objs(delta.get("tool_calls")):
                index = call.get("index", 0)
                index = index if isinstance(index, int) else 0
                fn = _obj(call.get("function"))
                given = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
                # Ollama and other servers send every parallel call at index 0: a new id is a new call
                new_call = given is not None and given not in call_ids
                if index in closed_tools and not new_call and not (open_kind == "tool" and open_tool == index):
                    continue
                if new_call or open_kind != "tool" or open_tool != index:
                    if open_kind is not None:
                        yield close()
                        if open_tool is not None:
                            closed_tools.add(open_tool)
                    block, open_kind, open_tool = block + 1, "tool", index
                    call_ids.update([given] if given else [])
                    yield (
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": block,
                            "content_block": {
                                "type": "tool_use",
                                "id": call.get("id") or f"toolu_{index}",
                                "name": fn.get("name") or "",
                                "input": {},
                            },
                        },
                    )
                arguments = arguments_text(fn.get("arguments"))  # an object (Ollama) as its JSON text
                if arguments:
                    yield (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": block,
                            "delta": {
                                "type": "input_json_delta",
                                "partial_json": arguments,
                            },
                        },
                    )
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
                sequence = _matched_stop(choice)
    if not started:
        yield start({})
    if open_kind is not None:
        yield close()
    totals = with_tier(_anthropic_usage(usage), tier)
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": _stop(finish, sequence),
            "usage": totals,
        },
    )
    yield "message_stop", {"type": "message_stop"}
