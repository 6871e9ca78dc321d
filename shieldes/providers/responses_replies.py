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
    if incomplete:
        _cut_short(output)
    return Translated(output, usage_from_chat(chat.get("usage")), "incomplete" if incomplete else "completed",
                      incomplete)


def _cut_short(output: list[Body]) -> None:
    """An answer cut by the token limit (or a content filter): its last item, the one the cut ended,
    has status incomplete, as OpenAI reports it (reasoning items carry no status)."""
    if output and "status" in output[-1]:
        output[-1]["status"] = "incomplete"


# --- stream: chat chunks -> Responses events -------------------------------------------------------


@dataclass(slots=True)
class _Open:
    """An output item being streamed, and its events not sent yet: an item's events go out only
    once every item before it is done (`closed` and its events sent), as OpenAI streams them."""

    index: int
    item: Body
    text: list[str] = field(default_factory=list)
    logprobs: list[Body] = field(default_factory=list)
    blocks: list[Thinking] = field(default_factory=list)  # a reasoning item's signed thinking
    input: InputStream | None = None  # a custom tool call's input, read out of its arguments
    held: list[tuple[str, Body]] = field(default_factory=list)  # (type, fields) of events not numbered yet
    closed: bool = False  # its done events are made (in `held` or sent)


class ChatStreamTranslator:
    """Feed chat completion chunks; get the typed Responses events to send, numbered in order.
    `start()` first, then `feed(chunk)` per chunk, then `finish(now)` or `fail(message, now)`.

    Items go out one after another, each finished (output_item.done) before the next is added, as
    OpenAI sends them and as clients read them: the first unfinished item streams as it comes; the
    items after it (the second of parallel tool calls, text after a call) are held and follow once
    it is done. A chat server's tool call is done only when the stream ends or another call takes
    its tool_calls index (Ollama's way): it may send any index's fragments at any time, so every
    argument fragment lands in its own call, in the order sent. `calls_in_order`: the upstream
    sends each call whole before anything else (Anthropic's, Bedrock's and Gemini's content blocks
    and parts), so a call is done, and the items after it stream live, once anything else starts."""

    def __init__(self, ctx: ResponseContext, make_id: IdMaker = new_id,
                 kinds: CallKinds | None = None, encrypted: bool = False, calls_in_order: bool = False) -> None:
        self.ctx = ctx
        self.calls_in_order = calls_in_order
        self._ended_calls: set[int] = set()  # tool_calls indexes of calls closed early (calls_in_order)
        self.kinds = kinds or CallKinds()
        self.summary = asks_summary(ctx.echo)  # reasoning streams as a summary (reasoning_item)
        self.encrypted = encrypted  # signed thinking goes in the reasoning item's encrypted_content
        self.make_id = make_id
        self.number = EventNumberer()
        self.output: list[Body] = []
        self.usage: ResponsesUsage | None = None
        self.final: Body | None = None
        self._text: _Open | None = None
        self._refusal: _Open | None = None  # a chat answer's `refusal`: a message item of its own, as chat_to_output
        self._reasoning: _Open | None = None
        self._calls: dict[int, _Open] = {}  # tool_calls index -> the call last opened at it
        self._call_list: list[_Open] = []  # every open call, in order; `_call_ids`: ids the upstream sent
        self._call_ids: set[str] = set()
        self._queue: list[_Open] = []  # items whose events are not all sent, in output order
        self._shown = 0  # items whose output_item.added was sent
        self._finish: str | None = None
        self._cut = False  # the answer was cut (finish reason length, content_filter): its last item is incomplete

    def start(self) -> list[Body]:
        snapshot = response_object(self.ctx, "in_progress", [], None)
        return [self.number("response.created", response=snapshot),
                self.number("response.in_progress", response=snapshot)]

    def _drain(self) -> list[Body]:
        """The events that may go out now: the first unfinished item's, and the items' after it
        once it is done."""
        events = []
        while self._queue:
            head = self._queue[0]
            if head.held and head.held[0][0] == "response.output_item.added":
                self._shown += 1
            events += [self.number(kind, **fields) for kind, fields in head.held]
            head.held.clear()
            if not head.closed:
                break
            self._queue.pop(0)
        return events

    def _add(self, item: Body) -> _Open:
        opened = _Open(len(self.output), item)
        self.output.append(item)
        self._queue.append(opened)
        opened.held.append(("response.output_item.added", {"output_index": opened.index, "item": dict(item)}))
        return opened

    @staticmethod
    def _event(item: _Open, kind: str, **fields: Any) -> None:
        """An event of `item` (with its item_id and output_index)."""
        item.held.append((kind, {"item_id": item.item["id"], "output_index": item.index, **fields}))

    def _done(self, item: _Open) -> None:
        if self._cut and item.index == len(self.output) - 1 and "status" in item.item:
            item.item["status"] = "incomplete"  # the item the cut ended (_cut_short)
        item.held.append(("response.output_item.done", {"output_index": item.index, "item": item.item}))
        item.closed = True

    def _close_text(self) -> None:
        self._close_refusal()
        if self._text is None:
            return
        t, self._text = self._text, None
        text = "".join(t.text)
        t.item.update(status="completed", content=[text_part(text, t.logprobs)])
        self._event(t, "response.output_text.done", content_index=0, text=text, logprobs=t.logprobs)
        self._event(t, "response.content_part.done", content_index=0, part=text_part(text, t.logprobs))
        self._done(t)

    def _close_refusal(self) -> None:
        if self._refusal is None:
            return
        r, self._refusal = self._refusal, None
        text = "".join(r.text)
        r.item.update(refusal_item(r.item["id"], text))
        self._event(r, "response.refusal.done", content_index=0, refusal=text)
        self._event(r, "response.content_part.done", content_index=0, part=r.item["content"][0])
        self._done(r)

    def _refusal_delta(self, text: str) -> None:
        """A refusal (chat's `refusal` deltas, as OpenAI sends one for structured output) streams
        as the API streams it: a message item with one refusal part."""
        self._close_reasoning()
        self._calls_done()
        if self._refusal is None:
            self._close_text()  # (text first, then the refusal: two items, as chat_to_output makes them)
            self._refusal = self._add(message_item(self.make_id("msg"), "", "in_progress"))
            self._event(self._refusal, "response.content_part.added", content_index=0,
                        part={"type": "refusal", "refusal": ""})
        self._refusal.text.append(text)
        self._event(self._refusal, "response.refusal.delta", content_index=0, delta=text)

    def _close_reasoning(self) -> None:
        if self._reasoning is None:
            return
        r, self._reasoning = self._reasoning, None
        text = "".join(r.text)
        r.item.update(reasoning_item(r.item["id"], text, self.summary, _encrypted(r.blocks)))
        if not r.text:  # signed blocks alone (redacted thinking): no part was opened
            pass
        elif self.summary:
            self._event(r, "response.reasoning_summary_text.done", summary_index=0, text=text)
            self._event(r, "response.reasoning_summary_part.done", summary_index=0, part=summary_part(text))
        else:
            self._event(r, "response.reasoning_text.done", content_index=0, text=text)
            self._event(r, "response.content_part.done", content_index=0, part=reasoning_part(text))
        self._done(r)

    def _open_reasoning(self) -> _Open:
        if self._reasoning is None:
            self._close_text()
            self._calls_done()
            item: Body = {"id": self.make_id(ITEM_PREFIX), "type": "reasoning", "summary": []}
            self._reasoning = self._add(item if self.summary else {**item, "content": []})
        return self._reasoning

    def _thinking(self, blocks: list[Thinking]) -> None:
        """Signed thinking blocks, each sent whole once its signature came: kept for the reasoning
        item's encrypted_content (given at output_item.done)."""
        if blocks and self.encrypted:
            self._open_reasoning().blocks += blocks

    def _reasoning_delta(self, text: str) -> None:
        """Reasoning streams as the API streams it: a reasoning item, one reasoning_text part (or
        summary_text part, when the request asked for a summary), deltas."""
        opened = self._open_reasoning()
        if not opened.text:
            if self.summary:
                self._event(opened, "response.reasoning_summary_part.added", summary_index=0, part=summary_part(""))
            else:
                self._event(opened, "response.content_part.added", content_index=0, part=reasoning_part(""))
        opened.text.append(text)
        if self.summary:
            self._event(opened, "response.reasoning_summary_text.delta", summary_index=0, delta=text)
        else:
            self._event(opened, "response.reasoning_text.delta", content_index=0, delta=text)

    def _close_call(self, c: _Open) -> None:
        args = "".join(c.text)
        if c.input is None:
            c.item.update(status="completed", arguments=args)
            self._event(c, "response.function_call_arguments.done", name=c.item["name"], arguments=args)
        else:
            rest = c.input.rest(args)
            if rest:
                self._event(c, "response.custom_tool_call_input.delta", delta=rest)
            c.item.update(status="completed", input=custom_input(args))
            self._event(c, "response.custom_tool_call_input.done", input=c.item["input"])
        self._done(c)

    def _close_calls(self) -> None:
        for c in self._call_list:
            self._close_call(c)
        self._calls, self._call_list = {}, []

    def _calls_done(self) -> None:
        """Something else starts: with calls_in_order, the calls before it are done."""
        if self.calls_in_order and self._call_list:
            self._ended_calls.update(self._calls)
            self._close_calls()

    def feed(self, chunk: Body) -> list[Body]:
        usage = usage_from_chat(chunk.get("usage"))
        if usage is not None:
            self.usage = usage
        self.ctx = served_tier(self.ctx, chunk)
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = reasoning_text(delta)
            if reasoning:
                self._reasoning_delta(reasoning)
            self._thinking(read_thinking_blocks(delta.get("thinking_blocks")))
            content = delta.get("content")
            if isinstance(content, str) and content:
                self._text_delta(content, output_logprobs(choice))
            refusal = delta.get("refusal")
            if isinstance(refusal, str) and refusal:
                self._refusal_delta(refusal)
            for call in delta.get("tool_calls") or []:
                self._call_delta(call)
            if choice.get("finish_reason"):
                self._finish = str(choice["finish_reason"])
        return self._drain()

    def _text_delta(self, content: str, logprobs: list[Body]) -> None:
        self._close_reasoning()
        self._close_refusal()
        self._calls_done()
        if self._text is None:
            self._text = self._add(message_item(self.make_id("msg"), "", "in_progress"))
            self._event(self._text, "response.content_part.added", content_index=0, part=text_part(""))
        self._text.text.append(content)
        self._text.logprobs += logprobs
        self._event(self._text, "response.output_text.delta", content_index=0, delta=content, logprobs=logprobs)

    def _call_delta(self, call: Any) -> None:
        if not isinstance(call, dict):
            return
        index = int(call.get("index") or 0)
        fn = call.get("function") or {}
        opened = self._calls.get(index)
        given = call["id"] if isinstance(call.get("id"), str) and call["id"] else None
        if opened is None and given is None and index in self._ended_calls:
            return  # (a fragment of a call already done: its arguments went out)
        # Ollama and other servers send every parallel call at index 0: a new id there is a new call
        # (and the call before it at that index is done: no fragment can reach it any more)
        if opened is None or (given is not None and given not in self._call_ids
                              and opened.item["call_id"] in self._call_ids):
            self._close_text()
            self._close_reasoning()
            self._calls_done()
            opened = self._calls.get(index)
            if opened is not None:
                self._close_call(opened)
                self._call_list.remove(opened)
            item = _call_item(self.make_id("fc"), given or self.make_id("call"), str(fn.get("name") or ""), "",
                              "in_progress", self.kinds)
            opened = self._add(item)
            if item["type"] == "custom_tool_call":
                opened.input = InputStream()
            self._calls[index] = opened
            self._ended_calls.discard(index)
            self._call_list.append(opened)
            self._call_ids.update([given] if given else [])
        args = arguments_text(fn.get("arguments"))  # an object (Ollama) as its JSON text
        if args:
            opened.text.append(args)
            if opened.input is None:
                self._event(opened, "response.function_call_arguments.delta", delta=args)
            elif piece := opened.input.feed(args):
                self._event(opened, "response.custom_tool_call_input.delta", delta=piece)

    def finish(self, now: int, fallback_usage: ResponsesUsage | None = None) -> list[Body]:
        incomplete = _INCOMPLETE.get(str(self._finish))
        self._cut = incomplete is not None
        self._close_reasoning()
        self._close_text()
        self._close_calls()
        events = self._drain()
        usage = self.usage or fallback_usage
        status = "incomplete" if incomplete else "completed"
        self.final = response_object(self.ctx, status, self.output, usage, completed_at=now,
                                     incomplete=incomplete)
        events.append(self.number(f"response.{status}", response=self.final))
        return events

    def fail(self, message: str, now: int, code: str = "server_error", kind: str = "server_error") -> list[Body]:
        """The items the client was shown (held ones never were) end the failed response as they stood."""
        del now
        self.final = response_object(self.ctx, "failed", self.output[:self._shown], self.usage,
                                     error={"code": code, "message": message})
        return [error_event(self.number, message, code, kind), self.number("response.failed", response=self.final)]
