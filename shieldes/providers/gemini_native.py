"""Pass-through to Google (`gemini` and `vertex` deployments), for clients that already speak the
Gemini API.

The client's own generateContent body goes out as it is: thoughtSignatures, safetySettings,
Google's own tools, cachedContent, every generationConfig field and several candidates all arrive.
Only the model changes, in the URL (and in a `model` field, when the body has one); a budget's
completion bound is added as generationConfig.maxOutputTokens when the client set none. The
answer's bytes come back as they are; they are read on the side only for usageMetadata."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from shieldes.errors import InvalidRequest
from shieldes.providers.anthropic_native import NativeAnswer
from shieldes.providers.base import Body, Target, TokenUsage, UpstreamFailure
from shieldes.providers.gemini_translate import gemini_reported, usage_from_gemini
from shieldes.providers.hosted_tools import gemini_grounding, with_searches
from shieldes.providers.http import invalid_response, retryable_status
from shieldes.providers.native_stream import HeldStream
from shieldes.providers.sse import SSEDecoder
from shieldes.providers.transport import UpstreamResponse

EmbedMethod = Literal["embedContent", "batchEmbedContents"]


class GenerateContentUpstream(ABC):
    """A provider module that speaks generateContent natively (takes pass-through calls). A base
    class, not a runtime-checked Protocol: the Gemini API routes ask `isinstance` on every request."""

    @abstractmethod
    async def generate(self, target: Target, payload: bytes) -> NativeAnswer: ...

    @abstractmethod
    async def generate_stream(self, target: Target, payload: bytes) -> GoogleEventStream: ...

    @abstractmethod
    async def embed_content(self, target: Target, method: EmbedMethod, payload: bytes) -> NativeAnswer: ...


def _positive(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidRequest(f"`generationConfig.{name}` must be a positive integer")
    return value


def _config(body: Body) -> tuple[str, dict[str, Any]]:
    """The body's generationConfig under the name the client used (Google takes either case)."""
    name = "generation_config" if "generation_config" in body else "generationConfig"
    config = body.get(name)
    if config is not None and not isinstance(config, dict):
        raise InvalidRequest(f"`{name}` must be an object")
    return name, config or {}


def bounds(body: Any) -> tuple[int | None, int]:
    """What a pass-through request's reservation is sized by: its completion bound
    (maxOutputTokens, None when unset) and how many candidates it asks for."""
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object (a GenerateContentRequest)")
    _name, config = _config(body)
    most = _positive(config.get("maxOutputTokens", config.get("max_output_tokens")), "maxOutputTokens")
    count = _positive(config.get("candidateCount", config.get("candidate_count")), "candidateCount")
    return most, count or 1


def native_changes(body: Body, model: str, cap: int | None = None) -> Body:
    """The top-level fields of a pass-through request that must change (none: the client's bytes
    go as they are): a `model` field names the upstream's model (the URL does anyway; Google
    refuses a batch whose requests name another model than the URL's), and `cap` (a budget's
    bound, given only when the client set none) becomes generationConfig.maxOutputTokens."""
    name = f"models/{model}"
    changes: Body = {}
    if "model" in body and body["model"] != name:
        changes["model"] = name
    requests = body.get("requests")  # batchEmbedContents
    if isinstance(requests, list):
        named = [dict(r, model=name) if isinstance(r, dict) and "model" in r else r for r in requests]
        if named != requests:
            changes["requests"] = named
    if cap is not None:
        key, config = _config(body)
        changes[key] = {**config, ("max_output_tokens" if key == "generation_config" else "maxOutputTokens"): cap}
    return changes


def native_payload(body: Body, raw: bytes, model: str, cap: int | None = None) -> bytes:
    """The client's bytes with native_changes made, every other field and value kept."""
    changes = native_changes(body, model, cap)
    return orjson.dumps({**body, **changes}) if changes else raw


def answer_usage(data: Body) -> TokenUsage | None:
    """The usage an answer reports (usageMetadata, billed as the translated route bills it:
    thoughts as output, cached content as cache reads), or None when it reports none."""
    meta = data.get("usageMetadata")
    return with_searches(usage_from_gemini(meta)[0], gemini_grounding(data)) if gemini_reported(meta) else None


def failure_of(error: Body, target: Target) -> UpstreamFailure:
    """An `{"error": {"code", "message", "status"}}` event of a stream, as a failure."""
    err = error.get("error")
    err = err if isinstance(err, dict) else {}
    code: int = err["code"] if isinstance(err.get("code"), int) else 502
    message = str(err.get("message") or err.get("status") or "upstream error")
    return UpstreamFailure(f"upstream deployment {target.deployment!r}: {message}", status=code,
                           retryable=retryable_status(code), body=error)


class GoogleWatch:
    """Reads generateContent stream events on the side: the latest usageMetadata (each event's is
    cumulative), events with content (for an estimate), the end (a finishReason, a blocked prompt)."""

    def __init__(self) -> None:
        self.meta: Body | None = None
        self.searches = 0  # grounding searches
        self.finish_reasons: list[str] = []  # each candidate's finishReason, as they came
        self.content_events = 0
        self.done = False

    def see(self, data: bytes) -> Body | None:
        """The event's object, or None when it is not one (the stream is broken there)."""
        try:
            parsed: Any = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(parsed, dict):
            return None
        if gemini_reported(parsed.get("usageMetadata")):
            self.meta = parsed["usageMetadata"]
        self.searches = max(self.searches, gemini_grounding(parsed))
        candidates = parsed.get("candidates")
        for cand in candidates if isinstance(candidates, list) else []:
            if not isinstance(cand, dict):
                continue
            if cand.get("finishReason"):
                self.done = True
                self.finish_reasons.append(str(cand["finishReason"]))
        if isinstance(candidates, list) and candidates:
            self.content_events += 1
        feedback = parsed.get("promptFeedback")
        if isinstance(feedback, dict) and feedback.get("blockReason"):
            self.done = True
        return parsed

    @property
    def usage(self) -> TokenUsage | None:
        if self.meta is None:
            return None
        usage = with_searches(usage_from_gemini(self.meta)[0], self.searches)
        if self.done:
            return usage
        # a stream cut short: its last counts may predate what was relayed since (one token per event)
        return usage._replace(completion_tokens=max(usage.completion_tokens, self.content_events))


@dataclass(frozen=True, slots=True)
class Read:
    """What one read of the upstream gave: its bytes as they came (`raw`, for a client taking the
    same SSE; None when they must not go as they are, e.g. they hold an error event) and the
    payloads of the events it completed, in order (for a client taking them as a JSON array)."""

    raw: bytes | None
    events: list[bytes]


class GoogleEventStream(HeldStream[Read]):
    """One upstream streamGenerateContent?alt=sse response, read by `reads()`. An `error` event
    the upstream sends instead of an answer is raised as an UpstreamFailure: before the first byte
    is relayed (`prime`), so another deployment can be tried; later, after the events before it."""

    watch: GoogleWatch

    def __init__(self, resp: UpstreamResponse, target: Target) -> None:
        super().__init__(resp, target)
        self._decoder = SSEDecoder()
        self.watch = GoogleWatch()
        self._failure: UpstreamFailure | None = None
        self._whole = True  # the reads so far ended at an event's end

    def _parsed(self, raw: bytes, events: list[tuple[str, bytes]]) -> Read:
        """The read's events up to an error event or one that is not a JSON object (which set
        `_failure`). Its bytes go as they are only when they hold whole events: a read ending
        inside one (or one after it) goes as its whole events, so that a stream cut there, or an
        error event after it, reaches the client as events it can parse."""
        out: list[bytes] = []
        for _event, data in events:
            parsed = self.watch.see(data)
            if parsed is None:
                self._failure = invalid_response(self._target, "a stream event is not a JSON object")
                return Read(None, out)
            if isinstance(parsed.get("error"), dict):
                self._failure = failure_of(parsed, self._target)
                return Read(None, out)
            out.append(data)
        whole, self._whole = self._whole and self._decoder.idle, self._decoder.idle
        return Read(raw if whole else None, out)

    async def prime(self) -> None:
        """Read up to the first event: an upstream failing at once (an error event first, a cut
        before any event) fails here, while another deployment can still be tried."""
        while raw := await self._chunk():
            read = self._parsed(raw, self._decoder.feed(raw))
            if self._failure is not None and not read.events:
                self._release()
                raise self._failure
            self._head.append(read)
            if read.events:
                return
        self._release()  # the body ended without one event: a page or other text under status 200
        kind = self._resp.content_type
        raise invalid_response(self._target, "an answer without any server-sent event (" + (
            f"Content-Type {kind}" if kind else "no Content-Type") + ") where an event stream was expected; "
            "check the provider's base URL")

    def reads(self) -> AsyncGenerator[Read, None]:
        return self._items()

    async def _rest(self) -> AsyncGenerator[Read, None]:
        while self._failure is None and (raw := await self._chunk()):
            yield self._parsed(raw, self._decoder.feed(raw))
        if self._failure is None:
            last = self._parsed(b"", self._decoder.close())  # its bytes went with earlier reads
            if last.events or last.raw is None:
                yield last
        if self._failure is not None:
            raise self._failure
        if not self.watch.done:
            raise invalid_response(self._target, "the stream ended before a finishReason")


def text_tokens(answer: Body) -> int:
    """Estimated output tokens of an answer that reports no usageMetadata: its parts' text."""
    chars = 0
    for cand in answer.get("candidates") or []:
        content = cand.get("content") if isinstance(cand, dict) else None
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                chars += len(part["text"])
    return (chars + 3) // 4
