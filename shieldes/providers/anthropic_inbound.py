"""Pure translation of Messages requests for the gateway's POST /v1/messages when the deployment
is not Anthropic: the request becomes an OpenAI chat request (the answer is translated back by
anthropic_replies)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from shieldes.errors import InvalidRequest
from shieldes.providers.base import Body
from shieldes.providers.chat_parts import FAILED_TOOL, check_base64, reasoning_model, sampling_number
from shieldes.providers.chat_paths import renamed
from shieldes.providers.reasoning import BUDGET_FIELD


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(message)


# --- request: Anthropic messages -> OpenAI chat ----------------------------------------------------

# Top-level fields the translation carries over; any other field is named in `dropped`.
_CARRIED = frozenset({"model", "messages", "max_tokens", "system", "temperature", "top_p", "stop_sequences",
                      "tools", "tool_choice", "stream", "thinking", "metadata", "output_config"})
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "max": "high", "xhigh": "high"}


def _text_blocks(content: Any, where: str, dropped: list[str] | None = None) -> str:
    """Text of a system prompt or tool result: a string or blocks. Text blocks keep their text
    (cache_control and citations are Anthropic-only and go); other blocks (an image in a tool
    result) cannot be carried in text and are named in `dropped` when given, else refused."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if not isinstance(content, list):
        raise _bad(f"{where} must be a string or a list of text blocks")
    texts = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif dropped is not None and isinstance(block, dict):
            dropped.append(f"{where} {block.get('type')} block")
        else:
            raise _bad(f'{where} must be a string or a list of {{"type": "text", "text": ...}} blocks')
    return "\n".join(texts)


def _image_part(block: dict[str, Any], where: str) -> Body:
    source = block.get("source")
    if isinstance(source, dict) and source.get("type") == "base64":
        media, data = source.get("media_type"), source.get("data")
        if isinstance(media, str) and isinstance(data, str):
            if not media.startswith("image/"):
                raise _bad(f"{where}.source.media_type {media!r} is not an image type: use image/jpeg, image/png, "
                           "image/gif or image/webp")
            check_base64(data, f"{where}.source.data")
            return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if isinstance(source, dict) and source.get("type") == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise _bad(f"{where}: image blocks need a base64 (media_type, data) or url source")


def _document_part(block: dict[str, Any], where: str) -> Body:
    """A document as OpenAI can take it: plain text (titled) or a base64 PDF as a `file` part;
    anything else (a PDF by URL, a Files API id) is refused with what to send instead."""
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    title = block.get("title") if isinstance(block.get("title"), str) else None
    text: str | None = None
    if kind == "text" and isinstance(source, dict) and isinstance(source.get("data"), str):
        text = source["data"]
    elif kind == "content" and isinstance(source, dict):
        text = _text_blocks(source.get("content"), f"{where}.source.content")
    elif (kind == "base64" and isinstance(source, dict) and source.get("media_type") == "application/pdf"
          and isinstance(source.get("data"), str)):
        return {"type": "file", "file": {"filename": title or "document.pdf",
                                         "file_data": f"data:application/pdf;base64,{source['data']}"}}
    if text is None:
        raise _bad(f"{where}: this model is served through an OpenAI-compatible upstream, which takes "
                   "documents only as text (source type text or content) or base64 PDF; send the "
                   "document's text instead")
    return {"type": "text", "text": f"{title}\n\n{text}" if title else text}


def _marked(blocks: Any) -> bool:
    return isinstance(blocks, list) and any(isinstance(b, dict) and b.get("cache_control") for b in blocks)


def _text_part(block: dict[str, Any], cache_marks: bool) -> Body:
    return _keep_mark({"type": "text", "text": block["text"]}, block, cache_marks)


def _keep_mark(part: Body, block: dict[str, Any], cache_marks: bool) -> Body:
    if cache_marks and isinstance(block.get("cache_control"), dict):
        part["cache_control"] = block["cache_control"]
    return part


def _loaded_as_text(content: Any) -> Any:
    """A tool result's `tool_reference` blocks (what Claude Code's ToolSearch answers: the deferred
    tools it loaded, which Anthropic expands into their definitions) as text naming each; the tools
    themselves are offered from then on (_tools)."""
    if not isinstance(content, list) or not any(isinstance(b, dict) and b.get("type") == "tool_reference"
                                                for b in content):
        return content
    return [{"type": "text", "text": f"Tool {b.get('tool_name')} is loaded and can be called now."}
            if isinstance(b, dict) and b.get("type") == "tool_reference" else b for b in content]


def _loaded_tools(messages: list[Any]) -> set[str]:
    """The deferred tools (`defer_loading`) a tool_reference block in the history loaded."""
    return {str(r.get("tool_name")) for m in messages if isinstance(m, dict) and isinstance(m.get("content"), list)
            for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_result"
            and isinstance(b.get("content"), list)
            for r in b["content"] if isinstance(r, dict) and r.get("type") == "tool_reference"}


def _tool_result_content(block: dict[str, Any], at: str, dropped: list[str], images: bool) -> Any:
    """A tool_result's content as a `tool` message's: its text, or with `images` (the upstream
    takes images and PDFs in tool results) text, image_url and file parts (a document as
    _document_part makes it); otherwise an image or a document is named in `dropped`."""
    content = _loaded_as_text(block.get("content"))
    if not (images and isinstance(content, list) and any(isinstance(b, dict) and b.get("type") in ("image", "document")
                                                         for b in content)):
        text = _text_blocks(content, f"{at}.content", dropped)
        return f"{FAILED_TOOL} {text}" if block.get("is_error") else text
    parts: list[Body] = [{"type": "text", "text": FAILED_TOOL}] if block.get("is_error") else []
    for k, item in enumerate(content):
        if isinstance(item, dict) and item.get("type") == "image":
            parts.append(_image_part(item, f"{at}.content[{k}]"))
        elif isinstance(item, dict) and item.get("type") == "document":
            parts.append(_document_part(item, f"{at}.content[{k}]"))
        else:
            parts.append({"type": "text", "text": _text_blocks([item], f"{at}.content", dropped)})
    return parts


def _user_message(content: Any, where: str, dropped: list[str], cache_marks: bool = False,
                  tool_images: bool = False, called: frozenset[str] = frozenset()) -> list[Body]:
    """One Anthropic user turn -> OpenAI messages: tool results become `tool` messages first. A
    tool_result must answer a tool_use of the assistant message before it (`called`), as Anthropic
    requires: refused here in Anthropic's words, where the upstream would speak of `tool` messages."""
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
            parts.append(_text_part(block, cache_marks))
        elif kind == "image":
            parts.append(_keep_mark(_image_part(block, at), block, cache_marks))
        elif kind == "document":
            parts.append(_document_part(block, at))
        elif kind == "tool_result":
            if not isinstance(block.get("tool_use_id"), str):
                raise _bad(f"{at}: tool_result blocks need `tool_use_id`")
            if block["tool_use_id"] not in called:
                raise _bad(f"{at}: unexpected `tool_use_id` found in `tool_result` blocks: "
                           f"{block['tool_use_id'][:100]}. Each `tool_result` block must have a corresponding "
                           "`tool_use` block in the previous message: send the assistant message with that "
                           "tool_use block before it, or leave the tool_result out")
            result = _tool_result_content(block, at, dropped, tool_images)
            if cache_marks and isinstance(block.get("cache_control"), dict):
                marked = [{"type": "text", "text": result}] if isinstance(result, str) else result
                result = [*marked[:-1], _keep_mark(dict(marked[-1]), block, True)]
            out.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": result})
        elif kind in ("thinking", "redacted_thinking"):
            continue
        else:
            raise _bad(f"{at}: block type {kind!r} cannot be sent to an OpenAI-compatible upstream; "
                       "use text, image, document or tool_result")
    if parts:
        only_text = all(p["type"] == "text" and "cache_control" not in p for p in parts)
        out.append({"role": "user", "content": "\n".join(p["text"] for p in parts) if only_text else parts})
    if not out:  # (the message would vanish from the chat request, and the turns around it run together)
        raise _bad(f"{where}: all messages must have non-empty content except for the optional final assistant "
                   "message; send at least one text, image, document or tool_result block")
    return out


def _answered(called: frozenset[str], made: list[Body], where: str) -> None:
    """Anthropic's rule: the user message after an assistant message with tool_use blocks answers
    each with a tool_result block (refused in Anthropic's words, where the upstream would speak of
    `tool_calls`): an interrupted tool call needs its result."""
    missing = sorted(called - {m["tool_call_id"] for m in made if m["role"] == "tool"})
    if missing:
        listed = ", ".join(c[:100] for c in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise _bad(f"{where}: `tool_use` ids were found without `tool_result` blocks immediately after: {listed}. "
                   "Each `tool_use` block must have a corresponding `tool_result` block in the next message: "
                   "send a tool_result for each (its result, or that the call was cancelled)")


def _assistant_message(content: Any, where: str, dropped: list[str], thinks: bool = False) -> Body:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or a list of content blocks")
    texts: list[str] = []
    calls: list[Body] = []
    signed: list[Body] = []  # thinking blocks as the model signed them (chat's thinking_blocks)
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
            # reasoning of an earlier turn: not portable to other models, but Claude's own blocks go
            # back to Claude (Bedrock), which continues a tool call with thinking only after them
            signed += [dict(block)] if thinks else []
        elif isinstance(kind, str) and (kind.startswith("server_tool") or kind.endswith("_tool_result")):
            dropped.append(f"{where}.content[{j}] {kind} block")  # results of a server tool we cannot run
        else:
            raise _bad(f"{where}.content[{j}]: block type {kind!r} is not supported in assistant turns")
    # no text and no call (an answer cut while it thought): an empty answer, as chat takes one
    msg: Body = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if signed:
        msg["thinking_blocks"] = signed
    if calls:
        msg["tool_calls"] = calls
    return msg


def _tools(tools: Any, dropped: list[str], loaded: set[str], cache_marks: bool = False) -> list[Body]:
    """The custom tools as functions. One with `defer_loading` is offered only once a tool_reference
    in the history loaded it (`loaded`), as Anthropic shows it to the model: Claude Code defers MCP
    tools behind its ToolSearch tool and sends a placeholder that is never to be called.
    `cache_marks`: a tool's `cache_control` stays on its function tool (where LiteLLM takes it), a
    breakpoint after the tools for an upstream that takes one there (Bedrock's cachePoint)."""
    if not isinstance(tools, list):
        raise _bad("`tools` must be a list")
    out = []
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise _bad(f"tools[{i}] needs a `name`")
        if tool.get("defer_loading") is True and tool["name"] not in loaded:
            continue
        if tool.get("type") not in (None, "custom"):
            dropped.append(f"tools[{i}] ({tool.get('type')}: a server tool only Anthropic runs)")
            continue
        schema = tool.get("input_schema") or {"type": "object"}
        if not isinstance(schema, dict):
            raise _bad(f"tools[{i}].input_schema must be a JSON Schema object")
        fn: Body = {"name": tool["name"], "parameters": schema}
        if tool.get("description"):
            fn["description"] = str(tool["description"])
        marked = cache_marks and isinstance(tool.get("cache_control"), dict)
        out.append({"type": "function", "function": fn, **({"cache_control": tool["cache_control"]} if marked else {})})
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


def end_user(user_id: str) -> str:
    """Anthropic's metadata.user_id as OpenAI's `user`: as sent up to 64 characters, else its sha256
    (64 hex characters: the same user is still one id). OpenAI refuses a longer `user` (64 at most,
    as for safety_identifier), and Claude Code's user_id runs to some 150 characters."""
    if len(user_id) <= 64:
        return user_id
    return hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()


def reasoning_effort(thinking: Any) -> str | None:
    """Anthropic extended thinking as an OpenAI reasoning effort: budgets under 4k tokens are
    `low`, under 16k `medium`, larger `high`; disabled or absent thinking is None."""
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "adaptive"):
        return None
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool):
        return "medium"
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


def _output_config(config: Any, out: Body, reasoning: bool, dropped: list[str]) -> None:
    """`output_config`: a JSON-schema `format` becomes `response_format` (structured output);
    `effort` becomes `reasoning_effort` on reasoning models; anything else is dropped by name."""
    if config is None:
        return
    if not isinstance(config, dict):
        raise _bad("`output_config` must be an object")
    for name, value in config.items():
        if name == "format":  # never dropped: the client waits for JSON in that schema
            schema = value.get("schema") if isinstance(value, dict) else None
            if not (isinstance(value, dict) and value.get("type") == "json_schema" and isinstance(schema, dict)):
                raise _bad('`output_config.format` must be {"type": "json_schema", "schema": {...}}')
            out["response_format"] = {"type": "json_schema",
                                      "json_schema": {"name": "output", "schema": value["schema"], "strict": True}}
        elif name == "effort" and reasoning and value in _EFFORTS:
            out["reasoning_effort"] = _EFFORTS[value]
        else:
            dropped.append(f"output_config.{name}")


def translate_messages_request(body: Any, model: str | None = None, *, cache_marks: bool = False,
                               thinks: bool = False, tool_images: bool = False, top_k: bool = False,
                               origins: list[int | None] | None = None) -> tuple[Body, list[str]]:
    """An Anthropic Messages request as an OpenAI chat request for upstream `model` (default: the
    request's own), and the names of what could not be carried over (for a response header).
    `cache_marks`: the upstream takes prompt-cache breakpoints (Bedrock), so `cache_control` on
    tools and on system, text, image and tool_result blocks is kept (else it goes).
    `tool_images`: the upstream takes images in tool results, so a tool_result's images go along.
    `thinking` becomes `reasoning_effort` for OpenAI reasoning models and for upstreams that
    translate it into their own thinking (`thinks`: Bedrock, Gemini; the turns' signed thinking
    blocks then go along as `thinking_blocks`), and is dropped for others;
    `top_k` goes along as the chat field LiteLLM gives it when the upstream's translation carries it
    (`top_k`: Bedrock, which gives it to Claude, and Gemini); it, `service_tier`, server tools and other
    Anthropic-only fields are dropped otherwise.
    `origins`, when given, is filled with the client's message index of each chat message (None for
    the `system` prompt), so that errors about the chat messages can name the client's own."""
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    requested = body.get("model")
    if not isinstance(requested, str) or not requested:
        raise _bad("`model` is required (a string)")
    model = model or requested
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _bad("`max_tokens` is required and must be a positive integer")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("`messages` must be a non-empty list")
    dropped = sorted(k for k in body if k not in _CARRIED and not (top_k and k == "top_k"))
    out_messages: list[Body] = []
    if body.get("system"):
        system = body["system"]
        if cache_marks and _marked(system):
            _text_blocks(system, "`system`")  # refuses what a system prompt cannot hold
            out_messages.append({"role": "system", "content": [_text_part(b, True) for b in system]})
        else:
            out_messages.append({"role": "system", "content": _text_blocks(system, "`system`")})
    made: list[int | None] = [None] * len(out_messages)  # the system prompt
    called: frozenset[str] = frozenset()  # the tool_use ids of the latest assistant message
    for i, msg in enumerate(messages):
        made += [i - 1] * (len(out_messages) - len(made))  # the chat messages the message before became
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad(f"{where} must be an object with `role` and `content`")
        role = msg.get("role")
        if role == "user":
            made_now = _user_message(msg.get("content"), where, dropped, cache_marks, tool_images, called)
            _answered(called, made_now, where)
            called = frozenset()  # (answered: a later tool_result answers nothing)
            out_messages.extend(made_now)
        elif role == "assistant":
            out_messages.append(_assistant_message(msg.get("content"), where, dropped, thinks))
            called = frozenset(c["id"] for c in out_messages[-1].get("tool_calls", ()))
        elif role == "system":  # sent by some clients mid-conversation: OpenAI takes it as it is
            out_messages.append({"role": "system", "content": _text_blocks(msg.get("content"), where)})
        else:
            raise _bad(f'{where}.role must be "user", "assistant" or "system"')
    made += [len(messages) - 1] * (len(out_messages) - len(made))
    if origins is not None:
        origins[:] = made
    reasoning = reasoning_model(model)
    out: Body = {"model": model, "messages": out_messages}
    out["max_completion_tokens" if reasoning else "max_tokens"] = max_tokens
    effort = reasoning_effort(body.get("thinking"))
    if effort is not None:
        if reasoning or thinks:
            out["reasoning_effort"] = effort
        else:
            dropped.append("thinking")
        if thinks and isinstance(body["thinking"].get("budget_tokens"), int):  # Claude gets the budget asked for
            out[BUDGET_FIELD] = {"type": "enabled", "budget_tokens": body["thinking"]["budget_tokens"]}
    _output_config(body.get("output_config"), out, reasoning, dropped)
    for key in ("temperature", "top_p", *(("top_k",) if top_k else ())):
        value = body.get(key)
        if value is not None:
            out[key] = sampling_number(value, key)
    stops = body.get("stop_sequences")
    if stops:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("`stop_sequences` must be a list of strings")
        out["stop"] = stops
    tools = _tools(body["tools"], dropped, _loaded_tools(messages), cache_marks) if body.get("tools") else []
    if tools:
        out["tools"] = tools
        _tool_choice(body.get("tool_choice"), out)
    elif isinstance(body.get("tool_choice"), dict) and body["tool_choice"].get("type") in ("any", "tool"):
        # forcing a call with nothing to call (or only server tools, which this upstream cannot
        # run): dropped, the answer would be text where the client waits for a tool_use block
        raise _bad("`tool_choice` forces a tool call but the request has no tools this deployment can call: "
                   "send the (custom) tools, or leave tool_choice out")
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        out["user"] = end_user(metadata["user_id"])
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out, dropped


def client_paths(text: str, origins: Sequence[int | None]) -> str:
    """`text` (an error message or `param` about the chat request a Messages request became) with
    each `messages[i]` of the chat request named as the client sent it: its own message's index
    (a system prompt takes chat message 0, and one user turn may become several chat messages),
    or `system` for the system prompt."""
    return renamed(text, client_names(origins))


def client_names(origins: Sequence[int | None]) -> list[str]:
    """The client's path of each chat message (chat_paths.named): `messages[i]`, or `system`."""
    return ["system" if origin is None else f"messages[{origin}]" for origin in origins]


def messages_request_to_openai(body: Any) -> Body:
    """translate_messages_request for the request's own model, without the dropped names."""
    return translate_messages_request(body)[0]
