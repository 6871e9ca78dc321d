"""OpenAI chat answers, chunks and embeddings built back from what non-OpenAI chat APIs return
(Anthropic Messages, Gemini, Bedrock Converse), for their translations. No I/O, no clock
(`created` is passed in); only `answer_id` draws a random id."""

from __future__ import annotations

import base64
import secrets
import struct
from typing import Any

import orjson

from shieldes.providers.base import Body, TokenUsage
from shieldes.providers.chat_parts import Thinking, ToolCall, thinking_block


def answer_id() -> str:
    """A fresh id for an answer whose upstream sent none (Converse never does; a Gemini answer
    without `responseId`): clients tell answers (and a Messages client its messages) apart by id,
    so a fixed one made every such answer the same."""
    return "chatcmpl-" + secrets.token_hex(12)


def usage_dict(usage: TokenUsage) -> Body:
    """OpenAI `usage`: cache reads in `prompt_tokens_details.cached_tokens`; cache writes, which
    OpenAI's shape has no field for, as `cache_creation_input_tokens` (as LiteLLM reports them), so
    clients of the Messages API see them too; reasoning in `completion_tokens_details`."""
    out: Body = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }
    if usage.cache_read_tokens:
        out["prompt_tokens_details"] = {"cached_tokens": usage.cache_read_tokens}
    if usage.cache_write_tokens:
        out["cache_creation_input_tokens"] = usage.cache_write_tokens
    if usage.reasoning_tokens:
        out["completion_tokens_details"] = {"reasoning_tokens": usage.reasoning_tokens}
    return out


def tool_call_dict(call: ToolCall) -> Body:
    return {"id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": orjson.dumps(call.arguments).decode()}}


def with_reasoning(message: Body, reasoning: str, thinking: list[Thinking]) -> Body:
    """An answer's reasoning on its chat message (or stream delta): the text as `reasoning_content`,
    the signed blocks as `thinking_blocks` for the client to send back with the turn."""
    if reasoning:
        message["reasoning_content"] = reasoning
    if thinking:
        message["thinking_blocks"] = [thinking_block(t) for t in thinking]
    return message


def chat_choice(index: int, text: str, calls: list[ToolCall], finish: str, reasoning: str = "",
                thinking: list[Thinking] | None = None) -> Body:
    message: Body = {"role": "assistant", "content": text if text or not calls else None}
    with_reasoning(message, reasoning, thinking or [])
    if calls:
        message["tool_calls"] = [tool_call_dict(c) for c in calls]
    return {"index": index, "message": message, "logprobs": None, "finish_reason": finish}


def chat_answer(rid: str, model: str, created: int, choices: list[Body], usage: Body) -> Body:
    return {"id": rid, "object": "chat.completion", "created": created, "model": model, "choices": choices,
            "usage": usage}


def chat_response(rid: str, model: str, created: int, text: str, calls: list[ToolCall], finish: str,
                  usage: Body, reasoning: str = "", thinking: list[Thinking] | None = None) -> Body:
    return chat_answer(rid, model, created, [chat_choice(0, text, calls, finish, reasoning, thinking)], usage)


class Chunks:
    """Builds OpenAI `chat.completion.chunk` dicts for one streamed answer (its choice `index`:
    an answer of several choices has one Chunks for each)."""

    def __init__(self, rid: str, model: str, created: int, index: int = 0) -> None:
        self.rid, self.model, self.created, self.index = rid, model, created, index
        self.tools = 0  # tool calls started so far

    def _chunk(self, delta: Body, finish: str | None = None) -> Body:
        return {"id": self.rid, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [{"index": self.index, "delta": delta, "logprobs": None, "finish_reason": finish}]}

    def role(self) -> Body:
        return self._chunk({"role": "assistant", "content": ""})

    def text(self, text: str) -> Body:
        return self._chunk({"content": text})

    def reasoning(self, text: str) -> Body:
        return self._chunk({"reasoning_content": text})

    def thinking(self, block: Thinking) -> Body:
        """A whole signed thinking block, sent once it is complete (its signature comes last)."""
        return self._chunk(with_reasoning({}, "", [block]))

    def tool_start(self, call_id: str, name: str, arguments: str = "") -> tuple[int, Body]:
        index, self.tools = self.tools, self.tools + 1
        call = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        return index, self._chunk({"tool_calls": [call]})

    def tool_args(self, index: int, fragment: str) -> Body:
        return self._chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})

    def finish(self, reason: str) -> Body:
        return self._chunk({}, reason)

    def usage(self, usage: Body) -> Body:
        return {"id": self.rid, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                "choices": [], "usage": usage}


def encode_vector(values: list[float], encoding_format: Any) -> list[float] | str:
    """`encoding_format: base64` (what the openai SDK asks for by default): little-endian float32."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
    return values


def embeddings_response(vectors: list[list[float]], model: str, prompt_tokens: int | None,
                        encoding_format: Any) -> tuple[Body, TokenUsage | None]:
    usage = TokenUsage(prompt_tokens, 0) if prompt_tokens is not None else None
    body: Body = {
        "object": "list", "model": model,
        "data": [{"object": "embedding", "index": i, "embedding": encode_vector(v, encoding_format)}
                 for i, v in enumerate(vectors)],
        "usage": {"prompt_tokens": prompt_tokens or 0, "total_tokens": prompt_tokens or 0},
    }
    return body, usage
