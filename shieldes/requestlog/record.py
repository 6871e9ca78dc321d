"""One request's log record: filled in by the layers that already hold each fact (middleware:
ids, times, status; auth: the key; the call: route, deployments tried, usage, cost; the relay:
first byte and first token), then handed to the writer. Filling it is attribute stores only; the
conversion to a database row (`row()`) runs in the writer, off the request path.

Defaults are class attributes, so a record only carries the fields a request actually set (a
refused request allocates a handful of slots, not thirty)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shieldes.projections.state import VirtualKey
from shieldes.requestlog.filters import UNMATCHED

MAX_TEXT = 512  # user agent, unknown paths and model names longer than this are cut
# error messages: a request that fell back names every model it tried and why each failed
MAX_ERROR_TEXT = 2048

# The request_log_rows columns, in COPY order (see store.py).
COLUMNS = (
    "request_id", "started_at", "finished_at", "node_id", "method", "route", "path", "status",
    "error_code", "key_id", "key_name", "team_id", "model", "upstream_model", "deployment", "attempts",
    "failover_path", "stream", "latency_ms", "ttfb_ms", "ttft_ms", "prompt_tokens", "completion_tokens",
    "cached_tokens", "reasoning_tokens", "cost_nusd", "client_ip", "user_agent", "trace_id", "error_message",
    "images", "audio_seconds", "characters", "cache_write_tokens", "service_tier", "web_searches",
    "file_searches", "containers", "actor", "tags", "fallback",
)


INT8_MAX = 2**63 - 1


def _count(value: int | None) -> int | None:
    """Upstream-given counts fit the bigint columns (binary COPY would wrap an oversized value)."""
    if value is None or -INT8_MAX <= value <= INT8_MAX:
        return value
    return INT8_MAX if value > 0 else -INT8_MAX


def _cut(text: str | None, most: int = MAX_TEXT) -> str | None:
    """Client-given text made storable: cut, no NUL, valid UTF-8 (undecodable bytes in a path or
    header arrive as lone surrogates, which Postgres would refuse)."""
    if text is None:
        return None
    text = text[:most] if len(text) > most else text
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


class RequestRecord:
    # set by the middleware for every request
    request_id: str = ""
    started: float = 0.0  # unix seconds
    t0: float = 0.0  # perf_counter at start
    t_end: float = 0.0  # perf_counter at the end (last byte for streams)
    method: str = ""
    path: str = ""
    route: str = UNMATCHED  # the route's pattern (e.g. /v1/chat/completions); unmatched for 404s
    status: int = 0
    error_code: str | None = None
    error_message: str | None = None  # what the client was told, with the code (why it was refused)
    client_ip: str | None = None
    user_agent: str | None = None
    trace_id: str | None = None
    # set once the key is known
    key: VirtualKey | None = None
    actor: str | None = None  # an admin API request's authenticated caller (as audit_log names it)
    # set by the call
    model: str | None = None  # as the client asked
    upstream_model: str | None = None
    deployment: str | None = None  # the deployment that answered (or the last one tried)
    tried: list[str] | None = None  # every deployment attempted, in order
    stream: bool = False
    t_first_byte: float = 0.0  # perf_counter: upstream answered (JSON) / first frame written (stream)
    t_first_token: float = 0.0  # perf_counter of the first content chunk (streams)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None  # of the prompt tokens, written to the upstream's prompt cache
    reasoning_tokens: int | None = None
    # what a media call was billed in besides tokens, each in its unit (usage/units.py); None: none of it
    images: int | None = None
    audio_seconds: int | None = None
    characters: int | None = None
    cost_nusd: int | None = None
    service_tier: str | None = None  # the tier the answer says served it (flex, priority bill apart)
    # hosted tool uses billed per use (web searches, file searches, code interpreter containers);
    # None: none
    web_searches: int | None = None
    file_searches: int | None = None
    containers: int | None = None
    tags: list[str] | None = None  # the client's cost-attribution tags (LiteLLM's), bounded (gateway_fields)
    fallback: str | None = None  # the fallback (as the request or the alias named it) that answered
    # tracing: the attempt span of a stream, ended when the stream ends (tracing.stream_ended)
    upstream_span: Any = None
    # a background response's: handed to the request log when its run ends, not when it was created
    held: bool = False
    # opt-in payload capture (capture.py decides)
    request_body: bytes | None = None
    response_body: bytes | None = None

    def __init__(self, request_id: str, started: float, t0: float, method: str, path: str) -> None:
        self.request_id = request_id
        self.started = started
        self.t0 = t0
        self.method = method
        self.path = path

    def attempt(self, deployment: str) -> None:
        tried = self.tried
        if tried is None:
            self.tried = [deployment]
        else:
            tried.append(deployment)
        self.deployment = deployment

    def tool_uses(self, usage: Any) -> None:
        """The hosted tool uses a call was billed for (a TokenUsage; counted by the gateway, in range)."""
        self.web_searches = usage.web_search_requests or None
        self.file_searches = usage.file_search_calls or None
        self.containers = usage.containers or None

    @property
    def latency(self) -> float:
        return self.t_end - self.t0 if self.t_end else 0.0

    def ms_after_start(self, t: float) -> float | None:
        return ((t - self.t0) * 1_000_000.0 + 0.5) // 1.0 / 1000.0 if t else None

    def row(self, node_id: str) -> tuple[Any, ...]:
        """The database row, in COLUMNS order (runs in the writer, not on the request path).
        Written out flat (no helper call per count or timing): it runs once per request. Times in
        ms to the microsecond, as the whole microseconds (half up, by a float floor division) over
        1000: the nearest float to that many ms, as round(ms, 3) gives it, for a fraction of the
        instructions (round() with digits formats the float in decimal and parses it back; round()
        and int() are calls)."""
        key = self.key
        t0, t_end = self.t0, self.t_end
        latency = t_end - t0 if t_end else 0.0
        started = self.started
        tried = self.tried
        first_byte, first_token = self.t_first_byte, self.t_first_token
        prompt, completion, cached = self.prompt_tokens, self.completion_tokens, self.cached_tokens
        reasoning, cost, written = self.reasoning_tokens, self.cost_nusd, self.cache_write_tokens
        return (
            self.request_id, datetime.fromtimestamp(started, UTC),
            datetime.fromtimestamp(started + latency, UTC), node_id, self.method, self.route,
            _cut(self.path), self.status, self.error_code,
            key.id if key else None, key.name if key else None, key.team_id if key else None,
            _cut(self.model), self.upstream_model, self.deployment, len(tried) if tried else 0,
            tried, self.stream, (latency * 1_000_000.0 + 0.5) // 1.0 / 1000.0,
            ((first_byte - t0) * 1_000_000.0 + 0.5) // 1.0 / 1000.0 if first_byte else None,
            ((first_token - t0) * 1_000_000.0 + 0.5) // 1.0 / 1000.0 if first_token else None,
            prompt if prompt is None or -INT8_MAX <= prompt <= INT8_MAX else _count(prompt),
            completion if completion is None or -INT8_MAX <= completion <= INT8_MAX else _count(completion),
            cached if cached is None or -INT8_MAX <= cached <= INT8_MAX else _count(cached),
            reasoning if reasoning is None or -INT8_MAX <= reasoning <= INT8_MAX else _count(reasoning),
            cost if cost is None or -INT8_MAX <= cost <= INT8_MAX else _count(cost),
            self.client_ip, _cut(self.user_agent), self.trace_id, _cut(self.error_message, MAX_ERROR_TEXT),
            self.images, self.audio_seconds, self.characters,  # (counted by the gateway: in range)
            written if written is None or -INT8_MAX <= written <= INT8_MAX else _count(written),
            _cut(self.service_tier), self.web_searches, self.file_searches, self.containers,
            _cut(self.actor), self.tags, _cut(self.fallback),
        )

    def fields(self, node_id: str) -> dict[str, Any]:
        """The row as a dict (access log lines, JSON output)."""
        return dict(zip(COLUMNS, self.row(node_id), strict=True))
