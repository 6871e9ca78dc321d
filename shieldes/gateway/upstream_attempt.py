"""Performing one try of an upstream call on one deployment: its provider module and resolved key,
its span and metrics, the circuit breaker's record of it; a deployment unusable on this node told
once, loudly; and the provider keys kept out of what clients see."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol, TypeVar

from shieldes.errors import InvalidRequest, ProviderMisconfigured, ShieldesError, nested_too_deep
from shieldes.gateway.metrics import Metrics
from shieldes.projections.state import Deployment
from shieldes.providers.base import Body, ModelDialects, Provider, Target, TokenUsage, UpstreamFailure
from shieldes.requestlog.record import RequestRecord
from shieldes.routing.router import CircuitBreaker, RouteTarget
from shieldes.secrets import Keyring, SecretError, resolve_secret

log = logging.getLogger(__name__)
T = TypeVar("T")

_NO_SPAN = nullcontext()  # an attempt's span when tracing is off (reusable: it holds nothing)


class AttemptSpans(Protocol):
    """Tracing of upstream attempts (shieldes/tracing.py implements it)."""

    def attempt_span(self, op: str, dep: Deployment, model: str, attempt: int) -> AbstractContextManager[Any]: ...

    def attempt_failed(self, span: Any, kind: str, message: str) -> None: ...

    def attempt_answered(self, span: Any, result: object, rec: RequestRecord | None) -> None: ...

    def stream_ended(self, rec: RequestRecord, outcome: str, chunks: int, sent_bytes: int,
                     usage: TokenUsage, failure: str, finish_reasons: Sequence[str] = ()) -> None: ...

    def mcp_span(self, server: str, url: str, method: str, tool: str | None) -> AbstractContextManager[Any]: ...

    def mcp_answered(self, span: Any, status: int, error_code: str | None, error_message: str | None) -> None: ...

    def inject_headers(self, headers: dict[str, str]) -> None: ...


class UpstreamAttempts:
    """One try on one deployment, on the Gateway's own state (set in Gateway.__init__; the node
    sets `tracing`); UpstreamCalls (upstream_calls.py) plans the tries and fails over."""

    providers: Mapping[str, Provider]
    metrics: Metrics
    breaker: CircuitBreaker
    tracing: AttemptSpans | None
    keyring: Callable[[], Keyring]
    _secrets: dict[str, str | None]
    # by (deployment, model): the Target last built for them (a frozen dataclass sets each field
    # through a C call; a request reuses it while the deployment's parts are the same objects)
    _targets: dict[tuple[str, str], Target]
    _reported: set[str]

    def _target(self, dep: Deployment, model: str) -> Target:
        ref = dep.secret_ref
        if ref is None:
            api_key = None
        elif ref in self._secrets:
            api_key = self._secrets[ref]
        else:
            try:
                api_key = resolve_secret(ref, self.keyring())
            except SecretError as exc:
                raise self._misconfigured(dep, f"its provider key cannot be read: {exc.message}") from None
            self._secrets[ref] = api_key
        ck = (dep.name, model)
        found = self._targets.get(ck)
        if found is not None and found.base_url is dep.base_url and found.api_key is api_key \
                and found.options is dep.options:
            return found
        if len(self._targets) >= 10_000:  # (deployments and their models come and go: bounded)
            self._targets.clear()
        target = self._targets[ck] = Target(dep.name, dep.base_url, model, api_key, dep.options)
        return target

    def _provider(self, dep: Deployment, model: str) -> Provider:
        provider = self.providers.get(dep.kind)
        if provider is None:
            raise self._misconfigured(dep, f"this node has no provider module for type {dep.kind!r}")
        return provider.for_model(model) if isinstance(provider, ModelDialects) else provider

    def _misconfigured(self, dep: Deployment, why: str) -> ProviderMisconfigured:
        """The same answer on every attempt: reported to the client as is and logged once per cause."""
        fix = (f"set it in the node's environment and restart the node, or store the key with "
               f"`shieldes provider update {dep.name} --api-key KEY`") if "environment variable" in why else (
               "upgrade this node or fix the deployment with `shieldes provider update`")
        message = f"deployment {dep.name!r} cannot be used on this node: {why}; {fix}"
        if message not in self._reported:
            self._reported.add(message)
            log.error("MISCONFIGURED: %s", message)
        return ProviderMisconfigured(message)

    def _failed(self, dep: Deployment, failure: UpstreamFailure, rec: RequestRecord | None) -> str:
        kind = "timeout" if failure.timeout else (str(failure.status) if failure.status else "connect")
        self.metrics.upstream_error(dep.name, kind)
        log.warning("upstream deployment %s failed (%s%s): %s [request %s]", dep.name, kind,
                    "; trying another" if failure.retryable else "", self.scrub(failure.message)[:300],
                    rec.request_id if rec is not None else "-")
        if failure.retryable:
            self.breaker.failure(dep.name)
        return kind

    def known_secrets(self) -> list[str]:
        """Provider keys this node has resolved (redacted from anything it stores or shows)."""
        return [v for v in self._secrets.values() if v]

    def scrub(self, text: str) -> str:
        """Upstream error text goes to clients: never with a provider key in it (some upstreams echo
        the key they were sent)."""
        for secret in self._secrets.values():
            if secret and len(secret) >= 8:
                text = text.replace(secret, "[redacted]")
        return text

    async def _attempt(self, op: str, rt: RouteTarget, body: Body,
                       attempt: Callable[[Provider, Target, Deployment, Body], Awaitable[T]],
                       rec: RequestRecord | None = None, n: int = 1,
                       streamed: Callable[[T], bool] | None = None) -> T:
        """One call to one target; an UpstreamFailure is recorded (metrics, breaker, the request
        log's failover path, the attempt's span) and re-raised. A result `streamed` says is a stream
        is no success yet: the upstream may still break it, and its end counts (note_stream_end)."""
        dep = rt.deployment
        started = time.perf_counter()
        if rec is not None:
            rec.attempt(dep.name)
            rec.upstream_model = rt.model  # what this deployment is sent (a fallback's may differ)
        tracing = self.tracing
        with tracing.attempt_span(op, dep, rt.model, n) if tracing else _NO_SPAN as span:
            try:
                provider = self._provider(dep, rt.model)
                target = self._target(dep, rt.model)
                sent = body if body.get("model") == rt.model else dict(body, model=rt.model)
                result = await attempt(provider, target, dep, sent)
            except UpstreamFailure as failure:
                kind = self._failed(dep, failure, rec)
                if tracing:
                    tracing.attempt_failed(span, kind, self.scrub(failure.message))
                raise
            except ShieldesError:
                raise
            except Exception as exc:  # an adapter choking on an odd request shape: the client's to fix
                deep = nested_too_deep(exc)
                if deep is not None:
                    raise InvalidRequest(f"deployment {dep.name!r} cannot take this request: {deep.message}") \
                        from None
                log.warning("deployment %s could not take a request: %r", dep.name, exc, exc_info=True)
                raise InvalidRequest(
                    f"deployment {dep.name!r} cannot take this request ({type(exc).__name__}: {exc}); "
                    "check the request against the API reference"
                ) from None
            if tracing:
                tracing.attempt_answered(span, result, rec)
        now = time.perf_counter()
        if rec is None:
            self.metrics.upstream_seconds(dep.name, now - started)
        else:
            rec.t_first_byte = now  # the upstream's answer (a stream's: its head) is in, on every route
            self.metrics.upstream_seconds(dep.name, now - started, rec.trace_id)
        if streamed is not None and streamed(result):
            self.breaker.opened(dep.name, now - started)
        else:
            self.breaker.success(dep.name, now - started)
        return result
