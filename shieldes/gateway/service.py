"""The request path of one node, HTTP-free: authenticate from memory, resolve the route, admit
against limits and budgets, call upstream deployments with retries and failover, settle usage."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol, TypeVar

from shieldes.cluster.view import Health
from shieldes.errors import (
    AuthenticationFailed,
    InvalidRequest,
    ModelNotPriced,
    NotFound,
    PermissionDenied,
    ProviderMisconfigured,
    RateLimited,
    ShieldesError,
)
from shieldes.gateway.checked_histories import WEIGHT, CheckedHistories
from shieldes.gateway.metrics import Metrics
from shieldes.gateway.top_level import Outgoing, TopLevel
from shieldes.gateway.upstream_errors import client_error, every_one_misconfigured, exhausted
from shieldes.projections.state import ConfigState, Deployment, VirtualKey, is_model_pattern, longest_pattern
from shieldes.projections.usage import UsageState
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
from shieldes.requestlog.record import RequestRecord
from shieldes.responses.history import History
from shieldes.responses.objects import ResponseContext
from shieldes.responses.upstream import Answer, EventStream, count_input_tokens, respond
from shieldes.routing.quota import DeploymentQuotas
from shieldes.routing.router import CircuitBreaker, Route, RouteTarget, backoff, fallback_routes, plan, resolve
from shieldes.routing.strategies import DEFAULT_STRATEGY, merge_health, order_targets
from shieldes.secrets import Keyring, SecretError, hash_key, resolve_secret
from shieldes.settings import Settings
from shieldes.usage.meter import Meter, Reservation
from shieldes.usage.pricing import (
    NO_RATE,
    PriceTable,
    Rate,
    completion_cap,
    cost_nusd,
    media_cost_nusd,
    price_hint,
)
from shieldes.usage.units import NO_UNITS, Units

log = logging.getLogger(__name__)
T = TypeVar("T")
# One try of a call on one deployment: (provider module, target, deployment) -> result.
Attempt = Callable[[Provider, Target, Deployment], Awaitable[T]]
QUOTA_RETRY_AFTER = 5.0  # seconds: a slot of the 60-second quota window frees up
# a JSON call's body does not carry these: OpenAI refuses stream_options without a stream (a client's
# `stream: false` goes as sent)
JSON_DROPS = frozenset({"stream_options"})
DEFAULT_COMPLETION_ESTIMATE = 256  # tokens estimated for an unbudgeted request naming no max_tokens


class StateView(Protocol):
    """What the gateway reads: the projector's current config and durable usage."""

    @property
    def config(self) -> ConfigState: ...

    @property
    def usage(self) -> UsageState: ...

    @property
    def position(self) -> int: ...


class AttemptSpans(Protocol):
    """Tracing of upstream attempts (shieldes/tracing.py implements it)."""

    def attempt_span(self, op: str, dep: Deployment, model: str, attempt: int) -> AbstractContextManager[Any]: ...

    def attempt_failed(self, span: Any, kind: str, message: str) -> None: ...

    def attempt_usage(self, span: Any, usage: TokenUsage | None) -> None: ...


HASHES_KEPT = 4096  # distinct keys whose hash authenticate() keeps


def bearer_token(authorization: str | None, *api_keys: str | None) -> str | None:
    """The virtual key a client sent: `Authorization: Bearer` (OpenAI SDKs), else the first
    non-empty key header (`x-api-key` from the Anthropic SDK, `api-key` from Azure-style clients)."""
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    for key in api_keys:
        if key and key.strip():
            return key.strip()
    return None


def provider_takes_as_sent(provider: Provider, op: Operation, target: Target, ids: list[str] | None) -> bool:
    """Whether `provider` takes the client's bytes for this request (OpenAI-compatible upstreams:
    OpenAIProvider.takes_as_sent); the others get the body decoded and translated."""
    takes = getattr(provider, "takes_as_sent", None)
    return takes is not None and bool(takes(op, target, ids))


class Gateway:
    def __init__(self, settings: Settings, state: StateView, meter: Meter, providers: Mapping[str, Provider],
                 metrics: Metrics, *, rng: random.Random | None = None,
                 keyring: Callable[[], Keyring] | None = None) -> None:
        self.settings = settings
        self.state = state
        self.meter = meter
        self.providers = providers
        self.metrics = metrics
        self.prices = PriceTable()
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown)
        # every node's view of deployment health (its own and its peers'); set by the cluster
        self.health_views: Callable[[], list[Mapping[str, Health]]] = lambda: []
        self.cluster_size: Callable[[], int] = lambda: 1  # alive nodes sharing deployment quotas
        self.quotas = DeploymentQuotas()
        self.rng = rng or random.Random()
        self.tracing: AttemptSpans | None = None
        self._secrets: dict[str, str | None] = {}
        # the hash of each key sent lately: a client sends the same key with every request, and
        # a sha256 per request costs more than the lookup (revocation is read from the config)
        self._hashes: dict[str, str] = {}
        # read when an encrypted key is first needed: the local key may be created after start
        self.keyring = keyring or (lambda: Keyring(settings.encryption_key, settings.encryption_key_old))
        self._reported: set[str] = set()  # misconfigurations already logged (once each, loudly)
        self._routes: dict[str, Route | None] = {}
        self._routes_of: ConfigState | None = None
        # by key, the conversations that passed a check off their bytes (gateway/checked_histories.py):
        # Messages histories whose tool call ids fit, Responses inputs that go upstream as sent
        self.checked_histories: CheckedHistories[bool] = CheckedHistories()
        self.checked_inputs: CheckedHistories[frozenset[str]] = CheckedHistories(len)  # (their call ids weigh)
        # count_tokens bodies whose numbers orjson reads and whose ids fit (gateway/count_request.py):
        # an agent counts less often than it talks, so a quarter of the lists
        self.checked_counts: CheckedHistories[bool] = CheckedHistories(most=WEIGHT // 4)
        self.counts_native: dict[str, bool] = {}  # by key: whether its last count went to a native upstream

    # --- admission -----------------------------------------------------------------------------

    def authenticate(self, authorization: str | None, *api_keys: str | None) -> VirtualKey:
        token = bearer_token(authorization, *api_keys)
        if token is None:
            sent = (authorization or "").strip().partition(" ")[0]
            scheme = (f" (the Authorization header's scheme is {sent[:20]!r}, not Bearer)"
                      if sent and sent.lower() != "bearer" else "")
            raise AuthenticationFailed(
                f"missing API key{scheme}: send `Authorization: Bearer <virtual key>` (or `x-api-key`, "
                "`api-key` or `x-goog-api-key`); create a key with `shieldes key create`"
            )
        hashed = self._hashes.get(token)
        if hashed is None:
            if len(self._hashes) >= HASHES_KEPT:  # random tokens cannot grow it: it starts over
                self._hashes.clear()
            hashed = self._hashes[token] = hash_key(token)
        key = self.state.config.key_by_hash(hashed)
        if key is None or key.revoked:
            raise AuthenticationFailed(
                "invalid or revoked API key: check the key, or create a new one with `shieldes key create`"
            )
        if key.expires_at is not None and key.expires_at <= time.time():
            raise AuthenticationFailed(
                f"API key {key.name!r} has expired; extend it with `shieldes key update` or create a new one"
            )
        return key

    def _resolve(self, requested: str) -> Route | None:
        config = self.state.config
        if config is not self._routes_of:  # copy-on-write config: identity tells a change
            self._routes, self._routes_of = {}, config
        if requested in self._routes:
            return self._routes[requested]
        route = resolve(config, requested)
        if len(self._routes) < 10_000:
            self._routes[requested] = route
        return route

    def route(self, key: VirtualKey, requested: str, listing: str = "GET /v1/models") -> Route:
        """`listing`: the model list the client's API has, named in a refusal."""
        route = self._resolve(requested)
        if route is None and not self.state.config.providers:
            raise NotFound(
                f"model {requested!r} is not served: no providers yet; add one with `shieldes provider add "
                "NAME --type openai --base-url URL --api-key KEY --models MODEL,...`"
            )
        if route is None:
            raise NotFound(
                f"model {requested!r} is not served by any provider; list the models your key may use "
                f"with {listing}"
            )
        if not (key.allows_model(route.model) or key.allows_model(requested)):
            raise PermissionDenied(
                f"key {key.name!r} may not use model {requested!r}; list its models with {listing} "
                "or widen it with `shieldes key update --models`"
            )
        return route

    def models_for(self, key: VirtualKey) -> list[tuple[str, str]]:
        """(model, owner) for every model and alias (owner "shieldes") the key may use. Patterns
        are left out: `claude-*` is not a model a client could ask for by that name."""
        config = self.state.config
        out: dict[str, str] = {name: "shieldes" for name in config.aliases if key.allows_model(name)}
        for dep in config.providers.values():
            for m in dep.models:
                if not is_model_pattern(m) and key.allows_model(m):
                    out.setdefault(m, dep.kind)
        return sorted(out.items())

    def budgeted(self, key: VirtualKey) -> bool:
        """The key or its team has a budget."""
        if key.budget is not None:
            return True
        team = self.state.config.teams.get(key.team_id) if key.team_id else None
        return team is not None and team.budget is not None

    def admit(self, key: VirtualKey, route: Route, prompt_bytes: int, max_tokens: int | None,
              op: Operation, *, cap: bool = False, choices: int = 1) -> tuple[Reservation, int | None]:
        """Admit one request: limits, budgets, and a hold on its estimate. Estimate: prompt bytes / 4
        tokens at the input price, plus max_tokens for each of the `choices` completions asked for
        (`n`) at the output price. Fails closed on money: a model without a price cannot be held to
        a budget, so it is refused under one.

        `cap`: a budgeted request naming no max_tokens gets one (returned with the reservation, to
        send upstream), so its estimate bounds its completion cost instead of guessing it; the cap
        is decided on the same counters admission reads (see completion_cap), and shared by the
        choices, each of which may run to it."""
        config = self.state.config
        budgeted = self.budgeted(key)
        found = self.prices.lookup(config.pricing, route.model)
        if found is None and budgeted and not self.settings.allow_unpriced:
            raise self._not_priced(key, route)
        rate = found or NO_RATE
        prompt = prompt_bytes // 4
        usage = self.state.usage
        position = self.state.position
        seen = self.meter.look(config, usage, key, position)
        capped = None
        if cap and budgeted and max_tokens is None and op != "embeddings":
            capped = max_tokens = max(1, completion_cap(self.settings.budget_max_tokens * choices, prompt, rate,
                                                        seen.budget_left(key), seen.tokens_left(key)) // choices)
        completion = 0 if op == "embeddings" else (max_tokens or DEFAULT_COMPLETION_ESTIMATE) * choices
        estimate = cost_nusd(rate, TokenUsage(prompt, completion))
        res = self.meter.admit(config, usage, key, estimate, position,
                               estimate_tokens=prompt + completion, seen=seen)
        return res, capped

    def _not_priced(self, key: VirtualKey, route: Route) -> ModelNotPriced:
        served_by = longest_pattern(route.targets[0].deployment.models, route.model) if route.targets else None
        return ModelNotPriced(
            f"model {route.model!r} has no price, so the budget of key {key.name!r} (or its team) cannot "
            f"be enforced on it; set one with {price_hint(route.model, served_by)} (an operator may allow "
            "unpriced models with SHIELDES_ALLOW_UNPRICED=true)"
        )

    def _priced(self, key: VirtualKey, route: Route) -> Rate:
        """The route's model's rates; a model without a price is refused under a budget (fail closed)."""
        found = self.prices.lookup(self.state.config.pricing, route.model)
        if found is None and self.budgeted(key) and not self.settings.allow_unpriced:
            raise self._not_priced(key, route)
        return found or NO_RATE

    def admit_estimate(self, key: VirtualKey, route: Route, usage: TokenUsage, units: Units = NO_UNITS, *,
                       billed: bool = True) -> Reservation:
        """Admit a request whose estimate is known from what it asks for (the media routes: the
        images asked for, the characters to speak, the audio's length): limits, budgets, and a hold
        on that estimate at the model's rates. `billed` False: the call costs nothing (moderations),
        so it needs no price, and only its tokens count against limits."""
        config = self.state.config
        rate = self._priced(key, route) if billed else NO_RATE
        return self.meter.admit(config, self.state.usage, key, media_cost_nusd(rate, usage, units),
                                self.state.position,
                                estimate_tokens=usage.prompt_tokens + usage.completion_tokens + units.counted())

    # --- upstream calls --------------------------------------------------------------------------

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
        return Target(dep.name, dep.base_url, model, api_key, dep.options)

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
        bytes to an upstream that takes them as sent, the whole body decoded to any other.
        Returns the result and the target (deployment and upstream model) that served it; `rec`
        (the request-log record) notes each deployment tried."""

        async def attempt(provider: Provider, target: Target, _dep: Deployment, sent: Body) -> JsonResult:
            call_raw = getattr(provider, "call_raw", None)
            if call_raw is not None and provider_takes_as_sent(provider, op, target, out.ids):
                result: JsonResult = await call_raw(op, target, out.encoded(sent, JSON_DROPS))
                return result
            return await provider.call(op, target, out.whole(sent))

        return await self._with_failover(op, route, out.fields, attempt, rec)

    async def open_stream(self, op: Operation, route: Route, out: Outgoing, *,
                          rec: RequestRecord | None = None) -> tuple[ChunkStream, RouteTarget]:
        """A stream of `out`, as `call`: its fields ask for the stream and its usage."""
        async def attempt(provider: Provider, target: Target, _dep: Deployment, sent: Body) -> ChunkStream:
            stream_bytes = getattr(provider, "stream_bytes", None)
            if stream_bytes is not None and provider_takes_as_sent(provider, op, target, out.ids):
                chunks: ChunkStream = await stream_bytes(op, target, out.encoded(sent), lambda: out.whole(sent))
                return chunks
            return await provider.stream(op, target, out.whole(sent))

        return await self._with_failover(op, route, out.fields, attempt, rec)

    async def responses(self, route: Route, body: Body, ctx: ResponseContext, streaming: bool,
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
                                 history if same or sent.get("input") is body.get("input") else None)

        return await self._with_failover("responses", route, body, attempt, rec)

    async def responses_input_tokens(self, route: Route, body: Body) -> int:
        """The upstream's count of a Responses request's input tokens (native deployments)."""
        async def attempt(provider: Provider, target: Target, _dep: Deployment, sent: Body) -> int:
            return await count_input_tokens(provider, target, sent)

        count, _served = await self._with_failover("responses", route, body, attempt)
        return count

    async def attempts(self, op: str, route: Route, attempt: Attempt[T],
                       rec: RequestRecord | None = None) -> tuple[T, RouteTarget]:
        """`attempt` (which builds its own request per deployment) through the same failover."""
        async def each(provider: Provider, target: Target, dep: Deployment, _sent: Body) -> T:
            return await attempt(provider, target, dep)

        return await self._with_failover(op, route, {"model": route.model}, each, rec)

    async def _with_failover(self, op: str, route: Route, body: Body,
                             attempt: Callable[[Provider, Target, Deployment, Body], Awaitable[T]],
                             rec: RequestRecord | None = None) -> tuple[T, RouteTarget]:
        """Try the route's targets in plan order (weights, retries with backoff, circuit breakers),
        then each fallback group in order. A prompt too long for one model moves straight on to the
        next group, if there is one."""
        last: tuple[UpstreamFailure, RouteTarget] | None = None
        tried = 0
        at_quota: set[str] = set()
        misconfigured: dict[str, ProviderMisconfigured] = {}  # skipped for the others, never retried
        group: Route | None = route
        later: list[Route] | None = None
        while group is not None:
            attempts = 1 + self.settings.upstream_retries
            for i, rt in enumerate(plan(group, self.breaker, attempts, self.rng, self._order_for(group))):
                name = rt.deployment.name
                if name in misconfigured:
                    continue
                if not self.quotas.allows(name, rt.deployment.options, self.cluster_size()):
                    at_quota.add(name)  # its provider's quota is used up: not called into a 429
                    continue
                if tried:
                    await asyncio.sleep(backoff(i, self.settings.retry_backoff, self.rng))
                tried += 1
                self.quotas.sent(name)
                try:
                    return await self._attempt(op, rt, body, attempt, rec, tried), rt
                except ProviderMisconfigured as exc:  # a deterministic configuration error: no retry
                    misconfigured[name] = exc
                except UpstreamFailure as failure:
                    last = (failure, rt)
                    if failure.code == CONTEXT_LENGTH and route.fallbacks:
                        break
                    if not failure.retryable:
                        raise client_error(failure, rt.deployment, self.scrub) from None
                finally:
                    self.quotas.returned(name)
            if later is None:
                later = fallback_routes(self.state.config, route) if route.fallbacks else []
            group = later.pop(0) if later else None
        if last is not None and not last[0].retryable:
            raise client_error(last[0], last[1].deployment, self.scrub)
        if last is None and misconfigured:
            raise every_one_misconfigured(list(misconfigured.values()))
        if not tried and at_quota:
            raise RateLimited(
                f"every deployment serving model {route.requested!r} is at its quota "
                f"({', '.join(sorted(at_quota))}: the provider's own rpm/tpm, shared by the cluster); "
                f"retry after {QUOTA_RETRY_AFTER:g} s", retry_after=QUOTA_RETRY_AFTER)
        raise exhausted(route, last[0] if last else None, tried, self.scrub)

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
                       rec: RequestRecord | None = None, n: int = 1) -> T:
        """One call to one target; an UpstreamFailure is recorded (metrics, breaker, the request
        log's failover path, the attempt's span) and re-raised."""
        dep = rt.deployment
        started = time.perf_counter()
        if rec is not None:
            rec.attempt(dep.name)
        tracing = self.tracing
        with tracing.attempt_span(op, dep, rt.model, n) if tracing else nullcontext() as span:
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
            if tracing and isinstance(result, JsonResult):
                tracing.attempt_usage(span, result.usage)
        elapsed = time.perf_counter() - started
        self.metrics.upstream_seconds(dep.name, elapsed)
        self.breaker.success(dep.name, elapsed)
        return result

    # --- settlement --------------------------------------------------------------------------------

    def settle(self, res: Reservation, dep: Deployment, model: str, usage: TokenUsage) -> int:
        """Account real usage of a finished call; returns its cost in nUSD."""
        rate = self.prices.rate(self.state.config.pricing, model)
        nusd = cost_nusd(rate, usage)
        self.quotas.answered(dep.name, usage.prompt_tokens + usage.completion_tokens)
        self.meter.settle(res, dep.name, model, usage.prompt_tokens, usage.completion_tokens, nusd)
        self.metrics.usage(dep.name, model, usage, nusd)
        return nusd

    def settle_media(self, res: Reservation, dep: Deployment, model: str, usage: TokenUsage,
                     units: Units = NO_UNITS, *, billed: bool = True) -> int:
        """settle() for the media routes: `units` (images, seconds, characters) recorded in their own
        unit and priced as such, or nothing billed at all."""
        rate = self.prices.rate(self.state.config.pricing, model) if billed else NO_RATE
        nusd = media_cost_nusd(rate, usage, units)
        self.quotas.answered(dep.name, usage.prompt_tokens + usage.completion_tokens + units.counted())
        self.meter.settle(res, dep.name, model, usage.prompt_tokens, usage.completion_tokens, nusd, units)
        self.metrics.usage(dep.name, model, usage, nusd)
        if units != NO_UNITS:
            self.metrics.media_units(dep.name, model, units)
        return nusd
