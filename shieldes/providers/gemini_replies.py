"""Pure translation of OpenAI chat answers and chunks into the Gemini API's
GenerateContentResponse, for the gateway's /v1beta/models/{model}:generateContent and
:streamGenerateContent when the deployment is reached through the chat translation
(gemini_inbound). No I/O."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

from shieldes.providers.base import CONTENT_FILTER, Body, TokenUsage
from shieldes.providers.chat_parts import reasoning_text
from shieldes.providers.tool_args import arguments_object

_FINISH = {"stop": "STOP", "tool_calls": "STOP", "function_call": "STOP", "length": "MAX_TOKENS",
           CONTENT_FILTER: "SAFETY"}


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _objs(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def finish_reason(finish: Any) -> str:
    return _FINISH.get(finish, "OTHER") if isinstance(finish, str) else "STOP"


def usage_metadata(usage: TokenUsage) -> Body:
    """Counts the gateway settled in Google's terms: the prompt includes cached tokens, thinking
    tokens are apart from the candidates' (chat counts them among the completion tokens)."""
    thoughts = min(usage.reasoning_tokens or 0, usage.completion_tokens)
    meta: Body = {"promptTokenCount": usage.prompt_tokens,
                  "candidatesTokenCount": usage.completion_tokens - thoughts,
                  "totalTokenCount": usage.prompt_tokens + usage.completion_tokens}
    if thoughts:
        meta["thoughtsTokenCount"] = thoughts
    if usage.cache_read_tokens:
        meta["cachedContentTokenCount"] = usage.cache_read_tokens
    return meta


def _call_part(call_id: Any, name: Any, arguments: Any) -> Body:
    fc: Body = {"name": name or "", "args": arguments_object(arguments)}
    if isinstance(call_id, str) and call_id:
        fc["id"] = call_id  # clients echo it in the functionResponse (the chat translation matches by it)
    return {"functionCall": fc}


def response_id(chat_id: Any) -> str:
    return chat_id if isinstance(chat_id, str) and chat_id else secrets.token_hex(12)


def _response(parts: list[Body], model: str, rid: str, finish: str | None = None,
              usage: TokenUsage | None = None) -> Body:
    candidate: Body = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish is not None:
        candidate["finishReason"] = finish
    out: Body = {"candidates": [candidate]}
    if usage is not None:
        out["usageMetadata"] = usage_metadata(usage)
    out["modelVersion"] = model
    out["responseId"] = rid
    return out


def _text_parts(message: Body, thoughts: bool) -> list[Body]:
    """The text parts of a chat message or stream delta: its reasoning first as a `thought` part
    when the client asked for thoughts, then its content."""
    parts: list[Body] = []
    reasoning = reasoning_text(message) if thoughts else ""
    if reasoning:
        parts.append({"text": reasoning, "thought": True})
    if isinstance(message.get("content"), str) and message["content"]:
        parts.append({"text": message["content"]})
    return parts


def chat_to_generate_response(answer: Body, model: str, usage: TokenUsage, thoughts: bool = False) -> Body:
    """An OpenAI chat.completion as a GenerateContentResponse for `model` (the model the client
    asked for), with `usage` (the counts settled). `thoughts`: the client asked for them
    (includeThoughts), so the upstream's reasoning text comes first as a `thought` part."""
    choices = _objs(answer.get("choices"))
    choice = choices[0] if choices else {}
    message = _obj(choice.get("message"))
    parts = _text_parts(message, thoughts)
    for call in _objs(message.get("tool_calls")):
        fn = _obj(call.get("function"))
        parts.append(_call_part(call.get("id"), fn.get("name"), fn.get("arguments")))
    return _response(parts, model, response_id(answer.get("id")), finish_reason(choice.get("finish_reason")), usage)


async def chunks_to_generate_responses(chunks: AsyncIterator[Body], model: str, usage: Callable[[], TokenUsage],
                                       thoughts: bool = False) -> AsyncIterator[Body]:
    """OpenAI chat chunks as streamGenerateContent's GenerateContentResponse chunks: one per text
    (or, with `thoughts`, reasoning) delta; function calls, whose arguments stream in fragments,
    whole in the last chunk, which also carries the finish reason and `usage()` (called once the
    chunks are done: the counts settled)."""
    rid: str | None = None
    calls: dict[int, list[Any]] = {}  # tool_calls index -> [id, name, argument fragments...]
    finish: Any = None
    async for chunk in chunks:
        rid = rid or response_id(chunk.get("id"))
        for choice in _objs(chunk.get("choices")):
            delta = _obj(choice.get("delta"))
            parts = _text_parts(delta, thoughts)
            for call in _objs(delta.get("tool_calls")):
                given_index = call.get("index")
                index = given_index if isinstance(given_index, int) else len(calls)
                fn = _obj(call.get("function"))
                given = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
                if index in calls and given is not None and given != calls[index][0]:
                    index = len(calls) + 1000  # a new call at an index already used (Ollama): a call of its own
                held = calls.setdefault(index, [given, fn.get("name"), ""])
                held[1] = held[1] or fn.get("name")
                arguments = fn.get("arguments")
                if isinstance(arguments, dict):
                    held[2] = arguments
                elif isinstance(arguments, str) and isinstance(held[2], str):
                    held[2] += arguments
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
            if parts:
                yield _response(parts, model, rid)
    last = [_call_part(held[0], held[1], held[2]) for _index, held in sorted(calls.items())]
    yield _response(last, model, rid or response_id(None), finish_reason(finish), usage())
