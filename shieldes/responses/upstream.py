"""One Responses call to one deployment, in the deployment's mode: `native` passes the request to
the upstream's own /v1/responses; `translate` sends chat completions (which the anthropic provider
turns into Messages) and builds the Responses answer and events from what comes back."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from shieldes.errors import InvalidRequest
from shieldes.gateway.top_level import TopLevel
from shieldes.projections.state import Deployment
from shieldes.providers import chat_paths
from shieldes.providers.base import Body, ChunkStream, Provider, StreamCounts, Target, UpstreamFailure
from shieldes.providers.dropped import dropped_header
from shieldes.providers.kinds import calls_in_order, signs_thinking, takes_tool_images
from shieldes.providers.openai_responses import TERMINAL, ResponsesEventStream
from shieldes.providers.output_caps import within_cap
from shieldes.providers.responses_options import unfilled_includes
from shieldes.providers.responses_replies import ChatStreamTranslator, chat_to_output, served_tier
from shieldes.providers.responses_tools import call_kinds, dropped_tools
from shieldes.providers.responses_translate import request_to_chat
from shieldes.providers.signed_reasoning import DROPPED, ITEM_MARK, MARK, without_own_reasoning
from shieldes.providers.sse import encode_event
from shieldes.providers.stream_failures import BROKEN_STREAM, StreamFailure, classify
from shieldes.providers.tool_ids import RESPONSES, fit_responses_ids, scan_call_items
from shieldes.providers.upstream_connection import Payload, Pieces
from shieldes.responses.compaction import compacting, compaction_item, summary_request, with_summaries
from shieldes.responses.history import History
from shieldes.responses.objects import (
    ContextOf,
    EventNumberer,
    ResponsesUsage,
    asks_encrypted,
    asks_summary,
    error_event,
    output_text,
    response_object,
    usage_from_responses,
)
from shieldes.responses.request import upstream_fields

NATIVE = "native"
TRANSLATE = "translate"
MODES = (TRANSLATE, NATIVE)
DROPPED_HEADER = "x-shieldes-dropped-tools"  # hosted tools a translate-mode deployment left out
UNFILLED_HEADER = "x-shieldes-unfilled-include"  # include entries a translate-mode answer lacks
MAX_OUTPUT = "max_output_tokens"  # named in x-shieldes-dropped when lowered to the upstream model's limit


@dataclass(slots=True)
class Answer:
    """A finished (non-streamed) response object and its usage, if the upstream reported it."""

    response: Body
    usage: ResponsesUsage | None
    headers: dict[str, str] = field(default_factory=dict)


class EventStream(Protocol):
    """Typed Responses events for the client. Failures after the first event come as `error` and
    `response.failed` events, never as exceptions. `final` is the last response object (once
    iteration ended), `usage` its usage if reported, `deltas` the content deltas seen, `broke` the
    upstream's failure that ended it so (for the request log), if one did."""

    final: Body | None
    usage: ResponsesUsage | None
    deltas: int
    headers: dict[str, str]
    broke: UpstreamFailure | None

    def __aiter__(self) -> AsyncIterator[Body]: ...

    async def aclose(self) -> None: ...


def _now() -> int:
    return int(time.time())


def _native_payload(body: Body, model: str) -> Body:
    """The request as a native Responses upstream takes it: call ids fitted to its rule (a
    conversation begun on another deployment may carry longer ones), without this gateway's
    reasoning items."""
    return _fitted(without_own_reasoning(body) or body, model, _calls_fit(body))


# Whether a request holds the gateway's reasoning items is seen by searching the client's bytes for
# the value's prefix and the id's (about 0.4 us of CPU per kB each on a slow 2-core machine) or by
# looking at the parsed items (about 0.1 us each): the bytes when the items are small on average,
# the items when they are kB each, as an agent's reasoning items and tool outputs are.
SEARCH_BELOW = 128  # bytes per input item


def native_body(body: Body, raw: bytes | None, start: int = 0) -> tuple[Body, bytes | None, dict[str, str]]:
    """`body` (and the client's bytes of it, if any) as a native upstream may get it: without the
    reasoning items a translate deployment made (an earlier turn of the conversation served by
    Anthropic, Bedrock or a chat upstream), which OpenAI would refuse (400 for Claude's thinking in
    encrypted_content, 404 for an item id it does not hold); the header names them. Without such
    items (the common case) the client's bytes go as they are. The input items before `start` are
    known to hold none."""
    items = body.get("input")
    if raw is not None and len(raw) < SEARCH_BELOW * len(items if isinstance(items, list) else ()) \
            and MARK not in raw and ITEM_MARK not in raw:
        return body, raw, {}
    stripped = without_own_reasoning(body, start)
    if stripped is None:  # (or the prefix was in some text)
        return body, raw, {}
    return stripped, None, dropped_header([DROPPED])


def _fitted(body: Body, model: str, calls_fit: bool) -> Body:
    payload = dict(body if calls_fit else fit_responses_ids(body), model=model)
    payload.pop("stream", None)
    return payload


def _calls_fit(body: Body, known: History | None = None) -> bool:
    """Whether every call_id of the input fits a native upstream's rule; an output item (of a
    function or custom tool call) that answers no call is refused here, in the gateway's words (the
    upstream would refuse it too, less clearly). `known`: the history the input starts with, when
    only the items after it need reading."""
    items = body.get("input")
    if not isinstance(items, list):
        ids_fit, unanswered = True, None
    elif known is None:
        ids_fit, unanswered = scan_call_items(items, RESPONSES)
    else:
        ids_fit, unanswered = scan_call_items(items, RESPONSES, len(known.items), known.calls or ())
    if unanswered is not None and isinstance(items, list):
        index, call_id = unanswered
        output = str(items[index]["type"])  # function_call_output or custom_tool_call_output
        call = output.removesuffix("_output")
        if not isinstance(call_id, str):
            raise InvalidRequest(f"input: a {output} has no string call_id; give it the call_id of "
                                 f"the {call} it answers", param="input")
        raise InvalidRequest(
            f"input: the {output} with call_id {call_id[:100]!r} answers no {call}: no "
            f"{call} item with that call_id comes before it (in `input`, or in the conversation of "
            f"`previous_response_id`); send the {call} item before its output, or continue from the "
            "response that made the call with previous_response_id", param="input")
    return ids_fit


async def respond(provider: Provider, target: Target, dep: Deployment, body: Body, ctx: ContextOf,
                  streaming: bool, raw: Payload | None = None, top: TopLevel | None = None,
                  history: History | None = None,
                  caps: dict[tuple[str, str], int] | None = None) -> Answer | EventStream:
    """`body` is the client's request with `input` holding the whole conversation and no
    `previous_response_id` (the gateway keeps the conversation, whichever deployment answers).
    `raw`: the client's own encoding of `body` when it is that (see request.forwards_as_sent),
    sent to a native deployment as it is unless call ids must be fitted. `top`: the client's body
    read by its top-level fields, when its input stays bytes (request.input_sent_as_is and
    input_bytes.input_as_sent: it goes to a native deployment as sent); `body` is then every field
    but `input`, and the whole body is decoded only for a translate deployment. `history`: what
    the input starts with (History.checked: nothing in it needs a change or an error), whose items
    are then not read again. `caps`: the output limits learnt of deployments (output_caps), which
    a translated request's max_output_tokens is kept within."""
    if top is not None:
        if dep.responses == NATIVE:
            payload = raw if raw is not None else top.with_fields({**top.changes(body), "model": target.model})
            return await _native(provider, target, dep, body, ctx, streaming, payload, True, {})
        body, raw = {**upstream_fields(top.decoded()), **body}, None
    elif isinstance(raw, Pieces):  # (the client's bytes and the gateway's additions, searched below as one)
        raw = bytes(raw)
    known = history if history is not None and history.checked and history.items else None
    start = len(known.items) if known is not None else 0
    expanded = with_summaries(body, start)  # compactions this gateway made: their summaries, for any upstream
    if expanded is not None:
        body, raw, known, start = expanded, None, None, 0
    if dep.responses == NATIVE:
        calls_fit = _calls_fit(body, known)
        body, raw, headers = native_body(body, raw, start)
        return await _native(provider, target, dep, body, ctx, streaming, raw if calls_fit else None, calls_fit,
                             headers)
    _calls_fit(body, known)  # (an output that answers no call is refused in every mode, before any upstream call)
    if compacting(body):
        return await _summarized(provider, target, dep, body, ctx, streaming, caps)
    return await _translated(provider, target, dep, body, ctx, streaming, caps)


async def _native(provider: Provider, target: Target, dep: Deployment, body: Body, ctx: ContextOf,
                  streaming: bool, as_sent: Payload | None, calls_fit: bool,
                  headers: dict[str, str]) -> Answer | EventStream:
    """A native deployment's call: `as_sent`, the bytes to send when they need no change, else
    `body` encoded (call ids fitted unless `calls_fit`)."""
    opener = getattr(provider, "responses_stream" if streaming else "call_raw", None)
    if opener is None:
        raise UpstreamFailure(f"deployment {dep.name!r} cannot serve the Responses API natively",
                              status=None, retryable=True)
    if streaming:
        payload = body if as_sent is not None else _fitted(body, target.model, calls_fit)
        upstream: ResponsesEventStream = await opener(target, payload, as_sent)
        events = NativeEvents(upstream, ctx.previous)
        events.headers.update(headers)
        return events
    result = await opener("responses", target,
                          as_sent if as_sent is not None else orjson.dumps(_fitted(body, target.model, calls_fit)))
    response = dict(result.body, previous_response_id=ctx.previous)
    return Answer(response, usage_from_responses(response.get("usage")), headers)


async def _summarized(provider: Provider, target: Target, dep: Deployment, body: Body, ctx: ContextOf,
                      streaming: bool, caps: dict[tuple[str, str], int] | None) -> Answer | EventStream:
    """A compaction by a deployment that cannot make OpenAI's: the model's handoff summary of the
    conversation, sealed in a compaction item (compaction.py), billed as the turn."""
    answer = await _translated(provider, target, dep, summary_request(body), ctx, False, caps)
    assert isinstance(answer, Answer)
    summary = output_text(answer.response)
    if answer.response.get("status") != "completed" or not summary.strip():
        raise UpstreamFailure(f"deployment {dep.name!r} answered the compaction's summary request with "
                              f"{'no text' if not summary.strip() else 'an incomplete answer'}; retry the compaction",
                              status=None, retryable=True)
    response = response_object(ctx.context, "completed", [compaction_item(summary)], answer.usage,
                               completed_at=_now())
    if streaming:
        return ReadyEvents(response, answer.usage, answer.headers)
    return Answer(response, answer.usage, answer.headers)


async def _translated(provider: Provider, target: Target, dep: Deployment, body: Body, ctx: ContextOf,
                      streaming: bool, caps: dict[tuple[str, str], int] | None) -> Answer | EventStream:
    """The request as chat completions (any kind of deployment takes those), its answer as Responses."""
    signed = signs_thinking(dep.kind, target.model)
    names: list[str] = []  # the request's path of each chat message, for errors about them
    chat = request_to_chat(body, target.model, signed, takes_tool_images(dep.kind, target.model), names)
    kinds = call_kinds(body)
    dropped = dropped_tools(body)
    headers = {DROPPED_HEADER: ",".join(dropped)} if dropped else {}
    unfilled = unfilled_includes(body, signed)
    if unfilled:
        headers[UNFILLED_HEADER] = ",".join(unfilled)
    # automatic compaction is OpenAI's own: elsewhere a client compacts with a compaction_trigger turn;
    # so is `truncation: auto` (OpenAI drops the oldest items that do not fit the model's window, which
    # only it knows): the whole conversation is sent, and a window it overflows is refused upstream
    left_out = ["context_management"] if body.get("context_management") else []
    left_out += ["truncation"] if body.get("truncation") == "auto" else []
    # Claude's signed thinking rides in encrypted_content when the client asks for it, and for the
    # stored response (a previous_response_id turn sends it back; the client sees it only if asked)
    encrypted = signed and (asks_encrypted(body) or body.get("store") is not False)
    learnt = caps if caps is not None else {}  # (without the gateway's: learnt for this call only)
    if streaming:
        with chat_paths.named(names):
            chunks, lowered = await within_cap(learnt, target, dict(chat, stream=True),
                                               lambda c: provider.stream("chat", target, c), MAX_OUTPUT)
        headers.update(dropped_header([*left_out, *lowered, *chunks.dropped]))  # settings the chat translation left out
        translator = ChatStreamTranslator(ctx.context, kinds=kinds, encrypted=encrypted,
                                          calls_in_order=calls_in_order(dep.kind, target.model))
        return TranslatedEvents(chunks, translator, headers)
    with chat_paths.named(names):
        result, lowered = await within_cap(learnt, target, chat, lambda c: provider.call("chat", target, c),
                                           MAX_OUTPUT)
    headers.update(dropped_header([*left_out, *lowered, *result.dropped]))
    out = chat_to_output(result.body, kinds=kinds, summary=asks_summary(body), encrypted=encrypted)
    response = response_object(served_tier(ctx.context, result.body), out.status, out.output, out.usage,
                               completed_at=_now(), incomplete=out.incomplete)
    return Answer(response, out.usage, headers)


async def count_input_tokens(provider: Provider, target: Target, body: Body) -> int:
    """The upstream's own count from its /v1/responses/input_tokens (native deployments)."""
    call_raw = getattr(provider, "call_raw", None)
    if call_raw is None:
        raise UpstreamFailure(f"deployment {target.deployment!r} cannot count Responses input tokens",
                              status=None, retryable=True)
    result = await call_raw("input_tokens", target, orjson.dumps(_native_payload(body, target.model)))
    count = result.body.get("input_tokens")
    if not isinstance(count, int):
        raise UpstreamFailure(f"deployment {target.deployment!r} answered input_tokens without a count",
                              status=None, retryable=True)
    return count


class TranslatedEvents:
    """Chat chunks of a translate-mode deployment as Responses events."""

    def __init__(self, chunks: ChunkStream, translator: ChatStreamTranslator, headers: dict[str, str]) -> None:
        self._chunks = chunks
        self._tr = translator
        self.headers = headers
        self.final: Body | None = None
        self.usage: ResponsesUsage | None = None
        self.deltas = 0
        self.broke: UpstreamFailure | None = None
        self._gen: AsyncGenerator[Body, None] | None = None

    def __aiter__(self) -> AsyncGenerator[Body, None]:
        if self._gen is None:
            self._gen = self._events()
        return self._gen

    async def _events(self) -> AsyncGenerator[Body, None]:
        tr = self._tr
        for event in tr.start():
            yield event
        try:
            async for chunk in self._chunks:
                for event in tr.feed(chunk):
                    if event["type"].endswith(".delta"):
                        self.deltas += 1
                    yield event
        except UpstreamFailure as failure:
            self.broke = failure
            kind = classify(failure)
            events = tr.fail(f"upstream stream failed: {failure.message}; retry the request", _now(),
                             kind.responses_code, _event_type(kind))
        except (AttributeError, TypeError, ValueError, KeyError) as exc:  # a chunk of an odd shape
            events = tr.fail(f"upstream sent a stream chunk this gateway cannot read ({type(exc).__name__}); "
                             "retry the request", _now())
        else:
            events = tr.finish(_now())
        self.final, self.usage = tr.final, tr.usage
        for event in events:
            yield event

    async def aclose(self) -> None:
        if self._gen is not None:
            await self._gen.aclose()
        await self._chunks.aclose()


class ReadyEvents:
    """A response the gateway already holds whole, as the events of its stream."""

    def __init__(self, response: Body, usage: ResponsesUsage | None, headers: dict[str, str]) -> None:
        self.final: Body | None = response
        self.broke: UpstreamFailure | None = None
        self.usage = usage
        self.headers = headers
        self.deltas = 0

    def __aiter__(self) -> AsyncIterator[Body]:
        return self._events()

    async def _events(self) -> AsyncIterator[Body]:
        final = self.final or {}
        number = EventNumberer()
        pending = dict(final, status="in_progress", output=[], usage=None, completed_at=None)
        yield number("response.created", response=pending)
        yield number("response.in_progress", response=pending)
        for index, item in enumerate(final.get("output") or []):
            yield number("response.output_item.added", output_index=index, item=item)
            yield number("response.output_item.done", output_index=index, item=item)
        yield number("response.completed", response=final)

    async def aclose(self) -> None:
        return None


def _unbilled(response: Body, _deltas: int) -> Body:
    return response


class NativeEvents:
    """A native upstream's events, passed on; a failure mid-stream ends it with `error` and
    `response.failed` events numbered after the upstream's. Iteration gives the events parsed;
    `frames()` gives them as the client gets them, forwarding the upstream's own bytes."""

    # What every stream starts with, on the class (one NativeEvents is made per stream): an
    # instance's own value is set when it changes.
    final: Body | None = None
    usage: ResponsesUsage | None = None
    deltas = 0
    broke: UpstreamFailure | None = None
    _gen: AsyncGenerator[Body, None] | None = None
    _frame_gen: AsyncGenerator[bytes, None] | None = None
    _bill: Callable[[Body, int], Body] = staticmethod(_unbilled)  # set by frames(), with the two below
    _before_end: Callable[[Body], Awaitable[None]] | None = None
    _held: Body | None = None  # the terminal response billed, until `release()`

    def __init__(self, upstream: ResponsesEventStream, previous: str | None) -> None:
        """`previous`: the request's previous_response_id, set in the response objects passed on."""
        self._up = upstream
        self._previous = previous
        self.edits_progress = previous is not None  # (openai_responses.Relay)
        self.headers: dict[str, str] = {}

    def __aiter__(self) -> AsyncGenerator[Body, None]:
        if self._gen is None:
            self._gen = self._events()
        return self._gen

    async def _events(self) -> AsyncGenerator[Body, None]:
        up = self._up
        try:
            async for event in up:
                response = event.get("response")
                if isinstance(response, dict) and self._previous is not None:
                    response["previous_response_id"] = self._previous
                if str(event.get("type", "")).endswith(".delta"):
                    self.deltas += 1
                yield event
        except UpstreamFailure as failure:
            for event in self._failed(failure):
                yield event
        self.final, self.usage = up.final, up.responses_usage

    def frames(self, bill: Callable[[Body, int], Body], counts: StreamCounts,
               before_end: Callable[[Body], Awaitable[None]] | None = None) -> AsyncGenerator[bytes, None]:
        """SSE frames for the client, one piece per upstream read; `counts` notes the delta events.
        `bill(response, deltas)` gives the response object of a terminal event as the client gets
        it (the usage estimate when the upstream reported none); `before_end(billed)` runs before
        the frames holding it go out (what it raises ends the stream there)."""
        self._bill, self._before_end = bill, before_end
        if self._frame_gen is None:
            self._frame_gen = self._up.frames(self, counts)
        return self._frame_gen

    # --- what frames() does to the upstream's events (openai_responses.Relay) ---

    def edit(self, event: Body, deltas: int) -> Body | None:
        response = event["response"]
        if self._previous is not None:
            response["previous_response_id"] = self._previous
        if event.get("type") in TERMINAL:
            billed = self._bill(response, deltas)
            if self._before_end is not None:
                self._held = billed
            if billed is not response:
                return dict(event, response=billed)
        return event if self._previous is not None else None

    @property
    def held(self) -> bool:
        return self._held is not None

    async def release(self) -> None:
        response, self._held = self._held, None
        if response is not None and self._before_end is not None:
            await self._before_end(response)

    def failed(self, failure: UpstreamFailure) -> bytes:
        out = []
        for event in self._failed(failure):
            if event["type"] in TERMINAL:
                event = dict(event, response=self._bill(event["response"], self._up.deltas))
            out.append(encode_event(event["type"], event))
        return b"".join(out)

    def ended(self) -> None:
        up = self._up
        self.final, self.usage, self.deltas = up.final, up.responses_usage, up.deltas

    def _failed(self, failure: UpstreamFailure) -> list[Body]:
        """The events that end a stream the upstream broke off, numbered after its own."""
        self.broke = failure
        up = self._up
        number = EventNumberer()
        number.next = up.last_sequence + 1
        message = f"upstream stream failed: {failure.message}; retry the request"
        kind = classify(failure)
        failed = dict(up.snapshot or {}, status="failed", error={"code": kind.responses_code, "message": message})
        up.final = failed
        return [error_event(number, message, kind.responses_code, _event_type(kind), failure.param),
                number("response.failed", response=failed)]

    async def aclose(self) -> None:
        if self._gen is not None:
            await self._gen.aclose()
        await self._up.aclose()  # (frames() is the upstream's own generator: closed there)


def _event_type(kind: StreamFailure) -> str:
    """An `error` event's nested `error.type`: OpenAI's for the kind, `server_error` for a broken stream."""
    return "server_error" if kind is BROKEN_STREAM else kind.openai_type
