"""`config diff` between two points from the events that matter: the config events between the
points name the entities that can differ (history.touched), and those entities' own events plus
the shared config (events/scope.py, `config_index` in Postgres) give their state at both points.
No snapshot is decoded and no million-key config folded: at a million keys the whole-config way
took 15 s for a diff of one event. Used by the admin API and the CLI; when it cannot answer
(too many events between, an event of a type it does not know) the caller folds the whole
config, with the same answer."""

from __future__ import annotations

import asyncio
from typing import Any

from shieldes.errors import InvalidRequest
from shieldes.events.catalog import CONFIG_STREAM
from shieldes.events.codec import Codec
from shieldes.events.scope import TEAM_CREATED, Scope
from shieldes.events.store import EventStore, RecordedEvent
from shieldes.projections.config import apply_recorded
from shieldes.projections.state import ConfigState
from shieldes.snapshots.history import Point, diff, relabelled_teams, touched

# Past this many config events between the points the scoped read may cost more than the whole
# fold: the caller folds the whole config instead. The whole fold's cost grows with the config (a
# snapshot decoded, two configs compared: ~10 s of CPU at a million keys), the scoped read's with
# the events between (~0.11 ms of CPU each, the entities' own events read and folded), so the
# bound is the larger of a floor and the config's keys / KEYS_PER_SCOPED_EVENT (measured at a
# million keys: 30,000 events 3.3 s against 10.2 s, 100,000 events 11.1 s against 9.6 s).
SCOPED_MAX_EVENTS = 10_000
KEYS_PER_SCOPED_EVENT = 16
PAGE = 1000
Changes = list[dict[str, Any]]


def scoped_limit(config_keys: int) -> int:
    """The most config events between two points a scoped diff reads, for a config of `config_keys` keys."""
    return max(SCOPED_MAX_EVENTS, config_keys // KEYS_PER_SCOPED_EVENT)


async def point_tip(store: EventStore, point: Point) -> int:
    """The position of the newest config event a fold up to `point` includes (0: none)."""
    if point.position is not None:
        return await store.config_position_at(point.position)
    assert point.time is not None
    first_after = await store.first_config_after(point.time)
    return await store.config_head() if first_after is None else await store.config_position_at(first_after - 1)


async def snapshot_bound(store: EventStore, point: Point) -> int | None:
    """The highest position a snapshot may have for a fold up to `point` to start from it (None:
    any): every snapshot at or below it holds only config events the point includes."""
    if point.position is not None:
        return point.position
    assert point.time is not None
    first_after = await store.first_config_after(point.time)
    return None if first_after is None else first_after - 1


async def check_order(store: EventStore, start: int, pa: Point, pb: Point, names: tuple[str, str]) -> None:
    """Refuse a `from` point after the `to` point (`names`: what the caller calls them)."""
    if not start:
        return
    found = await store.read(start - 1, 1, stream=CONFIG_STREAM)
    if found and not pb.includes(found[0]):
        raise InvalidRequest(f"{names[0]} ({pa.label()}) is after {names[1]} ({pb.label()}); "
                             "give the earlier point first")


async def events_until(store: EventStore, after: int, point: Point,
                       limit: int | None = None) -> list[RecordedEvent] | None:
    """The config events after position `after` that `point` includes (up to the first it does
    not), a page at a time; None once there are more than `limit`."""
    events: list[RecordedEvent] = []
    while page := await store.read(events[-1].position if events else after, PAGE, stream=CONFIG_STREAM):
        for e in page:
            if not point.includes(e):
                return events
            events.append(e)
        if limit is not None and len(events) > limit:
            return None
        if len(page) < PAGE:
            break
    return events


def scoped_changes(selected: list[RecordedEvent], start: int, between: list[RecordedEvent],
                   codec: Codec, members_read: set[str]) -> Changes | None:
    """The diff from the config at `start` to it with `between` folded in, from `selected` (the
    shared config and every event of the entities `between` touches, as read_scope gives them,
    with every key of the teams in `members_read`); None when those do not decide it (a team whose
    keys print another name and whose keys were not read)."""
    refs, named_all = touched(between)
    if not named_all:
        return None
    before = apply_recorded(ConfigState(), [e for e in selected if e.position <= start], codec)
    after = apply_recorded(before, between, codec)
    if relabelled_teams(before, after, refs) - members_read:
        return None
    return diff(before, after, between)


async def scoped_diff(store: EventStore, codec: Codec, pa: Point, pb: Point,
                      names: tuple[str, str] = ("from", "to"),
                      config_keys: int = 0) -> tuple[int, list[RecordedEvent], Changes] | None:
    """(the `from` point's config position, the events between, the changes) from the entities the
    events between touch alone; None: the caller folds the whole config. `config_keys`: the keys
    of the config (as the caller knows it), which the whole fold's cost grows with."""
    start = await point_tip(store, pa)
    await check_order(store, start, pa, pb, names)
    between = await events_until(store, start, pb, scoped_limit(config_keys))
    if between is None:
        return None
    refs, named_all = touched(between)
    if not named_all:
        return None
    keys = {i for k, i in refs if k == "key"}
    # a team created between the points: keys that named it before print its name after, untouched
    created = {e.data["id"] for e in between if e.type == TEAM_CREATED}
    if created:
        keys |= await store.keys_naming_teams(sorted(created))
    selected, _ = await store.read_scope(Scope(keys=tuple(sorted(keys)),
                                               teams=tuple(sorted(i for k, i in refs if k == "team"))))
    # folded in a thread: the node's loop serves requests meanwhile
    changes = await asyncio.to_thread(scoped_changes, selected, start, between, codec, created)
    return None if changes is None else (start, between, changes)
