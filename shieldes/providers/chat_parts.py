"""Pure helpers shared by translations to non-OpenAI chat APIs (Anthropic Messages, Gemini,
Bedrock Converse): an OpenAI chat request read and checked into neutral turns. What a translation
leaves out is named by `dropped`; answers and chunks are built back by `chat_answers`. No I/O."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from shieldes.errors import InvalidRequest
from shieldes.providers.base import Body

# OpenAI reasoning models: they take reasoning_effort, and max_completion_tokens instead of max_tokens.
_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)")


def reasoning_model(model: str) -> bool:
    """Whether `model` (an upstream model name, maybe with a provider prefix) is an OpenAI reasoning model."""
    return _REASONING_MODEL.match(model.rsplit("/", 1)[-1]) is not None


@dataclass
class Image:
    mime: str  # e.g. image/png
    data: str | None = None  # base64, for inline images
    url: str | None = None  # an http(s) or gs:// URL, for referenced images


@dataclass
class Document:
    """A file sent inline: a chat `file` part with `file_data` (what the openai SDK sends for a PDF,
    and what a Messages client's base64 PDF document becomes)."""

    mime: str  # application/pdf
    data: str  # base64
    name: str | None = None  # the client's file name


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


FAILED_TOOL = "Error:"  # how a failed tool result's text starts (anthropic_inbound marks `is_error` so)


@dataclass
class ToolResult:
    id: str
    name: str  # the called function's name (Gemini needs it; looked up from the call's id)
    content: str
    # image and PDF parts of the result (a screenshot a browser tool took, a PDF Claude Code read)
    images: tuple[Image | Document, ...] = ()
    # the tool failed: its text starts "Error:" (what a Messages client's `is_error: true` becomes in
    # chat, which has no flag), for Converse's `status: "error"` and Anthropic's `is_error`
    error: bool = False


@dataclass(frozen=True)
class CacheMark:
    """A prompt-cache breakpoint: what comes before it is a prefix the upstream should cache (a
    `cache_control` on the part before it; Bedrock `cachePoint`, Anthropic `cache_control`)."""

    ttl: str | None = None  # Anthropic's "5m" / "1h"


@dataclass(frozen=True)
class Thinking:
    """A reasoning block of an earlier assistant turn as its upstream signed it, sent back by the
    client in the message's `thinking_blocks` (as LiteLLM carries them): Anthropic and Bedrock's
    Claude refuse to continue a tool call with thinking on unless the turn starts with it."""

    text: str
    signature: str
    redacted: str | None = None  # a redacted_thinking block's opaque `data` (then `text` is empty)


Part = str | Image | Document | ToolCall | ToolResult | CacheMark | Thinking
SystemPart = str | CacheMark


@dataclass
class Turn:
    role: str  # "user" | "assistant"; tool results belong to a user turn
    parts: list[Part] = field(default_factory=list)


@dataclass
class Chat:
    system: list[SystemPart]
    turns: list[Turn]
    tools: list[Body]  # {"name", "description", "parameters"[, "cache": CacheMark]}
    tool_choice: str | None  # "auto" | "required" | "none" | a function name | None
    max_tokens: int | None
    stop: list[str]


def _bad(message: str, param: str | None = None) -> InvalidRequest:
    """`param`: the field at fault, as OpenAI names it (`messages[2].content`)."""
    return InvalidRequest(message, param=param)


def sampling_number(value: Any, where: str) -> float:
    """A sampling setting (temperature, top_p, ...) a client sent: a number, not a bool (which
    Python counts as one); else a 400 naming the field as the client wrote it."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _bad(f"`{where}` must be a number", where)
    return value


def text_of(content: Any, where: str) -> str:
    """Text of a system/tool/assistant message: a string or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise _bad(f'{where} content parts must be {{"type": "text", "text": ...}} objects', f"{where}.content")
            texts.append(part["text"])
        return "\n".join(texts)
    raise _bad(f"{where} content must be a string or a list of text parts", f"{where}.content")


def _image(part: Body, where: str) -> Image:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise _bad(f"{where}: image_url parts need an `image_url.url` string", f"{where}.content")
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        mime, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not mime.startswith("image/"):
            raise _bad(f"{where}: image data URLs must look like data:image/png;base64,<data>", f"{where}.content")
        check_base64(data, f"{where}: the image data URL", f"{where}.content")
        return Image(mime, data=data)
    if url.startswith(("http://", "https://", "gs://")):
        ext = url.rsplit(".", 1)[-1].lower()
        return Image("image/" + ("jpeg" if ext in ("jpg", "jpeg") else ext if ext in ("png", "gif", "webp") else
                                 "jpeg"), url=url)
    raise _bad(f"{where}: image_url.url must be an http(s) URL or a base64 data URL", f"{where}.content")


# The files every translation can carry as a document (Anthropic, Converse and Gemini all read PDFs)
_DOCUMENT_TYPES = ("application/pdf",)


def _document(part: Body, where: str) -> Document:
    """A chat `file` part: its `file_data`, a base64 data URL (or bare base64, typed by the file
    name), of a PDF. A `file_id` names a file in OpenAI's Files API, which no other upstream reads."""
    file = part.get("file")
    if not isinstance(file, dict):
        raise _bad(f'{where}: a file part needs a `file` object, e.g. {{"type": "file", "file": {{"filename": '
                   '"a.pdf", "file_data": "data:application/pdf;base64,..."}}}}', f"{where}.content")
    name = file.get("filename") if isinstance(file.get("filename"), str) else None
    data = file.get("file_data")
    if not isinstance(data, str):
        if isinstance(file.get("file_id"), str):
            raise _bad(f"{where}: `file_id` names a file uploaded to OpenAI's Files API, which this deployment "
                       "cannot read; send the file itself in `file.file_data` (data:application/pdf;base64,...)",
                       f"{where}.content")
        raise _bad(f"{where}: a file part needs `file.file_data`, the file as a base64 data URL", f"{where}.content")
    mime = "application/pdf" if (name or "").lower().endswith(".pdf") else ""
    if data.startswith("data:"):
        header, sep, data = data[5:].partition(",")
        mime, _, encoding = header.partition(";")
        if not sep or encoding != "base64":
            raise _bad(f"{where}: file_data must be a base64 data URL, e.g. data:application/pdf;base64,<data>",
                       f"{where}.content")
    if mime not in _DOCUMENT_TYPES:
        raise _bad(f"{where}: this deployment takes PDF files only (file_data of type application/pdf, not "
                   f"{mime or 'an unknown type'}); send other documents' text as a text part", f"{where}.content")
    check_base64(data, f"{where}: the file's data", f"{where}.content")
    return Document(mime, data, name)


def _tool_content(content: Any, where: str) -> tuple[str, tuple[Image | Document, ...]]:
    """A tool message's text, images and PDFs: a string, or text, image_url and file parts
    (Anthropic, Bedrock and Gemini take images and documents in tool results; OpenAI's chat API
    does not)."""
    def media(p: Any) -> bool:
        return isinstance(p, dict) and p.get("type") in ("image_url", "file")

    if not isinstance(content, list) or not any(map(media, content)):
        return text_of(content, where), ()
    texts = [p for p in content if not media(p)]
    found = tuple(_image(p, where) if p["type"] == "image_url" else _document(p, where) for p in content if media(p))
    return text_of(texts, where), found


def _mark(part: Any) -> list[CacheMark]:
    """The cache breakpoint a content part's `cache_control` sets (none without one)."""
    control = part.get("cache_control") if isinstance(part, dict) else None
    if not isinstance(control, dict):
        return []
    ttl = control.get("ttl")
    return [CacheMark(ttl if isinstance(ttl, str) else None)]


def _system_parts(content: Any, where: str) -> list[SystemPart]:
    """A system message: its text, split at the parts that carry `cache_control`."""
    if not isinstance(content, list) or not any(_mark(p) for p in content):
        return [text_of(content, where)]
    out: list[SystemPart] = []
    for part in content:
        out.extend([text_of([part], where), *_mark(part)])
    return out


def _user_parts(content: Any, where: str) -> list[Part]:
    if isinstance(content, str):
        if not content:
            raise _bad(f"{where}: the message content is empty; send some text", f"{where}.content")
        return [content]
    if not isinstance(content, list):
        raise _bad(f"{where} content must be a string or a list of content parts", f"{where}.content")
    parts: list[Part] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            if part["text"]:
                parts.extend([part["text"], *_mark(part)])
        elif kind == "image_url":
            parts.extend([_image(part, where), *_mark(part)])
        elif kind == "file":
            parts.extend([_document(part, where), *_mark(part)])
        elif kind == "text":
            raise _bad(f"{where}: a text part needs `text` as a string, e.g. {{\"type\": \"text\", \"text\": \"...\"}}",
                       f"{where}.content")
        else:
            raise _bad(f"{where}: content part type {kind!r} is not supported here; use text, image_url or file",
                       f"{where}.content")
    if not parts:
        raise _bad(f"{where}: the message content is empty; send some text or an image", f"{where}.content")
    return parts


def _tool_calls(calls: Any, where: str) -> list[ToolCall]:
    if not isinstance(calls, list):
        raise _bad(f"{where}.tool_calls must be a list", f"{where}.tool_calls")
    out = []
    for i, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not isinstance(call.get("id"), str):
            raise _bad(f"{where}.tool_calls[{i}] needs `id` and `function.name`", f"{where}.tool_calls[{i}]")
        raw = fn.get("arguments") or "{}"
        try:
            args = orjson.loads(raw) if isinstance(raw, str) else raw
        except orjson.JSONDecodeError:
            raise _bad(f"{where}.tool_calls[{i}].function.arguments must be a JSON object string",
                       f"{where}.tool_calls[{i}].function.arguments") from None
        if not isinstance(args, dict):
            raise _bad(f"{where}.tool_calls[{i}].function.arguments must encode a JSON object",
                       f"{where}.tool_calls[{i}].function.arguments")
        out.append(ToolCall(call["id"], fn["name"], args))
    return out


def read_chat(body: Body) -> Chat:
    """An OpenAI chat request as neutral turns, its tools, tool choice and limits."""
    system, turns = read_messages(body.get("messages"))
    return Chat(system, turns, read_tools(body.get("tools")), read_tool_choice(body.get("tool_choice")),
                _max_tokens(body), read_stop(body.get("stop")))


def read_messages(messages: Any) -> tuple[list[SystemPart], list[Turn]]:
    """OpenAI chat messages as (system prompts, turns): consecutive same-role messages merged (the
    target APIs want alternating turns), tool results in user turns, and a `cache_control` on a
    content part (as Anthropic clients and LiteLLM send it) kept as a CacheMark after that part."""
    if not isinstance(messages, list) or not messages:
        raise _bad("`messages` must be a non-empty list", "messages")
    system: list[SystemPart] = []
    turns: list[Turn] = []
    names: dict[str, str] = {}  # tool call id -> function name

    def add(role: str, parts: list[Part]) -> None:
        if turns and turns[-1].role == role:
            turns[-1].parts.extend(parts)
        else:
            turns.append(Turn(role, parts))

    unanswered: list[str] = []  # the call ids of the latest assistant message no tool message answered yet
    asked_at = 0  # (that message's index)
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _bad(f"{where} must be an object with `role` and `content`", where)
        role, content = msg.get("role"), msg.get("content")
        if unanswered and role in ("user", "assistant"):
            raise _unanswered(asked_at, unanswered)
        if role in ("system", "developer"):
            system.extend(_system_parts(content, where))
        elif role == "user":
            add("user", _user_parts(content, where))
        elif role == "assistant":
            parts: list[Part] = list(read_thinking_blocks(msg.get("thinking_blocks")))
            text = text_of(content, where)
            if text:
                parts.append(text)
            for call in _tool_calls(msg["tool_calls"], where) if msg.get("tool_calls") else []:
                names[call.id] = call.name
                parts.append(call)
                unanswered.append(call.id)
                asked_at = i
            said = any(not isinstance(p, Thinking) for p in parts)  # thinking alone is no turn
            if not said and content in ("", []):
                continue  # an empty answer of an earlier turn (Claude may end a turn with no text): the
                # target APIs refuse empty turns, so it is left out
            if not said:
                raise _bad(f"{where}: an assistant message needs `content` or `tool_calls`", f"{where}.content")
            add("assistant", parts)
        elif role == "tool":
            call_id = msg.get("tool_call_id")
            if not isinstance(call_id, str):
                raise _bad(f"{where}: a tool message needs `tool_call_id`", f"{where}.tool_call_id")
            if call_id not in names:  # (OpenAI refuses it too; the target's refusal would speak of its own format)
                raise _bad(f"{where}: the tool message with tool_call_id {call_id[:100]!r} answers no tool call: no "
                           "assistant message before it has a `tool_calls` entry with that id; send the assistant "
                           "message with its tool_calls before the tool message, or leave the tool message out",
                           f"{where}.tool_call_id")
            if call_id in unanswered:
                unanswered.remove(call_id)
            marks = [m for p in content for m in _mark(p)][-1:] if isinstance(content, list) else []
            text, images = _tool_content(content, where)
            add("user", [ToolResult(call_id, names.get(call_id, msg.get("name") or "tool"), text, images,
                                    text.startswith(FAILED_TOOL)), *marks])
        else:
            raise _bad(f"{where}.role must be system, developer, user, assistant or tool, not {role!r}",
                       f"{where}.role")
    if not turns:
        raise _bad("`messages` needs at least one user message besides system prompts", "messages")
    return system, turns


def _unanswered(index: int, call_ids: list[str]) -> InvalidRequest:
    """OpenAI's refusal of tool calls a conversation goes on without answering (the target APIs
    refuse them too, in words about their own format): an interrupted tool call needs its result."""
    listed = ", ".join(repr(c[:100]) for c in call_ids[:5]) + (", ..." if len(call_ids) > 5 else "")
    return _bad(f"messages[{index}]: an assistant message with `tool_calls` must be followed by tool messages "
                f"answering each tool_call_id; these have none: {listed}. Send a tool message for each (its "
                "result, or that the call was cancelled) before the next user or assistant message",
                f"messages[{index}].tool_calls")


def read_thinking_blocks(blocks: Any) -> list[Thinking]:
    """An assistant message's `thinking_blocks` as the gateway answered them: signed thinking and
    redacted_thinking blocks. Anything else (a block without its signature, from a model that signs
    nothing) cannot be sent back upstream and is left out."""
    out: list[Thinking] = []
    for block in blocks if isinstance(blocks, list) else []:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "thinking" and isinstance(block.get("thinking"), str) and isinstance(block.get("signature"), str) \
                and block["signature"]:
            out.append(Thinking(block["thinking"], block["signature"]))
        elif kind == "redacted_thinking" and isinstance(block.get("data"), str) and block["data"]:
            out.append(Thinking("", "", block["data"]))
    return out


def thinking_block(part: Thinking) -> Body:
    """A Thinking part as chat's (and Anthropic's) block: what the gateway answers and takes back."""
    if part.redacted is not None:
        return {"type": "redacted_thinking", "data": part.redacted}
    return {"type": "thinking", "thinking": part.text, "signature": part.signature}


def reasoning_text(message: Body) -> str:
    """A chat message's (or delta's) reasoning text: `reasoning_content` (vLLM, DeepSeek, LiteLLM
    and this gateway's translations), else `reasoning` (Ollama, OpenRouter)."""
    for key in ("reasoning_content", "reasoning"):
        if isinstance(message.get(key), str):
            return str(message[key])
    return ""


def read_tools(tools: Any) -> list[Body]:
    """OpenAI function tools as {"name", "description", "parameters"} (a JSON Schema object), and
    "cache" (a CacheMark) for a tool with `cache_control` (LiteLLM's place for it): a prompt-cache
    breakpoint after that tool."""
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise _bad("`tools` must be a list", "tools")
    out = []
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad(f'tools[{i}] must be {{"type": "function", "function": {{"name": ...}}}}', f"tools[{i}]")
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, dict):
            raise _bad(f"tools[{i}].function.parameters must be a JSON Schema object",
                       f"tools[{i}].function.parameters")
        out.append({"name": fn["name"], "description": fn.get("description") or "", "parameters": params,
                    **({"cache": _mark(tool)[0]} if _mark(tool) else {})})
    return out


def read_tool_choice(choice: Any) -> str | None:
    """"auto", "required", "none", a function's name, or None (not given)."""
    if choice is None or isinstance(choice, str):
        if choice not in (None, "auto", "required", "none"):
            raise _bad("`tool_choice` must be auto, required, none or a function", "tool_choice")
        return choice
    fn = choice.get("function") if isinstance(choice, dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        raise _bad('`tool_choice` must be auto, required, none or {"type": "function", "function": {"name": ...}}',
                   "tool_choice")
    return str(fn["name"])


def _max_tokens(body: Body) -> int | None:
    value = body.get("max_completion_tokens") or body.get("max_tokens")
    return value if isinstance(value, int) else None


def read_stop(stop: Any) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return list(stop)
    raise _bad("`stop` must be a string or a list of strings", "stop")


def system_text(system: list[SystemPart]) -> str:
    """The system prompts as one text, for APIs without cache breakpoints."""
    return "\n\n".join(s for s in system if isinstance(s, str))


def check_base64(data: str, what: str, param: str | None = None) -> None:
    """Refuse data that is not base64 (a translated request carries it on as it is, and the upstream
    would refuse it in its own shape, or worse, as a failure of the deployment)."""
    if not data:
        raise _bad(f"{what} holds no data after `base64,`", param)
    try:
        base64.b64decode(data, validate=True)
    except ValueError:
        raise _bad(f"{what} does not hold valid base64 (only A-Z a-z 0-9 + / and `=` padding, length a "
                   "multiple of 4); encode the file's bytes with base64", param) from None


def check_chat_request(body: Body, choices: bool = False) -> None:
    """What a translated chat request asks for that the translation could not give, refused with
    what to change (OpenAI refuses the same, or would answer what the client asked for): a
    malformed `response_format`, audio output, a `tool_choice` that forces a tool without `tools`,
    several choices (`n`) unless the target gives them (`choices`: generateContent's
    candidateCount; Anthropic and Converse answer one)."""
    check_response_format(body.get("response_format"))
    if not choices and body.get("n") not in (None, 1):
        raise _bad("`n` > 1 is not supported by this deployment (Anthropic, Bedrock and Claude on Vertex "
                   "answer one choice); send separate requests", "n")
    modalities = body.get("modalities")
    if body.get("audio") is not None or (modalities is not None and modalities != ["text"]):
        if not isinstance(modalities, list) or any(m not in ("text", "audio") for m in modalities):
            raise _bad('`modalities` must be a list of "text" and "audio"', "modalities")
        raise _bad('this deployment answers text only: send `modalities: ["text"]` (or leave it out) and no `audio`',
                   "modalities" if modalities is not None and modalities != ["text"] else "audio")
    choice = body.get("tool_choice")
    if not body.get("tools") and (choice == "required" or isinstance(choice, dict)):
        raise _bad("`tool_choice` forces a tool call but the request has no `tools`: send the tools the model "
                   "may call, or leave tool_choice out", "tool_choice")


def read_top_k(value: Any) -> int | None:
    """A chat request's `top_k` (LiteLLM's chat field; a Messages client's, carried over): a whole
    number of at least 0, as Claude and Gemini take it; else a 400 saying so."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _bad("`top_k` must be a whole number of at least 0; send e.g. 40, or leave it out", "top_k")
    return value


_RESPONSE_FORMATS = ("text", "json_object", "json_schema")


def check_response_format(value: Any) -> None:
    """Refuse a `response_format` OpenAI would refuse: a translation that skipped a malformed one
    would answer free text to a client that asked for JSON. An object whose `type` is text,
    json_object or json_schema; json_schema with a `json_schema` object, its `name` (if given) a
    string and its `schema` (if given) an object."""
    if value is None:
        return
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise _bad('response_format must be an object with a `type`, e.g. {"type": "json_object"}', "response_format")
    kind = value["type"]
    if kind not in _RESPONSE_FORMATS:
        raise _bad(f"response_format.type {kind!r} is not one of text, json_object, json_schema",
                   "response_format.type")
    if kind != "json_schema":
        return
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise _bad('response_format of type json_schema needs a `json_schema` object: '
                   '{"name": ..., "schema": {...}}', "response_format.json_schema")
    if spec.get("name") is not None and not isinstance(spec["name"], str):
        raise _bad("response_format.json_schema.name must be a string", "response_format.json_schema.name")
    if spec.get("schema") is not None and not isinstance(spec["schema"], dict):
        raise _bad("response_format.json_schema.schema must be a JSON Schema object",
                   "response_format.json_schema.schema")


def image_bytes(image: Image) -> bytes:
    assert image.data is not None
    try:
        return base64.b64decode(image.data, validate=True)
    except ValueError:
        raise _bad("an image data URL does not hold valid base64") from None
