"""Pure translation of chat completions answers into the Responses API, for upstreams that only
speak chat completions (the request's way is responses_translate): chat_to_output, a chat
completion -> Responses output items; ChatStreamTranslator, chat completion chunks -> the typed
Responses stream events. Claude's signed thinking (chat `thinking_blocks`) travels in the reasoning
items' encrypted_content (signed_reasoning). No I/O; item ids come from an injected function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from shieldes.providers.chat_parts import (
    Thinking,
    read_thinking_blocks,
    reasoning_text,
)
from shieldes.providers.responses_custom import InputStream, custom_input
from shieldes.providers.responses_options import output_logprobs
from shieldes.providers.responses_tools import CallKinds
from shieldes.providers.signed_reasoning import ITEM_PREFIX, encrypted_content
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
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


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

