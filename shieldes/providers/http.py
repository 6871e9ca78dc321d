"""The HTTP edge shared by provider modules: endpoint URLs, timeouts, and the one place where
transport errors and upstream error responses become UpstreamFailure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

import orjson

from shieldes.providers.base import (
    CONTENT_FILTER,
    CONTEXT_LENGTH,
    THROTTLED,
    Body,
    Target,
    TokenUsage,
    UpstreamFailure,
)
from shieldes.providers.modalities import openai_modal
from shieldes.providers.transport import UpstreamClient, UpstreamResponse
from shieldes.providers.upstream_connection import (
    AnswerTooLarge,
    CallTimedOut,
    ConnectFailed,
    Disconnected,
    InvalidTarget,
    Payload,
    Timeouts,
    TransportError,
)
from shieldes.settings import Settings

# A path segment like v1, v2, v1beta: the base URL already names an API version.
_VERSION_SEGMENT = re.compile(r"^v\d+[a-z0-9]*$")
_MAX_ERROR_TEXT = 500


def join_endpoint(base_url: str, path: str) -> str:
    """`path` (e.g. "/chat/completions") under `base_url`, adding "/v1" unless the base URL already
    carries a version segment (".../v1", ".../v1beta/openai") or an Azure-style `api-version` query.
    The query string of the base URL is kept (Azure needs it on every call)."""
    parts = urlsplit(base_url.strip())
    base_path = parts.path.rstrip("/")
    if base_path.endswith(path):  # a full endpoint URL pasted as the base URL
        base_path = base_path[: -len(path)]
    versioned = "api-version=" in parts.query or any(
        _VERSION_SEGMENT.match(seg) for seg in base_path.split("/")
    )
    full = base_path + ("" if versioned else "/v1") + path
    return urlunsplit((parts.scheme, parts.netloc, full, parts.query, ""))


def with_version(base_url: str, version: str) -> str:
    """The base URL with an API version path segment (kept when the base URL already has one)."""
    parts = urlsplit(base_url.strip())
    path = parts.path.rstrip("/")
    if not any(seg[:2] == "v1" for seg in path.split("/")):
        path += "/" + version
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def is_azure(base_url: str) -> bool:
    """Azure OpenAI authenticates with an `api-key` header instead of a Bearer token."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    return "api-version=" in parts.query or host.endswith(
        (".openai.azure.com", ".cognitiveservices.azure.com")
    )


def timeouts(settings: Settings) -> tuple[Timeouts, Timeouts]:
    """(whole-call timeout for JSON calls, idle timeout between reads for streams). A stream may
    legitimately run for long, so it is bounded by silence, not by total duration."""
    connect = settings.upstream_connect_timeout
    return (
        Timeouts(connect=connect, total=settings.upstream_timeout),
        Timeouts(connect=connect, idle=settings.upstream_timeout),
    )


def retryable_status(status: int) -> bool:
    """Worth another attempt (this deployment or the next). 424: Bedrock's ModelErrorException, the
    model failing on a request it accepted, as a 5xx would say."""
    return status in (408, 409, 424, 429) or status >= 500


def error_message(data: object) -> str | None:
    """The human message in the error shapes seen in the wild: OpenAI `{"error":{"message"}}`,
    Anthropic `{"type":"error","error":{...}}`, Ollama `{"error":"..."}`, vLLM `{"message"}`,
    FastAPI `{"detail"}`."""
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return str(err["message"])
    if isinstance(err, str):
        return err
    for key in ("message", "detail"):
        value = data.get(key)
        if isinstance(value, str):
            return value
        if value is not None:
            return orjson.dumps(value).decode()[:_MAX_ERROR_TEXT]
    return None


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare for LLM APIs, not worth a parser here


_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"


def retry_delay(body: Body | None) -> float | None:
    """The wait a Google error asks for in its RetryInfo detail (`"retryDelay": "36.5s"`): the
    Gemini API's 429 for a spent quota says it there only, with no Retry-After header."""
    err = body.get("error") if isinstance(body, dict) else None
    details = err.get("details") if isinstance(err, dict) else None
    for detail in details if isinstance(details, list) else []:
        delay = detail.get("retryDelay") if isinstance(detail, dict) and detail.get("@type") == _RETRY_INFO else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(0.0, float(delay[:-1]))
            except ValueError:
                return None
    return None


# How upstreams phrase "the prompt does not fit" (OpenAI, Azure, Anthropic, Bedrock, Gemini, vLLM).
_CONTEXT_PHRASES = (
    "context length", "context_length", "context window", "maximum context", "prompt is too long",
    "input is too long", "too many input tokens", "too many tokens", "input token count",
    "exceeds the maximum number of tokens", "reduce the length",
)


def classify(status: int, body: Body | None, message: str) -> str | None:
    """The cross-kind failure code (base.CONTEXT_LENGTH, ...) of an upstream error answer."""
    if status == 429:
        return THROTTLED
    err = body.get("error") if isinstance(body, dict) else None
    code = err.get("code") if isinstance(err, dict) else None
    if code in (CONTEXT_LENGTH, CONTENT_FILTER):
        return str(code)
    if status in (400, 413, 422) and any(p in message.lower() for p in _CONTEXT_PHRASES):
        return CONTEXT_LENGTH
    return None


def filter_verdicts(body: Body | None) -> str | None:
    """The categories Azure OpenAI's content filter refused a prompt for ("hate (severity high),
    jailbreak (detected)"), which its 400 names only in `innererror.content_filter_result`."""
    err = body.get("error") if isinstance(body, dict) else None
    inner = err.get("innererror") if isinstance(err, dict) else None
    verdicts = inner.get("content_filter_result") or inner.get("content_filter_results") \
        if isinstance(inner, dict) else None
    if not isinstance(verdicts, dict):
        return None
    named = []
    for category, verdict in verdicts.items():
        if not isinstance(verdict, dict) or verdict.get("filtered") is not True:
            continue
        lists = [str(d.get("id")) for d in verdict.get("details") or [] if isinstance(d, dict) and d.get("filtered")]
        detail = f"severity {verdict['severity']}" if verdict.get("severity") else ", ".join(lists) or "detected"
        named.append(f"{category} ({detail})")
    return ", ".join(named) or None


_TITLE = re.compile(rb"<title[^>]*>([^<]{1,200})</title>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")


def _page_message(target: Target, status: int, raw: bytes) -> str:
    """What to tell of an error answer that is not an API's error JSON: an HTML page (a proxy's or
    load balancer's, `502 Bad Gateway`) by its title, never its markup; other text as it is."""
    where = f"upstream deployment {target.deployment!r} answered HTTP {status}"
    text = raw[:_MAX_ERROR_TEXT].decode("utf-8", "replace").strip()
    if not text:
        return f"{where} with no message"
    if text[:1] == "<":
        title = _TITLE.search(raw[:4096])
        words = title.group(1).decode("utf-8", "replace") if title else _TAG.sub(" ", text)
        named = " ".join(words.split())[:100]
        return (f"{where} with an HTML page{f' ({named})' if named else ''}, not an API error: a proxy or load "
                "balancer in front of it failed")
    return f"{where}: {text}"


def http_failure(target: Target, status: int, raw: bytes, headers: Mapping[str, str]) -> UpstreamFailure:
    """An upstream answered with an error status."""
    body: Body | None = None
    try:
        parsed = orjson.loads(raw) if raw else None
        body = parsed if isinstance(parsed, dict) else None
    except orjson.JSONDecodeError:
        pass
    message = error_message(body) or _page_message(target, status, raw)
    code = classify(status, body, message)
    verdicts = filter_verdicts(body) if code == CONTENT_FILTER else None
    return UpstreamFailure(
        f"{message} (filtered: {verdicts})" if verdicts else message,
        status=status,
        retryable=retryable_status(status),
        body=body,
        retry_after=parse_retry_after(headers) or retry_delay(body) if status in (429, 503, 529) else None,
        code=code,
    )


def transport_failure(target: Target, exc: BaseException) -> UpstreamFailure:
    """A connection-level failure (no usable HTTP answer)."""
    where = f"upstream deployment {target.deployment!r}"
    if isinstance(exc, CallTimedOut | TimeoutError):
        return UpstreamFailure(f"{where} timed out ({exc})", status=None, retryable=True, timeout=True)
    if isinstance(exc, InvalidTarget):
        return UpstreamFailure(
            f"{where} cannot be called: {exc}",
            status=None,
            retryable=False,
        )
    if isinstance(exc, ConnectFailed):
        return UpstreamFailure(f"cannot connect to {where} at {target.base_url}: {exc}", status=None, retryable=True)
    if isinstance(exc, Disconnected):
        return UpstreamFailure(f"{where} closed the connection mid-response", status=None, retryable=True)
    if isinstance(exc, AnswerTooLarge):
        return UpstreamFailure(f"{where} sent {exc}, more than this node holds (SHIELDES_MAX_UPSTREAM_BODY_BYTES): "
                               "ask for a smaller answer (fewer or smaller images, fewer tokens), or have the "
                               "operator raise that bound if such answers are expected", status=None, retryable=True)
    return UpstreamFailure(f"{where} failed: {exc}", status=None, retryable=True)


TRANSPORT_ERRORS = (TransportError, TimeoutError)
# An answer that parsed as JSON but is not the shape the translation reads: the upstream's fault.
SHAPE_ERRORS = (AttributeError, TypeError, ValueError, KeyError, IndexError)


async def post_for_object(
    client: UpstreamClient,
    target: Target,
    url: str,
    payload: Payload,
    headers: Mapping[str, str],
    timeout: Timeouts,
) -> tuple[Body, bytes]:
    """One non-streaming POST whose answer must be a JSON object: (parsed, raw bytes), or the
    UpstreamFailure that describes what went wrong (transport, HTTP status, not a JSON object)."""
    try:
        resp = await client.post(url, payload, headers, timeout)
        raw = await resp.read()
    except TRANSPORT_ERRORS as exc:
        raise transport_failure(target, exc) from exc
    if resp.status >= 400:
        raise http_failure(target, resp.status, raw, resp.headers)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid_response(target, "body is not JSON") from None
    if not isinstance(data, dict):
        raise invalid_response(target, "body is not a JSON object")
    return data, raw


async def open_event_stream(
    client: UpstreamClient,
    target: Target,
    url: str,
    payload: Payload,
    headers: Mapping[str, str],
    timeout: Timeouts,
) -> UpstreamResponse:
    """POST a streaming request and return the open response once its status is a success; an
    error status is read, released and raised as UpstreamFailure. The caller releases the rest."""
    try:
        resp = await client.post(url, payload, headers, timeout)
    except TRANSPORT_ERRORS as exc:
        raise transport_failure(target, exc) from exc
    if resp.status >= 400:
        try:
            raw = await resp.read()
        except TRANSPORT_ERRORS:
            raw = b""
        finally:
            resp.release()
        raise http_failure(target, resp.status, raw, resp.headers)
    return resp


def event_object(target: Target, data: bytes | memoryview) -> Body:
    """One stream event's JSON payload, which must be an object."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise invalid_response(target, "a stream event is not JSON") from None
    if not isinstance(parsed, dict):
        raise invalid_response(target, "a stream event is not a JSON object")
    return parsed


def invalid_response(target: Target, what: str) -> UpstreamFailure:
    return UpstreamFailure(
        f"upstream deployment {target.deployment!r} sent an invalid response ({what})",
        status=None,
        retryable=True,
    )


def parse_usage(usage: object, service_tier: object = None) -> TokenUsage | None:
    """OpenAI `usage` -> TokenUsage (embeddings have no completion tokens); `service_tier`: the
    answer's (or chunk's), the tier that served it. Cache reads: `prompt_tokens_details.cached_tokens`,
    or DeepSeek's `prompt_cache_hit_tokens` (part of prompt_tokens there too). Audio and image
    tokens of the prompt and completion, where reported, as `modal` (providers/modalities.py)."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens") or 0
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    # each count is an int (a bool is none): `type(x) is int`, as JSON gives no other int
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    if not (cached and type(cached) is int):  # DeepSeek counts its cache hits in a field of its own
        cached = usage.get("prompt_cache_hit_tokens")
    cached = cached if type(cached) is int and 0 < cached <= prompt else 0
    # cache writes: not in OpenAI's shape; LiteLLM-style upstreams (and shieldes) report them top-level
    written = usage.get("cache_creation_input_tokens")
    written = written if type(written) is int and 0 < written <= prompt - cached else 0
    details = usage.get("completion_tokens_details")
    reasoning = details.get("reasoning_tokens") if isinstance(details, dict) else None
    return TokenUsage(prompt, completion, cache_read_tokens=cached, cache_write_tokens=written,
                      service_tier=service_tier if isinstance(service_tier, str) and service_tier else None,
                      modal=openai_modal(usage, "prompt_tokens_details", "completion_tokens_details"),
                      reasoning_tokens=reasoning if type(reasoning) is int else None)

