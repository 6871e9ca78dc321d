"""What broke a stream after it opened, read off the upstream's own words (Anthropic's error
event, an OpenAI error chunk, Google's error object, a Bedrock exception event), and the name each
client API gives it: an overloaded or rate-limited upstream mid-stream is told to the client as
such (Claude Code and the SDKs back off and retry an `overloaded_error`; Codex reads
`server_is_overloaded`, `rate_limit_exceeded` and `context_length_exceeded` off `response.failed`),
not as a generic server error. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shieldes.providers.base import CONTEXT_LENGTH, OVERLOADED, THROTTLED, UpstreamFailure


@dataclass(frozen=True, slots=True)
class StreamFailure:
    status: int  # the HTTP status it stands for (Google's error object)
    openai_type: str  # a chat error chunk's `error.type`
    openai_code: str  # ... and `error.code`
    anthropic_type: str  # an Anthropic `error` event's `error.type`
    responses_code: str  # `response.failed`'s `error.code` and its `error` event's


OVERLOADED_STREAM = StreamFailure(503, "service_unavailable_error", "server_is_overloaded", "overloaded_error",
                                  "server_is_overloaded")
RATE_LIMITED_STREAM = StreamFailure(429, "rate_limit_error", "rate_limit_exceeded", "rate_limit_error",
                                    "rate_limit_exceeded")
TOO_LONG_STREAM = StreamFailure(400, "invalid_request_error", CONTEXT_LENGTH, "invalid_request_error",
                                CONTEXT_LENGTH)
# Responses: `invalid_prompt`, the code Codex reads as "sending this again will not help"
INVALID_STREAM = StreamFailure(400, "invalid_request_error", "invalid_request_error", "invalid_request_error",
                               "invalid_prompt")
BROKEN_STREAM = StreamFailure(502, "upstream_error", "upstream_error", "api_error", "server_error")

# the upstream's own names (error type, code or Google status), lowercased
_OVERLOADED = frozenset({"overloaded_error", "server_is_overloaded", "service_unavailable_error", "unavailable",
                         "slow_down"})
_RATE_LIMITED = frozenset({"rate_limit_error", "rate_limit_exceeded", "resource_exhausted", "too_many_requests"})
_INVALID = frozenset({"invalid_request_error", "invalid_argument", "failed_precondition"})
_BY_STATUS = {429: RATE_LIMITED_STREAM, 503: OVERLOADED_STREAM, OVERLOADED: OVERLOADED_STREAM, 400: INVALID_STREAM}


def _status(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _names(body: Any) -> tuple[set[str], int | None]:
    """The names an upstream's error body gives its failure (an Anthropic error event or OpenAI
    chunk's `error.type`/`code`, Google's `error.status`), and the HTTP status it names (Google's
    `error.code`; the model's own status in Bedrock's modelStreamErrorException:
    `originalStatusCode`, 529 when Claude was overloaded)."""
    if not isinstance(body, dict):
        return set(), None
    err = body.get("error")
    if not isinstance(err, dict):
        return set(), _status(body.get("originalStatusCode"))
    names = {str(err[k]).lower() for k in ("type", "code", "status") if isinstance(err.get(k), str)}
    return names, _status(err.get("code"))


def request_at_fault(failure: UpstreamFailure) -> bool:
    """Whether what broke a stream was the request's doing (a prompt too long, a request refused or
    filtered): then the deployment did its job, as with a 400 answered before a stream opens.
    Anything else (a cut connection, garbage, an overloaded or failing upstream) is the deployment's."""
    return classify(failure).status == 400


def classify(failure: UpstreamFailure) -> StreamFailure:
    """The kind of failure that ended a stream: its code (set by the provider that understood it),
    the upstream's own names for it, then the status it stands for; a broken stream otherwise."""
    if failure.code == CONTEXT_LENGTH:
        return TOO_LONG_STREAM
    if failure.code == THROTTLED:
        return RATE_LIMITED_STREAM
    names, named_status = _names(failure.body)
    if CONTEXT_LENGTH in names:
        return TOO_LONG_STREAM
    if names & _OVERLOADED:
        return OVERLOADED_STREAM
    if names & _RATE_LIMITED:
        return RATE_LIMITED_STREAM
    if names & _INVALID:
        return INVALID_STREAM
    status = named_status if named_status is not None else failure.status
    return _BY_STATUS.get(status, BROKEN_STREAM) if status is not None else BROKEN_STREAM
