"""OpenTelemetry traces over OTLP/HTTP (SHIELDES_OTEL_ENDPOINT; optional extra `shieldes[otel]`).

One SERVER span per request (a child of the client's `traceparent` when it sent one) and one
CLIENT span per upstream attempt, whose context goes to the upstream as `traceparent` (a hook of the node's
upstream client). Attributes follow the OpenTelemetry GenAI and HTTP
semantic conventions. The tracer provider belongs to the node (never the process-global one)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from shieldes.client_address import Network, client_address
from shieldes.errors import ShieldesError
from shieldes.projections.state import Deployment
from shieldes.providers.base import TokenUsage
from shieldes.requestlog.record import RequestRecord

EXTRA_HINT = "pip install 'shieldes[otel]'"
STREAM_ERROR = "upstream_stream_error"  # error.type of an attempt whose stream the upstream broke
OPERATIONS = {"chat": "chat", "completions": "text_completion", "embeddings": "embeddings"}
# gen_ai.provider.name's well-known values (OpenTelemetry GenAI semantic conventions) per provider type
PROVIDER_NAMES = {"openai": "openai", "anthropic": "anthropic", "azure": "azure.ai.openai",
                  "bedrock": "aws.bedrock", "gemini": "gcp.gemini", "vertex": "gcp.vertex_ai"}
DEFAULT_PORTS = {"http": 80, "https": 443}


def server_of(base_url: str) -> dict[str, Any]:
    """`server.address` (the host alone: never the URL's path or any user:password in it) and
    `server.port` of an upstream's base URL."""
    try:
        url = urlsplit(base_url)
        host, port = url.hostname, url.port or DEFAULT_PORTS.get(url.scheme)
    except ValueError:
        return {}
    out: dict[str, Any] = {}
    if host:
        out["server.address"] = host
        if port:
            out["server.port"] = port
    return out


def answer_attributes(body: Any) -> dict[str, Any]:
    """What a JSON answer says about itself, in its API's shape: its id, the model that answered
    and why it finished, in the words a stream's span uses (OpenAI choices' `finish_reason`,
    Anthropic `stop_reason`, a Responses object's `incomplete_details.reason` or else its status,
    Gemini candidates' `finishReason`)."""
    out: dict[str, Any] = {}
    if not isinstance(body, dict):
        return out
    answer_id = body.get("id", body.get("responseId"))
    if isinstance(answer_id, str):
        out["gen_ai.response.id"] = answer_id
    model = body.get("model", body.get("modelVersion"))
    if isinstance(model, str):
        out["gen_ai.response.model"] = model
    reasons: list[str] = []
    if isinstance(choices := body.get("choices"), list):
        reasons = [str(c["finish_reason"]) for c in choices if isinstance(c, dict) and c.get("finish_reason")]
    elif isinstance(candidates := body.get("candidates"), list):
        reasons = [str(c["finishReason"]) for c in candidates if isinstance(c, dict) and c.get("finishReason")]
    elif isinstance(body.get("stop_reason"), str):
        reasons = [body["stop_reason"]]
    elif body.get("object") == "response":
        incomplete = body.get("incomplete_details")
        reason = incomplete.get("reason") if isinstance(incomplete, dict) else None
        if isinstance(reason or body.get("status"), str):
            reasons = [reason or body["status"]]
    if reasons:
        out["gen_ai.response.finish_reasons"] = reasons
    return out


def answered_attributes(result: object) -> dict[str, Any]:
    """A JSON answer's attempt span attributes, whatever the route's answer type: its body
    (`body`: JsonResult and the Messages and Gemini API routes' answers; `response`: a Responses
    answer) said by answer_attributes, and its usage (TokenUsage, or a Responses usage)."""
    body = getattr(result, "body", None)
    out = answer_attributes(body if body is not None else getattr(result, "response", None))
    usage = getattr(result, "usage", None)
    if isinstance(usage, TokenUsage):
        out["gen_ai.usage.input_tokens"] = usage.prompt_tokens
        out["gen_ai.usage.output_tokens"] = usage.completion_tokens
    elif usage is not None and isinstance(getattr(usage, "input_tokens", None), int):
        out["gen_ai.usage.input_tokens"] = usage.input_tokens
        out["gen_ai.usage.output_tokens"] = usage.output_tokens
    return out


def _outcome(rec: RequestRecord) -> dict[str, Any]:
    """What a request's (or background run's) span says of its outcome: the model that answered,
    the tokens billed, the deployment and how many attempts it took."""
    attrs: dict[str, Any] = {}
    if rec.upstream_model is not None:
        attrs["gen_ai.response.model"] = rec.upstream_model
    if rec.prompt_tokens is not None:
        attrs["gen_ai.usage.input_tokens"] = rec.prompt_tokens
    if rec.completion_tokens is not None:
        attrs["gen_ai.usage.output_tokens"] = rec.completion_tokens
    if rec.deployment is not None:
        attrs["shieldes.deployment"] = rec.deployment
        attrs["shieldes.attempts"] = len(rec.tried) if rec.tried else 0
    return attrs


def server_failed(status: int, error_code: str | None) -> bool:
    """Whether a request's SERVER span is an ERROR, as the HTTP conventions say: a 5xx, or a
    failure its status does not show (a stream the upstream broke after its 200, a request the node
    cancelled when it stopped). A 4xx refusal is the client's to fix (status left unset; `error.type`
    names it), and so is a client that went away."""
    if status >= 500:
        return True
    if error_code is None or error_code == "client_disconnected":
        return False
    return status < 400 or error_code == "cancelled"


def traces_url(endpoint: str) -> str:
    """OTLP/HTTP collectors take traces at <endpoint>/v1/traces; a full URL is kept as it is."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


class Tracing:
    def __init__(self, endpoint: str, *, service_name: str, node_id: str, scheme: str = "http",
                 trusted_proxies: tuple[Network, ...] = ()) -> None:
        self.trusted_proxies = trusted_proxies  # whose X-Forwarded-For names the client
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.trace import SpanKind, Status, StatusCode
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        except ImportError:
            raise ShieldesError(
                f"SHIELDES_OTEL_ENDPOINT is set but OpenTelemetry is not installed: {EXTRA_HINT} "
                "(or unset SHIELDES_OTEL_ENDPOINT)"
            ) from None
        self._kind, self._status, self._code = SpanKind, Status, StatusCode
        resource = Resource.create({"service.name": service_name, "service.instance.id": node_id})
        self.provider = TracerProvider(resource=resource)
        self.provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint), timeout=5),
                               schedule_delay_millis=500))
        self.tracer = self.provider.get_tracer("shieldes")
        self.propagator = TraceContextTextMapPropagator()
        self.scheme = scheme  # url.scheme of the API port: https with SHIELDES_TLS_CERT

    # --- request spans (gateway/observe.py) ------------------------------------------------------

    def server_span(self, request: web.Request, rec: RequestRecord) -> Any:
        parent = self.propagator.extract(request.headers) if "traceparent" in request.headers else None
        return self.tracer.start_as_current_span(
            f"{request.method} {request.path[:100]}", context=parent, kind=self._kind.SERVER,
            attributes=self._request_attributes(request, rec),
            record_exception=False, set_status_on_exception=False)

    @staticmethod
    def note_trace(span: Any, rec: RequestRecord) -> None:
        """The request's trace id on its record as soon as its span starts, so the latencies
        observed meanwhile (upstream, first token) name it as their exemplar; a trace the sampler
        left out is exported nowhere, so nothing names it."""
        context = span.get_span_context()
        if context.trace_flags.sampled:
            rec.trace_id = format(context.trace_id, "032x")

    def _request_attributes(self, request: web.Request, rec: RequestRecord) -> dict[str, Any]:
        """The HTTP server conventions' attributes known when the request arrives."""
        attrs: dict[str, Any] = {"http.request.method": request.method, "url.path": request.path[:512],
                                 "url.scheme": self.scheme, "shieldes.request_id": rec.request_id}
        client = client_address(request.remote, request.headers.get("X-Forwarded-For"), self.trusted_proxies)
        if client:
            attrs["client.address"] = client
        agent = request.headers.get("User-Agent")
        if agent:
            attrs["user_agent.original"] = agent[:512]
        return attrs

    def finish_server_span(self, span: Any, request: web.Request, rec: RequestRecord) -> None:
        route = rec.route  # the observer's label, as in the request log and the metrics
        span.update_name(f"{request.method} {route}")
        attrs: dict[str, Any] = {"http.route": route, "http.response.status_code": rec.status}
        if rec.model is not None:
            attrs["gen_ai.request.model"] = rec.model
        if rec.key is not None:
            attrs["shieldes.key.name"] = rec.key.name
        attrs.update(_outcome(rec))
        if rec.error_code is not None:
            attrs["error.type"] = rec.error_code
        why = f"{rec.error_code}: {rec.error_message}" if rec.error_message else rec.error_code
        if server_failed(rec.status, rec.error_code):
            # the code, and why in the words the client got (which upstream failed and how)
            span.set_status(self._status(self._code.ERROR, (why or str(rec.status))[:512]))
        elif why is not None:  # a refusal (which key, limit or budget, how much of it is used): not a failure
            attrs["shieldes.error.message"] = why[:512]
        span.set_attributes(attrs)
        context = span.get_span_context()
        if context.trace_flags.sampled:  # (a trace the sampler left out is exported nowhere: no row names it)
            rec.trace_id = format(context.trace_id, "032x")
        if not rec.held:  # (a background run's record goes on: its own span ends the attempt's)
            self.end_held(rec)

    # --- background runs (gateway/responses_background.py) ----------------------------------------

    @contextmanager
    def background_span(self, rec: RequestRecord, response_id: str) -> Iterator[Any]:
        """A background response's run, after its create was answered: the upstream call (its
        attempt spans are children), the stream and the response's end. A child of the create's
        SERVER span (the context its task was started in), which ended with the create."""
        attributes: dict[str, Any] = {"gen_ai.operation.name": "responses", "gen_ai.response.id": response_id,
                                      "shieldes.request_id": rec.request_id}
        if rec.model is not None:
            attributes["gen_ai.request.model"] = rec.model
        with self.tracer.start_as_current_span(
                "background response", kind=self._kind.INTERNAL, attributes=attributes,
                record_exception=False, set_status_on_exception=False) as span:
            try:
                yield span
            finally:
                self.end_held(rec)

    def finish_background(self, span: Any, rec: RequestRecord, status: str, error: str | None) -> None:
        """The run's end: the response's status, what was billed, and a failed run as ERROR."""
        attrs: dict[str, Any] = {"shieldes.response.status": status, **_outcome(rec)}
        if status == "failed":
            attrs["error.type"] = rec.error_code or "failed"
            span.set_status(self._status(self._code.ERROR, (error or status)[:512]))
        span.set_attributes(attrs)

    # --- upstream attempt spans (gateway/service.py) ---------------------------------------------

    @contextmanager
    def attempt_span(self, op: str, dep: Deployment, model: str, attempt: int) -> Iterator[Any]:
        """The attempt's span, current while the upstream is called (its context goes upstream).
        It ends with a failure here; an answer ends it through `attempt_answered`."""
        operation = OPERATIONS.get(op, op)
        with self.tracer.start_as_current_span(
            f"{operation} {model}", kind=self._kind.CLIENT,
            attributes={"gen_ai.provider.name": PROVIDER_NAMES.get(dep.kind, dep.kind),
                        "gen_ai.system": dep.kind, "gen_ai.operation.name": operation,
                        "gen_ai.request.model": model, "shieldes.deployment": dep.name,
                        "shieldes.attempt": attempt, **server_of(dep.base_url)},
            record_exception=False, set_status_on_exception=False, end_on_exit=False,
        ) as span:
            try:
                yield span
            except BaseException:
                span.end()
                raise

    def attempt_failed(self, span: Any, kind: str, message: str) -> None:
        span.set_attribute("error.type", kind)
        span.set_status(self._status(self._code.ERROR, message[:200]))

    def attempt_answered(self, span: Any, result: object, rec: RequestRecord | None) -> None:
        """A JSON answer ends its attempt's span now. A stream's span is held on the request's
        record until the stream ends (`stream_ended`), so that its duration, usage and outcome
        are the whole stream's, not its opening's."""
        if rec is not None and (rec.stream or rec.held):  # (held: a background run, relayed to its Run)
            rec.upstream_span = span
            return
        span.set_attributes(answered_attributes(result))
        span.end()

    def stream_ended(self, rec: RequestRecord, outcome: str, chunks: int, sent_bytes: int,
                     usage: TokenUsage, failure: str, finish_reasons: Sequence[str] = ()) -> None:
        """The end of the stream whose attempt span `rec` holds: its usage (the upstream's, or the
        estimate billed), why its choices finished (as a JSON answer's span says), how it ended,
        and an upstream that broke it as the attempt's error."""
        span = rec.upstream_span
        if span is None:
            return
        rec.upstream_span = None
        span.set_attributes({"gen_ai.usage.input_tokens": usage.prompt_tokens,
                             "gen_ai.usage.output_tokens": usage.completion_tokens,
                             "shieldes.stream.outcome": outcome, "shieldes.stream.chunks": chunks,
                             "shieldes.stream.bytes": sent_bytes})
        if finish_reasons:
            span.set_attribute("gen_ai.response.finish_reasons", list(finish_reasons))
        if outcome == "upstream_error":
            span.set_attribute("error.type", STREAM_ERROR)
            span.set_status(self._status(self._code.ERROR, f"{STREAM_ERROR}: {failure}"[:512]))
        span.end()

    @staticmethod
    def end_held(rec: RequestRecord) -> None:
        """An attempt span still held when its request ends (a stream never relayed: the handler
        failed between the upstream's answer and the relay) ends with it, never left open."""
        span = rec.upstream_span
        if span is not None:
            rec.upstream_span = None
            span.end()

    # --- MCP servers (gateway/mcp_routes.py) ------------------------------------------------------

    @contextmanager
    def mcp_span(self, server: str, url: str, method: str, tool: str | None) -> Iterator[Any]:
        """The call to an MCP server, named and attributed as the MCP semantic conventions say
        (`tools/call search`), until its answer (or its stream) is relayed; current while the
        request is sent, so its context goes to the server as `traceparent`. A failure (the
        gateway's refusal of what the server did, with its code) is an ERROR."""
        attributes: dict[str, Any] = {"mcp.method.name": method, "shieldes.mcp.server": server,
                                      "network.transport": "tcp", **server_of(url)}
        if tool is not None:
            attributes["gen_ai.tool.name"] = tool
            attributes["gen_ai.operation.name"] = "execute_tool"
        with self.tracer.start_as_current_span(
                f"{method} {tool or server}", kind=self._kind.CLIENT, attributes=attributes,
                record_exception=False, set_status_on_exception=False) as span:
            try:
                yield span
            except Exception as exc:
                code = getattr(exc, "code", None) or type(exc).__name__
                span.set_attribute("error.type", str(code))
                span.set_status(self._status(self._code.ERROR, f"{code}: {getattr(exc, 'message', '')}"[:512]))
                raise

    def mcp_answered(self, span: Any, status: int, error_code: str | None, error_message: str | None) -> None:
        span.set_attribute("http.response.status_code", status)
        if error_code is not None:  # its stream broke off, or the client left it
            span.set_attribute("error.type", error_code)
            if error_code != "client_disconnected":
                span.set_status(self._status(self._code.ERROR, f"{error_code}: {error_message or ''}"[:512]))
        elif status >= 400:  # the server's own refusal, relayed: a CLIENT span's error (HTTP conventions)
            span.set_attribute("error.type", str(status))
            span.set_status(self._status(self._code.ERROR, f"the MCP server answered HTTP {status}"))

    # --- propagation to upstreams ----------------------------------------------------------------

    def inject_headers(self, headers: dict[str, str]) -> None:
        """Adds `traceparent` (the current attempt span) to an upstream request's headers."""
        self.propagator.inject(headers)

    def shutdown(self) -> None:
        """Export what is pending (bounded by the exporter's timeout) and stop."""
        self.provider.shutdown()
