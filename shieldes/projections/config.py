"""Pure fold of config events into ConfigState: apply(state, event) -> new state. No I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

from shieldes.events.catalog import (
    AdminTokenCreated,
    AdminTokenRevoked,
    BudgetRemoved,
    BudgetSet,
    Event,
    McpServerAdded,
    McpServerRemoved,
    McpServerUpdated,
    ModelAliasRemoved,
    ModelAliasSet,
    OidcSessionEnded,
    OidcSessionStarted,
    PricingSet,
    PricingUnset,
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
from shieldes.projections.pmap import with_item, without_item
from shieldes.projections.sessions import apply_session
from shieldes.projections.state import (
    AdminToken,
    AliasTarget,
    Budget,
    ConfigState,
    Deployment,
    LongContext,
    McpServer,
    ModelAlias,
    Price,
    Team,
    VirtualKey,
)
from shieldes.projections.team_keys import moved

if TYPE_CHECKING:
    from shieldes.events.codec import Codec
    from shieldes.events.store import RecordedEvent

V = TypeVar("V")


# Persistent maps (pmap.py): one event costs O(log n), not a copy of every key (a million keys).
_with = with_item
_without = without_item


def _drop_hash(by_hash: Mapping[str, str], key: VirtualKey) -> Mapping[str, str]:
    """The hash index without `key`'s hash, if it still names that key: a log written before
    rotations were refused a hash in use may have moved it to another key, which keeps it (as a
    snapshot, rebuilding the index from the live keys, does)."""
    return _without(by_hash, key.key_hash) if by_hash.get(key.key_hash) == key.id else by_hash


def _put_key(state: ConfigState, key: VirtualKey, old: VirtualKey | None) -> ConfigState:
    """The state with `key` (which was `old`, None for a new key), its team's key count kept."""
    return replace(state, keys=_with(state.keys, key.id, key), team_keys=moved(state.team_keys, old, key))


def apply_config(state: ConfigState, event: Event) -> ConfigState:
    match event:
        case ProviderAdded() | ProviderUpdated():
            options: Mapping[str, str]
            if isinstance(event, ProviderAdded):
                kind, responses, options = event.kind, event.responses, event.options
            else:
                was = state.providers[event.name]
                kind, responses = was.kind, event.responses or was.responses
                options = was.options if event.options is None else event.options
            dep = Deployment(event.name, kind, event.base_url, event.secret_ref, event.models, event.weight,
                             responses, dict(options))
            return replace(state, providers=_with(state.providers, event.name, dep))
        case ProviderRemoved():
            return replace(state, providers=_without(state.providers, event.name))
        case ModelAliasSet():
            targets = tuple(AliasTarget(t["provider"], t["model"], float(t.get("weight", 1.0))) for t in event.targets)
            alias = ModelAlias(event.name, targets, tuple(event.fallbacks))
            return replace(state, aliases=_with(state.aliases, event.name, alias))
        case ModelAliasRemoved():
            return replace(state, aliases=_without(state.aliases, event.name))
        case RoutingSet():
            if event.strategy is None:
                return replace(state, routing=_without(state.routing, event.model))
            return replace(state, routing=_with(state.routing, event.model, event.strategy))
        case PricingSet():
            long = None if event.long_above_tokens is None else LongContext(
                event.long_above_tokens, event.long_input_per_1m or 0.0, event.long_output_per_1m or 0.0,
                event.long_cache_read_per_1m, event.long_cache_write_per_1m)
            price = Price(event.input_per_1m, event.output_per_1m, event.cache_read_per_1m,
                          event.cache_write_per_1m, event.per_image, long, event.per_web_search,
                          tuple(sorted((event.multipliers or {}).items())),
                          tuple(sorted((event.per_use or {}).items())),
                          tuple(sorted((event.modalities or {}).items())))
            return replace(state, pricing=_with(state.pricing, event.model, price))
        case PricingUnset():
            return replace(state, pricing=_without(state.pricing, event.model))
        case TeamCreated():
            return replace(
                state,
                teams=_with(state.teams, event.id, Team(event.id, event.name)),
                team_ids_by_name=_with(state.team_ids_by_name, event.name, event.id),
            )
        case VirtualKeyCreated():
            key = VirtualKey(
                event.id, event.name, event.key_hash, event.prefix, event.models, event.team_id, event.expires_at
            )
            return _put_mcp(replace(
                _put_key(state, key, state.keys.get(event.id)),
                key_ids_by_hash=_with(state.key_ids_by_hash, event.key_hash, event.id),
                key_ids_by_name=_with(state.key_ids_by_name, event.name, event.id),
            ), event.id, event.mcp or ())
        case VirtualKeyUpdated():
            old = state.keys[event.id]
            if (event.models, event.team_id, event.expires_at) != (old.models, old.team_id, old.expires_at):
                state = _put_key(state, replace(old, models=event.models, team_id=event.team_id,
                                                expires_at=event.expires_at), old)
            return state if event.mcp is None else _put_mcp(state, event.id, event.mcp)
        case VirtualKeyRevoked():
            old = state.keys[event.id]
            return replace(
                _put_key(state, replace(old, revoked=True), old),
                key_ids_by_hash=_drop_hash(state.key_ids_by_hash, old),
            )
        case VirtualKeyRotated():
            old = state.keys[event.id]
            hashes = _with(_drop_hash(state.key_ids_by_hash, old), event.key_hash, event.id)
            return replace(
                _put_key(state, replace(old, key_hash=event.key_hash, prefix=event.prefix), old),
                key_ids_by_hash=hashes,
            )
        case BudgetSet():
            budget = Budget(event.amount_usd, event.period) if event.amount_usd is not None else None
            return _put_budget(state, event.subject_kind, event.subject_id, budget)
        case BudgetRemoved():
            return _put_budget(state, event.subject_kind, event.subject_id, None)
        case RateLimitSet():
            old = state.keys[event.key_id]
            return _put_key(state, replace(old, rpm=event.rpm, tpm=event.tpm), old)
        case AdminTokenCreated():
            token = AdminToken(event.id, event.name, event.role, event.key_hash, event.prefix,
                               expires_at=event.expires_at)
            return replace(
                state,
                admin_tokens=_with(state.admin_tokens, event.id, token),
                admin_token_ids_by_hash=_with(state.admin_token_ids_by_hash, event.key_hash, event.id),
                admin_token_ids_by_name=_with(state.admin_token_ids_by_name, event.name, event.id),
            )
        case McpServerAdded() | McpServerUpdated():
            server = McpServer(event.name, event.url, dict(event.headers))
            return replace(state, mcp_servers=_with(state.mcp_servers, event.name, server))
        case McpServerRemoved():
            return replace(state, mcp_servers=_without(state.mcp_servers, event.name))
        case OidcSessionStarted() | OidcSessionEnded():
            return apply_session(state, event)
        case AdminTokenRevoked():
            old_token = state.admin_tokens[event.id]
            return replace(
                state,
                admin_tokens=_with(state.admin_tokens, event.id, replace(old_token, revoked=True)),
                admin_token_ids_by_hash=_without(state.admin_token_ids_by_hash, old_token.key_hash),
            )
    return state


def _put_mcp(state: ConfigState, key_id: str, entries: tuple[str, ...]) -> ConfigState:
    """The state with key `key_id`'s MCP allow-list (empty: none, kept out of the map)."""
    if entries:
        return replace(state, mcp_access=_with(state.mcp_access, key_id, tuple(entries)))
    if key_id in state.mcp_access:
        return replace(state, mcp_access=_without(state.mcp_access, key_id))
    return state


def _put_budget(state: ConfigState, kind: str, subject_id: str, budget: Budget | None) -> ConfigState:
    if kind == "team":
        team = replace(state.teams[subject_id], budget=budget)
        return replace(state, teams=_with(state.teams, team.id, team))
    old = state.keys[subject_id]
    return _put_key(state, replace(old, budget=budget), old)


def apply_recorded(state: ConfigState, recorded: Iterable[RecordedEvent], codec: Codec) -> ConfigState:
    """`state` with config events as the log stores them decoded and applied, in order."""
    for e in recorded:
        state = apply_config(state, codec.decode(e.type, e.version, e.data))
    return state
