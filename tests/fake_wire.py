"""Wire-format helpers of the fake upstreams (tests/fake_upstream.py, fake_bedrock.py,
fake_google.py): serving on an ephemeral port, token counting, SSE frames, usage and error bodies
in the OpenAI and Anthropic shapes, tool-call selection and the Anthropic API's own request
validation, as far as translation mistakes would trip it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


async def serve(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> tuple[web.AppRunner, str]:
    """`app` served over real HTTP: (the runner to clean up, its base URL). In-flight handlers (an
    injected delay) do not hold up test teardown."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, f"http://{host}:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


def word_counter(*fields: str) -> Callable[[Any], int]:
    """The fakes' token count: words in every string under the provider's text `fields` (not
    keys, type tags, ids or media payloads)."""

    def count(value: Any) -> int:
        if isinstance(value, str):
            return len(value.split())
        if isinstance(value, list):
            return sum(count(v) for v in value)
        if isinstance(value, dict):
            return sum(count(v) for k, v in value.items() if k in fields)
        return 0

    return count


def data(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def event(name: str, obj: Any) -> bytes:
    return f"event: {name}\n".encode() + data(obj)


def pieces(text: str) -> list[str]:
    """Stream deltas: one per word, spaces attached, concatenating to `text`."""
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)] if text else []


def token_logprobs(tokens: list[str], top: int) -> list[dict[str, Any]]:
    """OpenAI chat `logprobs.content` for `tokens` (the stream pieces): a made-up logprob, the
    UTF-8 bytes, and `top` alternatives (the token itself first)."""
    out = []
    for piece in tokens:
        entry: dict[str, Any] = {"token": piece, "logprob": -0.25, "bytes": list(piece.encode())}
        alts = [entry] + [{"token": f"alt{i}", "logprob": -1.0 - i, "bytes": list(f"alt{i}".encode())}
                          for i in range(1, top)]
        out.append({**entry, "top_logprobs": alts[:top]})
    return out


def split(s: str, n: int = 3) -> list[str]:
    """Tool arguments streamed in a few fragments."""
    size = max(1, -(-len(s) // n))
    return [s[i : i + size] for i in range(0, len(s), size)]


def openai_usage(prompt: int, completion: int, cached: int = 0, audio_in: int = 0,
                 audio_out: int = 0) -> dict[str, Any]:
    """OpenAI chat usage; `audio_in`/`audio_out`: the audio tokens among the prompt and completion
    tokens (gpt-4o-audio-preview, gpt-audio), reported apart as OpenAI does."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": audio_in},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": audio_out,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


# Azure OpenAI's content filter categories: each one's verdict on a prompt, in the `innererror`
# of the 400 it answers (the message names none of them)
_AZURE_FILTERS = ("hate", "self_harm", "sexual", "violence")


def azure_filter_error(category: str, severity: str = "medium") -> web.Response:
    """Azure OpenAI's 400 for a prompt its content filter refused: the category that refused it is
    only in `innererror.content_filter_result` (jailbreak is a detection, not a severity)."""
    verdicts: dict[str, Any] = {c: {"filtered": False, "severity": "safe"} for c in _AZURE_FILTERS}
    verdicts["jailbreak"] = {"filtered": False, "detected": False}
    verdicts[category] = {"filtered": True, "detected": True} if category == "jailbreak" else {
        "filtered": True, "severity": severity}
    body = {"error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management "
                   "policy. Please modify your prompt and retry. To learn more about our content filtering "
                   "policies please read our documentation: https://go.microsoft.com/fwlink/?linkid=2198766",
        "type": None, "param": "prompt", "code": "content_filter", "status": 400,
        "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": verdicts}}}
    return web.json_response(body, status=400)


def error(
    status: int, message: str, anthropic: bool, headers: dict[str, str] | None = None, code: str | None = None,
    param: str | None = None,
) -> web.Response:
    if anthropic:
        kind = _ANTHROPIC_ERRORS.get(status, "api_error")
        body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        kind = "invalid_request_error" if status < 500 else "server_error"
        if status == 429:
            kind, code = "requests", code or "rate_limit_exceeded"
        body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def sample(schema: Any, text: str = "test") -> Any:
    """A value fitting `schema`; its strings hold `text`."""
    kind = schema.get("type") if isinstance(schema, dict) else None
    if isinstance(kind, list):  # a union (["string", "null"]): its first type
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: sample(v, text) for k, v in props.items() if k in schema.get("required", props)}
    return {"string": text, "integer": 1, "number": 1.5, "boolean": True, "array": []}.get(kind or "")


@dataclass(frozen=True)
class ToolScript:
    """One tool round as a coding agent makes it: the first tool of `calls` the client offers is
    called with its arguments; once a tool result is in the history, the answer quotes it, so the
    client's output shows that the tool ran and that its result came back upstream."""

    calls: dict[str, dict[str, Any]]

    def call(self, offered: list[str], answered: bool) -> tuple[str, dict[str, Any]] | None:
        if answered:
            return None
        return next(((name, args) for name, args in self.calls.items() if name in offered), None)

    def call_messages(self, offered: list[str], deferred: list[str],
                      answered: list[str]) -> tuple[str, dict[str, Any]] | None:
        """The call for a Messages request: `offered` the tools loaded (deferred ones a
        tool_reference loaded included), `deferred` the names a system reminder lists as loadable
        through the client's ToolSearch, `answered` the names of the calls whose results came."""
        del deferred
        return self.call(offered, bool(answered))


# Claude Code (2.1.3xx) defers MCP tools: their names come in a system reminder ("The following
# deferred tools are now available via ToolSearch. ... before calling them: A B mcp__x__y"), and
# its ToolSearch tool answers `select:NAME` with tool_reference blocks, which load the tool
_DEFERRED = re.compile(r"deferred tools are now available via ToolSearch.*?:\s+([^:<]*?)\s*(?:</system-reminder>|$)",
                       re.S)


def deferred_named(messages: list[dict[str, Any]]) -> list[str]:
    """The tool names the client's system reminders list as deferred (loadable through ToolSearch)."""
    names: list[str] = []
    for m in messages:
        content = m.get("content")
        texts = [content] if isinstance(content, str) else [
            b.get("text") for b in content or [] if isinstance(b, dict) and isinstance(b.get("text"), str)]
        for text in texts:
            for found in _DEFERRED.finditer(str(text)):
                names += [n for n in re.split(r"[\s,]+", found.group(1)) if n]
    return names


def loaded_tools(tools: list[dict[str, Any]], messages: list[dict[str, Any]]) -> list[str]:
    """The tools the model may call, as the Messages API loads them: each without `defer_loading`,
    and a deferred one once a tool_reference block in the history names it."""
    referenced = {str(r.get("tool_name")) for m in messages if isinstance(m.get("content"), list)
                  for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_result"
                  and isinstance(b.get("content"), list)
                  for r in b["content"] if isinstance(r, dict) and r.get("type") == "tool_reference"}
    return [t["name"] for t in tools if not t.get("defer_loading") or t["name"] in referenced]


def answered_calls(messages: list[dict[str, Any]]) -> list[str]:
    """The names of the tool calls in the history whose results came back."""
    names = {str(b.get("id")): str(b.get("name")) for m in messages if isinstance(m.get("content"), list)
             for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_use"}
    return [names.get(str(b.get("tool_use_id")), "") for m in messages if isinstance(m.get("content"), list)
            for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]


def result_text(content: Any) -> str:
    """A tool result's text, whatever its shape: a string, text blocks, or a list of output parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(result_text(part.get("text") or part.get("content") or part.get("output"))
                        for part in content if isinstance(part, dict))
    return json.dumps(content) if isinstance(content, dict) else ""  # (Gemini: a function's response object)


def pick_tool(tools: Any, choice: Any, answered: bool, text: str = "test") -> tuple[str, dict[str, Any]] | None:
    """(name, arguments) of the tool call to make, or None to answer with text; string arguments
    hold `text`."""
    if not tools or choice == "none" or answered:
        return None
    named = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    fn = next((t["function"] for t in tools if t["function"]["name"] == named), tools[0]["function"])
    return fn["name"], sample(fn.get("parameters") or {"type": "object"}, text) or {}


def check_messages(body: dict[str, Any], system_turns: bool = False) -> str | None:
    """The Anthropic API's own validation, as far as translation mistakes would trip it.
    `system_turns`: the mid-conversation-system beta is on (system-role entries in `messages`)."""
    if not isinstance(body.get("model"), str):
        return "model: Field required"
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    if not isinstance(body.get("temperature", 0), int | float) or not 0 <= body.get("temperature", 0) <= 1:
        return "temperature: Input should be less than or equal to 1"
    if body.get("service_tier", "auto") not in ("auto", "standard_only"):
        return "service_tier: Input should be 'auto' or 'standard_only'"
    if any(key != "user_id" for key in body.get("metadata") or {}):
        return "metadata: Extra inputs are not permitted (only user_id)"
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        return "tools: Input should be a valid list"
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            return f"tools.{i}.name: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    pending: set[str] = set()
    used: set[str] = set()
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            return f"messages.{i}: Input should be a valid dictionary"
        if not isinstance(msg.get("content"), str | list):
            return f"messages.{i}.content: Input should be a valid string or list"
        for j, b in enumerate(msg["content"] if isinstance(msg["content"], list) else []):
            if not isinstance(b, dict):
                return f"messages.{i}.content.{j}: Input should be a valid dictionary"
            field = {"tool_use": "id", "tool_result": "tool_use_id"}.get(b.get("type"))
            if field and not re.fullmatch(r"[a-zA-Z0-9_-]+", str(b.get(field))):
                return f"messages.{i}.content.{j}.{b['type']}.{field}: String should match pattern '^[a-zA-Z0-9_-]+$'"
            if b.get("type") == "tool_use":
                if b["id"] in used:
                    return f"messages.{i}.content.{j}: `tool_use` ids must be unique"
                used.add(b["id"])
        if msg.get("role") == "system" and system_turns:
            continue
        if msg.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        blocks = msg["content"] if isinstance(msg.get("content"), list) else []
        if msg.get("content") == "" or any(b.get("type") == "text" and not b.get("text") for b in blocks):
            return "messages: text content blocks must be non-empty"
        if msg["role"] == "user":
            ids = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
            if ids - pending or pending - ids:
                return (
                    f"messages.{i}: each tool_use block must have a corresponding tool_result block "
                    "in the next message"
                )
            pending = set()
        else:
            pending = {b["id"] for b in blocks if b.get("type") == "tool_use"}
    return None


THINKING_FIRST = ("messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{kind}`. "
                  "When `thinking` is enabled, a final `assistant` message must start with a thinking block "
                  "(preceeding the lastmost set of `tool_use` and `tool_result` blocks). We recommend you "
                  "include thinking blocks from previous turns. To avoid this requirement, disable `thinking`.")


def check_thinking(body: dict[str, Any], signatures: set[str]) -> str | None:
    """The Anthropic API's rules for extended thinking: a budget of at least 1024 under max_tokens,
    temperature 1 (or none), top_p of at least 0.95, no forced tool, thinking blocks only as signed
    by the API, and a tool call continued only with the assistant turn starting with its thinking."""
    for i, msg in enumerate(body.get("messages") or []):
        for b in msg.get("content") if isinstance(msg.get("content"), list) else []:
            if b.get("type") == "thinking" and b.get("signature") not in signatures:
                return f"messages.{i}.content: Invalid `signature` in `thinking` block"
    thinking = body.get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or budget < 1024:
        return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
    if budget >= body["max_tokens"]:
        return "`max_tokens` must be greater than `thinking.budget_tokens`"
    if body.get("temperature", 1) != 1:
        return "`temperature` may only be set to 1 when thinking is enabled."
    if body.get("top_p", 1) < 0.95:
        return "`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled."
    if (body.get("tool_choice") or {}).get("type") in ("any", "tool"):
        return "Thinking may not be enabled when tool_choice forces tool use."
    messages = body["messages"]
    last = messages[-1].get("content")
    continued = isinstance(last, list) and any(b.get("type") == "tool_result" for b in last)
    if continued and len(messages) > 1 and messages[-2].get("role") == "assistant":
        blocks = messages[-2]["content"] if isinstance(messages[-2]["content"], list) else [{"type": "text"}]
        if blocks[0].get("type") not in ("thinking", "redacted_thinking"):
            return THINKING_FIRST.format(i=len(messages) - 2, kind=blocks[0].get("type"))
    return None


def check_chat_history(messages: list[Any], pattern: str) -> str | None:
    """OpenAI's check of a chat history's tool calls: each `tool_calls[].id` fits (OpenAI: at most
    40 characters; Mistral: 9 letters and digits), its arguments are a string, each tool message
    answers a call made before it, and an assistant message without calls has content."""
    made: set[str] = set()
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            continue
        for j, call in enumerate(msg.get("tool_calls") or []):
            ident = call.get("id") if isinstance(call, dict) else None
            if not isinstance(ident, str) or not re.fullmatch(pattern, ident, re.DOTALL):
                return (f"Invalid 'messages[{i}].tool_calls[{j}].id': string does not fit {pattern} "
                        f"(got a string with length {len(str(ident))})")
            made.add(ident)
            if not isinstance((call.get("function") or {}).get("arguments"), str):
                return (f"Invalid type for 'messages[{i}].tool_calls[{j}].function.arguments': expected a string, "
                        "but got an object instead.")
        if msg.get("role") == "assistant" and msg.get("content") is None and not msg.get("tool_calls") \
                and not msg.get("function_call"):
            return f"Invalid value for 'messages[{i}].content': expected a string, got null."
        if msg.get("role") == "tool" and msg.get("tool_call_id") not in made:
            return (f"Invalid parameter: messages[{i}] with role 'tool' must be a response to a preceding "
                    "message with 'tool_calls'.")
    return None


def chat_frames(
    base: dict[str, Any], text: str, calls: list[dict[str, Any]], finish: str, usage: dict[str, Any] | None,
    reasoning: str | None = None, at_index_zero: bool = False, top_logprobs: int | None = None,
) -> list[bytes]:
    """A chat.completion.chunk stream as OpenAI sends it: a role chunk, content (or each tool call's
    argument fragments, one call after another), a finish chunk, the usage chunk when asked for,
    then [DONE]. `reasoning`: first streamed as `reasoning_content` deltas, as vLLM, DeepSeek and
    Ollama stream a reasoning model's thinking. `at_index_zero`: every call at tool_calls index 0,
    as Ollama streams parallel calls. `top_logprobs`: the client asked for logprobs (with that
    many alternatives); each content chunk carries its token's."""
    extra = {"usage": None} if usage is not None else {}

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        logprobs = None
        if top_logprobs is not None and delta.get("content"):
            logprobs = {"content": token_logprobs([delta["content"]], top_logprobs), "refusal": None}
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        return data({**base, "object": "chat.completion.chunk", **extra, "choices": [choice]})

    thinking = [chunk({"reasoning_content": piece}) for piece in pieces(reasoning or "")]
    if not calls:
        frames = [chunk({"role": "assistant", "content": "", "refusal": None}), *thinking]
        frames += [chunk({"content": piece}) for piece in pieces(text)]
    else:
        frames = [*thinking]
        for i, call in enumerate(calls):
            fn, index = call["function"], 0 if at_index_zero else i
            whole = not isinstance(fn["arguments"], str)  # an object: sent whole with the call, as Ollama does
            first = {"index": index, "id": call["id"], "type": "function",
                     "function": {"name": fn["name"], "arguments": fn["arguments"] if whole else ""}}
            role = {"role": "assistant", "content": None, "refusal": None} if i == 0 else {}
            frames.append(chunk({**role, "tool_calls": [first]}))
            frames += [chunk({"tool_calls": [{"index": index, "function": {"arguments": a}}]})
                       for a in ([] if whole else split(fn["arguments"]))]
    frames.append(chunk({}, "tool_calls" if calls else finish))
    if usage is not None:
        frames.append(data({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}))
    frames.append(b"data: [DONE]\n\n")
    return frames


def implicit_cache(prefix: Any, tokens: int, seen: set[str]) -> int:
    """Cached input tokens as automatic prompt caching (OpenAI, Gemini implicit caching) reports
    them: a prompt whose prefix (everything before the last turn, `tokens` long) an earlier request
    sent reads it from the cache; the first one only fills it."""
    key = json.dumps(prefix, sort_keys=True)
    if key in seen:
        return tokens
    seen.add(key)
    return 0


def prompt_cache(body: dict[str, Any], cache: set[str]) -> tuple[int, int, int]:
    """(cache read, cache write, of those writes the ones kept an hour) input tokens as Anthropic
    prompt caching counts them: the prefix of system and message blocks up to the last
    `cache_control` mark is read from the cache when an earlier request wrote the same prefix, else
    written to it, for an hour when that mark says `ttl: 1h`."""
    blocks: list[Any] = []
    system = body.get("system")
    if isinstance(system, list):
        blocks += system
    for msg in body.get("messages") or []:
        content = msg.get("content") if isinstance(msg, dict) else None
        blocks += content if isinstance(content, list) else [content]
    marks = [i for i, b in enumerate(blocks) if isinstance(b, dict) and b.get("cache_control")]
    if not marks:
        return 0, 0, 0
    prefix = blocks[: marks[-1] + 1]
    key = json.dumps(prefix, sort_keys=True)
    words = sum(len(str(b.get("text", "")).split()) for b in prefix if isinstance(b, dict))
    if key in cache:
        return words, 0, 0
    cache.add(key)
    return 0, words, words if blocks[marks[-1]]["cache_control"].get("ttl") == "1h" else 0


def _block_frames(index: int, block: dict[str, Any]) -> list[bytes]:
    if block["type"] == "tool_use":
        opening = {**block, "input": {}}
        # a call without arguments: one empty fragment, as the API streams it (the input is {})
        deltas = [{"type": "input_json_delta", "partial_json": p}
                  for p in (split(json.dumps(block["input"])) if block["input"] else [""])]
    elif block["type"] == "thinking":
        opening = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces(block["thinking"])]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
    else:
        opening = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in pieces(block["text"])]
    return [
        event("content_block_start", {"type": "content_block_start", "index": index, "content_block": opening}),
        *[event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
          for d in deltas],
        event("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def message_frames(message: dict[str, Any]) -> list[bytes]:
    """The Anthropic event stream of `message`, as the Messages API sends it."""
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**{k: v for k, v in message["usage"].items() if k != "server_tool_use"}, "output_tokens": 1},
    }
    blocks = [f for i, block in enumerate(message["content"]) for f in _block_frames(i, block)]
    return [
        event("message_start", {"type": "message_start", "message": start}),
        event("ping", {"type": "ping"}),
        *blocks,
        event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]},
                # the final counts: output tokens, and the server tools' uses (web searches)
                "usage": {"output_tokens": message["usage"]["output_tokens"],
                          **{k: v for k, v in message["usage"].items() if k == "server_tool_use"}},
            },
        ),
        event("message_stop", {"type": "message_stop"}),
    ]


# --- misbehaving upstreams -------------------------------------------------------------------------

MANGLES = ("cut", "garbage", "unfinished")


@dataclass(frozen=True)
class Answer:
    """A whole answer given instead of the fake's own: an upstream (or the proxy or load balancer in
    front of it) answering a non-JSON 200, an HTML error page, an empty body, JSON of the wrong shape."""

    status: int
    body: bytes
    content_type: str = "application/json"

    def response(self) -> web.Response:
        return web.Response(status=self.status, body=self.body, content_type=self.content_type)


def mangled(frames: list[bytes], how: str, garbage: bytes) -> tuple[list[bytes], bool]:
    """A stream's frames as a misbehaving upstream sends them, and whether the connection then drops:
    "cut" stops inside an event halfway through (dropped), "garbage" sends `garbage` where the
    second event goes, "unfinished" ends cleanly halfway, before the events that end a stream."""
    half = max(1, len(frames) // 2)
    if how == "cut":
        return [*frames[:half], frames[half][: len(frames[half]) // 2]] if half < len(frames) else frames[:half], True
    if how == "garbage":
        return [*frames[:1], garbage, *frames[1:]], False
    if how == "unfinished":
        return frames[:half], False
    raise ValueError(f"unknown mangle {how!r}: one of {MANGLES}")


SSE_GARBAGE = b"data: {\"choices\": [<html>Bad Gateway\n\n"
