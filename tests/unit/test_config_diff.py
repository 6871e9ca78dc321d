"""`config diff` compares only the entities the events between the two points touch (plus the keys
of a team whose printed name changed). Checked on random config logs against the comparison of
every entity it replaces: from configs folded from position 0, from a snapshot (keys as columns)
and the tail, and from the entities' own events alone (the scoped read the admin API and the CLI
run first, on the in-memory store)."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shieldes.events.catalog import (
    CONFIG_STREAM,
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
from shieldes.events.codec import Codec
from shieldes.events.memory_store import InMemoryEventStore
from shieldes.events.store import AppendOptions, NewEvent, RecordedEvent
from shieldes.projections.config import apply_config
from shieldes.projections.keytable import KeyTable
from shieldes.projections.pmap import LayeredMap
from shieldes.projections.projector import Projection
from shieldes.projections.state import ConfigState
from shieldes.snapshots import codec as snapcodec
from shieldes.snapshots.config_diff import scoped_diff, scoped_limit
from shieldes.snapshots.history import KINDS, Point, diff, entities, subject_of

OPS = ("provider", "provider_rm", "alias", "alias_rm", "price", "unprice", "routing", "team", "key",
       "key_update", "revoke", "rotate", "limit", "budget_key", "budget_team", "budget_rm", "token",
       "token_revoke", "mcp", "mcp_rm", "usage")
# keys and teams more often than the rest: keys that name a team before it exists are the case
# where an entity no event touched changes
WEIGHTED = (*OPS, "key", "key", "key", "key_update", "team", "team")
steps = st.lists(st.tuples(st.sampled_from(WEIGHTED), st.integers(0, 5), st.integers(0, 4)), min_size=1, max_size=50)


def event_for(state: ConfigState, op: str, i: int, j: int, n: int) -> Event | None:
    """An event of kind `op` the fold accepts in `state` (None: none fits); `n` makes values new.
    A key may name a team that does not exist yet (team_j): its creation later relabels the key."""
    key, team = f"k{i}", f"t{j}"
    match op:
        case "provider":
            if f"p{i % 3}" in state.providers:
                return ProviderUpdated(f"p{i % 3}", "http://u", "env:K", ("m0", f"m{j}"), float(n))
            return ProviderAdded(f"p{i % 3}", "openai", "http://u", "env:K", (f"m{j}",))
        case "provider_rm" if f"p{i % 3}" in state.providers:
            return ProviderRemoved(f"p{i % 3}")
        case "alias":
            return ModelAliasSet(f"a{i % 2}", ({"provider": "p0", "model": "m0", "weight": float(j + 1)},))
        case "alias_rm" if f"a{i % 2}" in state.aliases:
            return ModelAliasRemoved(f"a{i % 2}")
        case "price":
            return PricingSet(f"m{i}", float(j), float(n))
        case "unprice" if f"m{i}" in state.pricing:
            return PricingUnset(f"m{i}")
        case "routing":
            return RoutingSet(f"m{i}", None if j == 0 else ("weighted", "cost", "adaptive")[j % 3])
        case "team" if team not in state.teams:
            return TeamCreated(team, f"team-{j}")
        case "key" if key not in state.keys:
            return VirtualKeyCreated(key, f"key-{i}", f"h{i}-{n}", f"sk-{n}", None if j == 0 else ("m0",),
                                     team if j % 2 else None, None, ("s0",) if j == 3 else None)
        case "key_update" if key in state.keys:
            return VirtualKeyUpdated(key, ("m1",) if j == 1 else None, team if j else None, float(j) or None,
                                     ("s1",) if j == 2 else None)
        case "revoke" if key in state.keys:
            return VirtualKeyRevoked(key)
        case "rotate" if key in state.keys:
            return VirtualKeyRotated(key, f"h{i}-{n}", f"sk-{n}")
        case "limit" if key in state.keys:
            return RateLimitSet(key, j or None, n)
        case "budget_key" if key in state.keys:
            return BudgetSet("key", key, float(j + 1), "1d")
        case "budget_team" if team in state.teams:
            return BudgetSet("team", team, float(i + 1), "30d")
        case "budget_rm" if key in state.keys:
            return BudgetRemoved("key", key)
        case "token" if f"a{i}" not in state.admin_tokens:
            return AdminTokenCreated(f"a{i}", f"tok-{i}", "viewer", f"th{i}", "sk-adm")
        case "token_revoke" if f"a{i}" in state.admin_tokens:
            return AdminTokenRevoked(f"a{i}")
        case "mcp":
            if f"s{i % 2}" in state.mcp_servers:
                return McpServerUpdated(f"s{i % 2}", f"http://m{j}", {"x": "env:X"})
            return McpServerAdded(f"s{i % 2}", "http://m")
        case "mcp_rm" if f"s{i % 2}" in state.mcp_servers:
            return McpServerRemoved(f"s{i % 2}")
    return None


async def logged(plan: list[tuple[str, int, int]]) -> tuple[InMemoryEventStore, list[RecordedEvent]]:
    """The plan appended to an in-memory log, usage events between the config ones."""
    store, codec, state = InMemoryEventStore(), Codec(), ConfigState()
    for n, (op, i, j) in enumerate(plan):
        if op == "usage":
            await store.append("usage:n1", [NewEvent.of(PricingSet("x", 0, 0), codec)], AppendOptions())
            continue
        event = event_for(state, op, i, j, n)
        if event is not None:
            state = apply_config(state, event)
            await store.append(CONFIG_STREAM, [NewEvent.of(event, codec)], AppendOptions(metadata={"actor": "t"}))
    return store, await store.read(0, 10_000)


def fold(state: ConfigState, events: list[RecordedEvent]) -> ConfigState:
    codec = Codec()
    for e in events:
        state = apply_config(state, codec.decode(e.type, e.version, e.data))
    return state


def every_entity_diff(before: ConfigState, after: ConfigState, events: list[RecordedEvent]) -> list[dict[str, Any]]:
    """The comparison of every entity of both configs that diff() replaces (its code before)."""
    a, b = entities(before), entities(after)
    refs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in events:
        subject = subject_of(e)
        if subject is not None:
            refs.setdefault(subject, []).append({"position": e.position, "type": e.type, "actor": "t",
                                                 "recorded_at": e.recorded_at.isoformat()})
    out = []
    for key in sorted(set(a) | set(b), key=lambda k: (KINDS.index(k[0]), k[1])):
        old, new = a.get(key), b.get(key)
        if old == new:
            continue
        change = "added" if old is None else "removed" if new is None else "changed"
        fields = {} if change != "changed" else {
            f: {"from": old.get(f), "to": new.get(f)} for f in sorted(set(old) | set(new))  # type: ignore[union-attr]
            if old.get(f) != new.get(f)}  # type: ignore[union-attr]
        name = (new or old or {}).get("name") or (new or old or {}).get("model") or key[1]
        out.append({"kind": key[0], "id": key[1], "name": name, "change": change, "fields": fields,
                    "events": refs.get(key, [])})
    return sorted(out, key=lambda c: (KINDS.index(c["kind"]), c["name"], c["id"]))


def snapshot_of(state: ConfigState) -> ConfigState:
    projection = Projection(state)
    projection.position, projection.config_tip = 3, (3, "ab" * 32)
    snap = snapcodec.encode(projection, fmt=3)
    return snapcodec.decode(snap.state, snap.checksum, snap.position).config


@settings(max_examples=300, deadline=None)
@given(steps, st.floats(0, 1), st.floats(0, 1))
def test_a_diff_of_the_touched_entities_is_the_diff_of_every_entity(
    plan: list[tuple[str, int, int]], cut_a: float, cut_b: float
) -> None:
    store, log = asyncio.run(logged(plan))
    head = log[-1].position if log else 0
    from_pos, to_pos = sorted((round(cut_a * head), round(cut_b * head)))
    config = [e for e in log if e.stream == CONFIG_STREAM]
    head_part = [e for e in config if e.position <= from_pos]
    between = [e for e in config if from_pos < e.position <= to_pos]

    before = fold(ConfigState(), head_part)
    after = fold(before, between)
    expected = every_entity_diff(before, after, between)
    assert diff(before, after, between) == expected

    # from a snapshot: keys as columns, the tail layered over them
    restored = snapshot_of(before)
    assert isinstance(restored.keys, KeyTable | LayeredMap) or not before.keys
    assert diff(restored, fold(restored, between), between) == expected

    # from the touched entities' own events (the scoped read), with the keys of a team created between
    scoped = asyncio.run(scoped_diff(store, Codec(), Point(position=from_pos), Point(position=to_pos)))
    assert scoped is not None
    start, events, changes = scoped
    assert start == (head_part[-1].position if head_part else 0)
    assert events == between
    assert changes == expected


def test_keys_whose_team_is_created_between_the_points_are_in_the_diff() -> None:
    """A key naming a team before the team exists prints the team's id, then its name: the key
    changed though no event between touched it."""
    store, log = asyncio.run(logged([("key", 0, 1), ("key", 1, 3), ("key", 2, 1), ("usage", 0, 0), ("team", 0, 1)]))
    before = fold(ConfigState(), log[:3])
    after = fold(before, log[4:])
    changes = diff(before, after, log[4:])
    assert [(c["kind"], c["id"], c["change"]) for c in changes] == [
        ("team", "t1", "added"), ("key", "k0", "changed"), ("key", "k2", "changed")]
    assert changes[1]["fields"] == {"team": {"from": "t1", "to": "team-1"}} and changes[1]["events"] == []
    assert diff(snapshot_of(before), fold(snapshot_of(before), log[4:]), log[4:]) == changes
    scoped = asyncio.run(scoped_diff(store, Codec(), Point(position=4), Point(position=5)))
    assert scoped is not None and scoped[2] == changes


def test_changes_within_a_kind_are_listed_by_name_not_id() -> None:
    """An operator reads names; ids are random. Teams before keys (the kinds' order), each by name."""
    events = [TeamCreated("t1", "ops"), TeamCreated("t2", "eng"),
              VirtualKeyCreated("k1", "zeta", "h1", "sk-1", None), VirtualKeyCreated("k2", "alpha", "h2", "sk-2", None),
              VirtualKeyCreated("k3", "mid", "h3", "sk-3", None)]

    async def go() -> list[RecordedEvent]:
        store, codec = InMemoryEventStore(), Codec()
        await store.append(CONFIG_STREAM, [NewEvent.of(e, codec) for e in events],
                           AppendOptions(metadata={"actor": "t"}))
        return await store.read(0, 10)

    log = asyncio.run(go())
    changes = diff(ConfigState(), fold(ConfigState(), log), log)
    assert [(c["kind"], c["name"]) for c in changes] == [
        ("team", "eng"), ("team", "ops"), ("key", "alpha"), ("key", "mid"), ("key", "zeta")]


def test_the_scoped_read_spans_more_events_the_more_keys_the_config_holds() -> None:
    """The whole fold's cost grows with the config, the scoped read's with the events between: a
    diff over 10,001 events is scoped for a config of a million keys, folded whole for a small one."""
    assert scoped_limit(0) == scoped_limit(100_000) == 10_000
    assert scoped_limit(1_000_000) == 62_500

    async def go() -> tuple[object, object]:
        store, codec = InMemoryEventStore(), Codec()
        events = [NewEvent.of(VirtualKeyCreated(f"k{i}", f"app-{i}", f"h{i}", "sk", None), codec)
                  for i in range(10_001)]
        await store.append(CONFIG_STREAM, events, AppendOptions(metadata={"actor": "t"}))
        small = await scoped_diff(store, codec, Point(position=0), Point(position=10_001))
        large = await scoped_diff(store, codec, Point(position=0), Point(position=10_001), config_keys=1_000_000)
        return small, large

    small, large = asyncio.run(go())
    assert small is None
    assert large is not None and len(large[1]) == 10_001 and len(large[2]) == 10_001
