"""Commands and pure decide functions: decide(state, command) -> events, or CommandRejected.

Anything random or secret (ids, key secrets and their hashes) is made by the caller and passed in,
so deciding stays a pure function of (state, command). This module holds the commands about one key
or one team (and the checks every command shares); those on the shared config (providers, pricing,
routing, model aliases, admin tokens) are in shared_commands.py, which a key write never imports.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Final, TypeAlias
from urllib.parse import urlsplit

from shieldes.errors import CommandRejected, SubjectNotFound
from shieldes.events.catalog import (
    BudgetRemoved,
    BudgetSet,
    Event,
    RateLimitSet,
    TeamCreated,
    VirtualKeyCreated,
    VirtualKeyRevoked,
    VirtualKeyRotated,
    VirtualKeyUpdated,
)
from shieldes.mcp.access import check_entries
from shieldes.projections.periods import parse_period
from shieldes.projections.state import ConfigState, Team, VirtualKey

if TYPE_CHECKING:
    from shieldes.projections.sessions import SessionCommand
    from shieldes.projections.shared_commands import SharedCommand
    from shieldes.projections.teams_view import TeamsState

MAX_NAME = 128
_NAME_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]*$")
_MODEL_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]*$")


class Unset(Enum):
    UNSET = "unset"


UNSET: Final = Unset.UNSET


# --- validation helpers (pure) -----------------------------------------------------------------


def check_name(what: str, name: str) -> str:
    if not name or len(name) > MAX_NAME or not _NAME_OK.match(name):
        raise CommandRejected(
            f"invalid {what} name {name!r}: use 1-{MAX_NAME} letters, digits and . _ : @ / + - "
            "(starting with a letter or digit)"
        )
    return name


def check_models(models: tuple[str, ...], *, patterns: bool = False) -> tuple[str, ...]:
    """Model names; with `patterns`, entries ending in `*` too (`claude-*`, `*` alone: what a
    deployment serves, a key may use or a price covers). Anything else stays an exact name: a routing
    strategy belongs to one model."""
    if not models:
        raise CommandRejected("no models given: pass --models with a comma-separated list, e.g. gpt-4o,gpt-4o-mini")
    for m in models:
        check_model(m, patterns=patterns)
    if len(set(models)) != len(models):
        raise CommandRejected("a model is listed twice in --models; list each model once")
    return models


def check_model(m: str, *, patterns: bool) -> None:
    if patterns and m == "*":
        return
    base = m[:-1] if m.endswith("*") else m
    if "*" in base or (m.endswith("*") and not patterns):
        raise CommandRejected(
            f"invalid model name {m!r}: "
            + ("'*' may only end a pattern (claude-*, gpt-5*, or * alone for any name)" if patterns else
               "a pattern is not a model here; name one model exactly (patterns serve names and may be priced, "
               "but a routing strategy belongs to one model)"))
    if not base or len(m) > MAX_NAME or not _MODEL_OK.match(base):
        raise CommandRejected(f"invalid model name {m!r}: use 1-{MAX_NAME} letters, digits and . _ : @ / + -"
                              + (", and '*' only at the end for a pattern" if patterns else ""))


# Upper bounds keep every number below 1e16, where jsonb would turn a float into an integer and
# break the config hash chain (and no real budget or price is that large).
MAX_MONEY = 1e12
MAX_WEIGHT = 1e6


def check_money(what: str, amount: float) -> float:
    if not math.isfinite(amount) or amount < 0 or amount > MAX_MONEY:
        raise CommandRejected(f"{what} must be a number between 0 and {MAX_MONEY:.0f}, got {amount}")
    return float(amount)


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
    try:  # a host or port no request could be sent to (`http://[::1`, `http://host:99999`)
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port that is not a number from 0 to 65535)
    except ValueError as exc:
        raise CommandRejected(f"invalid --base-url {url!r} ({exc}): use http(s)://HOST[:PORT][/PATH], with "
                              "an IPv6 address in brackets and a port from 0 to 65535") from None
    if not parts.hostname:
        raise CommandRejected(f"invalid --base-url {url!r}: it names no host; use http(s)://HOST[:PORT][/PATH]")
    return url.rstrip("/")


def check_weight(weight: float) -> float:
    if not math.isfinite(weight) or weight <= 0 or weight > MAX_WEIGHT:
        raise CommandRejected(f"--weight must be a number > 0 and <= {MAX_WEIGHT:.0f}, got {weight}")
    return float(weight)


def find_key(state: ConfigState, ref: str) -> VirtualKey:
    """The key a command acts on (a missing one is the admin API's 404 `key_not_found`)."""
    key = state.find_key(ref)
    if key is None:
        raise SubjectNotFound(f"no virtual key named or with id {ref!r}; see `shieldes key list`",
                              code="key_not_found")
    return key


def find_team(state: ConfigState | TeamsState, ref: str, *, subject: bool = False) -> Team:
    """The team named `ref`. `subject`: the team is what the command acts on (a missing one is a
    404 `team_not_found`), not a value it sets (a key's team: a 400, the request is wrong)."""
    team = state.find_team(ref)
    if team is None:
        message = f"no team named or with id {ref!r}; create it with `shieldes team create`"
        if subject:
            raise SubjectNotFound(message, code="team_not_found")
        raise CommandRejected(message)
    return team


# --- commands ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateTeam:
    """`team create`: a new team, with a budget if given."""

    id: str
    name: str
    budget_usd: float | None = None
    budget_period: str = "30d"


@dataclass(frozen=True)
class CreateKey:
    """`key create`: a new key (secret made by the caller), with its limits, budget and team."""

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
    mcp: tuple[str, ...] | None = None  # MCP servers/tools it may use (shieldes/mcp/access.py); None: none


@dataclass(frozen=True)
class UpdateKey:
    """`key update`: the fields given change, UNSET ones stay."""

    key: str
    models: tuple[str, ...] | Unset | None = UNSET
    rpm: int | Unset | None = UNSET
    tpm: int | Unset | None = UNSET
    team: str | Unset | None = UNSET
    expires_at: float | Unset | None = UNSET
    mcp: tuple[str, ...] | Unset | None = UNSET  # None: no MCP access


@dataclass(frozen=True)
class RevokeKey:
    """`key revoke` of a key by name or id."""

    key: str


@dataclass(frozen=True)
class RotateKey:
    """`key rotate`: a new secret (made by the caller) for a key by name or id."""

    key: str
    key_hash: str
    prefix: str


@dataclass(frozen=True)
class SetBudget:
    """`budget set` / `budget remove` (amount None) for a key or team by name or id."""

    subject_kind: str  # "key" | "team"
    subject: str  # name or id
    amount_usd: float | None
    period: str = "30d"


EntityCommand = CreateTeam | CreateKey | UpdateKey | RevokeKey | RotateKey | SetBudget
Command: TypeAlias = "EntityCommand | SharedCommand | SessionCommand"


def _budget_given(scope: str, subject_id: str, usd: float | None, period: str) -> list[Event]:
    """The budget a key or team is created with (`--budget`), if any."""
    if usd is None:
        return []
    return [BudgetSet(scope, subject_id, check_money("--budget", usd), check_period(period))]


# --- decide ------------------------------------------------------------------------------------


def decide(state: ConfigState, command: Command) -> list[Event]:
    match command:
        case CreateTeam():
            check_name("team", command.name)
            check_period(command.budget_period)
            if command.name in state.team_ids_by_name or command.id in state.teams:
                raise CommandRejected(f"team {command.name!r} already exists; pick another name")
            events: list[Event] = [TeamCreated(command.id, command.name)]
            events.extend(_budget_given("team", command.id, command.budget_usd, command.budget_period))
            return events
        case CreateKey():
            check_name("key", command.name)
            check_period(command.budget_period)  # refused even without --budget: a bad argument
            if command.name in state.key_ids_by_name or command.id in state.keys:
                raise CommandRejected(f"a key named {command.name!r} already exists; pick another name")
            if command.key_hash in state.key_ids_by_hash:
                raise CommandRejected("key secret collision; run the command again")
            team_id = find_team(state, command.team).id if command.team else None
            models = check_models(command.models, patterns=True) if command.models is not None else None
            mcp = check_entries(command.mcp, state.mcp_servers) if command.mcp else None
            events = [
                VirtualKeyCreated(
                    command.id, command.name, command.key_hash, command.prefix, models, team_id, command.expires_at,
                    mcp or None,
                )
            ]
            rpm, tpm = check_limit("--rpm", command.rpm), check_limit("--tpm", command.tpm)
            if rpm is not None or tpm is not None:
                events.append(RateLimitSet(command.id, rpm, tpm))
            events.extend(_budget_given("key", command.id, command.budget_usd, command.budget_period))
            return events
        case UpdateKey():
            key = find_key(state, command.key)
            if key.revoked:
                raise CommandRejected(f"key {key.name!r} is revoked; create a new key instead")
            events = []
            models = key.models if command.models is UNSET else command.models
            if models is not None:
                check_models(models, patterns=True)
            team_id = key.team_id
            if command.team is not UNSET:
                team_id = find_team(state, command.team).id if command.team else None
            expires_at = key.expires_at if command.expires_at is UNSET else command.expires_at
            had = state.mcp_access.get(key.id, ())
            mcp = had if command.mcp is UNSET else check_entries(command.mcp or (), state.mcp_servers)
            if (models, team_id, expires_at) != (key.models, key.team_id, key.expires_at) or mcp != had:
                events.append(VirtualKeyUpdated(key.id, models, team_id, expires_at, None if mcp == had else mcp))
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
                team = find_team(state, command.subject, subject=True)
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
    from shieldes.projections.sessions import SessionCommand, decide_session
    from shieldes.projections.shared_commands import decide_shared  # the shared config's commands

    if isinstance(command, SessionCommand):
        return decide_session(state, command)
    return decide_shared(state, command)
