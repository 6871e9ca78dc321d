"""Calling upstream deployments for the gateway: the calls it makes (JSON, streams, Responses), each
tried on the route's targets in plan order, with retries and backoff, failover across fallback
groups and deployment quotas (one try: upstream_attempt.py; what it sends: upstream_send.py). The
Gateway (service.py) takes these as its upstream half."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from shieldes.client_left import waiting
from shieldes.cluster.view import Health
from shieldes.errors import ProviderMisconfigured
from shieldes.gateway.top_level import Outgoing, TopLevel
from shieldes.gateway.upstream_attempt import UpstreamAttempts
from shieldes.gateway.upstream_errors import (
    ModelTried,
    all_at_quota,
    at_quota_skip,
    client_error,
    every_one_misconfigured,
    exhausted,
    models_tried,
)
from shieldes.gateway.upstream_send import json_attempt, stream_attempt
from shieldes.projections.state import Deployment
from shieldes.providers.base import (
    CONTEXT_LENGTH,
    Body,
    ChunkStream,
    JsonResult,
    Operation,
    Provider,
    Target,
    UpstreamFailure,
)
from shieldes.providers.upstream_connection import Payload
from shieldes.requestlog.record import RequestRecord
from shieldes.responses.history import History
from shieldes.responses.objects import ContextOf
from shieldes.responses.upstream import Answer, EventStream, count_input_tokens, respond
from shieldes.routing.quota import DeploymentQuotas
from shieldes.routing.router import CircuitBreaker, Route, RouteTarget, backoff, fallback_routes, plan
from shieldes.routing.strategies import DEFAULT_STRATEGY, merge_health, order_targets
from shieldes.settings import Settings
from shieldes.usage.pricing import PriceTable

if TYPE_CHECKING:
    from shieldes.gateway.service import StateView

T = TypeVar("T")
# One try of a call on one deployment: (provider module, target, deployment) -> result.
Attempt = Callable[[Provider, Target, Deployment], Awaitable[T]]


def each_a_stream(_result: object) -> bool:
    """`streamed` of calls whose every answer is a stream."""
    return True


def _instead(room: Route, misconfigured: Mapping[str, object], breaker: CircuitBreaker, rng: random.Random,
             order: Callable[[Sequence[RouteTarget]], list[RouteTarget]] | None) -> list[RouteTarget]:
    """The attempt a deployment unusable on this node gives up (it takes none of a request's
    attempts), on another deployment of the route picked as the plan picks (a closed circuit
    first, in the route's strategy's order); none when every one is unusable here."""
    usable = tuple(t for t in room.targets if t.deployment.name not in misconfigured)
    return plan(replace(room, targets=usable), breaker, 1, rng, order) if usable else []


class UpstreamCalls(UpstreamAttempts):
    """The Gateway's upstream half, on the Gateway's own state (set in Gateway.__init__; the
    cluster sets `health_views` and `cluster_size`, the node `tracing`)."""

    settings: Settings
    state: StateView
    prices: PriceTable
    health_views: Callable[[], list[Mapping[str, Health]]]
    cluster_size: Callable[[], int]
    quotas: DeploymentQuotas
    rng: random.Random
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

    async def call(self, op: Operation, route: Route, out: Outgoing, *,
                   rec: RequestRecord | None = None) -> tuple[JsonResult, RouteTarget]:
        """A JSON call of `out` (the client's body and the gateway's top-level fields): the client's
        bytes to an upstream that takes them as sent, the whole body decoded to any other (a chat
        request's output limit then kept within the model's: output_caps.within_cap).
        Returns the result and the target (deployment and upstream model) that served it; `rec`
        (the request-log record) notes each deployment tried."""
        attempt = partial(json_attempt, op, out, self.output_caps)
        return await self._with_failover(op, route, out.fields, attempt, rec, out.fallback_fields)

    async def open_stream(self, op: Operation, route: Route, out: Outgoing, *,
                          rec: RequestRecord | None = None) -> tuple[ChunkStream, RouteTarget]:
        """A stream of `out`, as `call`: its fields ask for the stream and its usage."""
        attempt = partial(stream_attempt, op, out, self.output_caps)
        return await self._with_failover(op, route, out.fields, attempt, rec, out.fallback_fields, each_a_stream)

    async def responses(self, route: Route, body: Body, ctx: ContextOf, streaming: bool,
                        raw: Payload | None = None, *, rec: RequestRecord | None = None,
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
                if tried:  # (no further attempt for a client that left meanwhile: client_left)
                    with waiting("its next attempt (a retry's backoff)"):
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
