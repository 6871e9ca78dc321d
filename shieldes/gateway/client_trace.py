"""A client's W3C trace context (`traceparent`, `tracestate`) passed to the upstream unchanged
when the node does not trace itself, so an app and an upstream that both trace share one trace
through a gateway that does not. (With tracing on, shieldes/tracing.py sends the attempt span's
own context instead.)

The observer takes the client's headers once per request (a header lookup); every upstream call
made in that request's task, or in a task it started (a background response), adds them through
the upstream client's `on_request` hook."""

from __future__ import annotations

import re
from contextvars import ContextVar, Token

from multidict import CIMultiDictProxy

# version (two hex digits, never ff) - trace id (32, not all zero) - parent id (16, not all zero)
# - flags (2); a future version may append fields after a dash (W3C Trace Context, section 3.2)
_TRACEPARENT = re.compile(r"(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
_MAX_TRACESTATE = 8192  # well above the 512 characters the standard asks a propagator to keep

# The client's trace context per request: a value per task (asyncio copies the context into the
# tasks a request starts), never shared between requests. Python wants context variables made
# once, at module level.
_CLIENT_TRACE: ContextVar[tuple[tuple[str, str], ...] | None] = ContextVar("client_trace", default=None)


def valid_traceparent(value: str) -> bool:
    """Whether `value` is a W3C `traceparent` an upstream can join: version 00 exactly as the
    standard spells it, a later version with at least its fields."""
    if not _TRACEPARENT.match(value):
        return False
    if value.startswith("00"):
        return len(value) == 55
    return len(value) == 55 or value[55] == "-"


def trace_headers(headers: CIMultiDictProxy[str]) -> tuple[tuple[str, str], ...] | None:
    """What of a client's trace context goes upstream: one valid `traceparent` with its
    `tracestate` (several `tracestate` headers joined, as HTTP allows), as they came; nothing
    when the `traceparent` is missing, repeated or malformed (its `tracestate` then belongs to no
    trace)."""
    parents = headers.getall("traceparent", ())
    if len(parents) != 1 or not valid_traceparent(parents[0]):
        return None
    state = ",".join(headers.getall("tracestate", ()))
    if not state or len(state) > _MAX_TRACESTATE:
        return (("traceparent", parents[0]),)
    return (("traceparent", parents[0]), ("tracestate", state))


def take(headers: CIMultiDictProxy[str]) -> Token[tuple[tuple[str, str], ...] | None] | None:
    """Holds the client's trace context for the request being handled (the observer's call, once
    per request); the token undoes it when the request ends (a kept-alive connection's next
    request runs in the same task)."""
    if "traceparent" not in headers:
        return None
    return _CLIENT_TRACE.set(trace_headers(headers))


def release(token: Token[tuple[tuple[str, str], ...] | None] | None) -> None:
    if token is not None:
        _CLIENT_TRACE.reset(token)


def inject(headers: dict[str, str]) -> None:
    """The upstream client's `on_request` hook: the client's trace context, if it sent one."""
    held = _CLIENT_TRACE.get()
    if held is not None:
        headers.update(held)
