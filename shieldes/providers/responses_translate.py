"""Pure translation between the Responses API and chat completions, for upstreams that only speak
chat completions (vLLM, Ollama, Groq, ... and, through the anthropic provider's own chat
translation, the Anthropic Messages API).

request_to_chat: a Responses request (its `input` already holding the whole conversation) -> a
chat completions request (its tools: responses_tools). chat_to_output: a chat completion ->
Responses output items. Claude's signed thinking (chat `thinking_blocks`) travels in the reasoning
items' encrypted_content (signed_reasoning).
ChatStreamTranslator: chat completion chunks -> the typed Responses stream events.
No I/O; item ids come from an injected function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from shieldes.errors import InvalidRequest
from shieldes.providers.chat_parts import (
    Thinking,
    read_thinking_blocks,
    reasoning_model,
    reasoning_text,
    thinking_block,
)
from shieldes.providers.reasoning import OFF
from shieldes.providers.responses_custom import InputStream, custom_arguments, custom_input
from shieldes.providers.responses_options import chat_options, output_logprobs
from shieldes.providers.responses_tools import CallKinds, chat_tools
from shieldes.providers.signed_reasoning import ITEM_PREFIX, encrypted_content, thinking_of
from shieldes.providers.tool_args import arguments_text
from shieldes.responses.objects import (
    Body,
    EventNumberer,
    ResponseContext,
    ResponsesUsage,
    asks_summary,
    custom_call_item,
    error_event,
    function_call_item,
    message_item,
    new_id,
    reasoning_item,
    reasoning_part,
    refusal_item,
    response_object,
    summary_part,
    text_part,
    usage_from_chat,
)

IdMaker = Callable[[str], str]
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


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


def served_tier(ctx: ResponseContext, chat: Body) -> ResponseContext:
    """The response reports the service tier the upstream says it used, when it says."""
    tier = chat.get("service_tier")
    return replace(ctx, echo={**ctx.echo, "service_tier": tier}) if isinstance(tier, str) and tier else ctx


# --- answer: chat completion -> Responses output --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Translated:
    output: list[Body]
    usage: ResponsesUsage | None
    status: str  # completed | incomplete
    incomplete: str | None


def _call_item(item_id: str, call_id: str, name: str, arguments: str, status: str, kinds: CallKinds) -> Body:
    if name in kinds.custom:
        item = custom_call_item(item_id, call_id, name, custom_input(arguments), status)
    else:
        item = function_call_item(item_id, call_id, name, arguments, status)
    if name in kinds.namespaces:
        item["namespace"] = kinds.namespaces[name]
    return item


def _encrypted(blocks: list[Thinking]) -> str | None:
    return encrypted_content(blocks) if blocks else None


def chat_to_output(chat: Body, make_id: IdMaker = new_id, kinds: CallKinds | None = None,
                   summary: bool = False, encrypted: bool = False) -> Translated:
    """`summary`: the request asked for a reasoning summary (the reasoning text is given as it);
    `encrypted`: the answer's signed thinking goes in the reasoning item's encrypted_content."""
    choices = chat.get("choices") or [{}]
    choice: Body = choices[0] if isinstance(choices[0], dict) else {}
    message: Body = choice["message"] if isinstance(choice.get("message"), dict) else {}
    output: list[Body] = []
    reasoning = reasoning_text(message)
    sealed = _encrypted(read_thinking_blocks(message.get("thinking_blocks"))) if encrypted else None
    if reasoning or sealed:
        output.append(reasoning_item(make_id(ITEM_PREFIX), reasoning, summary, sealed))
    if isinstance(message.get("content"), str) and (message["content"] or not message.get("tool_calls")):
        output.append(message_item(make_id("msg"), message["content"], logprobs=output_logprobs(choice)))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        output.append(refusal_item(make_id("msg"), message["refusal"]))
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        output.append(_call_item(make_id("fc"), str(call.get("id") or make_id("call")), str(fn.get("name") or ""),
                                 arguments_text(fn.get("arguments")), "completed", kinds or CallKinds()))
    if not output:
        output.append(message_item(make_id("msg"), ""))
    incomplete = _INCOMPLETE.get(str(choice.get("finish_reason")))
    return Translated(output, usage_from_chat(chat.get("usage")), "incomplete" if incomplete else "completed",
                      incomplete)


# --- stream: chat chunks -> Responses events -------------------------------------------------------


@dataclass(slots=True)
class _Open:
    """An output item being streamed."""

    index: int
    item: Body
    text: list[str] = field(default_factory=list)
    logprobs: list[Body] = field(default_factory=list)
    blocks: list[Thinking] = field(default_factory=list)  # a reasoning item's signed thinking
    input: InputStream | None = None  # a custom tool call's input, read out of its arguments


class ChatStreamTranslator:
    """Feed chat completion chunks; get the typed Responses events to send, numbered in order.
    `start()` first, then `feed(chunk)` per chunk, then `finish(now)` or `fail(message, now)`."""

    def __init__(self, ctx: ResponseContext, make_id: IdMaker = new_id,
                 kinds: CallKinds | None = None, encrypted: bool = False) -> None:
        self.ctx = ctx
        self.kinds = kinds or CallKinds()
        self.summary = asks_summary(ctx.echo)  # reasoning streams as a summary (reasoning_item)
        self.encrypted = encrypted  # signed thinking goes in the reasoning item's encrypted_content
        self.make_id = make_id
        self.number = EventNumberer()
        self.output: list[Body] = []
        self.usage: ResponsesUsage | None = None
        self.final: Body | None = None
        self._text: _Open | None = None
        self._reasoning: _Open | None = None
        self._calls: dict[int, _Open] = {}  # tool_calls index -> the call last opened at it
        self._call_list: list[_Open] = []  # every open call, in order; `_call_ids`: ids the upstream sent
        self._call_ids: set[str] = set()
        self._finish: str | None = None

    def start(self) -> list[Body]:
        snapshot = response_object(self.ctx, "in_progress", [], None)
        return [self.number("response.created", response=snapshot),
                self.number("response.in_progress", response=snapshot)]

    def _add(self, item: Body) -> tuple[_Open, Body]:
        opened = _Open(len(self.output), item)
        self.output.append(item)
        return opened, self.number("response.output_item.added", output_index=opened.index, item=dict(item))

    def _close_text(self) -> list[Body]:
        if self._text is None:
            return []
        t, self._text = self._text, None
        text = "".join(t.text)
        t.item.update(status="completed", content=[text_part(text, t.logprobs)])
        ids = {"item_id": t.item["id"], "output_index": t.index}
        return [self.number("response.output_text.done", **ids, content_index=0, text=text, logprobs=t.logprobs),
                self.number("response.content_part.done", **ids, content_index=0, part=text_part(text, t.logprobs)),
                self.number("response.output_item.done", output_index=t.index, item=t.item)]

    def _close_reasoning(self) -> list[Body]:
        if self._reasoning is None:
            return []
        r, self._reasoning = self._reasoning, None
        text = "".join(r.text)
        r.item.update(reasoning_item(r.item["id"], text, self.summary, _encrypted(r.blocks)))
        if not r.text:  # signed blocks alone (redacted thinking): no part was opened
            return [self.number("response.output_item.done", output_index=r.index, item=r.item)]
        if self.summary:
            ids = {"item_id": r.item["id"], "output_index": r.index, "summary_index": 0}
            return [self.number("response.reasoning_summary_text.done", **ids, text=text),
                    self.number("response.reasoning_summary_part.done", **ids, part=summary_part(text)),
                    self.number("response.output_item.done", output_index=r.index, item=r.item)]
        ids = {"item_id": r.item["id"], "output_index": r.index, "content_index": 0}
        return [self.number("response.reasoning_text.done", **ids, text=text),
                self.number("response.content_part.done", **ids, part=reasoning_part(text)),
                self.number("response.output_item.done", output_index=r.index, item=r.item)]

    def _open_reasoning(self) -> tuple[_Open, list[Body]]:
        if self._reasoning is not None:
            return self._reasoning, []
        events = self._close_text()
        item: Body = {"id": self.make_id(ITEM_PREFIX), "type": "reasoning", "summary": []}
        self._reasoning, added = self._add(item if self.summary else {**item, "content": []})
        return self._reasoning, [*events, added]

    def _thinking(self, blocks: list[Thinking]) -> list[Body]:
        """Signed thinking blocks, each sent whole once its signature came: kept for the reasoning
        item's encrypted_content (given at output_item.done)."""
        if not blocks or not self.encrypted:
            return []
        opened, events = self._open_reasoning()
        opened.blocks += blocks
        return events

    def _reasoning_delta(self, text: str) -> list[Body]:
        """Reasoning streams as the API streams it: a reasoning item, one reasoning_text part (or
        summary_text part, when the request asked for a summary), deltas."""
        opened, events = self._open_reasoning()
        if not opened.text:
            ids = {"item_id": opened.item["id"], "output_index": opened.index}
            events.append(self.number("response.reasoning_summary_part.added", **ids, summary_index=0,
                                      part=summary_part("")) if self.summary else
                          self.number("response.content_part.added", **ids, content_index=0, part=reasoning_part("")))
        opened.text.append(text)
        ids = {"item_id": opened.item["id"], "output_index": opened.index}
        events.append(self.number("response.reasoning_summary_text.delta", **ids, summary_index=0, delta=text)
                      if self.summary else
                      self.number("response.reasoning_text.delta", **ids, content_index=0, delta=text))
        return events

    def _close_calls(self) -> list[Body]:
        events = []
        for c in self._call_list:
            args = "".join(c.text)
            ids = {"item_id": c.item["id"], "output_index": c.index}
            if c.input is None:
                c.item.update(status="completed", arguments=args)
                events.append(self.number("response.function_call_arguments.done", **ids, name=c.item["name"],
                                          arguments=args))
            else:
                rest = c.input.rest(args)
                if rest:
                    events.append(self.number("response.custom_tool_call_input.delta", **ids, delta=rest))
                c.item.update(status="completed", input=custom_input(args))
                events.append(self.number("response.custom_tool_call_input.done", **ids, input=c.item["input"]))
            events.append(self.number("response.output_item.done", output_index=c.index, item=c.item))
        self._calls, self._call_list = {}, []
        return events

    def feed(self, chunk: Body) -> list[Body]:
        usage = usage_from_chat(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
        self.ctx = served_tier(self.ctx, chunk)
        events: list[Body] = []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = reasoning_text(delta)
            if reasoning:
                events += self._reasoning_delta(reasoning)
            events += self._thinking(read_thinking_blocks(delta.get("thinking_blocks")))
            content = delta.get("content")
            if isinstance(content, str) and content:
                events += self._text_delta(content, output_logprobs(choice))
            for call in delta.get("tool_calls") or []:
                events += self._call_delta(call)
            if choice.get("finish_reason"):
                self._finish = str(choice["finish_reason"])
        return events

    def _text_delta(self, content: str, logprobs: list[Body]) -> list[Body]:
        events = self._close_reasoning()
        if self._text is None:
            self._text, added = self._add(message_item(self.make_id("msg"), "", "in_progress"))
            events.append(added)
            events.append(self.number("response.content_part.added", item_id=self._text.item["id"],
                                      output_index=self._text.index, content_index=0, part=text_part("")))
        self._text.text.append(content)
        self._text.logprobs += logprobs
        events.append(self.number("response.output_text.delta", item_id=self._text.item["id"],
                                  output_index=self._text.index, content_index=0, delta=content, logprobs=logprobs))
        return events

    def _call_delta(self, call: Any) -> list[Body]:
        if not isinstance(call, dict):
            return []
        index = int(call.get("index") or 0)
        fn = call.get("function") or {}
        events: list[Body] = []
        opened = self._calls.get(index)
        given = call["id"] if isinstance(call.get("id"), str) and call["id"] else None
        # Ollama and other servers send every parallel call at index 0: a new id there is a new call
        if opened is None or (given is not None and given not in self._call_ids
                              and opened.item["call_id"] in self._call_ids):
            events += self._close_text() + self._close_reasoning()
            item = _call_item(self.make_id("fc"), given or self.make_id("call"), str(fn.get("name") or ""), "",
                              "in_progress", self.kinds)
            opened, added = self._add(item)
            if item["type"] == "custom_tool_call":
                opened.input = InputStream()
            self._calls[index] = opened
            self._call_list.append(opened)
            self._call_ids.update([given] if given else [])
            events.append(added)
        args = arguments_text(fn.get("arguments"))  # an object (Ollama) as its JSON text
        if args:
            opened.text.append(args)
            ids = {"item_id": opened.item["id"], "output_index": opened.index}
            if opened.input is None:
                events.append(self.number("response.function_call_arguments.delta", **ids, delta=args))
            elif piece := opened.input.feed(args):
                events.append(self.number("response.custom_tool_call_input.delta", **ids, delta=piece))
        return events

    def finish(self, now: int, fallback_usage: ResponsesUsage | None = None) -> list[Body]:
        events = self._close_reasoning() + self._close_text() + self._close_calls()
        usage = self.usage or fallback_usage
        incomplete = _INCOMPLETE.get(str(self._finish))
        status = "incomplete" if incomplete else "completed"
        self.final = response_object(self.ctx, status, self.output, usage, completed_at=now,
                                     incomplete=incomplete)
        events.append(self.number(f"response.{status}", response=self.final))
        return events

    def fail(self, message: str, now: int, code: str = "server_error") -> list[Body]:
        del now
        self.final = response_object(self.ctx, "failed", self.output, self.usage,
                                     error={"code": code, "message": message})
        return [error_event(self.number, message, code), self.number("response.failed", response=self.final)]

