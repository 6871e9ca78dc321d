"""Commands and pure decide functions: decide(state, command) -> events, or CommandRejected.

Anything random or secret (ids, key secrets and their hashes) is made by the caller and passed in,
so deciding stays a pure function of (state, command).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from shieldes.errors import CommandRejected
from shieldes.events.catalog import (
    AdminTokenCreated,
    AdminTokenRevoked,
    BudgetRemoved,
    BudgetSet,
    Event,
    ModelAliasRemoved,
    ModelAliasSet,
    PricingSet,
    ProviderAdded,
    ProviderRemoved,
    ProviderUpdated,
    RateLimitSet,
    RoutingSet,
    TeamCreated,
    VirtualKeyCreated,
    VirtualKeyRevoked,
    VirtualKeyRotated,
    VirtualKeyUpdated,
)
from shieldes.projections.periods import parse_period
from shieldes.projections.state import AdminToken, AliasTarget, ConfigState, Team, VirtualKey
from shieldes.roles import ROLES

MAX_NAME = 128
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]*$")
_MODEL_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]*$")


class _Unset(Enum):
    UNSET = "unset"


UNSET: Final = _Unset.UNSET


# --- validation helpers (pure) -----------------------------------------------------------------


def check_name(what: str, name: str) -> str:
    if not name or len(name) > MAX_NAME or not _NAME_OK.match(name):
        raise CommandRejected(
            f"invalid {what} name {name!r}: use 1-{MAX_NAME} letters, digits and . _ : @ / + - "
            "(starting with a letter or digit)"
        )
    return name


RESPONSES_MODES: Final = ("translate", "native")
NATIVE_RESPONSES_KINDS: Final = ("openai", "azure")


def check_responses_mode(kind: str, mode: str) -> str:
    """How POST /v1/responses reaches a deployment: `translate` (chat completions, any kind) or
    `native` (the upstream's own /v1/responses)."""
    if mode not in RESPONSES_MODES:
        raise CommandRejected(f"unknown responses mode {mode!r}: use translate or native")
    if mode == "native" and kind not in NATIVE_RESPONSES_KINDS:
        raise CommandRejected(
            f"a {kind} provider has no /v1/responses of its own: use --responses translate"
        )
    return mode


def check_models(models: tuple[str, ...]) -> tuple[str, ...]:
    if not models:
        raise CommandRejected("no models given: pass --models with a comma-separated list, e.g. gpt-4o,gpt-4o-mini")
    for m in models:
        if not m or len(m) > MAX_NAME or not _MODEL_OK.match(m):
            raise CommandRejected(f"invalid model name {m!r}: use letters, digits and . _ : @ / + -")
    if len(set(models)) != len(models):
        raise CommandRejected("a model is listed twice in --models; list each model once")
    return models


# Upper bounds keep every number below 1e16, where jsonb would turn a float into an integer and
# break the config hash chain (and no real budget or price is that large).
MAX_MONEY = 1e12
MAX_WEIGHT = 1e6


def check_money(what: str, amount: float) -> float:
    if not math.isfinite(amount) or amount < 0 or amount > MAX_MONEY:
        raise CommandRejected(f"{what} must be a number between 0 and {MAX_MONEY:.0f}, got {amount}")
    return float(amount)


def _optional_money(what: str, amount: float | None) -> float | None:
    return None if amount is None else check_money(what, amount)


def check_limit(what: str, value: int | None) -> int | None:
    if value is not None and (value <= 0 or value > 10**12):
        raise CommandRejected(f"{what} must be a positive whole number, got {value}; omit it for no limit")
    return value


def check_period(period: str) -> str:
    try:
        return parse_period(period)
    except ValueError as exc:
        raise CommandRejected(str(exc)) from None


def check_base_url(url: str) -> str:
    if not re.match(r"^https?://[^\s/]+", url) or any(ord(c) < 32 for c in url):
        raise CommandRejected(f"invalid --base-url {url!r}: use an http:// or https:// URL")
    return url.rstrip("/")


def check_weight(weight: float) -> float:
    if not math.isfinite(weight) or weight <= 0 or weight > MAX_WEIGHT:
        raise CommandRejected(f"--weight must be a number > 0 and <= {MAX_WEIGHT:.0f}, got {weight}")
    return float(weight)


def find_key(state: ConfigState, ref: str) -> VirtualKey:
    key = state.find_key(ref)
    if key is None:
        raise CommandRejected(f"no virtual key named or with id {ref!r}; see `shieldes key list`")
    return key


def find_team(state: ConfigState, ref: str) -> Team:
    team = state.find_team(ref)
    if team is None:
        raise CommandRejected(f"no team named or with id {ref!r}; create it with `shieldes team create`")
    return team


def find_admin_token(state: ConfigState, ref: str) -> AdminToken:
    token = state.find_admin_token(ref)
    if token is None:
        raise CommandRejected(f"no admin token named or with id {ref!r}; see `shieldes admin-token list`")
    return token


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
    secret_ref: str | _Unset | None = UNSET
    models: tuple[str, ...] | None = None
    weight: float | None = None
    responses: str | None = None
    options: Mapping[str, str] | None = None  # merged over the current options


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


@dataclass(frozen=True)
class SetRouting:
    model: str
    strategy: str | None  # None: back to the default


@dataclass(frozen=True)
class CreateTeam:
    id: str
    name: str
    budget_usd: float | None = None
    budget_period: str = "30d"


@dataclass(frozen=True)
class CreateKey:
    id: str
    name: str
    key_hash: str
    prefix: str
    models: tuple[str, ...] | None = None
    rpm: int | None = None
    tpm: int | None = None
    budget_usd: float | None = None
    budget_period: str = "30d"
    team: str | None = None
    expires_at: float | None = None


@dataclass(frozen=True)
class UpdateKey:
    key: str
    models: tuple[str, ...] | _Unset | None = UNSET
    rpm: int | _Unset | None = UNSET
    tpm: int | _Unset | None = UNSET
    team: str | _Unset | None = UNSET
    expires_at: float | _Unset | None = UNSET


@dataclass(frozen=True)
class RevokeKey:
    key: str


@dataclass(frozen=True)
class RotateKey:
    key: str
    key_hash: str
    prefix: str


@dataclass(frozen=True)
class SetBudget:
    subject_kind: str  # "key" | "team"
    subject: str  # name or id
    amount_usd: float | None
    period: str = "30d"


@dataclass(frozen=True)
class CreateAdminToken:
    id: str
    name: str
    role: str
    token_hash: str
    prefix: str


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


Command = (
    AddProvider | UpdateProvider | RemoveProvider | SetPricing | SetRouting | CreateTeam | CreateKey | UpdateKey
    | RevokeKey | RotateKey | SetBudget | CreateAdminToken | RevokeAdminToken | SetModelAlias
    | RemoveModelAlias
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
        if t.model not in dep.models:
            raise CommandRejected(f"--target {t.provider}/{t.model}: provider {t.provider!r} does not serve "
                                  f"{t.model!r} (it serves {', '.join(dep.models)}); add it with "
                                  "`shieldes provider update --models`")
        if (t.provider, t.model) in seen:
            raise CommandRejected(f"--target {t.provider}/{t.model} is given twice; give each target once")
        seen.add((t.provider, t.model))
        check_weight(t.weight)
    known = set(state.aliases) | {m for d in state.providers.values() for m in d.models}
    for fb in command.fallbacks:
        if fb == command.name:
            raise CommandRejected(f"alias {command.name!r} cannot fall back to itself")
        if fb not in known:
            raise CommandRejected(f"--fallback {fb!r} is neither an alias nor a model any provider serves")
    if len(set(command.fallbacks)) != len(command.fallbacks):
        raise CommandRejected("a --fallback is given twice; list each once, in the order to try them")
    targets = tuple({"provider": t.provider, "model": t.model, "weight": float(t.weight)} for t in command.targets)
    return [ModelAliasSet(command.name, targets, tuple(command.fallbacks))]


def _users_of(state: ConfigState, name: str) -> list[str]:
    return sorted(a.name for a in state.aliases.values() if name in a.fallbacks)


# --- decide ------------------------------------------------------------------------------------


def decide(state: ConfigState, command: Command) -> list[Event]:
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
                    command.secret_ref, check_models(command.models), check_weight(command.weight),
                    check_responses_mode(command.kind, command.responses), options,
                )
            ]
        case UpdateProvider():
            from shieldes.providers.kinds import check_kind, check_options

            old = state.providers.get(command.name)
            if old is None:
                raise CommandRejected(f"no provider named {command.name!r}; see `shieldes provider list`")
            options = dict(old.options)
            if command.options is not None:
                options.update(command.options)
            return [
                ProviderUpdated(
                    old.name,
                    check_base_url(command.base_url) if command.base_url is not None else old.base_url,
                    old.secret_ref if command.secret_ref is UNSET else command.secret_ref,
                    check_models(command.models) if command.models is not None else old.models,
                    check_weight(command.weight) if command.weight is not None else old.weight,
                    check_responses_mode(old.kind, command.responses) if command.responses is not None else None,
                    check_options(check_kind(old.kind), options),
                )
            ]
        case RemoveProvider():
            if command.name not in state.providers:
                raise CommandRejected(f"no provider named {command.name!r}; see `shieldes provider list`")
            users = sorted(a.name for a in state.aliases.values() if any(t.provider == command.name
                                                                         for t in a.targets))
            if users:
                raise CommandRejected(f"provider {command.name!r} is a target of alias {', '.join(users)}; "
                                      "change or remove the alias first (`shieldes model alias|remove`)")
            return [ProviderRemoved(command.name)]
        case SetModelAlias():
            return _alias_events(state, command)
        case RemoveModelAlias():
            if command.name not in state.aliases:
                raise CommandRejected(f"no alias named {command.name!r}; see `shieldes model list`")
            users = _users_of(state, command.name)
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
            served = command.model in state.aliases or any(command.model in d.models for d in state.providers.values())
            if not served and command.strategy is not None:
                raise CommandRejected(
                    f"no provider serves {command.model!r} and no alias has that name; add it first "
                    "(shieldes provider add / shieldes model alias)")
            return [RoutingSet(command.model, command.strategy)]
        case SetPricing():
            check_models((command.model,))
            return [
                PricingSet(
                    command.model,
                    check_money("--input price", command.input_per_1m),
                    check_money("--output price", command.output_per_1m),
                    _optional_money("--cache-read price", command.cache_read_per_1m),
                    _optional_money("--cache-write price", command.cache_write_per_1m),
                )
            ]
        case CreateTeam():
            check_name("team", command.name)
            check_period(command.budget_period)
            if command.name in state.team_ids_by_name or command.id in state.teams:
                raise CommandRejected(f"team {command.name!r} already exists; pick another name")
            events: list[Event] = [TeamCreated(command.id, command.name)]
            if command.budget_usd is not None:
                events.append(
                    BudgetSet("team", command.id, check_money("--budget", command.budget_usd),
                              check_period(command.budget_period))
                )
            return events
        case CreateKey():
            check_name("key", command.name)
            check_period(command.budget_period)  # refused even without --budget: a bad argument
            if command.name in state.key_ids_by_name or command.id in state.keys:
                raise CommandRejected(f"a key named {command.name!r} already exists; pick another name")
            if command.key_hash in state.key_ids_by_hash:
                raise CommandRejected("key secret collision; run the command again")
            team_id = find_team(state, command.team).id if command.team else None
            models = check_models(command.models) if command.models is not None else None
            events = [
                VirtualKeyCreated(
                    command.id, command.name, command.key_hash, command.prefix, models, team_id, command.expires_at
                )
            ]
            rpm, tpm = check_limit("--rpm", command.rpm), check_limit("--tpm", command.tpm)
            if rpm is not None or tpm is not None:
                events.append(RateLimitSet(command.id, rpm, tpm))
            if command.budget_usd is not None:
                events.append(
                    BudgetSet("key", command.id, check_money("--budget", command.budget_usd),
                              check_period(command.budget_period))
                )
            return events
        case UpdateKey():
            key = find_key(state, command.key)
            if key.revoked:
                raise CommandRejected(f"key {key.name!r} is revoked; create a new key instead")
            events = []
            models = key.models if command.models is UNSET else command.models
            if models is not None:
                check_models(models)
            team_id = key.team_id
            if command.team is not UNSET:
                team_id = find_team(state, command.team).id if command.team else None
            expires_at = key.expires_at if command.expires_at is UNSET else command.expires_at
            if (models, team_id, expires_at) != (key.models, key.team_id, key.expires_at):
                events.append(VirtualKeyUpdated(key.id, models, team_id, expires_at))
            rpm = key.rpm if command.rpm is UNSET else check_limit("--rpm", command.rpm)
            tpm = key.tpm if command.tpm is UNSET else check_limit("--tpm", command.tpm)
            if (rpm, tpm) != (key.rpm, key.tpm):
                events.append(RateLimitSet(key.id, rpm, tpm))
            if not events:
                raise CommandRejected(f"nothing to change for key {key.name!r}; pass at least one option")
            return events
        case RevokeKey():
            key = find_key(state, command.key)
            if key.revoked:
                raise CommandRejected(f"key {key.name!r} is already revoked")
            return [VirtualKeyRevoked(key.id)]
        case RotateKey():
            key = find_key(state, command.key)
            if key.revoked:
                raise CommandRejected(f"key {key.name!r} is revoked; create a new key instead")
            if command.key_hash in state.key_ids_by_hash:
                raise CommandRejected("key secret collision; run the command again")
            return [VirtualKeyRotated(key.id, command.key_hash, command.prefix)]
        case SetBudget():
            amount = check_money("--amount", command.amount_usd) if command.amount_usd is not None else None
            period = check_period(command.period)
            if command.subject_kind == "team":
                team = find_team(state, command.subject)
                if amount is None:
                    if team.budget is None:
                        raise CommandRejected(f"team {team.name!r} has no budget; nothing to remove")
                    return [BudgetRemoved("team", team.id)]
                return [BudgetSet("team", team.id, amount, period)]
            key = find_key(state, command.subject)
            if amount is None:
                if key.budget is None:
                    raise CommandRejected(f"key {key.name!r} has no budget; nothing to remove")
                return [BudgetRemoved("key", key.id)]
            if key.revoked:
                raise CommandRejected(f"key {key.name!r} is revoked; a budget on it would have no effect")
            return [BudgetSet("key", key.id, amount, period)]
        case CreateAdminToken():
            check_name("admin token", command.name)
            if command.role not in ROLES:
                raise CommandRejected(f"unknown role {command.role!r}: use one of {', '.join(ROLES)}")
            if command.name in state.admin_token_ids_by_name or command.id in state.admin_tokens:
                raise CommandRejected(f"an admin token named {command.name!r} already exists; pick another name")
            if command.token_hash in state.admin_token_ids_by_hash:
                raise CommandRejected("token secret collision; run the command again")
            return [AdminTokenCreated(command.id, command.name, command.role, command.token_hash, command.prefix)]
        case RevokeAdminToken():
            token = find_admin_token(state, command.token)
            if token.revoked:
                raise CommandRejected(f"admin token {token.name!r} is already revoked")
            return [AdminTokenRevoked(token.id)]
    raise CommandRejected(f"unknown command {type(command).__name__}")
