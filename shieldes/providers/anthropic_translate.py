"""Pure translation between the OpenAI chat format and the Anthropic Messages API.

Outbound (the `anthropic` provider): OpenAI chat request -> Anthropic request, Anthropic response
and stream events -> OpenAI response and chunks. Inbound (the gateway's POST /v1/messages, for
clients using the anthropic SDK) lives in anthropic_inbound and is re-exported here.
No I/O, no clock: `created` timestamps are passed in."""

from __future__ import annotations

from typing import Any

import orjson

from shieldes.errors import InvalidRequest
from shieldes.providers.anthropic_inbound import (
    messages_request_to_openai,
    openai_chunks_to_message_events,
    openai_response_to_messages,
    stream_error_event,
)
from shieldes.providers.base import Body, TokenUsage, UpstreamFailure

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "StreamTranslator",
    "chat_request_to_anthropic",
    "messages_request_to_openai",
    "messages_response_to_chat",
    "openai_chunks_to_message_events",
    "openai_response_to_messages",
    "stop_reason_to_finish",
    "stream_error_event",
    "usage_from_anthropic",
]

# Anthropic requires max_tokens; OpenAI clients often omit it. Every current Claude model can
# produce at least this many output tokens.
DEFAULT_MAX_TOKENS = 4096

_FINISH: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def stop_reason_to_finish(stop_reason: str | None) -> str | None:
    if stop_reason is None:
        return None
    return _FINISH.get(stop_reason, "stop")


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(message)


# --- request: OpenAI chat -> Anthropic messages --------------------------------------------------


def _text_of(content: Any, where: str) -> str:
    """Text of a system/tool message: a string or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise _bad(f'{where} content parts must be {{"type": "text", "text": ...}} objects')
            texts.append(part["text"])
        return "\n".join(texts)
    raise _bad(f"{where} content must be a string or a list of text parts")


def _image_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise _bad(f"{where}: image_url parts need an `image_url.url` string")
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not media_type.startswith("image/"):
            raise _bad(f"{where}: image data URLs must look like data:image/png;base64,<data>")
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise _bad(f"{where}: image_url.url must be an http(s) URL or a base64 data URL")


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    # Anthropic refuses empty text blocks; OpenAI clients send them (e.g. "" beside an image).
    if isinstance(content, str):
        if not content:
            raise _bad(f"{where}: the message content is empty; send some text")
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise _bad(f"{where} content must be a string or a list of content parts")
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            blocks.append(_image_block(part, where))
        else:
            raise _bad(
                f"{where}: content part type {kind!r} cannot be sent to Anthropic; use text or image_url"
            )
    if not blocks:
        raise _bad(f"{where}: the message content is empty; send some text or an image")
    return blocks


def _tool_use_blocks(tool_calls: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(tool_calls, list):
        raise _bad(f"{where}.tool_calls must be a list")
    blocks = []
    for i, call in enumerate(tool_calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(fn, dict)
            or not isinstance(fn.get("name"), str)
            or not isinstance(call.get("id"), str)
        ):
            raise _bad(f"{where}.tool_calls[{i}] needs `id` and `function.name`")
        raw = fn.get("arguments") or "{}"
        try:
            args = orjson.loads(raw) if isinstance(raw, str) else raw
        except orjson.JSONDecodeError:
            raise _bad(f"{where}.tool_calls[{i}].function.arguments must be a JSON object string") from None
        if not isinstance(args, dict):
            raise _bad(f"{where}.tool_calls[{i}].function.arguments must encode a JSON object")
        blocks.append({"type": "tool_use", "id": call["id"], "name": fn["name"], "input": args})
    return blocks


def _convert_messages(messages: Any) -> tuple[str | None, list[dict[str, Any]]]:
    if not isinstance(messages, list) or not messages:
        raise _bad("`messages` must be a non-empty list")
    system: list[str] = []
    out: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        # Anthropic wants alternating turns: consecutive same-role messages become one turn
        # (several tool results answer one assistant turn together).
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})

    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad(f"{where} must be an object with `role` and `content`")
        role = msg.get("role")
        content = msg.get("content")
        if role in ("system", "developer"):
            system.append(_text_of(content, where))
        elif role == "user":
            add("user", _user_blocks(content, where))
        elif role == "assistant":
            blocks: list[dict[str, Any]] = []
            text = content if isinstance(content, str) else _text_of(content, where) if content else ""
            if text:
                blocks.append({"type": "text", "text": text})
            if msg.get("tool_calls"):
                blocks.extend(_tool_use_blocks(msg["tool_calls"], where))
            if not blocks:
                raise _bad(f"{where}: an assistant message needs `content` or `tool_calls`")
            add("assistant", blocks)
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str):
                raise _bad(f"{where}: a tool message needs `tool_call_id`")
            add(
                "user", [{"type": "tool_result", "tool_use_id": call_id, "content": _text_of(content, where)}]
            )
        else:
            raise _bad(f"{where}.role must be system, developer, user, assistant or tool, not {role!r}")
    if not out:
        raise _bad("`messages` needs at least one user message besides system prompts")
    return ("\n\n".join(system) if system else None), out


def _convert_tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise _bad("`tools` must be a list")
    out = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad(f'tools[{i}] must be {{"type": "function", "function": {{"name": ...}}}}')
        schema = fn.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(schema, dict):
            raise _bad(f"tools[{i}].function.parameters must be a JSON Schema object")
        converted: dict[str, Any] = {"name": fn["name"], "input_schema": schema}
        if fn.get("description"):
            converted["description"] = str(fn["description"])
        out.append(converted)
    return out


def _convert_tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    converted: dict[str, Any] | None
    if choice is None:
        converted = None
    elif choice == "auto":
        converted = {"type": "auto"}
    elif choice == "none":
        converted = {"type": "none"}
    elif choice == "required":
        converted = {"type": "any"}
    elif (
        isinstance(choice, dict)
        and isinstance(choice.get("function"), dict)
        and isinstance(choice["function"].get("name"), str)
    ):
        converted = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise _bad(
            '`tool_choice` must be "auto", "none", "required" or {"type": "function", "function": {"name"}}'
        )
    if parallel is False:
        converted = converted or {"type": "auto"}
        if converted["type"] != "none":
            converted["disable_parallel_tool_use"] = True
    return converted


def chat_request_to_anthropic(body: Body, model: str) -> Body:
    """An OpenAI chat completions request as an Anthropic Messages request for `model`."""
    if body.get("n") not in (None, 1):
        raise _bad("`n` > 1 is not supported by Anthropic models; send separate requests")
    system, messages = _convert_messages(body.get("messages"))
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is None:
        max_tokens = DEFAULT_MAX_TOKENS
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _bad("`max_tokens` must be a positive integer")
    out: Body = {"model": model, "messages": messages, "max_tokens": max_tokens}
    if system:
        out["system"] = system
    temperature = body.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, int | float):
            raise _bad("`temperature` must be a number")
        out["temperature"] = min(float(temperature), 1.0)  # OpenAI allows 0..2, Anthropic 0..1
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("`stop` must be a string or a list of strings")
        out["stop_sequences"] = stops
    if body.get("tools"):
        out["tools"] = _convert_tools(body["tools"])
        choice = _convert_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice:
            out["tool_choice"] = choice
    user = body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    if body.get("stream"):
        out["stream"] = True
    return out


# --- response: Anthropic message -> OpenAI chat.completion ----------------------------------------


def usage_from_anthropic(usage: Any) -> TokenUsage:
    """Cache reads and writes are input tokens too (billed at their own rates upstream)."""
    if not isinstance(usage, dict):
        return TokenUsage(0, 0)
    prompt = sum(
        int(usage.get(k) or 0)
        for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    cached = usage.get("cache_read_input_tokens")
    return TokenUsage(prompt_tokens=prompt, completion_tokens=int(usage.get("output_tokens") or 0),
                      cached_tokens=cached if isinstance(cached, int) and not isinstance(cached, bool) else None)


def _usage_dict(usage: TokenUsage) -> Body:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def messages_response_to_chat(resp: Body, model: str, created: int) -> tuple[Body, TokenUsage]:
    """An Anthropic message as an OpenAI chat.completion (and its token usage)."""
    texts: list[str] = []
    tool_calls: list[Body] = []
    for block in resp.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": orjson.dumps(block.get("input", {})).decode(),
                    },
                }
            )
        # thinking / redacted_thinking blocks have no OpenAI chat equivalent.
    message: Body = {"role": "assistant", "content": "".join(texts) if texts or not tool_calls else None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    usage = usage_from_anthropic(resp.get("usage"))
    body: Body = {
        "id": resp.get("id") or "msg",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": stop_reason_to_finish(resp.get("stop_reason")) or "stop",
            }
        ],
        "usage": _usage_dict(usage),
    }
    return body, usage


# --- stream: Anthropic events -> OpenAI chat.completion.chunk --------------------------------------


class StreamTranslator:
    """Turns Anthropic stream events, one at a time, into OpenAI chunks, ending with a
    `{"choices": [], "usage": ...}` chunk. Pure state machine; the provider does the I/O."""

    def __init__(self, model: str, created: int) -> None:
        self.model = model
        self.created = created
        self.id = "msg"
        self.usage: TokenUsage | None = None
        self._input: Body = {}
        self._output_tokens = 0
        self._tool_index: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index
        self.done = False

    def _chunk(self, delta: Body, finish: str | None = None) -> Body:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def feed(self, event: str, data: Body) -> list[Body]:
        kind = data.get("type", event)
        if kind == "message_start":
            message = data.get("message") or {}
            self.id = message.get("id") or self.id
            self.model = message.get("model") or self.model
            self._input = message.get("usage") or {}
            self._output_tokens = int(self._input.get("output_tokens") or 0)
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self._tool_index[data.get("index", 0)] = len(self._tool_index)
                return [
                    self._chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": index,
                                    "id": block.get("id"),
                                    "type": "function",
                                    "function": {"name": block.get("name"), "arguments": ""},
                                }
                            ]
                        }
                    )
                ]
            if block.get("type") == "text" and block.get("text"):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta.get("text", "")})]
            if delta.get("type") == "input_json_delta":
                tool = self._tool_index.get(data.get("index", 0))
                if tool is None:
                    return []
                return [
                    self._chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": tool,
                                    "function": {"arguments": delta.get("partial_json", "")},
                                }
                            ]
                        }
                    )
                ]
            return []  # thinking_delta, signature_delta, citations_delta
        if kind == "message_delta":
            usage = data.get("usage") or {}
            if usage.get("output_tokens") is not None:
                self._output_tokens = int(usage["output_tokens"])  # cumulative, not a delta
            for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
                if usage.get(key) is not None:
                    self._input = {**self._input, key: usage[key]}
            reason = (data.get("delta") or {}).get("stop_reason")
            return [self._chunk({}, stop_reason_to_finish(reason) or "stop")]
        if kind == "message_stop":
            self.done = True
            self.usage = usage_from_anthropic({**self._input, "output_tokens": self._output_tokens})
            return [
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": _usage_dict(self.usage),
                }
            ]
        if kind == "error":
            err = data.get("error") or {}
            overloaded = err.get("type") in ("overloaded_error", "api_error", "rate_limit_error")
            raise UpstreamFailure(
                err.get("message") or "upstream error mid-stream",
                status=None,
                retryable=overloaded,
                body=data,
            )
        return []  # ping and future event types
