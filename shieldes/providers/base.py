"""The provider boundary. The gateway speaks one internal dialect, the OpenAI wire format (request
bodies and response/chunk dicts); each provider module translates to its upstream at the edge and
maps upstream failures to UpstreamFailure there, so nothing foreign leaks past it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol

Operation = Literal["chat", "completions", "embeddings", "responses", "input_tokens", "moderations", "images",
                    "image_edits", "image_variations", "speech", "transcriptions", "translations"]
# The OpenAI media and moderation endpoints: passed through as the client sent them (MediaUpstream)
MediaOp = Literal["moderations", "images", "image_edits", "image_variations", "speech", "transcriptions",
                  "translations"]
Body = dict[str, Any]


class TokenUsage(NamedTuple):
    """`prompt_tokens` counts every input token, cache reads and writes included (they are parts
    of it, reported apart because they cost a different price). A named tuple, not a frozen
    dataclass: a request builds several and a tuple's construction is one C call, where a frozen
    dataclass's sets each field through object.__setattr__."""

    prompt_tokens: int
    completion_tokens: int
    cache_read_tokens: int = 0  # of the prompt tokens, read from the upstream's prompt cache
    cache_write_tokens: int = 0  # of the prompt tokens, written to it
    # of the cache writes, kept for an hour (Claude's `ttl: 1h`), which cost twice the input price
    cache_write_1h_tokens: int = 0
    # server-side web searches the upstream ran for the request and bills per search (Anthropic's
    # `usage.server_tool_use.web_search_requests`), at the model's per-search price
    web_search_requests: int = 0
    # hosted tools the upstream ran and bills per use, counted from the answer's output (OpenAI
    # Responses `file_search_call` items; the code interpreter containers its `code_interpreter_call`
    # items ran in), at the model's per-use prices
    file_search_calls: int = 0
    containers: int = 0
    # the service tier the answer says served it, in OpenAI's words (providers/tiers.py): `flex` and
    # `priority` bill at the model's multiplier for them; None when the upstream said nothing
    service_tier: str | None = None
    # the tokens the upstream reports as audio or image, as (kind, tokens) pairs sorted by name in
    # state.MODALITIES' words: `audio_input`/`image_input` of the prompt tokens (cache reads
    # included), `audio_cache_read`/`image_cache_read` of the cache reads, `audio_output`/
    # `image_output` of the completion tokens; billed at the model's price for each (usage/pricing.py)
    modal: tuple[tuple[str, int], ...] = ()
    # A breakdown for the request log when the upstream reports it, not billed apart: equality
    # compares the counts that are billed (every field before this last one).
    reasoning_tokens: int | None = None  # of the completion tokens

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TokenUsage):
            return NotImplemented
        return self[:_BILLED] == other[:_BILLED]

    def __ne__(self, other: object) -> bool:
        if not isinstance(other, TokenUsage):
            return NotImplemented
        return self[:_BILLED] != other[:_BILLED]

    def __hash__(self) -> int:
        return hash(self[:_BILLED])


_BILLED = len(TokenUsage._fields) - 1  # the fields equality compares: all but reasoning_tokens


class UpstreamFailure(Exception):
    """An upstream call failed. `retryable`: another attempt or deployment may succeed
    (408/409/429, 5xx, timeouts, connection errors); other 4xx client errors are not retryable.
    `message` is the upstream's own error message when it sent one (fit to show the client),
    `status` its HTTP status (None when no HTTP answer came), `body` its parsed JSON error body
    in the upstream's own shape, `retry_after` seconds from its Retry-After header, if any.
    `code` classifies the failure across kinds, set by the provider module that understood it:
    CONTEXT_LENGTH (the prompt does not fit the model), CONTENT_FILTER (the upstream's safety
    system refused; `message` carries its reason), THROTTLED (the upstream's own rate limit).
    `param`: the request field an OpenAI-shaped error body names at fault (error_param), in the
    terms of the request the upstream got."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        retryable: bool,
        timeout: bool = False,
        body: Body | None = None,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.retryable = retryable
        self.timeout = timeout
        self.body = body
        self.retry_after = retry_after
        self.param = error_param(body)

    def __repr__(self) -> str:
        return f"UpstreamFailure(status={self.status}, retryable={self.retryable}, message={self.message!r})"


def error_param(data: object) -> str | None:
    """The request field an OpenAI-shaped error names as at fault: a JSON error's or a chat stream's
    `{"error": {"param"}}`, a Responses `error` event's own `param`."""
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    param = err.get("param") if isinstance(err, dict) else data.get("param") if data.get("type") == "error" else None
    return param if isinstance(param, str) and param else None


CONTEXT_LENGTH = "context_length_exceeded"
CONTENT_FILTER = "content_filter"
THROTTLED = "rate_limit_exceeded"
# The model ended its turn on an answer it could not finish well-formed (Bedrock's stop reasons
# malformed_model_output and malformed_tool_use): an error-ended turn, never a normal "stop"
MALFORMED_OUTPUT = "malformed_model_output"
OVERLOADED = 529  # Anthropic's status (and stream error type overloaded_error) for an overloaded upstream


@dataclass(frozen=True, slots=True)
class Target:
    """What a call goes to: the deployment's endpoint, the upstream model name, its key and the
    kind's own settings (`shieldes provider add --api-version/--region/--project ...`)."""

    deployment: str
    base_url: str
    model: str
    api_key: str | None
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class JsonResult:
    body: Body  # OpenAI-shaped response
    usage: TokenUsage | None
    raw: bytes | None = None  # the upstream's own bytes when they already are `body`, sendable as-is
    # what a translating provider left out of the request (x-shieldes-dropped), as its translation
    # reported it: the header is decided by the walk that built the request, not a second one
    dropped: Sequence[str] = ()


class ChunkStream(Protocol):
    """OpenAI chunk dicts (`chat.completion.chunk`, or `text_completion` for completions), including
    the final `{"choices": [], "usage": {...}}` chunk when the upstream sends one; `usage` is known
    once iteration has ended. Iteration raises UpstreamFailure if the upstream fails mid-stream.
    `aclose()` releases the connection; call it when abandoning a stream early (safe to repeat)."""

    @property
    def usage(self) -> TokenUsage | None: ...

    @property
    def dropped(self) -> Sequence[str]:
        """What the provider's translation left out of the request (JsonResult.dropped)."""
        ...

    def __aiter__(self) -> AsyncIterator[Body]: ...

    async def aclose(self) -> None: ...


class StreamCounts(Protocol):
    """What a relay notes of a stream as it forwards it (the gateway's relay.Tally): content
    chunks (for an estimate), when the first one came, why each choice finished."""

    content_chunks: int
    first_token_at: float  # perf_counter of the first content chunk
    finish_reasons: list[str]
    wants_reasons: bool  # whether finish_reasons are read (else a relay may leave them out)


class Provider(Protocol):
    kind: str

    async def call(self, op: Operation, target: Target, body: Body) -> JsonResult:
        """A non-streaming call. Raises UpstreamFailure."""
        ...

    async def stream(self, op: Operation, target: Target, body: Body) -> ChunkStream:
        """Start a streaming call; raises UpstreamFailure before the first chunk if it cannot start."""
        ...


class InputTokenCounter(ABC):
    """A provider whose upstream counts a request's input tokens itself (Bedrock's CountTokens):
    what `POST /v1/messages/count_tokens` answers for its deployments instead of the estimate."""

    @abstractmethod
    async def count_input_tokens(self, target: Target, body: Body) -> int | None:
        """The upstream's count for the chat request `body` (without sending it); None when this
        model cannot be counted there (then the estimate answers). Raises UpstreamFailure."""


class MediaUpstream(ABC):
    """A provider whose upstream serves some of OpenAI's media and moderation endpoints in their
    own wire format (`media_ops`): the client's body goes through with only its model rewritten."""

    media_ops: frozenset[str] = frozenset()

    @abstractmethod
    async def media(self, op: MediaOp, target: Target, payload: bytes, content_type: str,
                    streaming: bool) -> Any:
        """POST `payload` (of `content_type`) to `op`'s endpoint on `target`; the open answer (a
        transport.UpstreamResponse) once its status is a success, the caller reads and releases
        it. `streaming`: the answer may run long (audio, events), so it is bounded by silence.
        Raises UpstreamFailure."""


class ModelDialects(ABC):
    """A provider whose upstream serves some models in another wire format (Vertex AI serves Claude
    models in Anthropic's Messages format): each call goes to the provider `for_model` names."""

    @abstractmethod
    def for_model(self, model: str) -> Provider:
        """The provider module for calls to `model` (the upstream's name for it)."""
