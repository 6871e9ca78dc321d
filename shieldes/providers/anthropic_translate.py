"""Pure translation between the OpenAI chat format and the Anthropic Messages API.

Outbound (the `anthropic` provider): OpenAI chat request -> Anthropic request, Anthropic response
and stream events -> OpenAI response and chunks. Inbound (the gateway's POST /v1/messages, for
clients using the anthropic SDK) lives in anthropic_inbound and anthropic_replies and is
re-exported here.
No I/O, no clock: `created` timestamps are passed in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from shieldes.errors import InvalidRequest
from shieldes.providers.anthropic_inbound import messages_request_to_openai
from shieldes.providers.anthropic_replies import (
    openai_chunks_to_message_events,
    openai_response_to_messages,
    stream_error_event,
)
from shieldes.providers.base import OVERLOADED, Body, TokenUsage, UpstreamFailure
from shieldes.providers.chat_answers import usage_dict, with_reasoning
from shieldes.providers.chat_parts import (
    CacheMark,
    Document,
    Image,
    Part,
    Thinking,
    ToolCall,
    ToolResult,
    check_chat_request,
    read_messages,
    read_stop,
    read_tool_choice,
    read_tools,
    read_top_k,
    system_text,
    thinking_block,
)
from shieldes.providers.dropped import PARALLEL_OFF, THINKING, Outbound, dropped_fields
from shieldes.providers.reasoning import DROPPED as DROPPED_EFFORT
from shieldes.providers.reasoning import ClaudeThinking, claude_thinking, claude_thinking_field, visible
from shieldes.providers.tiers import from_anthropic, stamped
from shieldes.providers.tool_ids import ANTHROPIC, fit_chat_ids

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "StreamTranslator",
    "anthropic_request",
    "chat_request_to_anthropic",
    "messages_request_to_openai",
    "messages_response_to_chat",
    "openai_chunks_to_message_events",
    "openai_response_to_messages",
    "reported",
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
    # Claude 4.5 and later cut an answer at the end of the context window instead of refusing a
    # max_tokens that does not fit: a cut answer, as max_tokens is
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def stop_reason_to_finish(stop_reason: str | None) -> str | None:
    if stop_reason is None:
        return None
    return _FINISH.get(stop_reason, "stop")


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param)


# --- request: OpenAI chat -> Anthropic messages --------------------------------------------------


def _block(part: Part) -> dict[str, Any]:
    """One neutral message part (chat_parts) as an Anthropic content block."""
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if isinstance(part, ToolResult) and part.images:  # blocks: the text (if any), then the images
        content = [{"type": "text", "text": part.content}] if part.content else []
        return {"type": "tool_result", "tool_use_id": part.id, "content": [*content, *map(_block, part.images)],
                **_failed(part)}
    if isinstance(part, Image):
        if part.data is not None:
            return {"type": "image", "source": {"type": "base64", "media_type": part.mime, "data": part.data}}
        if part.url is None or not part.url.startswith(("http://", "https://")):
            raise _bad("image_url.url must be an http(s) URL or a base64 data URL for Anthropic models", "messages")
        return {"type": "image", "source": {"type": "url", "url": part.url}}
    if isinstance(part, Document):
        return {"type": "document", "source": {"type": "base64", "media_type": part.mime, "data": part.data},
                **({"title": part.name} if part.name else {})}
    if isinstance(part, ToolCall):
        return {"type": "tool_use", "id": part.id, "name": part.name, "input": part.arguments}
    if isinstance(part, Thinking):
        return thinking_block(part)
    assert isinstance(part, ToolResult)
    return {"type": "tool_result", "tool_use_id": part.id, "content": part.content, **_failed(part)}


def _failed(part: ToolResult) -> dict[str, Any]:
    return {"is_error": True} if part.error else {}


def _blocks(parts: Sequence[Part]) -> list[dict[str, Any]]:
    """Content blocks, a cache breakpoint as `cache_control` on the block before it."""
    out: list[dict[str, Any]] = []
    for part in parts:
        if not isinstance(part, CacheMark):
            out.append(_block(part))
        elif out:
            out[-1]["cache_control"] = {"type": "ephemeral", **({"ttl": part.ttl} if part.ttl else {})}
    return out


def _system(system: list[Any]) -> str | list[dict[str, Any]] | None:
    if any(isinstance(s, CacheMark) for s in system):  # cached system prompts stay blocks
        return _blocks([s for s in system if s != ""])
    return system_text(system) or None


def _convert_tools(tools: Any) -> list[dict[str, Any]]:
    out = []
    for tool in read_tools(tools):
        converted: dict[str, Any] = {"name": tool["name"], "input_schema": tool["parameters"]}
        if tool["description"]:
            converted["description"] = str(tool["description"])
        if "cache" in tool:  # a chat client's breakpoint after this tool (LiteLLM's cache_control)
            ttl = tool["cache"].ttl
            converted["cache_control"] = {"type": "ephemeral", **({"ttl": ttl} if ttl else {})}
        out.append(converted)
    return out


# OpenAI tool_choice (as chat_parts reads it) -> Anthropic's; a function name -> {"type": "tool"}
_TOOL_CHOICE = {"auto": "auto", "none": "none", "required": "any"}
# OpenAI's service tiers that mean what one of Anthropic's does: `auto`, the tier the account is set
# up for (Anthropic's: Priority Tier capacity where the organisation has it), and `default`, the
# standard tier only; flex, priority (pay as you go) and scale have no Anthropic counterpart
_TIERS = {"auto": "auto", "default": "standard_only"}


def _convert_tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    name = read_tool_choice(choice)
    converted: dict[str, Any] | None
    if name is None:
        converted = None
    elif name in _TOOL_CHOICE:
        converted = {"type": _TOOL_CHOICE[name]}
    else:
        converted = {"type": "tool", "name": name}
    if parallel is False:
        converted = converted or {"type": "auto"}
        if converted["type"] != "none":
            converted["disable_parallel_tool_use"] = True
    return converted


def chat_request_to_anthropic(body: Body, model: str) -> Body:
    """An OpenAI chat completions request as an Anthropic Messages request for `model`."""
    return anthropic_request(body, model).request


def anthropic_request(body: Body, model: str) -> Outbound:
    """An OpenAI chat completions request as an Anthropic Messages request for `model` (tool call
    ids Anthropic would refuse replaced, pairs kept: tool_ids), and what it leaves out: Anthropic
    has no seed, penalties, logprobs or schema-less JSON mode, and `reasoning_effort` is carried as
    extended thinking only where Claude can take it (reasoning.claude_thinking)."""
    asked = body
    body = fit_chat_ids(body, ANTHROPIC)
    check_chat_request(body)
    system_parts, turns = read_messages(body.get("messages"))
    plan = thinking_plan(body, turns, model)
    thinking = claude_thinking_field(plan)
    messages = [{"role": t.role, "content": _blocks(visible(t.parts, thinking is not None))} for t in turns]
    out: Body = {"model": model, "messages": messages, "max_tokens": plan.max_tokens}
    system = _system(system_parts)
    if system:
        out["system"] = system
    if thinking is not None:
        out["thinking"] = thinking
    temperature = body.get("temperature")
    if temperature is not None:
        if not isinstance(temperature, int | float):
            raise _bad("`temperature` must be a number", "temperature")
        out["temperature"] = min(float(temperature), 1.0)  # OpenAI allows 0..2, Anthropic 0..1
    if body.get("top_p") is not None:
        out["top_p"] = body["top_p"]
    top_k = read_top_k(body.get("top_k"))
    if top_k is not None and thinking is None:  # (Claude refuses top_k while it thinks)
        out["top_k"] = top_k
    stops = read_stop(body.get("stop") or None)
    if stops:
        out["stop_sequences"] = stops
    if body.get("tools"):
        out["tools"] = _convert_tools(body["tools"])
        choice = _convert_tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
        if choice:
            out["tool_choice"] = choice
    # OpenAI's safety_identifier (which replaces `user`) and Anthropic's metadata.user_id both
    # name the end user for abuse detection; OpenAI's own `metadata` (tags) has no counterpart
    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    tier = _TIERS.get(str(body.get("service_tier")))
    if tier:
        out["service_tier"] = tier
    output_format = _output_format(body.get("response_format"))
    if output_format is not None:
        out["output_config"] = {"format": output_format}
    if body.get("stream"):
        out["stream"] = True
    dropped = dropped_fields(asked, {PARALLEL_OFF, *(() if plan.dropped else (DROPPED_EFFORT, THINKING))}, tiers=_TIERS)
    if top_k is not None and thinking is not None:
        dropped.append("top_k")
    return Outbound(out, dropped)


def thinking_plan(body: Body, turns: list[Any], model: str) -> ClaudeThinking:
    """The request's max_tokens (Anthropic requires one) and its thinking (reasoning.claude_thinking)."""
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1):
        raise _bad("`max_tokens` must be a positive integer",
                   "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens")
    return claude_thinking(body, turns, model, max_tokens, DEFAULT_MAX_TOKENS)


def _output_format(response_format: Any) -> dict[str, Any] | None:
    """A json_schema `response_format` as Anthropic's structured output (`output_config.format`)."""
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise _bad("response_format of type json_schema needs `json_schema.schema`: a JSON Schema object",
                   "response_format.json_schema.schema")
    return {"type": "json_schema", "schema": schema}


# --- response: Anthropic message -> OpenAI chat.completion ----------------------------------------


def usage_from_anthropic(usage: Any) -> TokenUsage:
    """Cache reads and writes are input tokens too (billed at their own rates upstream)."""
    if not isinstance(usage, dict):
        return TokenUsage(0, 0)
    read = _count(usage.get("cache_read_input_tokens"))
    write = _count(usage.get("cache_creation_input_tokens"))
    ttls = usage.get("cache_creation")  # the writes by how long they are kept (5m, 1h)
    hour = _count(ttls.get("ephemeral_1h_input_tokens")) if isinstance(ttls, dict) else 0
    server = usage.get("server_tool_use")  # server tools billed per use: web search
    searches = _count(server.get("web_search_requests")) if isinstance(server, dict) else 0
    return TokenUsage(_count(usage.get("input_tokens")) + read + write, _count(usage.get("output_tokens")),
                      cache_read_tokens=read, cache_write_tokens=write, cache_write_1h_tokens=min(hour, write),
                      web_search_requests=searches, service_tier=from_anthropic(usage))


def reported(usage: Any) -> bool:
    """Whether an answer's `usage` reports its counts (input and output tokens, whole numbers):
    usage of the wrong types is none at all, and the gateway bills its estimate instead of 0."""
    return isinstance(usage, dict) and type(usage.get("input_tokens")) is int \
        and type(usage.get("output_tokens")) is int


def _count(value: Any) -> int:
    # (a decoded JSON number is an int or a float, never a subclass: the type is the check, bools out)
    return value if type(value) is int and value > 0 else 0


def messages_response_to_chat(resp: Body, model: str, created: int) -> tuple[Body, TokenUsage | None]:
    """An Anthropic message as an OpenAI chat.completion (and its token usage)."""
    texts: list[str] = []
    tool_calls: list[Body] = []
    reasoning: list[str] = []
    thinking: list[Thinking] = []
    for block in resp.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind in ("thinking", "redacted_thinking"):
            part = _thinking(block)
            reasoning.append(part.text)
            thinking.append(part)
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
    message: Body = {"role": "assistant", "content": "".join(texts) if texts or not tool_calls else None}
    with_reasoning(message, "".join(reasoning), thinking)
    if tool_calls:
        message["tool_calls"] = tool_calls
    usage = usage_from_anthropic(resp.get("usage"))  # (its `usage` replaced by the estimate when not reported)
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
        "usage": usage_dict(usage),
    }
    sequence = _stop_sequence(resp)
    if sequence is not None:  # which stop sequence ended it, where vLLM puts it
        body["choices"][0]["stop_reason"] = sequence
    if not reported(resp.get("usage")):  # the gateway's estimate, billed and said in its place
        del body["usage"]
        return stamped(body, from_anthropic(resp.get("usage"))), None
    return stamped(body, from_anthropic(resp.get("usage"))), usage


def _thinking(block: Body) -> Thinking:
    if block.get("type") == "redacted_thinking":
        return Thinking("", "", str(block.get("data") or ""))
    return Thinking(str(block.get("thinking") or ""), str(block.get("signature") or ""))


def _stop_sequence(message: Any) -> str | None:
    """The stop sequence an Anthropic message (or message_delta's delta) says ended the answer."""
    if not isinstance(message, dict) or message.get("stop_reason") != "stop_sequence":
        return None
    sequence = message.get("stop_sequence")
    return sequence if isinstance(sequence, str) and sequence else None


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
        self._with_args: set[int] = set()  # OpenAI tool_calls indexes whose arguments had any text
        # open thinking blocks by Anthropic block index: their text so far and signature
        self._thinking: dict[int, tuple[list[str], list[str]]] = {}
        self.tier: str | None = None  # the tier message_start's usage says serves the answer
        self.done = False

    def _chunk(self, delta: Body, finish: str | None = None) -> Body:
        return stamped({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }, self.tier)

    def _without_args(self, block: int) -> bool:
        """Whether content block `block` is a tool call whose arguments streamed no text."""
        tool = self._tool_index.get(block)
        return tool is not None and tool not in self._with_args

    def feed(self, event: str, data: Body) -> list[Body]:
        kind = data.get("type", event)
        if kind == "message_start":
            message = data.get("message") or {}
            self.id = message.get("id") or self.id
            self.model = message.get("model") or self.model
            self._input = message.get("usage") or {}
            self._output_tokens = int(self._input.get("output_tokens") or 0)
            self.tier = from_anthropic(self._input)
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
            if block.get("type") == "redacted_thinking":  # whole at its start: the client sends it back
                return [self._chunk(with_reasoning({}, "", [_thinking(block)]))]
            if block.get("type") == "thinking":
                self._thinking[data.get("index", 0)] = ([str(block.get("thinking") or "")],
                                                        [str(block.get("signature") or "")])
            return []
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta.get("text", "")})]
            if delta.get("type") == "input_json_delta":
                tool = self._tool_index.get(data.get("index", 0))
                if tool is None:
                    return []
                if delta.get("partial_json"):
                    self._with_args.add(tool)
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
            thinking = self._thinking.get(data.get("index", 0))
            if delta.get("type") == "thinking_delta" and thinking is not None:
                text = str(delta.get("thinking") or "")
                thinking[0].append(text)
                return [self._chunk({"reasoning_content": text})] if text else []
            if delta.get("type") == "signature_delta" and thinking is not None:
                thinking[1].append(str(delta.get("signature") or ""))
            return []  # citations_delta
        if kind == "content_block_stop" and self._without_args(data.get("index", 0)):
            # a call without arguments streams none (or ""): OpenAI's text for it is "{}", which
            # clients parse as JSON
            return [self._chunk({"tool_calls": [{"index": self._tool_index[data.get("index", 0)],
                                                 "function": {"arguments": "{}"}}]})]
        if kind == "content_block_stop":
            # a thinking block is whole once its signature came: given to the client to send back
            done = self._thinking.pop(data.get("index", 0), None)
            if done is None:
                return []
            return [self._chunk(with_reasoning({}, "", [Thinking("".join(done[0]), "".join(done[1]))]))]
        if kind == "message_delta":
            usage = data.get("usage") or {}
            if usage.get("output_tokens") is not None:
                self._output_tokens = int(usage["output_tokens"])  # cumulative, not a delta
            for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "cache_creation",
                        "server_tool_use"):
                if usage.get(key) is not None:
                    self._input = {**self._input, key: usage[key]}
            reason = (data.get("delta") or {}).get("stop_reason")
            chunk = self._chunk({}, stop_reason_to_finish(reason) or "stop")
            sequence = _stop_sequence(data.get("delta"))
            if sequence is not None:
                chunk["choices"][0]["stop_reason"] = sequence
            return [chunk]
        if kind == "message_stop":
            self.done = True
            self.usage = usage_from_anthropic({**self._input, "output_tokens": self._output_tokens})
            return [
                stamped({
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": usage_dict(self.usage),
                }, self.tier)
            ]
        if kind == "error":
            err = data.get("error") or {}
            retryable = err.get("type") in ("overloaded_error", "api_error", "rate_limit_error")
            raise UpstreamFailure(
                err.get("message") or "upstream error mid-stream",
                status=OVERLOADED if err.get("type") == "overloaded_error" else None,
                retryable=retryable,
                body=data,
            )
        return []  # ping and future event types
