"""The commands on the shared config (providers, pricing, routing, model aliases, admin tokens) and
their pure decisions; commands.decide hands them here. Apart from the key and team commands so that
a key write, which never decides one, does not build their classes."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from shieldes.errors import CommandRejected, SubjectNotFound
from shieldes.events.catalog import (
    AdminTokenCreated,
    AdminTokenRevoked,
    Event,
    McpServerRemoved,
    ModelAliasRemoved,
    ModelAliasSet,
    PricingSet,
    PricingUnset,
    ProviderAdded,
    ProviderRemoved,
    ProviderUpdated,
    RoutingSet,
)
from shieldes.projections.commands import (
    UNSET,
    check_base_url,
    check_models,
    check_money,
    check_name,
    check_weight,
)
from shieldes.projections.state import (
    MODALITIES,
    MULTIPLIERS,
    PER_USE,
    AdminToken,
    AliasTarget,
    ConfigState,
    LongContext,
    is_model_pattern,
)
from shieldes.roles import ROLES

if TYPE_CHECKING:
    from shieldes.projections.commands import Unset

RESPONSES_MODES: Final = ("translate", "native")
NATIVE_RESPONSES_KINDS: Final = ("openai", "azure")


def check_responses_mode(kind: str, mode: str) -> str:
    """How POST /v1/responses reaches a deployment: `translate` (chat completions, any kind) or
    `native` (the upstream's own /v1/responses)."""
    if mode not in RESPONSES_MODES:
        raise CommandRejected(f"unknown responses mode {mode!r}: use translate or native")
    if mode == "native" and kind not in NATIVE_RESPONSES_KINDS:
        raise CommandRejected(
            f"type {kind!r} has no /v1/responses of its own (only {' and '.join(NATIVE_RESPONSES_KINDS)} have one): "
            "use --responses translate"
        )
    return mode


def find_admin_token(state: ConfigState, ref: str) -> AdminToken:
    token = state.find_admin_token(ref)
    if token is None:
        raise SubjectNotFound(f"no admin token named or with id {ref!r}; see `shieldes admin-token list`",
                              code="admin_token_not_found")
    return token


def _optional_money(what: str, amount: float | None) -> float | None:
    return None if amount is None else check_money(what, amount)


def _long_context_fields(long: LongContext | None) -> tuple[int | None, float | None, float | None,
                                                              float | None, float | None]:
    """A long-context tier as PricingSet's long_* fields, checked."""
    if long is None:
        return None, None, None, None, None
    if isinstance(long.above_tokens, bool) or not isinstance(long.above_tokens, int) \
            or not 0 < long.above_tokens <= 10**9:
        raise CommandRejected(f"--long-context-above must be a whole number of prompt tokens between 1 and "
                              f"1000000000 (200000 for Gemini Pro and Claude Sonnet's 1M window), got "
                              f"{long.above_tokens!r}")
    return (long.above_tokens, check_money("--long-input price", long.input_per_1m),
            check_money("--long-output price", long.output_per_1m),
            _optional_money("--long-cache-read price", long.cache_read_per_1m),
            _optional_money("--long-cache-write price", long.cache_write_per_1m))


MAX_MULTIPLIER = 100.0


def check_multipliers(given: Mapping[str, float] | tuple[tuple[str, float], ...]) -> dict[str, float] | None:
    """Price multipliers as PricingSet's `multipliers`, checked: known places, factors above 0."""
    pairs = given.items() if isinstance(given, Mapping) else given
    out: dict[str, float] = {}
    for where, factor in pairs:
        if where not in MULTIPLIERS:
            raise CommandRejected(f"--multiplier {where}=...: unknown; use one of {', '.join(MULTIPLIERS)} "
                                  "(e.g. --multiplier flex=0.5 --multiplier priority=2)")
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not 0 < factor <= MAX_MULTIPLIER:
            raise CommandRejected(f"--multiplier {where}={factor!r}: the factor must be a number above 0 and at "
                                  f"most {MAX_MULTIPLIER:g} (0.5 bills half the list price, 1.1 ten percent more)")
        out[where] = float(factor)
    return out or None


def _check_prices_by_name(given: Mapping[str, float] | tuple[tuple[str, float], ...], option: str, named: str,
                          known: tuple[str, ...], examples: str, unit: str) -> dict[str, float] | None:
    """`option NAME=USD` prices, checked: names of `known` (each a `named`), USD amounts per `unit`."""
    pairs = given.items() if isinstance(given, Mapping) else given
    out: dict[str, float] = {}
    for name, usd in pairs:
        if name not in known:
            raise CommandRejected(f"{option} {name}=...: unknown {named}; use one of {', '.join(known)} ({examples})")
        if isinstance(usd, bool) or not isinstance(usd, int | float):
            raise CommandRejected(f"{option} {name}={usd!r}: the price must be a number of USD {unit}")
        out[name] = check_money(f"{option} {name} price", float(usd))
    return out or None


def check_per_use(given: Mapping[str, float] | tuple[tuple[str, float], ...]) -> dict[str, float] | None:
    """Per-use prices of hosted tools as PricingSet's `per_use`, checked: known tools, USD amounts."""
    return _check_prices_by_name(given, "--per-use", "tool", PER_USE, "e.g. --per-use file_search=0.0025 --per-use "
                                 "container=0.03; web searches: --per-web-search", "per use")


def check_modalities(given: Mapping[str, float] | tuple[tuple[str, float], ...]) -> dict[str, float] | None:
    """Token prices by modality as PricingSet's `modalities`, checked: known kinds, USD per 1M."""
    return _check_prices_by_name(given, "--modality", "kind", MODALITIES, "e.g. --modality audio_input=40 --modality "
                                 "audio_output=80, USD per 1M tokens", "per 1M tokens")


# --- commands ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AddProvider:
    name: str
    kind: str
    base_url: str | None  # None: the kind's public endpoint (bedrock, gemini, vertex)
    secret_ref: str | None
    models: tuple[str, ...]
    weight: float = 1.0
    responses: str = "translate"
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UpdateProvider:
    name: str
    base_url: str | None = None
    secret_ref: str | Unset | None = UNSET
    models: tuple[str, ...] | None = None
    weight: float | None = None
    responses: str | None = None
    options: Mapping[str, str] | None = None  # merged over the current options
    replace_options: bool = False  # the options given are the whole set (a shieldes import's file lists them all)


@dataclass(frozen=True)
class RemoveProvider:
    name: str


@dataclass(frozen=True)
class SetPricing:
    model: str
    input_per_1m: float
    output_per_1m: float
    cache_read_per_1m: float | None = None
    cache_write_per_1m: float | None = None
    per_image: float | None = None
    long_context: LongContext | None = None
    per_web_search: float | None = None
    multipliers: tuple[tuple[str, float], ...] = ()  # (where, factor): state.MULTIPLIERS
    per_use: tuple[tuple[str, float], ...] = ()  # (tool, USD): state.PER_USE
    modalities: tuple[tuple[str, float], ...] = ()  # (kind, USD per 1M): state.MODALITIES


@dataclass(frozen=True)
class UnsetPricing:
    model: str  # a name or a pattern with a `pricing set` price


@dataclass(frozen=True)
class SetRouting:
    model: str
    strategy: str | None  # None: back to the default


@dataclass(frozen=True)
class CreateAdminToken:
    id: str
    name: str
    role: str
    token_hash: str
    prefix: str
    expires_at: float | None = None  # Unix time, checked to be in the future by the caller (timeparse.expiry)


@dataclass(frozen=True)
class RevokeAdminToken:
    token: str  # name or id


@dataclass(frozen=True)
class SetModelAlias:
    name: str
    targets: tuple[AliasTarget, ...]
    fallbacks: tuple[str, ...] = ()


@dataclass(frozen=True)
class RemoveModelAlias:
    name: str


@dataclass(frozen=True)
class AddMcpServer:
    name: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)  # header name -> env:VAR or enc:... (made by the caller)


@dataclass(frozen=True)
class RemoveMcpServer:
    name: str


@dataclass(frozen=True)
class UpdateMcpServer:
    """An MCP server's URL and/or headers changed in place (None: kept): /mcp/{name} keeps answering."""

    name: str
    url: str | None = None
    headers: Mapping[str, str] | None = None  # the whole new set (env:VAR or enc:..., made by the caller)


@dataclass(frozen=True)
class SetMcpHeaders:
    """An MCP server's headers replaced as a whole (as `secrets rotate` re-encrypts them)."""

    name: str
    headers: Mapping[str, str]


SharedCommand = (
    AddProvider | UpdateProvider | RemoveProvider | SetPricing | UnsetPricing | SetRouting | CreateAdminToken
    | RevokeAdminToken | SetModelAlias | RemoveModelAlias | AddMcpServer | RemoveMcpServer | SetMcpHeaders
    | UpdateMcpServer
)


def parse_alias_target(state: ConfigState, spec: str) -> AliasTarget:
    """`PROVIDER/MODEL[:WEIGHT]`. Model names may hold ':' (Bedrock's `...-v1:0`): a trailing
    `:N` is a weight unless PROVIDER serves the whole MODEL:N."""
    provider, sep, rest = spec.partition("/")
    if not sep or not provider or not rest:
        raise CommandRejected(f"invalid --target {spec!r}: use PROVIDER/MODEL[:WEIGHT], e.g. azure/prod-gpt4o:3")
    dep = state.providers.get(provider)
    model, weight = rest, 1.0
    head, colon, tail = rest.rpartition(":")
    if colon and head and not (dep is not None and rest in dep.models):
        with contextlib.suppress(ValueError):
            model, weight = head, float(tail)
    return AliasTarget(provider, model, weight)


def _alias_events(state: ConfigState, command: SetModelAlias) -> list[Event]:
    check_name("alias", command.name)
    if not command.targets:
        raise CommandRejected("an alias needs at least one --target PROVIDER/MODEL[:WEIGHT]")
    seen: set[tuple[str, str]] = set()
    for t in command.targets:
        dep = state.providers.get(t.provider)
        if dep is None:
            raise CommandRejected(f"--target {t.provider}/{t.model}: no provider named {t.provider!r}; "
                                  "see `shieldes provider list`")
        if is_model_pattern(t.model):
            raise CommandRejected(f"--target {t.provider}/{t.model}: a target names one model exactly, not a pattern "
                                  "(a pattern-served name such as claude-opus-4-1 is fine)")
        if not dep.serves(t.model):
            raise CommandRejected(f"--target {t.provider}/{t.model}: provider {t.provider!r} does not serve "
                                  f"{t.model!r} (it serves {', '.join(dep.models)}); add it with "
                                  "`shieldes provider update --models`")
        if (t.provider, t.model) in seen:
            raise CommandRejected(f"--target {t.provider}/{t.model} is given twice; give each target once")
        seen.add((t.provider, t.model))
        check_weight(t.weight)
    for fb in command.fallbacks:
        if fb == command.name:
            raise CommandRejected(f"alias {command.name!r} cannot fall back to itself")
        if is_model_pattern(fb) or not (fb in state.aliases or any(d.serves(fb) for d in state.providers.values())):
            raise CommandRejected(f"--fallback {fb!r} is neither an alias nor a model any provider serves")
    if len(set(command.fallbacks)) != len(command.fallbacks):
        raise CommandRejected("a --fallback is given twice; list each once, in the order to try them")
    targets = tuple({"provider": t.provider, "model": t.model, "weight": float(t.weight)} for t in command.targets)
    return [ModelAliasSet(command.name, targets, tuple(command.fallbacks))]


def _users_of(state: ConfigState, name: str) -> list[str]:
    return sorted(a.name for a in state.aliases.values() if name in a.fallbacks)


# --- decide ------------------------------------------------------------------------------------


def decide_shared(state: ConfigState, command: SharedCommand) -> list[Event]:
    match command:
        case AddProvider():
            # the provider kinds' table is read by provider commands only (not by a key write)
            from shieldes.providers.kinds import base_url_for, check_kind, check_options

            check_name("provider", command.name)
            if command.name in state.providers:
                raise CommandRejected(
                    f"provider {command.name!r} already exists; remove it first or pick another name"
                )
            spec = check_kind(command.kind)
            options = check_options(spec, command.options)
            return [
                ProviderAdded(
                    command.name, command.kind, check_base_url(base_url_for(spec, command.base_url, options)),
                    command.secret_ref, check_models(command.models, patterns=True), check_weight(command.weight),
                    check_responses_mode(command.kind, command.responses), options,
                )
            ]
        case UpdateProvider():
            from shieldes.providers.kinds import check_kind, check_options

            old = state.providers.get(command.name)
            if old is None:
                raise SubjectNotFound(f"no provider named {command.name!r}; see `shieldes provider list`",
                                      code="provider_not_found")
            options = {} if command.replace_options and command.options is not None else dict(old.options)
            if command.options is not None:
                options.update(command.options)
            return [
                ProviderUpdated(
                    old.name,
                    check_base_url(command.base_url) if command.base_url is not None else old.base_url,
                    old.secret_ref if command.secret_ref is UNSET else command.secret_ref,
                    check_models(command.models, patterns=True) if command.models is not None else old.models,
                    check_weight(command.weight) if command.weight is not None else old.weight,
                    check_responses_mode(old.kind, command.responses) if command.responses is not None else None,
                    check_options(check_kind(old.kind), options),
                )
            ]
        case RemoveProvider():
            if command.name not in state.providers:
                raise SubjectNotFound(f"no provider named {command.name!r}; see `shieldes provider list`",
                                      code="provider_not_found")
            users = sorted(a.name for a in state.aliases.values() if any(t.provider == command.name
                                                                         for t in a.targets))
            if users:
                raise CommandRejected(f"provider {command.name!r} is a target of alias {', '.join(users)}; "
                                      "change or remove the alias first (`shieldes model alias|remove`)")
            left = [d for d in state.providers.values() if d.name != command.name]
            stranded = sorted({f"{a.name} (--fallback {fb})" for a in state.aliases.values() for fb in a.fallbacks
                               if fb not in state.aliases and not any(d.serves(fb) for d in left)})
            if stranded:  # as `model alias` refuses such a fallback, removing its last provider is refused
                raise CommandRejected(f"provider {command.name!r} is the last one serving a fallback of alias "
                                      f"{', '.join(stranded)}; change those aliases first (`shieldes model alias`)")
            return [ProviderRemoved(command.name)]
        case SetModelAlias():
            return _alias_events(state, command)
        case RemoveModelAlias():
            if command.name not in state.aliases:
                raise SubjectNotFound(f"no alias named {command.name!r}; see `shieldes model list`",
                                      code="alias_not_found")
            # a fallback naming a model that providers serve stays good without the alias: it routes as
            # that plain model again (as it did before the alias was set)
            served = any(d.serves(command.name) for d in state.providers.values())
            users = [] if served else _users_of(state, command.name)
            if users:
                raise CommandRejected(f"alias {command.name!r} is a fallback of {', '.join(users)}; "
                                      "change those aliases first")
            return [ModelAliasRemoved(command.name)]
        case SetRouting():
            from shieldes.routing.strategies import STRATEGIES  # the routing code: not for key writes

            check_models((command.model,))
            if command.strategy is not None and command.strategy not in STRATEGIES:
                raise CommandRejected(
                    f"unknown routing strategy {command.strategy!r}: use one of {', '.join(STRATEGIES)}")
            served = command.model in state.aliases or any(d.serves(command.model) for d in state.providers.values())
            if not served and command.strategy is not None:
                raise CommandRejected(
                    f"no provider serves {command.model!r} and no alias has that name; add it first "
                    "(shieldes provider add / shieldes model alias)")
            return [RoutingSet(command.model, command.strategy)]
        case SetPricing():
            check_models((command.model,), patterns=True)  # a pattern prices the names nothing else prices
            return [
                PricingSet(
                    command.model,
                    check_money("--input price", command.input_per_1m),
                    check_money("--output price", command.output_per_1m),
                    _optional_money("--cache-read price", command.cache_read_per_1m),
                    _optional_money("--cache-write price", command.cache_write_per_1m),
                    _optional_money("--per-image price", command.per_image),
                    *_long_context_fields(command.long_context),
                    _optional_money("--per-web-search price", command.per_web_search),
                    check_multipliers(command.multipliers),
                    check_per_use(command.per_use),
                    check_modalities(command.modalities),
                )
            ]
        case UnsetPricing():
            if command.model not in state.pricing:
                raise SubjectNotFound(
                    f"no price was set for {command.model!r} (shipped catalog prices cannot be removed, only "
                    "overridden); list the prices set with `shieldes pricing list --source override`",
                    code="price_not_found")
            return [PricingUnset(command.model)]
        case CreateAdminToken():
            check_name("admin token", command.name)
            if command.role not in ROLES:
                raise CommandRejected(f"unknown role {command.role!r}: use one of {', '.join(ROLES)}")
            if command.name in state.admin_token_ids_by_name or command.id in state.admin_tokens:
                raise CommandRejected(f"an admin token named {command.name!r} already exists; pick another name")
            if command.token_hash in state.admin_token_ids_by_hash:
                raise CommandRejected("token secret collision; run the command again")
            return [AdminTokenCreated(command.id, command.name, command.role, command.token_hash, command.prefix,
                                      command.expires_at)]
        case RevokeAdminToken():
            token = find_admin_token(state, command.token)
            if token.revoked:
                raise CommandRejected(f"admin token {token.name!r} is already revoked")
            return [AdminTokenRevoked(token.id)]
        case AddMcpServer():
            from shieldes.mcp.servers import mcp_server_added

            return [mcp_server_added(state, command.name, command.url, command.headers)]
        case SetMcpHeaders():
            from shieldes.mcp.servers import mcp_server_updated

            return [mcp_server_updated(state, command.name, command.headers)]
        case UpdateMcpServer():
            from shieldes.mcp.servers import mcp_server_changed

            return [mcp_server_changed(state, command.name, command.url, command.headers)]
        case RemoveMcpServer():
            if command.name not in state.mcp_servers:
                raise SubjectNotFound(f"no MCP server named {command.name!r}; see `shieldes mcp list`",
                                      code="mcp_server_not_found")
            return [McpServerRemoved(command.name)]
    raise CommandRejected(f"unknown command {type(command).__name__}")
