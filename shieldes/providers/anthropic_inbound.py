"""Pure translation for the gateway's Anthropic-shaped POST /v1/messages: clients using the
anthropic SDK send Messages requests; the gateway runs them as OpenAI chat requests on any
deployment and answers in the Messages format (JSON or the Anthropic SSE event sequence)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from shieldes.errors import InvalidRequest
from shieldes.providers.base import Body

_STOP: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(message)


def _obj(value: Any) -> dict[str, Any]:
    """Upstream data read defensively: OpenAI-compatible servers vary, a 500 must not follow."""
    return value if isinstance(value, dict) else {}


def _objs(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def finish_to_stop_reason(finish: str | None) -> str:
    return _STOP.get(finish or "stop", "end_turn")


# --- request: Anthropic messages -> OpenAI chat ----------------------------------------------------


def _text_blocks(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for block in content:
            if (
                not isinstance(block, dict)
                or block.get("type") != "text"
                or not isinstance(block.get("text"), str)
            ):
                raise _bad(f'{where} must be a string or a list of {{"type": "text", "text": ...}} blocks')
            texts.append(block["text"])
        return "\n".join(texts)
    if content is None:
        return ""
    raise _bad(f"{where} must be a string or a list of text blocks")


def _image_part(block: dict[str, Any], where: str) -> Body:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64":
        media, data = source.get("media_type"), source.get("data")
        if isinstance(media, str) and isinstance(data, str):
            return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if isinstance(source, dict) and source.get("type") == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise _bad(f"{where}: image blocks need a base64 (media_type, data) or url source")


def _user_message(content: Any, where: str) -> list[Body]:
    """One Anthropic user turn -> OpenAI messages: tool results become `tool` messages first."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or a list of content blocks")
    out: list[Body] = []
    parts: list[Body] = []
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        at = f"{where}.content[{j}]"
        if kind == "text" and isinstance(block.get("text"), str):
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image":
            parts.append(_image_part(block, at))
        elif kind == "tool_result":
            if not isinstance(block.get("tool_use_id"), str):
                raise _bad(f"{at}: tool_result blocks need `tool_use_id`")
            text = _text_blocks(block.get("content"), f"{at}.content")
            if block.get("is_error"):
                text = "Error: " + text
            out.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text})
        else:
            raise _bad(f"{at}: block type {kind!r} is not supported here; use text, image or tool_result")
    if parts:
        only_text = all(p["type"] == "text" for p in parts)
        out.append({"role": "user", "content": "\n".join(p["text"] for p in parts) if only_text else parts})
    return out


def _assistant_message(content: Any, where: str) -> Body:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or a list of content blocks")
    texts: list[str] = []
    calls: list[Body] = []
    for j, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise _bad(f"{where}.content[{j}]: tool_use blocks need `id` and `name`")
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {
                        "name": block["name"],
                        "arguments": orjson.dumps(block.get("input") or {}).decode(),
                    },
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue  # reasoning of an earlier turn: not portable to other models
        else:
            raise _bad(f"{where}.content[{j}]: block type {kind!r} is not supported in assistant turns")
    msg: Body = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        msg["tool_calls"] = calls
    return msg


def _tools(tools: Any) -> list[Body]:
    if not isinstance(tools, list):
        raise _bad("`tools` must be a list")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise _bad(f"tools[{i}] needs a `name`")
        if tool.get("type") not in (None, "custom"):
            raise _bad(f"tools[{i}]: server tool {tool.get('type')!r} is not supported; define a custom tool")
        schema = tool.get("input_schema") or {"type": "object"}
        if not isinstance(schema, dict):
            raise _bad(f"tools[{i}].input_schema must be a JSON Schema object")
        fn: Body = {"name": tool["name"], "parameters": schema}
        if tool.get("description"):
            fn["description"] = str(tool["description"])
        out.append({"type": "function", "function": fn})
    return out


def _tool_choice(choice: Any, out: Body) -> None:
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool" and isinstance(choice.get("name"), str):
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        raise _bad('`tool_choice` must be {"type": "auto"|"any"|"none"} or {"type": "tool", "name": ...}')
    if choice.get("disable_parallel_tool_use"):
        out["parallel_tool_calls"] = False


def messages_request_to_openai(body: Any) -> Body:
    """An Anthropic Messages request as an OpenAI chat completions request (same model name)."""
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("`model` is required (a string)")
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _bad("`max_tokens` is required and must be a positive integer")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("`messages` must be a non-empty list")
    out_messages: list[Body] = []
    if body.get("system"):
        out_messages.append({"role": "system", "content": _text_blocks(body["system"], "`system`")})
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad(f"{where} must be an object with `role` and `content`")
        role = msg.get("role")
        if role == "user":
            out_messages.extend(_user_message(msg.get("content"), where))
        elif role == "assistant":
            out_messages.append(_assistant_message(msg.get("content"), where))
        else:
            raise _bad(f'{where}.role must be "user" or "assistant" (put system prompts in `system`)')
    out: Body = {"model": model, "messages": out_messages, "max_tokens": max_tokens}
    for key in ("temperature", "top_p"):
        value = body.get(key)
        if value is not None:
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise _bad(f"`{key}` must be a number")
            out[key] = value
    stops = body.get("stop_sequences")
    if stops:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("`stop_sequences` must be a list of strings")
        out["stop"] = stops
    if body.get("tools"):
        out["tools"] = _tools(body["tools"])
        _tool_choice(body.get("tool_choice"), out)
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out["user"] = metadata["user_id"]
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


# --- response: OpenAI chat.completion -> Anthropic message ------------------------------------------


def _message_id(openai_id: Any) -> str:
    return (
        openai_id
        if isinstance(openai_id, str) and openai_id.startswith("msg")
        else f"msg_{openai_id or 'shieldes'}"
    )


def _tool_input(arguments: Any) -> Body:
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except orjson.JSONDecodeError:
        parsed = None
    # Anthropic tool input is always an object; keep malformed model output visible, not lost.
    return parsed if isinstance(parsed, dict) else {"_raw_arguments": arguments}


def _anthropic_usage(usage: Any) -> Body:
    usage = _obj(usage)
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return {
        "input_tokens": prompt if isinstance(prompt, int) else 0,
        "output_tokens": completion if isinstance(completion, int) else 0,
    }


def openai_response_to_messages(resp: Body, model: str) -> Body:
    """An OpenAI chat.completion as an Anthropic message."""
    choices = _objs(resp.get("choices"))
    choice = choices[0] if choices else {}
    message = _obj(choice.get("message"))
    content: list[Body] = []
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
                "input": _tool_input(fn.get("arguments")),
            }
        )
    return {
        "id": _message_id(resp.get("id")),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": finish_to_stop_reason(choice.get("finish_reason")),
        "stop_sequence": None,
        "usage": _anthropic_usage(resp.get("usage")),
    }


# --- stream: OpenAI chunks -> Anthropic events -------------------------------------------------------


def stream_error_event(message: str, kind: str = "api_error") -> tuple[str, Body]:
    """The event that ends an Anthropic stream which failed after it started (the anthropic SDK
    raises it as an APIError). `kind`: api_error, overloaded_error, rate_limit_error, ..."""
    return "error", {"type": "error", "error": {"type": kind, "message": message}}


async def openai_chunks_to_message_events(
    chunks: AsyncIterator[Body], model: str
) -> AsyncIterator[tuple[str, Body]]:
    """OpenAI chat chunks as the Anthropic SSE event sequence: message_start, ping, per content
    block content_block_start / content_block_delta... / content_block_stop, message_delta (stop
    reason and usage), message_stop. Tool calls are expected one after another (as OpenAI streams
    them); late fragments of an already closed tool call are dropped. An UpstreamFailure from
    `chunks` propagates: the caller ends the stream with `stream_error_event`."""
    started = False
    block = -1  # index of the open Anthropic content block, -1 when none is open
    open_kind: str | None = None  # "text" or "tool"
    open_tool: int | None = None  # OpenAI tool_calls index of the open tool block
    closed_tools: set[int] = set()
    finish: str | None = None
    usage: Any = None

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
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        }

    def close() -> tuple[str, Body]:
        return "content_block_stop", {"type": "content_block_stop", "index": block}

    async for chunk in chunks:
        if not started:
            started = True
            yield start(chunk)
            yield "ping", {"type": "ping"}
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in _objs(chunk.get("choices")):
            delta = _obj(choice.get("delta"))
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
                if index in closed_tools:
                    continue
                if open_kind != "tool" or open_tool != index:
                    if open_kind is not None:
                        yield close()
                        if open_tool is not None:
                            closed_tools.add(open_tool)
                    block, open_kind, open_tool = block + 1, "tool", index
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
                if fn.get("arguments"):
                    yield (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": block,
                            "delta": {
                                "type": "input_json_delta",
                                "partial_json": fn["arguments"],
                            },
                        },
                    )
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
    if not started:
        yield start({})
    if open_kind is not None:
        yield close()
    totals = _anthropic_usage(usage)
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": finish_to_stop_reason(finish), "stop_sequence": None},
            "usage": {"output_tokens": totals["output_tokens"], "input_tokens": totals["input_tokens"]},
        },
    )
    yield "message_stop", {"type": "message_stop"}
