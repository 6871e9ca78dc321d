"""Pure translation between the Responses API and chat completions, for upstreams that only speak
chat completions (vLLM, Ollama, Groq, ... and, through the anthropic provider's own chat
translation, the Anthropic Messages API).

request_to_chat: a Responses request (its `input` already holding the whole conversation) -> a
chat completions request (its tools: responses_tools); Claude's signed thinking travels back in
the reasoning items' encrypted_content (signed_reasoning). The answer's way (chat completion and
chunks -> Responses output and events) is responses_replies. No I/O."""

from __future__ import annotations

from typing import Any

from shieldes.errors import InvalidRequest
from shieldes.providers.chat_parts import (
    Thinking,
    reasoning_model,
    thinking_block,
)
from shieldes.providers.reasoning import OFF
from shieldes.providers.responses_custom import custom_arguments
from shieldes.providers.responses_options import chat_options
from shieldes.providers.responses_tools import chat_tools
from shieldes.providers.signed_reasoning import thinking_of
from shieldes.providers.tool_args import arguments_text
from shieldes.responses.objects import Body

_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def _bad(message: str, param: str) -> InvalidRequest:
    """`param`: the field at fault, as OpenAI names it (`input[2].content[0].text`)."""
    return InvalidRequest(message, param=param)


# --- request: Responses -> chat completions ------------------------------------------------------


def _user_part(part: Any, where: str) -> Body:
    if not isinstance(part, dict):
        raise _bad(f"{where} must be a content part object such as {{\"type\": \"input_text\", \"text\": ...}}", where)
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        if not isinstance(part.get("text"), str):
            raise _bad(f"{where}.text must be a string", f"{where}.text")
        return {"type": "text", "text": part["text"]}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str):
            raise _bad(f"{where}: input_image needs an `image_url` (an https URL or a data: URL); "
                       "file_id images cannot be forwarded to a chat completions upstream", f"{where}.image_url")
        image: Body = {"url": url}
        if isinstance(part.get("detail"), str):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        file: Body = {k: part[k] for k in ("file_data", "file_id", "filename") if isinstance(part.get(k), str)}
        if not file:
            raise _bad(f"{where}: input_file needs `file_data` (with `filename`) or `file_id`", f"{where}.file_data")
        return {"type": "file", "file": file}
    raise _bad(f"{where} has unsupported content type {kind!r}; use input_text, input_image or input_file",
               f"{where}.type")


def _text(content: Any, where: str) -> str:
    """Text of assistant/system content: a string or a list of text-like parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(f"{where} must be a string or a list of content parts", where)
    texts = []
    for i, part in enumerate(content):
        if not isinstance(part, dict):
            raise _bad(f"{where}[{i}] must be a content part object", f"{where}[{i}]")
        if part.get("type") == "refusal" and isinstance(part.get("refusal"), str):
            texts.append(part["refusal"])
        elif isinstance(part.get("text"), str):
            texts.append(part["text"])
        else:
            raise _bad(f"{where}[{i}] must be a text part ({{\"type\": \"input_text\", \"text\": ...}})",
                       f"{where}[{i}]")
    return "".join(texts)


def _message(item: Body, where: str) -> Body:
    role = _ROLES.get(str(item.get("role")))
    if role is None:
        raise _bad(f"{where}.role must be one of user, assistant, system, developer", f"{where}.role")
    content = item.get("content")
    if role == "user" and isinstance(content, list):
        parts = [_user_part(p, f"{where}.content[{i}]") for i, p in enumerate(content)]
        if len(parts) == 1 and parts[0]["type"] == "text":  # a plain string suits every chat server
            return {"role": "user", "content": parts[0]["text"]}
        return {"role": "user", "content": parts}
    if role == "user" and not isinstance(content, str):
        raise _bad(f"{where}.content must be a string or a list of content parts", f"{where}.content")
    return {"role": role, "content": _text(content, f"{where}.content")}


def _tool_output(output: Any, where: str, images: bool = False) -> Any:
    """A function_call_output's output as a `tool` message's content: its text, or with `images`
    (the upstream takes them in tool results) text and image_url parts."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        if images and any(isinstance(p, dict) and p.get("type") == "input_image" for p in output):
            return [_user_part(p, f"{where}[{i}]") for i, p in enumerate(output)]
        return _text(output, where)
    raise _bad(f"{where} must be a string (e.g. JSON) or a list of text parts", where)


def _with_thinking(message: Body, blocks: list[Thinking]) -> Body:
    """An assistant message with signed thinking blocks (read back by chat_parts, first in the turn)."""
    if blocks:
        message["thinking_blocks"] = [*message.get("thinking_blocks", []), *map(thinking_block, blocks)]
    return message


def _messages(items: list[Any], signed_thinking: bool = False, tool_images: bool = False,
              names: list[str] | None = None, path: str = "input") -> list[Body]:
    """`signed_thinking`: the upstream takes Claude's signed thinking back; a reasoning item's blocks
    go on the assistant message its turn's items make (else reasoning items are left out).
    `tool_images`: the upstream takes images in tool results (function_call_output images go along).
    `names`, when given, gets the client's path of the item that made each message (`path[i]`)."""
    out: list[Body] = []
    thinking: list[Thinking] = []  # blocks of reasoning items not yet given to an assistant message
    made: list[str] = []
    for i, item in enumerate(items):
        made += [f"{path}[{i - 1}]"] * (len(out) - len(made))  # the messages the item before made
        where = f"{path}[{i}]"
        if not isinstance(item, dict):
            raise _bad(f"{where} must be an input item object (a message, function_call or function_call_output)",
                       where)
        kind = item.get("type", "message")
        if kind == "message":
            message = _message(item, where)
            out.append(_with_thinking(message, thinking) if message["role"] == "assistant" else message)
            thinking = []
        elif kind in ("function_call", "custom_tool_call"):
            for name in ("call_id", "name"):
                if not isinstance(item.get(name), str):
                    raise _bad(f"{where}.{name} must be a string", f"{where}.{name}")
            arguments = (arguments_text(item.get("arguments")) or "{}") if kind == "function_call" \
                else custom_arguments(item.get("input"))
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": arguments}}
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            elif last is not None and last["role"] == "assistant":
                last["tool_calls"] = [call]
            else:
                last = {"role": "assistant", "content": None, "tool_calls": [call]}
                out.append(last)
            _with_thinking(last, thinking)
            thinking = []
        elif kind in ("function_call_output", "custom_tool_call_output"):
            if not isinstance(item.get("call_id"), str):
                raise _bad(f"{where}.call_id must be the call_id of the function_call it answers", f"{where}.call_id")
            out.append({"role": "tool", "tool_call_id": item["call_id"],
                        "content": _tool_output(item.get("output"), f"{where}.output", tool_images)})
            thinking = []
        elif kind == "reasoning":
            # chat completions takes no reasoning input (the model reasons afresh), but Claude takes
            # back its signed blocks; another encrypted_content (OpenAI's own) reads as none
            if signed_thinking:
                thinking += thinking_of(item.get("encrypted_content"))
        elif kind == "item_reference":
            raise _bad(f"{where}: item_reference is not supported; send the item itself", f"{where}.type")
        elif kind == "compaction":  # (the gateway's own are opened before translation: compaction.py)
            raise _bad(f"{where} is a compaction item made by OpenAI's Responses API, which only a native "
                       "deployment on OpenAI can read: send this conversation to such a deployment, or the "
                       "history itself instead of the compaction", f"{where}.type")
        else:
            raise _bad(f"{where} has type {kind!r}, which this deployment cannot take (it speaks chat "
                       "completions); use message, function_call, custom_tool_call and their _output items",
                       f"{where}.type")
    if names is not None:
        names += made + [f"{path}[{len(items) - 1}]"] * (len(out) - len(made))
    return out


def _response_format(text: Any) -> Body | None:
    if not isinstance(text, dict) or text.get("format") is None:
        return None
    fmt = text["format"]
    if not isinstance(fmt, dict):  # dropped, the client asking for JSON would get free text
        raise _bad('text.format must be an object, e.g. {"type": "json_object"} or {"type": "json_schema", ...}',
                   "text.format")
    kind = fmt.get("type")
    if kind == "json_schema":
        if not isinstance(fmt.get("schema"), dict) or not isinstance(fmt.get("name"), str):
            raise _bad("text.format of type json_schema needs a `name` and a `schema` object",
                       "text.format.schema" if isinstance(fmt.get("name"), str) else "text.format.name")
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if fmt.get(k) is not None}
        return {"type": "json_schema", "json_schema": schema}
    if kind == "json_object":
        return {"type": "json_object"}
    if kind in (None, "text"):
        return None
    raise _bad("text.format.type must be text, json_object or json_schema", "text.format.type")


def thinks(body: Body) -> bool:
    """Whether a Responses request asks the model to think: only then do signed thinking blocks go
    back (a request without thinking sends none, reasoning.visible), so only then are they decoded."""
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else None
    return isinstance(effort, str) and effort != OFF


def request_to_chat(body: Body, model: str, signed_thinking: bool = False, tool_images: bool = False,
                    names: list[str] | None = None) -> Body:
    """A Responses request whose `input` holds the whole conversation -> a chat request.
    `signed_thinking`: the upstream (Anthropic, Bedrock) takes Claude's signed thinking back, which
    reasoning items carry in their encrypted_content; `tool_images`: it takes images in tool results.
    `names`, when given, gets the request's path of what made each chat message (`instructions`,
    `input`, `input[i]`: chat_paths.named)."""
    messages: list[Body] = []
    made: list[str] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
        made.append("instructions")
    elif isinstance(instructions, list):
        messages.extend(_messages(instructions, names=made, path="instructions"))
    raw_input = body.get("input")
    if isinstance(raw_input, str):
        messages.append({"role": "user", "content": raw_input})
        made.append("input")
    else:
        messages.extend(_messages(raw_input if isinstance(raw_input, list) else [], signed_thinking and thinks(body),
                                  tool_images, made))
    if names is not None:
        names[:] = made
    if not messages:
        raise _bad("field 'input' is empty: send a string or a list of input items", "input")
    chat: Body = {"model": model, "messages": messages}
    tools, choice = chat_tools(body)
    if tools:
        chat["tools"] = tools
        if choice is not None:
            chat["tool_choice"] = choice
        if isinstance(body.get("parallel_tool_calls"), bool):
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    max_tokens = "max_completion_tokens" if reasoning_model(model) else "max_tokens"
    for src, dst in (("max_output_tokens", max_tokens), ("temperature", "temperature"), ("top_p", "top_p"),
                     ("presence_penalty", "presence_penalty"), ("frequency_penalty", "frequency_penalty")):
        if body.get(src) is not None:
            chat[dst] = body[src]
    response_format = _response_format(body.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
        chat["reasoning_effort"] = reasoning["effort"]
    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str):
        chat["user"] = user
    chat.update(chat_options(body))
    return chat
