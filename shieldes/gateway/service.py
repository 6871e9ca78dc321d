"""The request path of one node, HTTP-free: authenticate from memory, resolve the route, admit
against limits and budgets, call upstream deployments with retries and failover, settle usage."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, TypeVar

from shieldes.errors import (
    AuthenticationFailed,
    InvalidRequest,
    ModelNotPriced,
    NotFound,
    PermissionDenied,
    ProviderMisconfigured,
    ShieldesError,
    UpstreamError,
    UpstreamTimeout,
)
from shieldes.gateway.metrics import Metrics
from shieldes.projections.state import ConfigState, Deployment, VirtualKey
from shieldes.projections.usage import UsageState
from shieldes.providers.base import (
    Body,
    ChunkStream,
    JsonResult,
    Operation,
    Provider,
    Target,
    TokenUsage,
    UpstreamFailure,
)
from shieldes.responses.objects import ResponseContext
from shieldes.responses.upstream import Answer, EventStream, count_input_tokens, respond
from shieldes.routing.router import CircuitBreaker, Route, backoff, plan, resolve
from shieldes.secrets import Keyring, SecretError, hash_key, resolve_secret
from shieldes.settings import Settings
from shieldes.usage.meter import Meter, Reservation
from shieldes.usage.pricing import PriceTable, cost_nusd

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_COMPLETION_ESTIMATE = 256  # tokens estimated for an unbudgeted request naming no max_tokens


class StateView(Protocol):
    """What the gateway reads: the projector's current config and durable usage."""

    @property
    def config(self) -> ConfigState: ...

    @property
    def usage(self) -> UsageState: ...

    @property
    def position(self) -> int: ...


class UpstreamClientError(ShieldesError):
    """The upstream refused the request itself (a 4xx that another attempt would not fix)."""

    type = "invalid_request_error"
    code = "upstream_rejected"

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def bearer_token(authorization: str | None, x_api_key: str | None) -> str | None:
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    if x_api_key and x_api_key.strip():
        return x_api_key.strip()
    return None


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
        self.rng = rng or random.Random()
        self._secrets: dict[str, str | None] = {}
        # read when an encrypted key is first needed: the local key may be created after start
        self.keyring = keyring or (lambda: Keyring(settings.encryption_key, settings.encryption_key_old))
        self._reported: set[str] = set()  # misconfigurations already logged (once each, loudly)
        self._routes: dict[str, Route | None] = {}
        self._routes_of: ConfigState | None = None

    # --- admission -----------------------------------------------------------------------------

    def authenticate(self, authorization: str | None, x_api_key: str | None) -> VirtualKey:
        token = bearer_token(authorization, x_api_key)
        if token is None:
            raise AuthenticationFailed(
                "missing API key: send `Authorization: Bearer <virtual key>` (or `x-api-key`); "
                "create a key with `shieldes key create`"
            )
        key = self.state.config.key_by_hash(hash_key(token))
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

    def route(self, key: VirtualKey, requested: str) -> Route:
        route = self._resolve(requested)
        if route is None and not self.state.config.providers:
            raise NotFound(
                f"model {requested!r} is not served: no providers yet; add one with `shieldes provider add "
                "NAME --type openai --base-url URL --api-key KEY --models MODEL,...`"
            )
        if route is None:
            raise NotFound(
                f"model {requested!r} is not served by any provider; list the models your key may use "
                "with GET /v1/models"
            )
        if not (key.allows_model(route.model) or key.allows_model(requested)):
            raise PermissionDenied(
                f"key {key.name!r} may not use model {requested!r}; list its models with GET /v1/models "
                "or widen it with `shieldes key update --models`"
            )
        return route

    def models_for(self, key: VirtualKey) -> list[tuple[str, str]]:
        """(model, owner) for every model the key may use."""
        out: dict[str, str] = {}
        for dep in self.state.config.providers.values():
            for m in dep.models:
                if key.allows_model(m):
                    out.setdefault(m, dep.kind)
        return sorted(out.items())

    def budgeted(self, key: VirtualKey) -> bool:
        """The key or its team has a budget."""
        if key.budget is not None:
            return True
        team = self.state.config.teams.get(key.team_id) if key.team_id else None
        return team is not None and team.budget is not None

    def completion_cap(self, key: VirtualKey, max_tokens: int | None, op: Operation) -> int | None:
        """The max_tokens to send upstream for a budgeted request that names none: with it, the
        admission estimate bounds the request's completion cost instead of guessing it."""
        if max_tokens is None and op != "embeddings" and self.budgeted(key):
            return self.settings.budget_max_tokens
        return None

    def admit(self, key: VirtualKey, route: Route, prompt_bytes: int, max_tokens: int | None,
              op: Operation) -> Reservation:
        """Estimate: prompt bytes / 4 tokens at the input price, plus max_tokens (for budgeted
        requests always set, see completion_cap) at the output price. Fails closed on money: a
        model without a price cannot be held to a budget, so it is refused under one."""
        config = self.state.config
        if (not self.settings.allow_unpriced and self.budgeted(key)
                and not self.prices.priced(config.pricing, route.model)):
            raise ModelNotPriced(
                f"model {route.model!r} has no price, so the budget of key {key.name!r} (or its team) cannot "
                f"be enforced on it; set one with `shieldes pricing set {route.model} --input USD_PER_1M "
                "--output USD_PER_1M` (an operator may allow unpriced models with SHIELDES_ALLOW_UNPRICED=true)"
            )
        rate = self.prices.rate(config.pricing, route.model)
        completion = 0 if op == "embeddings" else (max_tokens or DEFAULT_COMPLETION_ESTIMATE)
        estimate = cost_nusd(rate, prompt_bytes // 4, completion)
        return self.meter.admit(config, self.state.usage, key, estimate, self.state.position)

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
        return Target(dep.name, dep.base_url, model, api_key)

    def _provider(self, dep: Deployment) -> Provider:
        provider = self.providers.get(dep.kind)
        if provider is None:
            raise self._misconfigured(dep, f"this node has no provider module for type {dep.kind!r}")
        return provider

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

    def _failed(self, dep: Deployment, failure: UpstreamFailure) -> None:
        kind = "timeout" if failure.timeout else (str(failure.status) if failure.status else "connect")
        self.metrics.upstream_error(dep.name, kind)
        if failure.retryable:
            self.breaker.failure(dep.name)

    def scrub(self, text: str) -> str:
        """Upstream error text goes to clients: never with a provider key in it (some upstreams echo
        the key they were sent)."""
        for secret in self._secrets.values():
            if secret and len(secret) >= 8:
                text = text.replace(secret, "[redacted]")
        return text

    def _client_error(self, failure: UpstreamFailure, dep: Deployment) -> ShieldesError:
        status = failure.status or 502
        if status in (401, 403):  # about the gateway's own credentials: nothing for the client to read
            return UpstreamError(
                f"upstream deployment {dep.name!r} refused the gateway's credentials ({status}); "
                "the operator should check its provider key"
            )
        if not 400 <= status < 500:
            return UpstreamError(
                f"upstream deployment {dep.name!r} refused the gateway ({status}): "
                f"{self.scrub(failure.message)}; the operator should check its provider key"
            )
        return UpstreamClientError(f"upstream rejected the request: {self.scrub(failure.message)}", status)

    def _exhausted(self, route: Route, last: UpstreamFailure | None, attempts: int) -> ShieldesError:
        detail = self.scrub(last.message) if last is not None else "no attempt possible"
        msg = (f"upstream failure for model {route.requested!r} after {attempts} attempt(s): {detail}; "
               "retry later")
        return UpstreamTimeout(msg) if last is not None and last.timeout else UpstreamError(msg)

    async def call(self, op: Operation, route: Route, body: Body,
                   raw: bytes | None = None) -> tuple[JsonResult, Deployment]:
        """`raw`: the client's encoded body, forwarded as-is to providers that can take it when it
        already names the upstream model (the caller vouches it holds no stream fields)."""
        same_model = body.get("model") == route.model

        async def attempt(provider: Provider, target: Target, _dep: Deployment, sent: Body) -> JsonResult:
            call_raw = getattr(provider, "call_raw", None) if raw is not None and same_model else None
            if call_raw is not None:
                result: JsonResult = await call_raw(op, target, raw)
                return result
            return await provider.call(op, target, sent)

        return await self._with_failover(route, body, attempt)

    async def open_stream(self, op: Operation, route: Route, body: Body) -> tuple[ChunkStream, Deployment]:
        async def attempt(provider: Provider, target: Target, _dep: Deployment, sent: Body) -> ChunkStream:
            return await provider.stream(op, target, sent)

        return await self._with_failover(route, body, attempt)

    async def responses(self, route: Route, body: Body, ctx: ResponseContext,
                        streaming: bool) -> tuple[Answer | EventStream, Deployment]:
        """A Responses API call, each deployment tried in its own mode (native or translate)."""
        async def attempt(provider: Provider, target: Target, dep: Deployment, sent: Body) -> Answer | EventStream:
            return await respond(provider, target, dep, sent, ctx, streaming)

        return await self._with_failover(route, body, attempt)

    async def responses_input_tokens(self, route: Route, body: Body) -> int:
        """The upstream's count of a Responses request's input tokens (native deployments)."""
        async def attempt(provider: Provider, target: Target, _dep: Deployment, sent: Body) -> int:
            return await count_input_tokens(provider, target, sent)

        count, _dep = await self._with_failover(route, body, attempt)
        return count

    async def _with_failover(self, route: Route, body: Body,
                             attempt: Callable[[Provider, Target, Deployment, Body], Awaitable[T]],
                             ) -> tuple[T, Deployment]:
        """Try the route's deployments in plan order (retries with backoff, circuit breakers)."""
        same_model = body.get("model") == route.model
        attempts = plan(route, self.breaker, 1 + self.settings.upstream_retries, self.rng)
        last: UpstreamFailure | None = None
        misconfigured: dict[str, ProviderMisconfigured] = {}
        tried = 0
        for dep in attempts:
            if dep.name in misconfigured:
                continue
            try:  # a deployment this node cannot call is skipped for the others, never retried
                provider = self._provider(dep)
                target = self._target(dep, route.model)
            except ProviderMisconfigured as exc:
                misconfigured[dep.name] = exc
                continue
            if tried:
                await asyncio.sleep(backoff(tried, self.settings.retry_backoff, self.rng))
            tried += 1
            started = time.perf_counter()
            try:
                sent = body if same_model else dict(body, model=route.model)
                result = await attempt(provider, target, dep, sent)
            except UpstreamFailure as failure:
                self._failed(dep, failure)
                if not failure.retryable:
                    raise self._client_error(failure, dep) from None
                last = failure
                continue
            except ShieldesError:
                raise
            except Exception as exc:  # an adapter choking on an odd request shape: the client's to fix
                log.warning("deployment %s could not take a request: %r", dep.name, exc, exc_info=True)
                raise InvalidRequest(
                    f"deployment {dep.name!r} cannot take this request ({type(exc).__name__}: {exc}); "
                    "check the request against the API reference"
                ) from None
            elapsed = time.perf_counter() - started
            self.metrics.upstream_seconds(dep.name, elapsed)
            self.breaker.success(dep.name, elapsed)
            return result, dep
        if last is None and misconfigured:
            raise next(iter(misconfigured.values()))
        raise self._exhausted(route, last, tried)

    # --- settlement --------------------------------------------------------------------------------

    def settle(self, res: Reservation, dep: Deployment, model: str, usage: TokenUsage) -> int:
        """Account real usage of a finished call; returns its cost in nUSD."""
        rate = self.prices.rate(self.state.config.pricing, model)
        nusd = cost_nusd(rate, usage.prompt_tokens, usage.completion_tokens)
        self.meter.settle(res, dep.name, model, usage.prompt_tokens, usage.completion_tokens, nusd)
        self.metrics.usage(dep.name, model, usage.prompt_tokens, usage.completion_tokens, nusd)
        return nusd
