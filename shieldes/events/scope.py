"""Which config events a key command's decision reads: the shared config (providers, pricing,
aliases, routing, admin tokens: a few events however many keys there are) plus the events of the
keys and teams the command names. Both event stores select with these definitions (the Postgres
one in SQL through `config_index`, migration 0010, checked against them by tests)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

KEY_CREATED, KEY_UPDATED, KEY_ROTATED = "virtual_key.created", "virtual_key.updated", "virtual_key.rotated"
TEAM_CREATED = "team.created"
# Config events about one key or one team; every other config event type is shared config, always
# selected (so a type added later is never missed).
ENTITY_TYPES = (KEY_CREATED, KEY_UPDATED, "virtual_key.revoked", KEY_ROTATED,
                "rate_limit.set", "budget.set", "budget.removed", TEAM_CREATED)
# where an entity event names its subject, the key's or team's id (the first one present)
SUBJECT_FIELDS = ("id", "key_id", "subject_id")


@dataclass(frozen=True)
class Scope:
    """What a key command names: the keys, key hashes and teams whose events its decision reads."""

    keys: tuple[str, ...] = ()  # key names or ids
    hashes: tuple[str, ...] = ()  # key hashes (created or rotated to)
    teams: tuple[str, ...] = ()  # team names or ids


def subject(data: Mapping[str, Any]) -> str | None:
    for field in SUBJECT_FIELDS:
        value = data.get(field)
        if value is not None:
            return str(value)
    return None


def subjects(events: Iterable[tuple[str, Mapping[str, Any]]], scope: Scope) -> set[str]:
    """Ids of the keys and teams `scope` names, from the (type, data) of config events."""
    out: set[str] = set()
    for type_, data in events:
        named = (
            (type_ == KEY_CREATED and (data["id"] in scope.keys or data["name"] in scope.keys
                                       or data["key_hash"] in scope.hashes))
            or (type_ == KEY_ROTATED and data["key_hash"] in scope.hashes)
            or (type_ == TEAM_CREATED and (data["id"] in scope.teams or data["name"] in scope.teams))
        )
        if named:
            out.add(data["id"])
    return out


def teams_of(events: Iterable[tuple[str, Mapping[str, Any]]]) -> set[str]:
    """The teams the selected keys belong to (a key's printed row names its team)."""
    return {str(d["team_id"]) for t, d in events if t in (KEY_CREATED, KEY_UPDATED) and d.get("team_id")}


def in_scope(type_: str, data: Mapping[str, Any], ids: set[str]) -> bool:
    return type_ not in ENTITY_TYPES or subject(data) in ids


def select(events: Sequence[tuple[str, Mapping[str, Any]]], scope: Scope) -> list[int]:
    """Indexes into `events` (the config stream's (type, data), in order) of the events `scope`
    selects: the shared config, the named keys and teams, and the teams of those keys."""
    ids = subjects(events, scope)
    chosen = [i for i, (t, d) in enumerate(events) if in_scope(t, d, ids)]
    extra = teams_of(events[i] for i in chosen) - ids
    if extra:
        ids |= extra
        chosen = [i for i, (t, d) in enumerate(events) if in_scope(t, d, ids)]
    return chosen
