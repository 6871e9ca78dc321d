"""The provider boundary. The gateway speaks one internal dialect, the OpenAI wire format (request
bodies and response/chunk dicts); each provider module translates to its upstream at the edge and
maps upstream failures to UpstreamFailure there, so nothing foreign leaks past it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Operation = Literal["chat", "completions", "embeddings", "responses", "input_tokens"]
Body = dict[str, Any]


@dataclass(frozen=True, slots=True)
class TokenUsage:
    prompt_tokens: int
    completion_tokens: int


class UpstreamFailure(Exception):
    """An upstream call failed. `retryable`: another attempt or deployment may succeed
    (408/409/429, 5xx, timeouts, connection errors); other 4xx client errors are not retryable.
    `message` is the upstream's own error message when it sent one (fit to show the client),
    `status` its HTTP status (None when no HTTP answer came), `body` its parsed JSON error body
    in the upstream's own shape, `retry_after` seconds from its Retry-After header, if any."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        retryable: bool,
        timeout: bool = False,
        body: Body | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.timeout = timeout
        self.body = body
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"UpstreamFailure(status={self.status}, retryable={self.retryable}, message={self.message!r})"


@dataclass(frozen=True, slots=True)
class Target:
    """What a call goes to: the deployment's endpoint, the upstream model name and its key."""

    deployment: str
    base_url: str
    model: str
    api_key: str | None


@dataclass(slots=True)
class JsonResult:
    body: Body  # OpenAI-shaped response
    usage: TokenUsage | None
    raw: bytes | None = None  # the upstream's own bytes when they already are `body`, sendable as-is


class ChunkStream(Protocol):
    """OpenAI chunk dicts (`chat.completion.chunk`, or `text_completion` for completions), including
    the final `{"choices": [], "usage": {...}}` chunk when the upstream sends one; `usage` is known
    once iteration has ended. Iteration raises UpstreamFailure if the upstream fails mid-stream.
    `aclose()` releases the connection; call it when abandoning a stream early (safe to repeat)."""

    @property
    def usage(self) -> TokenUsage | None: ...

    def __aiter__(self) -> AsyncIterator[Body]: ...

    async def aclose(self) -> None: ...


class Provider(Protocol):
    kind: str

    async def call(self, op: Operation, target: Target, body: Body) -> JsonResult:
        """A non-streaming call. Raises UpstreamFailure."""
        ...

    async def stream(self, op: Operation, target: Target, body: Body) -> ChunkStream:
        """Start a streaming call; raises UpstreamFailure before the first chunk if it cannot start."""
        ...
