"""Time travel over the config stream: points in the log, a redacted view of a ConfigState, and a
diff between two states attributed to the events (and actors) that made it. Pure functions."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shieldes.errors import InvalidRequest
from shieldes.events.store import RecordedEvent
from shieldes.projections.keytable import NameIndex, key_ids_in_teams, names_in_order
from shieldes.projections.pmap import LayeredMap
from shieldes.projections.state import Budget, ConfigState, VirtualKey

Entity = dict[str, Any]
EntityKey = tuple[str, str]  # (kind, id)
KINDS = ("provider", "alias", "routing", "pricing", "team", "key", "admin_token", "mcp_server")


@dataclass(frozen=True)
class Point:
    """A place in the log: a position, or a time (every config event recorded at or before it)."""

    position: int | None = None
    time: datetime | None = None

    def label(self) -> str:
        return f"position {self.position}" if self.position is not None else f"time {self.time_iso()}"

    def time_iso(self) -> str:
        return self.time.isoformat() if self.time else ""

    def includes(self, e: RecordedEvent) -> bool:
        if self.position is not None:
            return e.position <= self.position
        assert self.time is not None
        return e.recorded_at <= self.time


def parse_point(text: str) -> Point:
    """`1234` is a log position; anything else must be an ISO 8601 time (naive means UTC)."""
    t = text.strip()
    if t.isdigit():
        return Point(position=int(t))
    try:
        when = datetime.fromisoformat(t.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"cannot read {text!r} as a point in the log: give a position (e.g. 42) or an ISO 8601 time "
            "(e.g. 2026-11-22T08:00:00Z)"
        ) from None
    return Point(time=when if when.tzinfo else when.replace(tzinfo=UTC))


def check_in_log(point: Point, head: int, now: datetime, *, omit: str | None) -> None:
    """A point past the end of the log is a typo or a clock mix-up: refused, not shown as 'now'.
    `omit` names what to leave out for the config as it is now (`--at`, the query's `at`), if anything."""
    for_now = f", or omit {omit} for now" if omit else ""
    if point.position is not None and point.position > head:
        raise InvalidRequest(f"position {point.position} is past the end of the log (last position {head}); "
                             f"give a position up to {head}{for_now}")
    if point.time is not None and point.time > now:
        raise InvalidRequest(f"{point.time.isoformat()} is in the future; give a past time{for_now}")


def _budget(b: Budget | None) -> dict[str, Any] | None:
    return None if b is None else {"amount_usd": b.amount_usd, "period": b.period}


def _secret(ref: str | None) -> str | None:
    if ref is None or ref.startswith("env:"):
        return ref
    return "encrypted"  # an encrypted key is never printed, not even as ciphertext


def key_entity(state: ConfigState, k: VirtualKey) -> Entity:
    team = state.teams.get(k.team_id) if k.team_id else None
    out: Entity = {
        "id": k.id, "name": k.name, "prefix": k.prefix,
        "models": None if k.models is None else list(k.models),
        "team": team.name if team else k.team_id, "expires_at": k.expires_at, "revoked": k.revoked,
        "rpm": k.rpm, "tpm": k.tpm, "budget": _budget(k.budget),
    }
    entries = state.mcp_access.get(k.id)
    if entries is not None:
        out["mcp"] = list(entries)
    return out


def _provider(_: ConfigState, d: Any) -> Entity:
    return {"name": d.name, "type": d.kind, "base_url": d.base_url, "api_key": _secret(d.secret_ref),
            "models": list(d.models), "weight": d.weight, "responses": d.responses,
            "options": dict(sorted(d.options.items()))}


def _alias(_: ConfigState, a: Any) -> Entity:
    return {"name": a.name, "targets": [f"{t.provider}/{t.model}:{t.weight:g}" for t in a.targets],
            "fallbacks": list(a.fallbacks)}


def _team(_: ConfigState, t: Any) -> Entity:
    return {"id": t.id, "name": t.name, "budget": _budget(t.budget)}


def _mcp_server(_: ConfigState, m: Any) -> Entity:
    return {"name": m.name, "url": m.url, "headers": {h: _secret(ref) for h, ref in sorted(m.headers.items())}}


def _admin_token(_: ConfigState, tok: Any) -> Entity:
    return {"id": tok.id, "name": tok.name, "role": tok.role, "prefix": tok.prefix, "revoked": tok.revoked,
            **({"expires_at": tok.expires_at} if tok.expires_at is not None else {})}


# kind -> (the state's map of that kind, id -> item; the entity of an item), in the order entities() lists them
_KINDS: dict[str, tuple[Callable[[ConfigState], Mapping[str, Any]], Callable[[ConfigState, str, Any], Entity]]] = {
    "provider": (lambda s: s.providers, lambda s, _, d: _provider(s, d)),
    "alias": (lambda s: s.aliases, lambda s, _, a: _alias(s, a)),
    "routing": (lambda s: s.routing, lambda _, model, strategy: {"model": model, "strategy": strategy}),
    "pricing": (lambda s: s.pricing, lambda _, model, p: {"model": model, **p.fields()}),
    "team": (lambda s: s.teams, lambda s, _, t: _team(s, t)),
    "key": (lambda s: s.keys, lambda s, _, k: key_entity(s, k)),
    "mcp_server": (lambda s: s.mcp_servers, lambda s, _, m: _mcp_server(s, m)),
    "admin_token": (lambda s: s.admin_tokens, lambda s, _, tok: _admin_token(s, tok)),
}


def entities(state: ConfigState, *, with_keys: bool = True) -> dict[EntityKey, Entity]:
    """Every entity as a plain dict, keyed by (kind, id); key hashes never appear. Without the keys
    (`with_keys=False`) it costs what the rest of the config holds, not what a million keys do."""
    out: dict[EntityKey, Entity] = {}
    for kind, (items, build) in _KINDS.items():
        if kind == "key" and not with_keys:
            continue
        for ident, item in items(state).items():
            out[(kind, ident)] = build(state, ident, item)
    return out


def entity(state: ConfigState, key: EntityKey) -> Entity | None:
    """One entity of `state` as entities() gives it (None: not there), reading nothing else."""
    items, build = _KINDS[key[0]]
    item = items(state).get(key[1])
    return None if item is None else build(state, key[1], item)


def config_view(state: ConfigState, *, keys_limit: int | None = None) -> dict[str, Any]:
    """The config as lists per kind. With `keys_limit`, `keys` holds only the first that many keys
    by name (as GET /admin/v1/keys orders them) and `keys_total` counts them all: a view of a
    million keys is hundreds of megabytes, built on the node's event loop and drawn by a browser."""
    ents = entities(state, with_keys=keys_limit is None)
    view: dict[str, Any] = {
        plural: [ents[k] for k in sorted(k for k in ents if k[0] == kind)]
        for kind, plural in (("provider", "providers"), ("alias", "aliases"), ("routing", "routing"),
                             ("pricing", "pricing"), ("team", "teams"), ("key", "keys"),
                             ("admin_token", "admin_tokens"), ("mcp_server", "mcp_servers"))
    }
    if keys_limit is not None:
        view["keys"] = [key_entity(state, k) for k in first_keys(state, keys_limit)]
        view["keys_total"] = len(state.keys)
    return view


def first_keys(state: ConfigState, n: int) -> list[VirtualKey]:
    """The first `n` keys by name: from the names alone (sorted once for a node's config, see
    names_in_order), reading `n` keys; it read every key to pick them (3.5 s at a million)."""
    by_name = state.key_ids_by_name
    if len(by_name) != len(state.keys):  # a log from before names were unique
        return heapq.nsmallest(n, state.keys.values(), key=lambda k: k.name)
    if isinstance(by_name, LayeredMap) and isinstance(by_name.base, NameIndex):
        names = list(itertools.islice(names_in_order(by_name), n))
    else:  # a config folded from the log: its names were never sorted
        names = heapq.nsmallest(n, by_name)
    return [state.keys[by_name[name]] for name in names]


def subject_of(e: RecordedEvent) -> EntityKey | None:
    """Which entity a config event changes."""
    d = e.data
    family = e.type.split(".", 1)[0]
    if family == "provider":
        return ("provider", d["name"])
    if family == "model_alias":
        return ("alias", d["name"])
    if family == "routing":
        return ("routing", d["model"])
    if family == "pricing":
        return ("pricing", d["model"])
    if family == "team":
        return ("team", d["id"])
    if family == "virtual_key":
        return ("key", d["id"])
    if family == "budget":
        return ("team" if d.get("subject_kind") == "team" else "key", d["subject_id"])
    if family == "rate_limit":
        return ("key", d["key_id"])
    if family == "admin_token":
        return ("admin_token", d["id"])
    if family == "mcp_server":
        return ("mcp_server", d["name"])
    return None


def _event_ref(e: RecordedEvent) -> dict[str, Any]:
    return {
        "position": e.position, "type": e.type, "actor": e.metadata.get("actor", "unknown"),
        "recorded_at": e.recorded_at.astimezone(UTC).isoformat(),
    }


def touched(events: list[RecordedEvent]) -> tuple[dict[EntityKey, list[dict[str, Any]]], bool]:
    """The entities `events` change, each with the events that touched it (position, type, actor,
    time), and whether that is all they change (False: an event names no entity, a type this
    release does not know)."""
    out: dict[EntityKey, list[dict[str, Any]]] = {}
    named_all = True
    for e in events:
        subject = subject_of(e)
        if subject is None:
            named_all = False
        else:
            out.setdefault(subject, []).append(_event_ref(e))
    return out, named_all


def _team_label(state: ConfigState, team_id: str) -> str:
    team = state.teams.get(team_id)
    return team.name if team else team_id  # as key_entity prints a key's team


def relabelled_teams(before: ConfigState, after: ConfigState, entities_touched: Iterable[EntityKey]) -> set[str]:
    """The touched teams a key's entity names differently after than before (a team created after
    keys that named its id): every key of theirs changed, whether or not an event touched the key."""
    return {ident for kind, ident in entities_touched
            if kind == "team" and _team_label(before, ident) != _team_label(after, ident)}


def diff(before: ConfigState, after: ConfigState, events: list[RecordedEvent]) -> list[dict[str, Any]]:
    """Entities added, removed or changed from `before` to `after` (`after` is `before` with
    `events` folded in), by kind and then name, each with the events between the two points that touched it (position,
    type, actor, time). Only the entities the events touch are compared (plus the keys of a team
    whose printed name changed): the rest are equal by construction, and comparing every entity of
    two million-key configs took seconds."""
    refs, named_all = touched(events)
    if not named_all:
        candidates = set(entities(before)) | set(entities(after))
    else:
        relabelled = relabelled_teams(before, after, refs)
        candidates = set(refs) | {("key", k) for k in key_ids_in_teams(after.keys, relabelled)} if relabelled \
            else set(refs)
    out: list[dict[str, Any]] = []
    for key in candidates:
        old, new = entity(before, key), entity(after, key)
        fields: dict[str, dict[str, Any]] = {}
        if old == new:
            continue
        if old is None:
            change = "added"
        elif new is None:
            change = "removed"
        else:
            change = "changed"
            fields = {f: {"from": old.get(f), "to": new.get(f)} for f in sorted(set(old) | set(new))
                      if old.get(f) != new.get(f)}
        name = (new or old or {}).get("name") or (new or old or {}).get("model") or key[1]
        out.append({"kind": key[0], "id": key[1], "name": name, "change": change, "fields": fields,
                    "events": refs.get(key, [])})
    # by kind, then name: what an operator reads (an id is random); the id settles equal names
    return sorted(out, key=lambda c: (KINDS.index(c["kind"]), str(c["name"]), c["id"]))


def diff_answer(a: str, a_position: int, b: str, b_position: int, events: int,
                changes: list[dict[str, Any]]) -> dict[str, Any]:
    """A diff as `config diff --json` and GET /admin/config/diff give it: each point as given and
    the log position it stands for, how many events lie between, and the entities they changed."""
    return {"from": {"point": a, "position": a_position}, "to": {"point": b, "position": b_position},
            "events": events, "changes": changes}
