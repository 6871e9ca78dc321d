"""The one place where errors become OpenAI-shaped JSON, and where every response gets an
x-request-id. Nothing that reaches a client carries a traceback."""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson
from aiohttp import web

from shieldes.errors import (
    BudgetExceeded,
    RateLimited,
    ShieldesError,
    final_refusal,
    nested_too_deep,
    retry_after_seconds,
)
from shieldes.mcp.jsonrpc import http_refusal
from shieldes.requestlog.record import RequestRecord

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID = "x-request-id"
# The same id under Anthropic's name, on the Messages routes: the anthropic SDK reads it as a
# response's `_request_id` and an error's `request_id` (Claude Code prints it with an error).
ANTHROPIC_REQUEST_ID = "request-id"
SHOULD_RETRY = "x-should-retry"  # read by the OpenAI and Anthropic SDKs before their status rules
_SANE_ID = re.compile(r"^[A-Za-z0-9._:+/=-]{1,128}$")
REQUEST_ID_KEY: web.RequestKey[str] = web.RequestKey("shieldes_request_id", str)
# (request id, method, path, client address, status, code, message) of a request refused before
# any handler (Observer.refused): the front's and aiohttp's protocol refusals
Refused = Callable[[str, str, str, str | None, int, str, str], None]
RECORD_KEY: web.RequestKey[RequestRecord] = web.RequestKey("shieldes_record", RequestRecord)
# (set by the admin API) raises unless the request holds an admin credential: a path under /admin/
# that no route serves is answered 404 or 405 only to a caller holding one, so without a token the
# status does not tell which admin paths exist
ADMIN_GATE: web.AppKey[Callable[[web.Request], None]] = web.AppKey("shieldes_admin_gate")

_HTTP_MESSAGES = {
    404: ("not_found", "no such endpoint: {call}; the gateway serves /v1/chat/completions, /v1/completions, "
                       "/v1/embeddings, /v1/models, /v1/responses (with /v1/responses/{{id}}, .../input_items, "
                       ".../cancel, /v1/responses/input_tokens), /v1/conversations (with /v1/conversations/{{id}}, "
                       ".../items, .../items/{{item_id}}), /v1/messages and /v1/messages/count_tokens, "
                       "/v1/key (the key's own budget and limits), "
                       "/v1/moderations, /v1/images/generations, /v1/images/edits, /v1/images/variations, "
                       "/v1/audio/speech, /v1/audio/transcriptions and "
                       "/v1/audio/translations, also without /v1 and under Azure's /openai and /openai/v1 (with "
                       "/openai/deployments/{{deployment}}/...); and Gemini's "
                       "/v1beta/models/{{model}}:generateContent, :streamGenerateContent, :countTokens, "
                       ":embedContent and :batchEmbedContents; and registered MCP servers at /mcp/{{name}}"),
    405: ("method_not_allowed", "{call} is not served: this path takes {allowed}"),
    413: ("request_too_large", "request body too large; send a smaller body"),
}
_ADMIN_NOT_FOUND = ("no such endpoint: {call}; the admin API's routes are listed in GET /admin/v1/openapi.json "
                    "(all under /admin/v1/, e.g. /admin/v1/keys)")


def _http_message(exc: web.HTTPException, request: web.Request) -> tuple[str, str]:
    """(code, message) of aiohttp's own refusal, naming the call the client made (clients that
    call an endpoint the gateway lacks, such as a batch or compaction API, see which one)."""
    if exc.status not in _HTTP_MESSAGES:
        return "http_error", exc.reason or "request refused"
    code, template = _HTTP_MESSAGES[exc.status]
    if exc.status == 404 and request.path.startswith("/admin/"):
        template = _ADMIN_NOT_FOUND
    elif exc.status == 404 and request.path.startswith("/ui/"):
        template = "no such page: {call}; the web console starts at GET /ui/"
    methods = getattr(exc, "allowed_methods", None) or set()
    message = template.format(call=f"{request.method} {request.path[:200]}", allowed=", ".join(sorted(methods)))
    if exc.status == 405 and request.method in ("GET", "HEAD"):
        message += _admin_list_hint(request.path, methods)
    return code, message


def _admin_list_hint(path: str, allowed: Iterable[str]) -> str:
    """For a read of an admin item that has no read of its own (a provider, a price, a budget: only
    changed or removed in place), where to read it: its collection's list."""
    parts = path.split("/")  # '', 'admin', 'v1', collection, item...
    methods = set(allowed)
    if len(parts) < 5 or parts[1:3] != ["admin", "v1"] or not methods or not methods <= {"PUT", "PATCH", "DELETE"}:
        return ""
    listed = "/admin/v1/" + parts[3][:100]
    return f"; read {parts[3][:100]} from the list: GET {listed}"


class RequestIds:
    """Names requests: 96 random bits each (not a secret), from the node's own generator, seeded
    from the OS once: no system call a request, and no draw on the process-wide `random` that
    other code in the process (a library, a test's generator) relies on."""

    __slots__ = ("_bits",)

    def __init__(self, rng: random.Random | None = None) -> None:
        self._bits = (rng or random.Random()).getrandbits

    def new(self) -> str:
        return f"{self._bits(96):024x}"


REQUEST_IDS: web.AppKey[RequestIds] = web.AppKey("request_ids", RequestIds)


def request_id(request: web.Request) -> str:
    rid: str | None = request.get(REQUEST_ID_KEY)  # (only ever set here, to a str)
    if rid is None:
        given = request.headers.get(REQUEST_ID, "")
        rid = given if given and _SANE_ID.match(given) else request.app[REQUEST_IDS].new()
        request[REQUEST_ID_KEY] = rid
    return rid


# Anthropic's error types by status, for the routes Anthropic clients call.
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                    404: "not_found_error", 405: "invalid_request_error", 413: "request_too_large",
                    429: "rate_limit_error", 529: "overloaded_error"}


def anthropic_route(path: str) -> bool:
    """Routes of the Anthropic Messages API (with or without the /v1 prefix)."""
    return "/messages" in path


def anthropic_client(request: web.Request) -> bool:
    """Whether an error is answered in Anthropic's shape: on the Messages routes, and on the model
    routes the anthropic SDK shares with OpenAI clients when the request carries
    `anthropic-version` (as it always does), so its `models.retrieve` of an unknown model or a
    refused key gets `not_found_error` / `authentication_error` as from Anthropic itself."""
    path = request.path
    if anthropic_route(path):
        return True
    return "anthropic-version" in request.headers and path.removeprefix("/v1").startswith("/models")


# Google's status names by HTTP status, for the Gemini API's routes (google.rpc.Code)
_GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                  405: "INVALID_ARGUMENT", 409: "ABORTED", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED",
                  499: "CANCELLED", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
                  504: "DEADLINE_EXCEEDED"}
# ... and by shieldes code where the status's own name misleads: UNAVAILABLE tells Google's
# clients to retry, while a node without a deployment's credentials answers the same until fixed
_GOOGLE_STATUS_BY_CODE = {"provider_misconfigured": "FAILED_PRECONDITION"}
# Google's methods by name: a model name may hold colons (`llama3:latest`, Bedrock's `...-v1:0`)
_GOOGLE_PATH = re.compile(r"^(/v1beta|/v1)?/models/.+:(generateContent|streamGenerateContent|countTokens|"
                          r"embedContent|batchEmbedContents)$")


def google_error(status: int, message: str, code: str | None = None, wait: float | None = None) -> dict[str, Any]:
    """Google's error shape, `{"error": {"code", "message", "status", "details"}}` (the status by
    code or HTTP status; google_details)."""
    google = _GOOGLE_STATUS_BY_CODE.get(code or "") or \
        _GOOGLE_STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    return {"error": {"code": status, "message": message, "status": google,
                      "details": google_details(status, code, wait)}}


def google_route(path: str) -> bool:
    """The Gemini API's routes: everything under /v1beta, and /v1/models/{model}:{method}."""
    return path.startswith("/v1beta/") or path == "/v1beta" or _GOOGLE_PATH.match(path) is not None


def google_client(request: web.Request) -> bool:
    """Whether an answer (an error, a model list) is in Google's shape: on the Gemini API's routes
    (google_route), and on the model routes the google-genai SDK shares with OpenAI clients (it
    calls /v1/models by default) when the request carries Google's key or client header, as that
    SDK and Gemini CLI always send."""
    path = request.path
    if google_route(path):
        return True
    headers = request.headers
    return ("x-goog-api-key" in headers or "x-goog-api-client" in headers) and \
        path.removeprefix("/v1").startswith("/models")


def mcp_path(path: str) -> bool:
    """MCP's routes (/mcp/{name}): their clients read JSON-RPC errors, not an API's error object."""
    return path.startswith("/mcp/") or path == "/mcp"


def _shape(request: web.Request) -> str:
    if mcp_path(request.path):
        return "mcp"
    return "google" if google_client(request) else "anthropic" if anthropic_client(request) else "openai"


def path_shape(path: str) -> str:
    """The error shape of a request refused before its headers are read (the front's refusal of a
    head or target too long on a model route): its route family's, told by its path alone."""
    if mcp_path(path):
        return "mcp"
    if google_route(path):
        return "google"
    return "anthropic" if anthropic_route(path) or path.startswith("/anthropic/") else "openai"


def _unrouted_shape(request: web.Request) -> str:
    """The shape of aiohttp's own refusal (a 404 or 405: a path or method no route serves): the
    route family's, else the client's own as its headers tell it (the anthropic SDK always sends
    `anthropic-version`, the google-genai SDK and Gemini CLI Google's key or client header), so an
    SDK calling an endpoint the gateway lacks (Anthropic's files or batches, /anthropic/...) reads
    the refusal as its own."""
    shape = _shape(request)
    if shape == "openai":
        shape = path_shape(request.path)
    if shape != "openai":
        return shape
    headers = request.headers
    if "anthropic-version" in headers:
        return "anthropic"
    return "google" if "x-goog-api-key" in headers or "x-goog-api-client" in headers else shape


# The /v1 route each unversioned alias serves (/messages -> /v1/messages): one label per route in
# the metrics and the request log, whichever form the client called.
ROUTE_LABELS: web.AppKey[dict[str, str]] = web.AppKey("route_labels", dict)


def record_of(request: web.Request) -> RequestRecord | None:
    """The request-log record the app's middleware opened for this request."""
    return request.get(RECORD_KEY)


def note_error(request: web.Request, code: str | None, message: str) -> None:
    """The request log keeps the first error's code and the message the client got with it: the
    code says what kind of refusal, the message which limit, model or upstream, and what to do."""
    rec = request.get(RECORD_KEY)
    if rec is not None and rec.error_code is None:
        rec.error_code = code
        rec.error_message = message


_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"


def google_details(status: int, code: str | None, wait: float | None) -> list[dict[str, Any]]:
    """The `details` of a Google-shaped error: an ErrorInfo naming the shieldes code (what the
    OpenAI shape's `code` says) and, for a 429, a RetryInfo with the wait that frees it: Gemini CLI
    retries a 429 after a RetryInfo delay up to 5 minutes and stops at once past that (a spent
    budget, whose wait is until its period resets), where without one it retries ten times."""
    details: list[dict[str, Any]] = []
    if code:
        details.append({"@type": _ERROR_INFO, "reason": code.upper(), "domain": "shieldes",
                        "metadata": {"code": code}})
    if status == 429 and wait is not None:
        details.append({"@type": _RETRY_INFO, "retryDelay": f"{max(1, math.ceil(wait))}s"})
    return details


def _wait_of(exc: ShieldesError, now: float) -> float | None:
    """How long `exc` asks a client to wait before the same request may pass, if it says."""
    if isinstance(exc, RateLimited):
        return retry_after_seconds(exc.retry_after)
    if isinstance(exc, BudgetExceeded):
        return 1.0 if exc.frees_at is None else exc.frees_at - now
    return None


def error_response(status: int, type_: str, code: str | None, message: str, rid: str,
                   headers: dict[str, str] | None = None, *, shape: str = "openai",
                   param: str | None = None, wait: float | None = None) -> web.Response:
    """The OpenAI error shape; on Anthropic routes Anthropic's (`{"type": "error", "error": {"type",
    "message"}}` with Anthropic's type names), which keeps `error.message` and `error.code`; on the
    Gemini API's routes Google's (`{"error": {"code": <status>, "message", "status", "details"}}`,
    which the google-genai SDK raises as its ClientError / ServerError with that message; `wait`:
    the seconds a 429's RetryInfo asks for); on MCP's routes a JSON-RPC error (mcp.jsonrpc)."""
    if shape == "google":
        body = orjson.dumps(google_error(status, message, code, wait))
    elif shape == "mcp":
        body = http_refusal(status, code or type_, message)
    elif shape == "anthropic":
        kind = _ANTHROPIC_TYPES.get(status, "api_error")
        body = orjson.dumps({"type": "error", "error": {"type": kind, "message": message, "code": code},
                             "request_id": rid})
    else:
        body = orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})
    resp = web.Response(body=body, status=status, content_type="application/json", headers=headers)
    resp.headers[REQUEST_ID] = rid
    if shape == "anthropic":
        resp.headers[ANTHROPIC_REQUEST_ID] = rid
    if final_refusal(status):
        resp.headers.setdefault(SHOULD_RETRY, "false")
    return resp


def render_error(exc: ShieldesError, rid: str, *, shape: str = "openai") -> web.Response:
    headers = dict(exc.headers)
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(retry_after_seconds(exc.retry_after))
    status = exc.anthropic_status if shape == "anthropic" and exc.anthropic_status else exc.status
    status = status if 400 <= status <= 599 else 500
    wait = _wait_of(exc, time.time()) if shape == "google" else None
    return error_response(status, exc.type, exc.code, exc.message, rid, headers, shape=shape, param=exc.param,
                          wait=wait)


def _allow(exc: web.HTTPException) -> dict[str, str] | None:
    """A 405's `Allow` header, the methods the path takes (HTTP requires it; MCP clients read it)."""
    allowed = getattr(exc, "allowed_methods", None)
    return {"Allow": ", ".join(sorted(allowed))} if exc.status == 405 and allowed else None


def _admin_path(path: str) -> bool:
    return path.startswith("/admin/") or path == "/admin"


async def handle_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run `handler`; any error becomes a JSON error in the API's own shape (Anthropic on the
    Messages routes, Google on the Gemini API's, OpenAI elsewhere), never a traceback."""
    rid = request_id(request)
    try:
        resp = await handler(request)
    except ShieldesError as exc:
        note_error(request, exc.code or exc.type, exc.message)
        return render_error(exc, rid, shape=_shape(request))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        gate = request.app.get(ADMIN_GATE) if exc.status in (404, 405) and _admin_path(request.path) else None
        if gate is not None:
            try:
                gate(request)
            except ShieldesError as refused:
                note_error(request, refused.code or refused.type, refused.message)
                return render_error(refused, rid, shape=_shape(request))
        code, message = _http_message(exc, request)
        note_error(request, code, message)
        return error_response(exc.status, "invalid_request_error", code, message, rid, _allow(exc),
                              shape=_unrouted_shape(request))
    except ConnectionError:  # the client went away; nobody is left to answer
        log.debug("client of request %s disconnected", rid)
        note_error(request, "client_disconnected", "client disconnected")
        return error_response(400, "invalid_request_error", "client_disconnected", "client disconnected", rid)
    except Exception as exc:
        deep = nested_too_deep(exc)  # the client's JSON, too deep for a translation or the encoder
        if deep is not None:
            note_error(request, deep.code or deep.type, deep.message)
            return render_error(deep, rid, shape=_shape(request))
        log.exception("unexpected error handling %s %s (request id %s)", request.method, request.path, rid)
        note_error(request, "internal_error", f"internal error: the node's log has its traceback (request id {rid})")
        return error_response(500, "server_error", "internal_error",
                              f"internal error; report request id {rid} to the operator", rid,
                              shape=_shape(request))
    if not resp.prepared:
        resp.headers[REQUEST_ID] = rid
    return resp
