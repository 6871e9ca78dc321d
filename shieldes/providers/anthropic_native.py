"""Pass-through to an Anthropic Messages upstream, for clients that already speak Messages.

The client's own body goes out as it is (only `model` is set to the upstream's name, so system
blocks, cache_control, thinking, top_k, documents, unknown future fields... all arrive), with the
client's `anthropic-*` headers (version, beta flags) and query string (`?beta=true`). The answer's
bytes come back as they are; they are read on the side only for usage."""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

import orjson

from shieldes.providers.anthropic_translate import reported, usage_from_anthropic
from shieldes.providers.base import OVERLOADED, Body, StreamCounts, Target, TokenUsage, UpstreamFailure
from shieldes.providers.http import (
    invalid_response,
    open_event_stream,
    post_for_object,
)
from shieldes.providers.native_stream import HeldStream
from shieldes.providers.sse import SSEDecoder
from shieldes.providers.sse_blocks import last_blank_line
from shieldes.providers.tool_ids import ANTHROPIC, fit_messages_ids
from shieldes.providers.transport import UpstreamClient, UpstreamResponse
from shieldes.providers.upstream_connection import Timeouts

ANTHROPIC_VERSION = "2023-06-01"
FORWARDED_PREFIX = "anthropic-"
_RETRYABLE_STREAM_ERRORS = ("overloaded_error", "api_error", "rate_limit_error")


@dataclass(frozen=True, slots=True)
class Passthrough:
    """What of the client's request travels with its body: `anthropic-*` headers (lower-case
    names) and the raw query string."""

    headers: Mapping[str, str] = field(default_factory=dict)
    query: str = ""

    @classmethod
    def of(cls, headers: Mapping[str, str], query: str) -> Passthrough:
        # (each name lowered once: a client such as Claude Code sends a dozen headers or more)
        return cls({low: v for k, v in headers.items() if (low := k.lower()).startswith(FORWARDED_PREFIX)},
                   without_key(query))


def without_key(query: str) -> str:
    """The raw query string without its `key` parameters: a client may authenticate with its
    virtual key as `?key=` (as Google's clients do), and that is the gateway's, never the upstream's.
    The other parameters (Claude Code's `beta=true`) go on as sent."""
    if "key" not in query and "%" not in query:
        return query
    return "&".join(p for p in query.split("&") if p and unquote_plus(p.partition("=")[0]) != "key")


NO_PASSTHROUGH = Passthrough()


def native_body(body: Body, raw: bytes, model: str) -> bytes:
    """The client's bytes when they already name `model` and every tool call id in them is one
    Anthropic takes; else the same JSON with `model` replaced in place (key order and every other
    value kept) and ids another provider minted that Anthropic refuses replaced (tool_ids)."""
    fitted = fit_messages_ids(body, ANTHROPIC)
    if fitted is body and body.get("model") == model:
        return raw
    return orjson.dumps(dict(fitted, model=model))


def native_headers(passthrough: Passthrough, auth: Mapping[str, str]) -> dict[str, str]:
    """The headers of a Messages call: the client's `anthropic-*` ones and the upstream's
    authentication (`auth`: the provider's, e.g. x-api-key)."""
    return {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION, **passthrough.headers,
            **auth}


def native_url(endpoint: str, query: str) -> str:
    """The endpoint (join_endpoint of the base URL and the Messages path) with the client's query."""
    url = endpoint
    if not query:
        return url
    return url + ("&" if "?" in url else "?") + query


class MessagesUpstream(ABC):
    """A provider module that speaks the Messages API natively (takes pass-through calls). A base
    class, not a runtime-checked Protocol: the Messages route asks `isinstance` on every request,
    and a Protocol check walks the protocol's members each time (about 8 us)."""

    @abstractmethod
    async def messages(self, target: Target, payload: bytes, passthrough: Passthrough) -> NativeAnswer: ...

    @abstractmethod
    async def messages_stream(self, target: Target, payload: bytes,
                              passthrough: Passthrough) -> NativeEventStream: ...

    @abstractmethod
    async def count_tokens(self, target: Target, payload: bytes, passthrough: Passthrough) -> NativeAnswer: ...


@dataclass(slots=True)
class NativeAnswer:
    raw: bytes  # the upstream's bytes, for the client as they are
    body: Body
    usage: TokenUsage | None
    dropped: list[str] = field(default_factory=list)  # what of the request the upstream could not take


async def post_native(client: UpstreamClient, target: Target, url: str, payload: bytes,
                      headers: Mapping[str, str], timeout: Timeouts, listing: str | None = None) -> NativeAnswer:
    """`url`: the endpoint under the target's base URL (native_url), with the client's query;
    `listing`: the field an answer must hold as a list (a message's `content`)."""
    data, raw = await post_for_object(client, target, url, payload, headers, timeout)
    if listing is not None and not isinstance(data.get(listing), list):
        raise invalid_response(target, f"an answer without `{listing}`")
    usage = usage_from_anthropic(data["usage"]) if reported(data.get("usage")) else None
    return NativeAnswer(raw, data, usage)


async def open_native_stream(client: UpstreamClient, target: Target, url: str, payload: bytes,
                             headers: Mapping[str, str], timeout: Timeouts) -> NativeEventStream:
    resp = await open_event_stream(client, target, url, payload, headers, timeout)
    kind = resp.content_type
    if kind not in ("text/event-stream", ""):  # relayed as it is, a page under status 200 would look an answer
        resp.release()
        raise invalid_response(target, "a JSON body instead of an event stream" if kind == "application/json" else
                               f"an answer of Content-Type {kind} where an event stream was expected; check the "
                               "provider's base URL")
    stream = NativeEventStream(resp, target)
    await stream.prime()
    return stream


# What a message_delta's usage may correct of message_start's.
_DELTA_INPUT = frozenset(("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "cache_creation",
                          "server_tool_use"))
# A block of whole events framed as Anthropic frames them: `event: NAME` then one `data:` line each.
# One regex pass checks it (fewer instructions than a split at every newline and its checks); then
# a line that is exactly an event name can only be a name line (data lines start `data: `, blank
# lines are empty), so the few events the watch reads are found by their name lines with `find`.
_NAMED_EVENTS = re.compile(rb"(?:event: [^\n]*\ndata: \{[^\n]*\}\n\n)+")
# The events whose bodies the watch reads (their name lines, then the same after a newline: one
# at a line start); every other event is counted (or ignored) by its name.
_READ_NAMES = tuple((kind, b"event: %s\n" % kind.encode(), b"\nevent: %s\n" % kind.encode())
                    for kind in ("message_start", "message_delta", "error"))
_READ_KINDS = frozenset(kind for kind, _line, _after in _READ_NAMES)
_CONTENT_LINE = b"event: content_block_delta\n"
_CONTENT_AFTER = b"\n" + _CONTENT_LINE
_CONTENT_HEAD = b"event: content_block_delta\ndata: {"  # how a token's read begins
_STOP_LINE = b"event: message_stop\n"
_STOP_AFTER = b"\n" + _STOP_LINE


class UsageWatch:
    """Reads Anthropic events on the side: usage (message_start holds the input and cache counts,
    message_delta the cumulative output), content events (for an estimate), the end."""

    def __init__(self) -> None:
        self.input: Body = {}
        self.output = 0
        self.started = False
        self.done = False
        self.errored = False  # the upstream ended the stream with its own `error` event
        self.garbled = False  # an event's data was not a JSON object
        self.content_events = 0
        self.stop_reason: str | None = None  # message_delta's delta.stop_reason

    def see_block(self, block: bytes) -> tuple[str, Body | None] | None:
        """Whole events framed as Anthropic frames them, `event: NAME` then one `data:` line each
        (no carriage return: the caller checked): only message_start, message_delta and error
        bodies are parsed, the other events are counted by name. The block's first event (its
        name, its body if parsed); None when the block is framed any other way (then it goes
        event by event through `see`)."""
        name_end = block.find(b"\n")
        if block.find(b"\n", name_end + 1) == len(block) - 2 and block[:7] == b"event: " and \
                block.startswith(b"data: {", name_end + 1) and block[-3:] == b"}\n\n":
            return self._see_one(block, name_end)  # one event, as a paced stream's reads are
        if _NAMED_EVENTS.fullmatch(block) is None:
            return None
        read: list[tuple[int, str, int]] = []  # (where the event starts, its name, its name line's length)
        for kind, line, after in _READ_NAMES:
            if block.startswith(line):
                read.append((0, kind, len(line)))
            at = block.find(after)
            while at >= 0:
                read.append((at + 1, kind, len(line)))
                at = block.find(after, at + 1)
        if len(read) > 1:
            read.sort()  # in the stream's order
        first: Body | None = None
        for at, kind, size in read:
            data = at + size + 6  # past `data: `
            parsed = self.see(kind, block[data:block.index(b"\n", data)])
            if not at:
                first = parsed
        self.content_events += block.count(_CONTENT_AFTER) + block.startswith(_CONTENT_LINE)
        if block.find(_STOP_AFTER) >= 0 or block.startswith(_STOP_LINE):
            self.done = True
        return block[7:block.index(b"\n")].decode("utf-8", "replace"), first

    def _see_one(self, block: bytes, name_end: int) -> tuple[str, Body | None]:
        """see_block of one event, `event: NAME` (ending at `name_end`) then one `data:` line."""
        name = block[7:name_end]
        if name == b"content_block_delta":
            self.content_events += 1
            return "content_block_delta", None
        kind = name.decode("utf-8", "replace")
        if kind in _READ_KINDS:
            return kind, self.see(kind, block[name_end + 7:-2])
        if kind == "message_stop":
            self.done = True
        return kind, None

    def see(self, event: str, data: bytes) -> Body | None:
        try:
            parsed: Any = orjson.loads(data)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            self.garbled = True  # not an event of the API: the stream is broken there
            return None
        kind = parsed.get("type", event)
        if kind == "message_start":
            message = parsed.get("message")
            usage = message.get("usage") if isinstance(message, dict) else None
            self.started = True
            if isinstance(usage, dict):
                self.input = usage
                self.output = int(usage.get("output_tokens") or 0)
        elif kind == "content_block_delta":
            self.content_events += 1
        elif kind == "message_delta":
            delta = parsed.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self.stop_reason = delta["stop_reason"]
            usage = parsed.get("usage")
            if isinstance(usage, dict):
                if isinstance(usage.get("output_tokens"), int):
                    self.output = usage["output_tokens"]  # cumulative, not a delta
                present = _DELTA_INPUT.intersection(usage)  # (in C: most deltas carry 0-4 of the 5)
                if present:
                    changed = {key: usage[key] for key in present if isinstance(usage[key], (int, dict))}
                    if changed:
                        self.input = {**self.input, **changed}
        elif kind == "message_stop":
            self.done = True
        elif kind == "error":
            self.errored = True
        return parsed

    @property
    def usage(self) -> TokenUsage | None:
        if not self.started:
            return None
        # a stream cut short: its last count may predate what was relayed since (one token per delta)
        output = self.output if self.done else max(self.output, self.content_events)
        return usage_from_anthropic({**self.input, "output_tokens": output})


class NativeEventStream(HeldStream[bytes]):
    """One upstream event stream relayed byte for byte (`frames()`: the bytes of each read)."""

    watch: UsageWatch

    def __init__(self, resp: UpstreamResponse, target: Target) -> None:
        super().__init__(resp, target)
        self._decoder = SSEDecoder()
        # Read bytes after the last whole event (None: the decoder reads everything from now on)
        self._carry: bytes | None = b""
        # Read bytes not relayed yet: an event's beginning waits for its end, so that a stream cut
        # inside an event, and the error event then added, reach the client as whole events
        self._held = b""
        self.watch = UsageWatch()

    def _whole(self, raw: bytes) -> bytes:
        """Of the bytes held and this read (just fed), those up to the last whole event; the rest
        is held. A read holding an event that is not a JSON object raises instead."""
        if self.watch.garbled:
            self._release()
            raise invalid_response(self._target, "a stream event is not a JSON object")
        data = self._held + raw if self._held else raw
        # carried bytes: an event's beginning; with the decoder, all of it until the decoder is at an end
        keep = len(self._carry) if self._carry is not None else 0 if self._decoder.idle else len(data)
        if keep:
            self._held = data[len(data) - keep:]
            return data[:len(data) - keep]
        self._held = b""
        return data

    def _feed(self, raw: bytes) -> tuple[str, Body | None] | None:
        """Watch the events of a read (usage, the end); the first event it completes (its name and,
        if the watch parsed it, its body), or None when it completes none. Whole events framed the
        usual way are read with a few scans of their bytes; anything else, event by event."""
        if self._carry is not None and 13 not in raw:  # (an int: bytes' `in` tries a bytes operand as one first)
            data = self._carry + raw
            # (a read usually ends at an event's end: one compare; else memchr line by line, where a
            # search for two newlines walked every byte of an event split over reads)
            cut = len(data) if data[-2:] == b"\n\n" else last_blank_line(data) + 2
            if cut < 2:
                self._carry = data
                return None
            block, self._carry = data[:cut], data[cut:]
            first = self.watch.see_block(block)
            if first is not None:
                return first
            raw = block + self._carry  # framed another way: decode it, and the rest, from here
        elif self._carry is not None:  # a carriage return: decode the rest of the stream
            raw = self._carry + raw
        self._carry = None
        events = [(event, self.watch.see(event, data)) for event, data in self._decoder.feed(raw)]
        return events[0] if events else None

    async def prime(self) -> None:
        """Read up to the first event, so that an upstream failing at once (an `error` event
        first, an overloaded or silent upstream) fails here, while another deployment can still
        be tried."""
        while raw := await self._chunk():
            first = self._feed(raw)
            self._head.append(self._whole(raw))
            if first is not None:
                event, parsed = first
                if parsed is not None and parsed.get("type", event) == "error":
                    err = parsed.get("error")
                    err = err if isinstance(err, dict) else {}
                    self._release()
                    status = OVERLOADED if err.get("type") == "overloaded_error" else None
                    raise UpstreamFailure(str(err.get("message") or "upstream error"), status=status,
                                          retryable=err.get("type") in _RETRYABLE_STREAM_ERRORS, body=parsed)
                return

    def frames(self) -> AsyncGenerator[bytes, None]:
        return self._items()

    async def _rest(self) -> AsyncGenerator[bytes, None]:
        while raw := await self._chunk():
            self._feed(raw)
            if whole := self._whole(raw):
                yield whole
        if not self.watch.done and not self.watch.errored:
            raise invalid_response(self._target, "the event stream ended before message_stop")

    async def client_frames(self, counts: StreamCounts, scrub: Callable[[str], str]) -> AsyncGenerator[bytes, None]:
        """frames() as the relay sends them, noting on `counts` what the watch read (content
        events, the first one's time, the stop reason) and scrubbing the upstream's own error
        event of provider keys. One generator from the upstream's reads to the client's writes:
        a layer costs every read a resumption, and every stream its creation, the event loop's
        tracking of it and its closing."""
        watch = self.watch
        head, self._head = self._head, []  # what prime read: already watched
        try:
            while True:
                if head:
                    raw = head.pop(0)
                else:
                    raw = await self._chunk()
                    if not raw:
                        break
                    # A token's read: one content_block_delta event, one data line (nothing carried
                    # over, no carriage return): counted by its head alone, where _feed would split
                    # it and look up every name the watch reads in what it split
                    if raw[:34] == _CONTENT_HEAD and raw.find(b"\n", 34) == len(raw) - 2 and raw[-3:] == b"}\n\n" \
                            and 13 not in raw and self._carry == b"" and not watch.errored:
                        watch.content_events += 1
                        if not counts.content_chunks:
                            counts.first_token_at = time.perf_counter()
                        counts.content_chunks = watch.content_events
                        yield raw
                        continue
                    self._feed(raw)
                    raw = self._whole(raw)
                    if not raw:
                        continue
                if watch.content_events and not counts.content_chunks:
                    counts.first_token_at = time.perf_counter()
                counts.content_chunks = watch.content_events
                if watch.stop_reason is not None and not counts.finish_reasons:
                    counts.finish_reasons.append(watch.stop_reason)
                if watch.errored:  # the upstream's own error event: never with a provider key in it
                    raw = scrub(raw.decode("utf-8", "replace")).encode()
                yield raw
            if not watch.done and not watch.errored:
                raise invalid_response(self._target, "the event stream ended before message_stop")
        finally:
            self._release()
