"""One error tree. The HTTP layer maps it to OpenAI error JSON in one place; the CLI prints `message`."""

from __future__ import annotations

import math


class ShieldesError(Exception):
    """Base of every error shieldes raises on purpose. `message` tells the user what to do."""

    status = 500
    anthropic_status: int | None = None  # the status on Anthropic routes, where it differs
    type = "server_error"
    code: str | None = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = {}  # extra HTTP response headers (rendered in one place)
        # the request field at fault, as OpenAI names it in `error.param` ("temperature",
        # "messages[2].content"); Anthropic's error shape has no such field
        self.param = param
        if code is not None:
            self.code = code


class InvalidRequest(ShieldesError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class BodyTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"


def nested_too_deep(exc: BaseException) -> InvalidRequest | None:
    """The client's error when `exc` is Python or the JSON encoder refusing a value of the request
    nested too deep (once decoded, walked or written again for an upstream: orjson writes at most
    255 levels of arrays and objects, and raises a TypeError past them), else None."""
    if isinstance(exc, RecursionError) or (isinstance(exc, TypeError) and str(exc) == "Recursion limit reached"):
        return InvalidRequest("the request's JSON nests too deeply to be carried on (at most 255 levels of arrays "
                              "and objects, function arguments, tool results and schemas included, once "
                              "translated for the upstream); send it nested less deeply")
    return None


class BodyStalled(InvalidRequest):
    """No byte of a request's body arrived for the body timeout: the connection closes after the
    answer (the rest of the body may still come, and cannot be told from a next request)."""

    status = 408
    code = "request_timeout"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers = {"Connection": "close"}


class AuthenticationFailed(ShieldesError):
    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(ShieldesError):
    status = 403
    type = "permission_error"
    code = "model_not_allowed"


class ModelNotPriced(PermissionDenied):
    """A budget cannot hold on a model without a price: it would cost $0 (fail closed)."""

    code = "model_not_priced"


class NotFound(ShieldesError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class PreviousResponseNotFound(InvalidRequest):
    """A continuation (`previous_response_id`) of a response nobody can read: OpenAI's 400, whose
    code clients recover on by sending the whole conversation again (Codex on a WebSocket, Roo
    Code, proxies in front of Codex); a 404 they take for an unknown route or model."""

    code = "previous_response_not_found"


# The longest wait a Retry-After (and the message repeating it) asks for: a sliding minute can take
# up to two minutes to free one request, but clients give up on longer waits instead of waiting
# (Claude Code stops at once past 60 s; the anthropic SDK then retries at once, the openai SDK stops
# past 120 s). Told 60 s, they wait and ask again, and that refusal names the rest of the wait.
RETRY_AFTER_CAP = 60


def retry_after_seconds(seconds: float) -> int:
    """Whole seconds for a Retry-After header and the message that repeats it: rounded up (never
    sooner than the limit frees up), at least 1, at most RETRY_AFTER_CAP."""
    return min(RETRY_AFTER_CAP, max(1, math.ceil(seconds)))


def final_refusal(status: int) -> bool:
    """A client error the same request gets again however long the client waits (its key, model or
    body is at fault): answered with `x-should-retry: false`, which the OpenAI and Anthropic SDKs and
    Claude Code read before their own rules (Claude Code retries a 401 or 403 ten times otherwise)."""
    return 400 <= status < 500 and status not in (408, 409, 429)


class ClientLeft(ShieldesError):
    """The client closed its connection while its request waited before any upstream call was in
    flight (a cloud credential, the next attempt): the request is given up then (client_left.py).
    Nobody reads the answer; the request log keeps it, 499 as a request cancelled before its
    answer."""

    status = 499
    type = "invalid_request_error"
    code = "client_disconnected"


class RateLimited(ShieldesError):
    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = headers or {}


class RefusedForGood(ShieldesError):
    """A 429 that retrying soon will not help: the OpenAI and Anthropic SDKs are told not to retry
    (they retry every 429 unless `x-should-retry: false`)."""

    status = 429

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers = {"x-should-retry": "false"}


class LimitTooSmall(RefusedForGood):
    """A request that alone may use more tokens than its key's whole tokens-per-minute limit: no
    wait lets it through (OpenAI's "Request too large" 429)."""

    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class BudgetExceeded(RefusedForGood):
    """A budget refusal. Its type is OpenAI's own for spent credit (`insufficient_quota`), which
    clients know as final: Codex says "Quota exceeded" at once instead of retrying a 429 it cannot
    read; the code says which quota."""

    type = "insufficient_quota"
    code = "budget_exceeded"

    def __init__(self, message: str, *, frees_at: float | None = None) -> None:
        super().__init__(message)
        # unix time when waiting frees budget (the period's day drops out or its month turns);
        # None: this node's share of what is left frees in a second (the cluster's split)
        self.frees_at = frees_at


class UpstreamError(ShieldesError):
    status = 502
    type = "upstream_error"
    code = "upstream_error"


class ProviderMisconfigured(UpstreamError):
    """A deployment cannot be called from this node (its key is missing here): the same on every
    attempt, so it is answered once, never retried, and says what the operator must fix."""

    code = "provider_misconfigured"


class UpstreamOverloaded(UpstreamError):
    """Every attempt found the upstream overloaded (Anthropic's 529 overloaded_error): Anthropic
    clients get their own 529 overloaded_error (Claude Code and the SDKs back off and retry it),
    OpenAI clients a 503."""

    status = 503
    anthropic_status = 529
    code = "overloaded"


class MalformedOutput(UpstreamError):
    """Every attempt's model ended its turn on a malformed answer (Bedrock's malformed_model_output,
    malformed_tool_use): a 502 with its own code, so the request log counts them apart."""

    code = "malformed_model_output"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


class Unavailable(ShieldesError):
    status = 503
    type = "server_error"
    code = "unavailable"


class UnknownEvent(Unavailable):
    """The log holds an event this release cannot read: a newer release wrote it (a rolling
    upgrade under way). A node's projection skips it and says so (`/ready`); a read or a write
    that needs it is refused with this, on every path the same: upgrade shieldes to read it."""

    code = "unknown_event"


class StoredResponsesBacklog(Unavailable):
    """A request that would store its response, refused before any upstream call: the node's
    responses waiting for Postgres are past their bound in bytes (a slow or unreachable database
    under large turns would otherwise grow the node's memory without limit)."""

    code = "stored_responses_backlog"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.headers["Retry-After"] = str(retry_after)


class BackgroundFull(Unavailable):
    """A background response this node cannot take: it runs as many as it may
    (SHIELDES_RESPONSES_BACKGROUND_MAX), or it is shutting down."""

    code = "too_many_background_responses"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.headers["Retry-After"] = str(retry_after)


class CommandRejected(ShieldesError):
    """A config command is invalid against the current state (duplicate name, unknown key, ...)."""

    status = 400
    type = "invalid_request_error"
    code = "command_rejected"


class SubjectNotFound(CommandRejected):
    """The key, team, provider, alias or admin token a command acts on does not exist: the admin
    API's 404 with a code naming what is missing (`key_not_found`, ...), as its reads answer."""

    status = 404
    code = "not_found"


class ConcurrentChange(ShieldesError):
    """Another writer appended config events since the state a command was decided on."""

    status = 409
    code = "concurrent_change"


class IdempotencyConflict(ShieldesError):
    """An Idempotency-Key was reused with a different request."""

    status = 409
    type = "invalid_request_error"
    code = "idempotency_key_reused"


class Forbidden(ShieldesError):
    """An authenticated admin principal whose role does not grant the action."""

    status = 403
    type = "permission_error"
    code = "insufficient_role"


class EventNotReadable(ShieldesError):
    """A config change would write an event type or version that a live node cannot read yet."""

    status = 409
    type = "invalid_request_error"
    code = "cluster_cannot_read_change"


class DatabaseUnavailable(ShieldesError):
    status = 503
    code = "database_unavailable"


class DatabaseStalled(DatabaseUnavailable):
    """Postgres did not answer within a bound (a stalled server, a lock held, a full disk): the
    operation was cancelled apart from its caller (dbwait.py)."""


class DatabaseError(ShieldesError):
    """The database refused a statement (not a connection problem): a schema not at the head, a
    constraint, a bug. Translated from psycopg at the store boundary."""

    status = 500
    code = "database_error"


class AppendTimeout(DatabaseUnavailable):
    """An append waited too long for the log's lock or a statement (a stuck writer, an overloaded server)."""

    code = "append_timeout"


class SchemaNotAtHead(ShieldesError):
    status = 503
    code = "schema_not_at_head"


class ListenFailed(ShieldesError):
    """The node cannot open its HTTP port (in use, not an address of this machine, no permission)."""

    code = "listen_failed"


class TLSConfigError(ShieldesError):
    """SHIELDES_TLS_CERT / SHIELDES_TLS_KEY cannot make an HTTPS listener (one of them unset, a file
    missing or not PEM, a key that does not match its certificate)."""

    status = 400
    code = "tls_config"
