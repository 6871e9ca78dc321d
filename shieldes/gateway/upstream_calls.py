"""Calling upstream deployments for the gateway: each try on one deployment (its provider module,
its resolved key, tracing, metrics, the circuit breaker), retries with backoff, failover across the
route's targets and fallback groups, deployment quotas; and the provider keys kept out of what
clients see. The Gateway (service.py) takes these as its upstream half."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import orjson

from shieldes.cluster.view import Health
from shieldes.errors import InvalidRequest, ProviderMisconfigured, ShieldesError
from shieldes.gateway.metrics import Metrics
from shieldes.gateway.top_level import ChatTopLevel, Outgoing, TopLevel
from shieldes.gateway.upstream_errors import (
    ModelTried,
    all_at_quota,
    at_quota_skip,
    client_error,
    every_one_misconfigured,
    exhausted,
    models_tried,
)
from shieldes.projections.state import Deployment
from shieldes.providers.base import (
    CONTEXT_LENGTH,
    Body,
    ChunkStream,
    JsonResult,
    ModelDialects,
    Operation,
    Provider,
    Target,
    TokenUsage,
    UpstreamFailure,
)
from shieldes.providers.chat_history import READ
from shieldes.providers.openai_strict import ABSENT, MARKS, Refit
from shieldes.providers.output_caps import within_cap
from shieldes.requestlog.record import RequestRecord
from shieldes.responses.history import History
from shieldes.responses.objects import ContextOf
from shieldes.responses.upstream import Answer, EventStream, count_input_tokens, respond
from shieldes.routing.quota import DeploymentQuotas
from shieldes.routing.router import CircuitBreaker, Route, RouteTarget, backoff, fallback_routes, plan
from shieldes.routing.strategies import DEFAULT_STRATEGY, merge_health, order_targets
from shieldes.secrets import Keyring, SecretError, resolve_secret
from shieldes.settings import Settings
from shieldes.usage.pricing import PriceTable

if TYPE_CHECKING:
    from shieldes.gateway.service import StateView

log = logging.getLogger(__name__)
T = TypeVar("T")
# One try of a call on one deployment: (provider module, target, deployment) -> result.
Attempt = Callable[[Provider, Target, Deployment], Awaitable[T]]
# a JSON call's body does not carry these: OpenAI refuses stream_options without a stream (a client's
# `stream: false` goes as sent)
JSON_DROPS = frozenset({"stream_options"})

_NO_SPAN = nullcontext()  # an attempt's span when tracing is off (reusable: it holds nothing)


def each_a_stream(_result: object) -> bool:
    """`streamed` of calls whose every answer is a stream."""
    return True


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


def provider_takes_as_sent(provider: Provider, op: Operation, target: Target, ids: list[str] | None) -> bool:
    """Whether `provider` takes the client's bytes for this request (OpenAI-compatible upstreams:
    OpenAIProvider.takes_as_sent); the others get the body decoded and translated."""
    takes = getattr(provider, "takes_as_sent", None)
    return takes is not None and bool(takes(op, target, ids))



def _translates_chat(provider: Provider, op: Operation) -> bool:
    """Whether `provider` translates this chat request into another API (Anthropic, Bedrock, Gemini,
    Vertex): its client knows the limits of OpenAI's models, not of the one that serves it. An
    OpenAI-compatible upstream's refusal of a client's max_tokens goes to the client as it is."""
    return op == "chat" and getattr(provider, "takes_as_sent", None) is None


def fitted(provider: Provider, op: Operation, target: Target, out: Outgoing) -> Refit | None:
    """What of the client's request this upstream refuses and takes otherwise, fitted
    (OpenAIProvider.refit: `top_k` and `thinking` to OpenAI itself or Azure); None: as sent."""
    refitting = getattr(provider, "refit", None)
    if refitting is None:
        return None
    top = out.top
    chat = isinstance(top, ChatTopLevel)
    marked: list[bool] = []

    def field(name: str) -> Any:
        # asked only for OpenAI itself. A chat read in its typed pass has `top_k` and `thinking`
        # decoded (chat_history.READ; `reasoning_effort` is asked only beside `thinking`); any other
        # body naming neither (nearly every one) is told by a scan of its bytes, not split into its
        # fields: two searches of 73 kB cost 180k instructions, more than the rest of a turn's read
        if chat:
            if name in READ:
                return top.small.get(name, ABSENT)
        else:
            if not marked:
                marked.append(any(mark in top.raw for mark in MARKS))
            if not marked[0]:
                return ABSENT
        if name in top.small:
            return top.small[name]
        return orjson.loads(memoryview(top.fields[name])) if top.has(name) else ABSENT

    found: Refit | None = refitting(op, target, field)
    return found


def _instead(room: Route, misconfigured: Mapping[str, object], breaker: CircuitBreaker, rng: random.Random,
             order: Callable[[Sequence[RouteTarget]], list[RouteTarget]] | None) -> list[RouteTarget]:
    """The attempt a deployment unusable on this node gives up (it takes none of a request's
    attempts), on another deployment of the route picked as the plan picks (a closed circuit
    first, in the route's strategy's order); none when every one is unusable here."""
    usable = tuple(t for t in room.targets if t.deployment.name not in misconfigured)
    return plan(replace(room, targets=usable), breaker, 1, rng, order) if usable else []


def _fit(body: Body, fit: Refit) -> Body:
    return {**{k: v for k, v in body.items() if k not in fit.drop}, **fit.changes}


def _limit_field(chat: Body) -> str:
    """The chat client's output limit field, named in x-shieldes-dropped when it is lowered."""
    return "max_completion_tokens" if "max_completion_tokens" in chat else "max_tokens"


class LoweredStream:
    """A chat stream whose request was not carried quite as sent (its output limit lowered to the
    model's, a field the upstream refuses left out): the stream as it is, with the client's fields
    named among what was not carried as sent."""

    def __init__(self, chunks: ChunkStream, lowered: Sequence[str]) -> None:
        self._chunks = chunks
        self.dropped: Sequence[str] = [*lowered, *chunks.dropped]

    @property
    def usage(self) -> TokenUsage | None:
        return self._chunks.usage

    def __aiter__(self) -> AsyncIterator[Body]:
        return self._chunks.__aiter__()

    async def aclose(self) -> None:
        await self._chunks.aclose()

    def __getattr__(self, name: str) -> Any:  # what a stream's renderer may read (`first`)
        return getattr(self._chunks, name)


class UpstreamCalls:
    """The Gateway's upstream half, on the Gateway's own state (set in Gateway.__init__; the
    cluster sets `health_views` and `cluster_size`, the node `tracing`)."""

    settings: Settings
    state: StateView
    providers: Mapping[str, Provider]
    metrics: Metrics
    prices: PriceTable
    breaker: CircuitBreaker
    health_views: Callable[[], list[Mapping[str, Health]]]
    cluster_size: Callable[[], int]
    quotas: DeploymentQuotas
    rng: random.Random
    tracing: AttemptSpans | None
    keyring: Callable[[], Keyring]
    _secrets: dict[str, str | None]
    # by (deployment, model): the Target last built for them (a frozen dataclass sets each field
    # through a C call; a request reuses it while the deployment's parts are the same objects)
    _targets: dict[tuple[str, str], Target]
    _reported: set[str]
    output_caps: dict[tuple[str, str], int]
    # by (requested, fallbacks, chained), for one config: a route's fallback groups (fallback_groups)
    _groups: dict[tuple[str, tuple[str, ...], bool], tuple[Route, ...]]
    _groups_of: object

    def fallback_groups(self, route: Route) -> tuple[Route, ...]:
        """fallback_routes of `route` on the current config, resolved once per config (admission,
        failover and the answer's headers each read them, on every request that may fall back)."""
        config = self.state.config
        if config is not self._groups_of:  # copy-on-write config: identity tells a change
            self._groups, self._groups_of = {}, config
        key = (route.requested, route.fallbacks, route.chained)
        found = self._groups.get(key)
        if found is None:
            found = tuple(fallback_routes(config, route))
            if len(self._groups) < 10_000:  # (a request's own fallbacks vary: bounded)
                self._groups[key] = found
        return found

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

    async def call(self, op: Operation, route: Route, out: Outgoing, *,
                   rec: RequestRecord | None = None) -> tuple[JsonResult, RouteTarget]:
        """A JSON call of `out` (the client's body and the gateway's top-level fields): the client's
        bytes to an upstream that takes them as sent, the whole body decoded to any other (a chat
        request's output limit then kept within the model's: output_caps.within_cap).
        Returns the result and the target (deployment and upstream model) that served it; `rec`
        (the request-log record) notes each deployment tried."""

        async def attempt(provider: Provider, target: Target, _dep: Deployment, sent: Body) -> JsonResult:
            call_raw = getattr(provider, "call_raw", None)
            if call_raw is not None:  # (an OpenAI-compatible upstream)
                fit = fitted(provider, op, target, out)
                if fit is None:
                    if provider_takes_as_sent(provider, op, target, out.ids):
                        result: JsonResult = await call_raw(op, target, out.encoded(sent, JSON_DROPS))
                        return result
                    return await provider.call(op, target, out.whole(sent))
                if provider_takes_as_sent(provider, op, target, out.ids):
                    result = await call_raw(op, target, out.encoded({**sent, **fit.changes}, JSON_DROPS | fit.drop))
                else:
                    result = await provider.call(op, target, _fit(out.whole(sent), fit))
                return replace(result, dropped=[*fit.named, *result.dropped]) if fit.named else result
            if not _translates_chat(provider, op):
                return await provider.call(op, target, out.whole(sent))
            whole = out.whole(sent)
            result, lowered = await within_cap(self.output_caps, target, whole,
                                               lambda c: provider.call(op, target, c), _limit_field(whole))
            return replace(result, dropped=[*lowered, *result.dropped]) if lowered else result

        return await self._with_failover(op, route, out.fields, attempt, rec, out.fallback_fields)

    async def open_stream(self, op: Operation, route: Route, out: Outgoing, *,
                          rec: RequestRecord | None = None) -> tuple[ChunkStream, RouteTarget]:
        """A stream of `out`, as `call`: its fields ask for the stream and its usage."""
        async def attempt(provider: Provider, target: Target, _dep: Deployment, sent: Body) -> ChunkStream:
            stream_bytes = getattr(provider, "stream_bytes", None)
            if stream_bytes is not None:  # (an OpenAI-compatible upstream)
                fit = fitted(provider, op, target, out)
                if fit is None:
                    if provider_takes_as_sent(provider, op, target, out.ids):
                        chunks: ChunkStream = await stream_bytes(op, target, out.encoded(sent), lambda: out.whole(sent))
                        return chunks
                    return await provider.stream(op, target, out.whole(sent))
                refit = fit
                if provider_takes_as_sent(provider, op, target, out.ids):
                    chunks = await stream_bytes(op, target, out.encoded({**sent, **fit.changes}, fit.drop),
                                                lambda: _fit(out.whole(sent), refit))
                else:
                    chunks = await provider.stream(op, target, _fit(out.whole(sent), fit))
                return LoweredStream(chunks, fit.named) if fit.named else chunks
            if not _translates_chat(provider, op):
                return await provider.stream(op, target, out.whole(sent))
            whole = out.whole(sent)
            chunks, lowered = await within_cap(self.output_caps, target, whole,
                                               lambda c: provider.stream(op, target, c), _limit_field(whole))
            return LoweredStream(chunks, lowered) if lowered else chunks

        return await self._with_failover(op, route, out.fields, attempt, rec, out.fallback_fields, each_a_stream)

    async def responses(self, route: Route, body: Body, ctx: ContextOf, streaming: bool,
                        raw: bytes | None = None, *, rec: RequestRecord | None = None,
                        top: TopLevel | None = None,
                        history: History | None = None) -> tuple[Answer | EventStream, RouteTarget]:
        """A Responses API call, each deployment tried in its own mode (native or translate).
        `raw`: the client's encoding of `body`, when it is that, for deployments that can send it.
        `top`: the client's body read by its top-level fields, when its input stays bytes (`body`
        is then every other field: upstream.respond). `history`: what `body`'s input starts with."""
        async def attempt(provider: Provider, target: Target, dep: Deployment, sent: Body) -> Answer | EventStream:
            same = sent is body
            return await respond(provider, target, dep, sent, ctx, streaming, raw if same else None, top,
                                 history if same or sent.get("input") is body.get("input") else None,
                                 self.output_caps)

        return await self._with_failover("responses", route, body, attempt, rec,
                                         streamed=each_a_stream if streaming else None)

    async def responses_input_tokens(self, route: Route, body: Body) -> int:
        """The upstream's count of a Responses request's input tokens (native deployments)."""
        async def attempt(provider: Provider, target: Target, _dep: Deployment, sent: Body) -> int:
            return await count_input_tokens(provider, target, sent)

        count, _served = await self._with_failover("responses", route, body, attempt)
        return count

    async def attempts(self, op: str, route: Route, attempt: Attempt[T], rec: RequestRecord | None = None,
                       streamed: Callable[[T], bool] | None = None) -> tuple[T, RouteTarget]:
        """`attempt` (which builds its own request per deployment) through the same failover;
        `streamed`: which of its results are streams (see _attempt)."""
        async def each(provider: Provider, target: Target, dep: Deployment, _sent: Body) -> T:
            return await attempt(provider, target, dep)

        return await self._with_failover(op, route, {"model": route.model}, each, rec, streamed=streamed)

    async def _with_failover(self, op: str, route: Route, body: Body,
                             attempt: Callable[[Provider, Target, Deployment, Body], Awaitable[T]],
                             rec: RequestRecord | None = None,
                             per_group: Mapping[str, Body] | None = None,
                             streamed: Callable[[T], bool] | None = None) -> tuple[T, RouteTarget]:
        """Try the route's targets in plan order (weights, retries with backoff, circuit breakers),
        then each fallback group in order. A prompt too long for one model moves straight on to the
        next group, if there is one. `per_group`: by fallback name, the fields its attempts send
        over `body` (the request's per-fallback overrides)."""
        last: tuple[UpstreamFailure, RouteTarget] | None = None
        tried = 0
        at_quota: dict[str, float] = {}  # deployments skipped at their quota: when each frees up (seconds)
        misconfigured: dict[str, ProviderMisconfigured] = {}  # skipped for the others, never retried
        group: Route | None = route
        later: list[Route] | None = None
        models: list[ModelTried] = []  # each model tried (the requested one, then the fallbacks) and why it failed
        while group is not None:
            failed: tuple[UpstreamFailure, RouteTarget] | None = None
            overrides = per_group.get(group.requested) if per_group and group is not route else None
            sent = {**body, **overrides} if overrides else body
            attempts = 1 + self.settings.upstream_retries
            # (a route of one deployment has no quota to share and no order to decide: plan takes
            # no strategy for it)
            room, order = group, None
            if len(group.targets) > 1:
                room = self._within_quota(group, at_quota)
                order = self._order_for(room) if len(room.targets) > 1 else None
            todo = plan(room, self.breaker, attempts, self.rng, order)
            for i, rt in enumerate(todo):  # (grows: a deployment unusable here takes no attempt)
                name = rt.deployment.name
                if name in misconfigured:
                    todo.extend(_instead(room, misconfigured, self.breaker, self.rng, order))
                    continue
                if not self.quotas.allows(name, rt.deployment.options, self.cluster_size()):
                    # its provider's quota is used up: not called into a 429
                    at_quota[name] = self.quotas.frees_in(name, rt.deployment.options, self.cluster_size())
                    continue
                if tried:
                    await asyncio.sleep(backoff(i, self.settings.retry_backoff, self.rng))
                tried += 1
                self.quotas.sent(name)
                try:
                    return await self._attempt(op, rt, sent, attempt, rec, tried, streamed), rt
                except ProviderMisconfigured as exc:  # a deterministic configuration error: no retry
                    misconfigured[name] = exc
                    tried -= 1  # (nothing was sent)
                    todo.extend(_instead(room, misconfigured, self.breaker, self.rng, order))
                except UpstreamFailure as failure:
                    last = failed = (failure, rt)
                    if failure.code == CONTEXT_LENGTH and route.fallbacks:
                        break
                    if not failure.retryable:
                        raise client_error(failure, rt.deployment, self.scrub) from None
                finally:
                    self.quotas.returned(name)
            if route.fallbacks:
                models.append(self._model_tried(group, failed, at_quota, misconfigured))
            if later is None:
                later = list(self.fallback_groups(route)) if route.fallbacks else []
            group = later.pop(0) if later else None
        if last is not None and not last[0].retryable:
            refused = client_error(last[0], last[1].deployment, self.scrub)
            if len(models) > 1:  # (a prompt too long for each model in turn)
                refused.message += f" (every model tried: {models_tried(models, self.scrub)})"
            raise refused
        if not tried and at_quota and (len(models) > 1 or not misconfigured):
            raise all_at_quota(route, at_quota, models, self.scrub)
        if last is None and misconfigured:
            raise every_one_misconfigured(list(misconfigured.values()))
        raise exhausted(route, last[0] if last else None, tried, self.scrub, models)

    @staticmethod
    def _model_tried(group: Route, failed: tuple[UpstreamFailure, RouteTarget] | None, at_quota: Mapping[str, float],
                     misconfigured: Mapping[str, ProviderMisconfigured]) -> ModelTried:
        """Why one model of a request that may fall back did not answer."""
        if failed is not None:
            return ModelTried(group.requested, failed[1].deployment.name, failed[0])
        names = [t.deployment.name for t in group.targets]
        broken = [misconfigured[n].message for n in names if n in misconfigured]
        if broken:
            return ModelTried(group.requested, skipped="; ".join(dict.fromkeys(broken)))
        if not names:
            return ModelTried(group.requested, skipped="no deployment serves it")
        full = [n for n in names if n in at_quota]
        return ModelTried(group.requested, skipped=at_quota_skip(full, at_quota) if full else "not called")

    def _within_quota(self, group: Route, at_quota: dict[str, float]) -> Route:
        """`group` without its deployments at their quota (added to `at_quota`), so that the plan's
        attempts go to those with room: with one attempt (no retries) a pick at its quota refused
        the request while another deployment could serve it. Every one at its quota: `group` as it
        is (each is skipped in turn)."""
        if len(group.targets) < 2:
            return group
        size = self.cluster_size()
        room = tuple(t for t in group.targets if self.quotas.allows(t.deployment.name, t.deployment.options, size))
        if not room or len(room) == len(group.targets):
            return group
        at_quota.update((t.deployment.name, self.quotas.frees_in(t.deployment.name, t.deployment.options, size))
                        for t in group.targets if t not in room)
        return replace(group, targets=room)

    def _order_for(self, route: Route) -> Callable[[Sequence[RouteTarget]], list[RouteTarget]]:
        """The route's strategy (`shieldes routing set`), over the cluster's health view."""
        config = self.state.config
        strategy = config.routing.get(route.requested, DEFAULT_STRATEGY)

        def price(model: str) -> float:
            rate = self.prices.rate(config.pricing, model)
            return float(rate[0] + rate[1])

        def order(targets: Sequence[RouteTarget]) -> list[RouteTarget]:
            health = merge_health(self.health_views())
            return order_targets(targets, strategy, health, price, self.settings.region, self.rng)

        return order

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
