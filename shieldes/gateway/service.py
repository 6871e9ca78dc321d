"""The request path of one node, HTTP-free: authenticate from memory, resolve the route, admit
against limits and budgets and settle usage (charging.py), call upstream deployments with retries
and failover (upstream_calls.py)."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Protocol
from urllib.parse import quote

from shieldes.cluster.view import Health
from shieldes.errors import (
    AuthenticationFailed,
    NotFound,
    PermissionDenied,
)
from shieldes.gateway import messages_turns
from shieldes.gateway.charging import Charging
from shieldes.gateway.checked_histories import MOST, CheckedHistories
from shieldes.gateway.messages_turns import Turn
from shieldes.gateway.metrics import Metrics
from shieldes.gateway.upstream_attempt import AttemptSpans
from shieldes.projections.state import ConfigState, VirtualKey, is_model_pattern
from shieldes.projections.usage import UsageState
from shieldes.providers.base import (
    Provider,
    Target,
)
from shieldes.providers.chat_history import Found
from shieldes.requestlog.record import RequestRecord
from shieldes.responses import input_turns
from shieldes.responses.input_turns import InputTurn
from shieldes.routing.asked_fallbacks import Asked
from shieldes.routing.quota import DeploymentQuotas
from shieldes.routing.router import CircuitBreaker, Route, RouteTarget, resolve
from shieldes.secrets import Keyring, hash_key
from shieldes.settings import Settings
from shieldes.usage.container_sessions import ContainerSessions
from shieldes.usage.meter import Meter
from shieldes.usage.pricing import (
    PriceTable,
    Rate,
)

log = logging.getLogger(__name__)



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



class Gateway(Charging):
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

    # --- authentication and routing ------------------------------------------------------------

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
