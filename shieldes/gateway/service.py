"""The request path of one node, HTTP-free: authenticate from memory, resolve the route, admit
against limits and budgets, call upstream deployments with retries and failover (upstream_calls.py),
settle usage."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol
from urllib.parse import quote

import orjson

from shieldes.cluster.view import Health
from shieldes.errors import (
    AuthenticationFailed,
    ModelNotPriced,
    NotFound,
    PermissionDenied,
)
from shieldes.gateway import messages_turns
from shieldes.gateway.checked_histories import MOST, CheckedHistories
from shieldes.gateway.messages_turns import Turn
from shieldes.gateway.metrics import Metrics
from shieldes.gateway.upstream_calls import AttemptSpans, UpstreamCalls
from shieldes.projections.state import ConfigState, Deployment, VirtualKey, is_model_pattern, longest_pattern
from shieldes.projections.usage import UsageState
from shieldes.providers.base import (
    Operation,
    Provider,
    Target,
    TokenUsage,
)
from shieldes.providers.chat_history import Found
from shieldes.providers.hosted_tools import USES_HELD, bounded_searches, held_uses, may_offer
from shieldes.requestlog.record import RequestRecord
from shieldes.responses import input_turns
from shieldes.responses.input_turns import InputTurn
from shieldes.routing.asked_fallbacks import Asked
from shieldes.routing.quota import DeploymentQuotas
from shieldes.routing.router import CircuitBreaker, Route, RouteTarget, resolve
from shieldes.secrets import Keyring, hash_key
from shieldes.settings import Settings
from shieldes.usage.container_sessions import ContainerSessions
from shieldes.usage.meter import Meter, Reservation
from shieldes.usage.pricing import (
    NO_RATE,
    PriceTable,
    Rate,
    completion_cap,
    cost_nusd,
    dearest,
    held,
    media_cost_nusd,
    price_hint,
    regional,
    served_at,
    tokens_nusd,
    tool_uses,
)
from shieldes.usage.units import NO_UNITS, Units

log = logging.getLogger(__name__)


def _held_uses(tools: object, model: str, max_tool_calls: object) -> tuple[int, int, int]:
    """held_uses of a body's `tools`, decoded or as its JSON bytes (decoded only when they may name
    a hosted tool)."""
    if tools is None:
        return 0, 0, 0
    if not isinstance(tools, list):
        raw = bytes(memoryview(tools))  # type: ignore[arg-type]  # msgspec.Raw, bytes
        if not may_offer(raw):
            return 0, 0, 0
        try:
            tools = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return 0, 0, 0  # the body's own checks refuse it
    return held_uses(tools, model, max_tool_calls)
DEFAULT_COMPLETION_ESTIMATE = 256  # tokens estimated for an unbudgeted request naming no max_tokens


class StateView(Protocol):
    """What the gateway reads: the projector's current config and durable usage."""

    @property
    def config(self) -> ConfigState: ...

    @property
    def usage(self) -> UsageState: ...

    @property
    def position(self) -> int: ...



FALLBACK_HEADER = "x-shieldes-fallback"  # the fallback that answered, as the request or the alias named it
UPSTREAM_MODEL_HEADER = "x-shieldes-upstream-model"  # the model that answered (the request log's upstream_model)


def header_safe(name: str) -> str:
    """A model name as a header value: as it is when printable ASCII, else percent-encoded."""
    return name if name.isascii() and name.isprintable() else quote(name, safe="/:.-_@+=")


HASHES_KEPT = 4096  # distinct keys whose hash authenticate() keeps


# Headers whose only meaning is "the gateway's virtual key" (LiteLLM's, Bifrost's): an app that
# moved from either sends them, often beside an `Authorization` header meant for someone else, so
# they come first. Never forwarded upstream (only `anthropic-*` headers travel).
GATEWAY_KEY_HEADERS = ("x-litellm-api-key", "x-bf-vk")


def sent_keys(headers: Mapping[str, str], *others: str | None) -> tuple[str | None, ...]:
    """The (authorization, *api_keys) arguments of Gateway.authenticate from a request's headers:
    a gateway key header (`x-litellm-api-key`, whose value may carry a `Bearer ` prefix, or
    `x-bf-vk`) before `Authorization`, then `x-api-key`, `api-key` and `others` (x-goog-api-key,
    the `key` query parameter)."""
    for name in GATEWAY_KEY_HEADERS:
        value = headers.get(name, "").strip()
        if value:
            scheme, _, token = value.partition(" ")
            return None, token.strip() if scheme.lower() == "bearer" and token.strip() else value
    return (headers.get("Authorization"), headers.get("x-api-key"), headers.get("api-key"), *others)


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



class Gateway(UpstreamCalls):
    def __init__(self, settings: Settings, state: StateView, meter: Meter, providers: Mapping[str, Provider],
                 metrics: Metrics, *, rng: random.Random | None = None,
                 keyring: Callable[[], Keyring] | None = None) -> None:
        self.settings = settings
        self.state = state
        self.meter = meter
        self.providers = providers
        self.metrics = metrics
        self.prices = PriceTable()
        self.container_sessions = ContainerSessions()  # code interpreter containers billed this session
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_cooldown)
        # every node's view of deployment health (its own and its peers'); set by the cluster
        self.health_views: Callable[[], list[Mapping[str, Health]]] = lambda: []
        self.cluster_size: Callable[[], int] = lambda: 1  # alive nodes sharing deployment quotas
        self.quotas = DeploymentQuotas()
        self.rng = rng or random.Random()
        self.tracing: AttemptSpans | None = None
        self._secrets: dict[str, str | None] = {}
        self._targets: dict[tuple[str, str], Target] = {}
        # the hash of each key sent lately: a client sends the same key with every request, and
        # a sha256 per request costs more than the lookup (revocation is read from the config)
        self._hashes: dict[str, str] = {}
        # read when an encrypted key is first needed: the local key may be created after start
        self.keyring = keyring or (lambda: Keyring(settings.encryption_key, settings.encryption_key_old))
        self._reported: set[str] = set()  # misconfigurations already logged (once each, loudly)
        # by requested name, for one config (prices are in it): what resolves, and what a budgeted
        # key's route keeps of its configured fallbacks (_priced_fallbacks)
        self._routes: dict[str, Route | None] = {}
        self._priced_routes: dict[str, Route] = {}
        self._routes_of: ConfigState | None = None
        self._groups, self._groups_of = {}, None
        # by route, service tier and whether a price is required, for one config: the rates a
        # request that may fall back is held at (_held_rate)
        self._held: dict[tuple[str, str, tuple[str, ...], bool, str | None, bool],
                         tuple[tuple[Rate, ...], Rate | None]] = {}
        self._held_of: ConfigState | None = None
        # by key, the conversations that passed a check off their bytes (gateway/checked_histories.py):
        # Messages bodies read (gateway/messages_turns.py), up to their messages' end: the fields
        # ahead of the list weigh
        self.checked_histories: CheckedHistories[Turn] = CheckedHistories(messages_turns.weigh,
                                                                          end=lambda turn: turn.end)
        # (their call ids weigh; a quarter of the bytes: an HTTP body is read by checked_turns, this
        # is the WebSocket's and the fallback's)
        self.checked_inputs: CheckedHistories[frozenset[str]] = CheckedHistories(len, most=MOST // 4)
        # chat bodies read (providers/chat_history.read_turn), up to their messages' end: their tool
        # call ids weigh
        self.checked_chats: CheckedHistories[Found] = CheckedHistories(lambda found: len(found.ids),
                                                                       end=lambda found: found.end)
        # Responses bodies read (responses/input_turns.py), up to their input's end: their call ids weigh
        self.checked_turns: CheckedHistories[InputTurn] = CheckedHistories(input_turns.weigh,
                                                                           end=lambda found: found.end)
        # count_tokens bodies whose numbers orjson reads and whose ids fit (gateway/count_request.py):
        # an agent counts less often than it talks, so a quarter of the lists
        self.checked_counts: CheckedHistories[bool] = CheckedHistories(most=MOST // 4)
        self.counts_native: dict[str, bool] = {}  # by key: whether its last count went to a native upstream
        # by (deployment, model): the most output tokens a translated request (Messages, Responses,
        # chat) may ask of it, learnt from the upstream's refusal of more (output_caps.within_cap)
        self.output_caps: dict[tuple[str, str], int] = {}

    # --- admission -----------------------------------------------------------------------------

    def authenticate(self, authorization: str | None, *api_keys: str | None) -> VirtualKey:
        token = bearer_token(authorization, *api_keys)
        if token is None:
            sent = (authorization or "").strip().partition(" ")[0]
            scheme = (f" (the Authorization header's scheme is {sent[:20]!r}, not Bearer)"
                      if sent and sent.lower() != "bearer" else "")
            raise AuthenticationFailed(
                f"missing API key{scheme}: send `Authorization: Bearer <virtual key>` (or `x-api-key`, "
                "`api-key`, `x-goog-api-key`, `x-litellm-api-key` or `x-bf-vk`); create a key with "
                "`shieldes key create`"
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
            self._routes, self._priced_routes, self._routes_of = {}, {}, config
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
        if route.fallbacks and not self.settings.allow_unpriced and self.budgeted(key):
            return self._priced_fallbacks(route)
        return route

    def _priced_fallbacks(self, route: Route) -> Route:
        """`route` without the configured fallbacks a budget cannot be held to (a model without a
        price), for a key or team with a budget: the requested model still serves it and such a
        fallback is never tried, where refusing the request would make a fallback that may never be
        needed cost it the model it asked for. Its fallbacks' own are then listed in order.
        Decided once per requested name and config (a price is config too), not per request."""
        config = self.state.config  # (the one route() just resolved `route` on, which reset the memo)
        found = self._priced_routes.get(route.requested)
        if found is not None:
            return found
        groups = self.fallback_groups(route)
        priced = tuple(g.requested for g in groups
                       if all(self.prices.lookup(config.pricing, t.model) is not None for t in g.targets))
        kept = route if len(priced) == len(groups) else replace(route, fallbacks=priced, chained=False)
        if len(self._priced_routes) < 10_000:
            self._priced_routes[route.requested] = kept
        return kept

    def with_fallbacks(self, key: VirtualKey, route: Route, asked: Asked, listing: str = "GET /v1/models") -> Route:
        """`route` with the request's own fallbacks tried first (then the configured ones, unless
        it sent `disable_fallbacks`). Each must be served and usable by the key, as the requested
        model must: refused before any upstream call, naming the entry, rather than skipped, so a
        client never believes in a failover it does not have."""
        if not asked:
            return route
        for i, name in enumerate(asked.names):
            found = self._resolve(name)
            if found is None:
                raise NotFound(f"fallbacks[{i}]: model {name!r} is not served by any provider; name a model or "
                               f"alias from {listing}, or remove it from `fallbacks`", param=f"fallbacks[{i}]")
            if not (key.allows_model(found.model) or key.allows_model(name)):
                raise PermissionDenied(f"fallbacks[{i}]: key {key.name!r} may not use model {name!r}; remove it "
                                       "from `fallbacks`, or widen the key with `shieldes key update --models`",
                                       param=f"fallbacks[{i}]")
        configured = () if asked.disable else route.fallbacks
        return replace(route, fallbacks=(*asked.names, *configured), chained=route.chained and not asked.disable)

    def fallback_served(self, route: Route, served: RouteTarget) -> str | None:
        """The fallback (as the request or the alias named it) whose group answered, or None when
        the requested model's own targets did."""
        if not route.fallbacks or served in route.targets:
            return None
        for group in self.fallback_groups(route):
            if served in group.targets:
                return group.requested
        return None

    def fallback_headers(self, route: Route, served: RouteTarget, rec: RequestRecord | None) -> dict[str, str]:
        """When a fallback answered: its name and the model that served, for the answer's headers
        (x-shieldes-fallback, x-shieldes-upstream-model) and the request-log record (`fallback`)."""
        name = self.fallback_served(route, served)
        if name is None:
            return {}
        if rec is not None:
            rec.fallback = name
        return {FALLBACK_HEADER: header_safe(name), UPSTREAM_MODEL_HEADER: header_safe(served.model)}

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
              op: Operation, *, choices: int = 1, service_tier: object = None,
              tools: object = None, max_tool_calls: object = None) -> tuple[Reservation, int | None]:
        """Admit one request: limits, budgets, and a hold on its estimate. Estimate: prompt bytes / 4
        tokens at the input price, plus max_tokens for each of the `choices` completions asked for
        (`n`) at the output price. Fails closed on money: a model without a price cannot be held to
        a budget, so it is refused under one.

        A budgeted request naming no max_tokens gets one (returned with the reservation; the caller
        must send it upstream), so its estimate bounds its completion cost instead of guessing it:
        decided here, for every route that admits a completion, so that none can spend past the
        budget by leaving it out. The cap is decided on the same counters admission reads (see
        completion_cap), and shared by the choices, each of which may run to it.

        `service_tier`: the body's; `priority` is held at the model's priority multiplier (flex at
        the list price: a flex request refused for capacity and sent on to another deployment is
        served at its default tier). `tools`: the body's (decoded, or its JSON bytes): a budget also
        holds the hosted tools it offers (held_uses, bounded by a Responses request's
        `max_tool_calls`), and the completion cap leaves room for them."""
        config = self.state.config
        budgeted = self.budgeted(key)
        prompt = prompt_bytes // 4
        rate = self._held_rate(key, route, budgeted, "priority" if service_tier == "priority" else None, prompt)
        usage = self.state.usage
        position = self.state.position
        seen = self.meter.look(config, usage, key, position)
        capped = None
        web, files, containers = _held_uses(tools, route.model, max_tool_calls) if budgeted else (0, 0, 0)
        if budgeted and max_tokens is None and op != "embeddings":
            left = seen.budget_left(key)
            if left is not None and (web or files or containers):
                left -= cost_nusd(rate, TokenUsage(0, 0, web_search_requests=web, file_search_calls=files,
                                                   containers=containers))
            capped = completion_cap(self.settings.budget_max_tokens * choices, prompt, rate, left,
                                    seen.tokens_left(key)) // choices
            if capped < 1:  # (not max(): a builtin that parses its keywords, some 700 instructions)
                capped = 1
            max_tokens = capped
        completion = 0 if op == "embeddings" else (max_tokens or DEFAULT_COMPLETION_ESTIMATE) * choices
        estimate = cost_nusd(rate, TokenUsage(prompt, completion, web_search_requests=web, file_search_calls=files,
                                              containers=containers)) if web or files or containers else \
            tokens_nusd(rate, prompt, completion)
        res = self.meter.admit(config, usage, key, estimate, position,
                               estimate_tokens=prompt + completion, seen=seen)
        return res, capped

    def tool_calls_bound(self, key: VirtualKey, route: Route, tools: object, max_tool_calls: object) -> int | None:
        """The `max_tool_calls` a budgeted Responses request that offers searches billed per use
        (web_search, file_search) and names none is sent with: the uses admission held for each
        (USES_HELD), as a request naming no max_tokens gets the tokens held, so that no answer
        searches past its hold. None otherwise (a code interpreter's container is held whole)."""
        if tools is None or max_tool_calls is not None or not self.budgeted(key):
            return None
        web, files, _ = _held_uses(tools, route.model, None)
        return USES_HELD if web or files else None

    def searches_bound(self, key: VirtualKey, tools: object) -> list[Any] | None:
        """A budgeted Messages request's `tools` (its JSON bytes) with each web search naming no
        `max_uses` given the uses admission holds for it (bounded_searches); None: nothing to bound."""
        if tools is None or not self.budgeted(key):
            return None
        raw = bytes(memoryview(tools))  # type: ignore[arg-type]  # msgspec.Raw
        if b"web_search" not in raw:
            return None
        try:
            return bounded_searches(orjson.loads(raw))
        except orjson.JSONDecodeError:
            return None  # the body's own checks refuse it

    def _held_rate(self, key: VirtualKey, route: Route, budgeted: bool, tier: str | None, prompt: int) -> Rate:
        """The rates a request is held at: the dearest place it may be served (a priority tier asked
        for, a regional endpoint, the dearest modality price: an audio answer's audio output), and,
        when it may fall back, each price the dearest of every model a fallback may send it to has
        (at the long-context tier its `prompt` tokens reach: pricing.dearest), since the bill is the
        model that answers, whatever its completion. Under a budget a model without a price is
        refused, a fallback's too (fail closed)."""
        config = self.state.config
        if not route.fallbacks:  # (nearly every request)
            found = self.prices.lookup(config.pricing, route.model)
            if found is None and budgeted and not self.settings.allow_unpriced:
                raise self._not_priced(key, route)
            rate = found or NO_RATE
            # (served_at and held change nothing for a rate without the multiplier or prices asked for)
            if (tier is not None and (rate.flex or rate.priority)) or rate.regional:
                rate = served_at(rate, tier,
                                 any(regional(t.deployment.kind, t.deployment.options) for t in route.targets))
            return held(rate) if rate.modal else rate
        strict = budgeted and not self.settings.allow_unpriced
        if config is not self._held_of:  # copy-on-write config: identity tells a change
            self._held, self._held_of = {}, config
        memo = (route.requested, route.model, route.fallbacks, route.chained, tier, strict)
        known = self._held.get(memo)
        if known is None:
            rates = []
            for group in (route, *self.fallback_groups(route)):
                models = (route.model,) if group is route else tuple(dict.fromkeys(t.model for t in group.targets))
                for model in models:
                    found = self.prices.lookup(config.pricing, model)
                    if found is None and strict:
                        raise self._not_priced(key, group if group is route else replace(group, model=model),
                                               None if group is route else group.requested)
                    in_region = any(regional(t.deployment.kind, t.deployment.options) for t in group.targets)
                    rates.append(held(served_at(found or NO_RATE, tier, in_region)))
            # (without a long-context tier the prompt changes nothing: decided once)
            known = (tuple(rates), dearest(rates, 0) if all(r.long is None for r in rates) else None)
            if len(self._held) < 10_000:
                self._held[memo] = known
        rates_of, fixed = known
        return fixed if fixed is not None else dearest(rates_of, prompt)

    def _not_priced(self, key: VirtualKey, route: Route, fallback: str | None = None) -> ModelNotPriced:
        served_by = longest_pattern(route.targets[0].deployment.models, route.model) if route.targets else None
        via = f" (a fallback, via {fallback!r})" if fallback is not None else ""
        return ModelNotPriced(
            f"model {route.model!r}{via} has no price, so the budget of key {key.name!r} (or its team) cannot "
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
        return self.meter.admit(config, self.state.usage, key, media_cost_nusd(held(rate), usage, units),
                                self.state.position,
                                estimate_tokens=usage.prompt_tokens + usage.completion_tokens + units.counted())

    # --- settlement --------------------------------------------------------------------------------

    def settle(self, res: Reservation, dep: Deployment, model: str, usage: TokenUsage) -> int:
        """Account real usage of a finished call at the rates of the deployment that served it (a
        regional endpoint's multiplier); returns its cost in nUSD."""
        rate = self.prices.rate(self.state.config.pricing, model)
        if rate.regional and regional(dep.kind, dep.options):
            rate = served_at(rate, None, True)
        nusd = cost_nusd(rate, usage)
        self.quotas.answered(dep.name, usage.prompt_tokens + usage.completion_tokens)
        self.meter.settle(res, dep.name, model, usage.prompt_tokens, usage.completion_tokens, nusd,
                          tool_uses(rate, usage))
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
