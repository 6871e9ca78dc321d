"""Admin API routes that read: who am I, this node, the cluster, usage, the audit trail, the config
at a point and between two points, snapshots, and live provider health."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from psycopg_pool import AsyncConnectionPool

from shieldes.cluster import view_reads
from shieldes.cluster.status import cluster_status
from shieldes.config_writer import ConfigView, load_config
from shieldes.errors import InvalidRequest, NotFound, Unavailable
from shieldes.events.catalog import CONFIG_STREAM
from shieldes.events.queries import audit_page, audit_params, usage_grouped
from shieldes.events.store import RecordedEvent
from shieldes.gateway.admin.api import MAX_LIST_LIMIT, PAGE_FIELDS, Call, Field, Route, Streamed, listing, page
from shieldes.gateway.admin.config_stream import config_json
from shieldes.projections.config import apply_config
from shieldes.projections.state import ConfigState
from shieldes.projections.usage import Totals
from shieldes.requestlog.filters import refuse_empty
from shieldes.roles import ADMIN, ANY, AUDIT, READ, USAGE, scopes_of
from shieldes.snapshots.config_diff import check_order, point_tip, scoped_diff
from shieldes.snapshots.config_start import config_base
from shieldes.snapshots.history import Point, check_in_log, config_view, diff, diff_answer, parse_point
from shieldes.snapshots.seal import mac_key
from shieldes.snapshots.store import list_snapshots, save_snapshot
from shieldes.timeparse import parse_day, parse_time
from shieldes.usage.admission import NUSD
from shieldes.views import listed_keys

MAX_USAGE_DAYS = 366


def known_key(call: Call, ref: str) -> str:
    """The id of the key named (or with id) `ref`, revoked ones included; 404 `key_not_found` for none."""
    key = call.ctx.projector.config.find_key(ref)
    if key is None:
        # in the CLI's words, as the shared decisions put it: API clients read `see GET /admin/v1/keys`
        # (wording.py), the CLI in remote mode what it prints in direct mode
        raise NotFound(f"no virtual key named or with id {ref!r}; see `shieldes key list`", code="key_not_found")
    return key.id


def pool_of(call: Call) -> AsyncConnectionPool[Any]:
    if call.ctx.pool is None:
        raise Unavailable("this node has no database connection; retry on another node")
    return call.ctx.pool


async def whoami(call: Call) -> Any:
    p = call.principal
    return {"name": p.name, "role": p.role, "kind": p.kind, "actor": p.actor, "scopes": scopes_of(p.role),
            "node_id": call.ctx.node_id, "session": p.session,
            # the console forgets a token left unused this long (an SSO session the nodes refuse)
            "idle_seconds": call.ctx.settings.oidc_idle_seconds}


async def node_status(call: Call) -> Any:
    ctx = call.ctx
    _, info = ctx.readiness()
    cluster = ctx.cluster
    meter = ctx.gateway.meter
    return {
        "node_id": ctx.node_id, "status": info.get("status"), "position": info.get("position"),
        "lag": info.get("lag"), "database": info.get("database"),
        "unflushed_usage_deltas": meter.buffered(), "usage_buffer_max": meter.buffer_max,
        "peers": sorted(set(cluster.alive_ids()) - {ctx.node_id}) if cluster else [],
        "leader": bool(cluster.leader.is_leader) if cluster else None, "cluster": info.get("cluster"),
        "requests": ctx.gateway.metrics.request_totals(),
        # budget reservations of requests in flight, here and as gossiped by peers: empty when idle
        "reserved_usd": {s: n / NUSD for s, n in sorted(meter.reserved().items()) if n},
        "peers_reserved_usd": ({s: n / NUSD for s, n in sorted(view_reads.reservations(
            cluster.cell.value, exclude=ctx.node_id).items())} if cluster else {}),
        "asyncio_tasks": len(asyncio.all_tasks()),
    }


async def cluster(call: Call) -> Any:
    if not call.ctx.database_url:
        raise Unavailable("this node has no database connection; retry on another node")
    out = await cluster_status(call.ctx.database_url, call.ctx.settings.node_timeout)
    out["answered_by"] = call.ctx.node_id
    out["now"] = time.time()
    return out


def _day(call: Call, name: str) -> date | None:
    text = call.query.get(name)
    return parse_day(text, name) if text else None


async def usage(call: Call) -> Any:
    q, state = call.query, call.ctx.projector.config
    group_by = [g.strip() for g in (q.get("group_by") or "key").split(",") if g.strip()]
    for g in group_by:
        if g not in ("day", "hour", "key", "team", "model", "provider"):
            raise InvalidRequest(f"cannot group usage by {g!r}: use day, hour, key, team, model or provider",
                                 param="group_by")
    since, until = _day(call, "since"), _day(call, "until")
    if since and until and since > until:
        raise InvalidRequest("since is after until; swap them")
    if since and until and (until - since).days > MAX_USAGE_DAYS:
        raise InvalidRequest(f"the range is over {MAX_USAGE_DAYS} days; ask for a shorter one")
    for name in ("key", "team", "model", "provider"):
        refuse_empty(name, q.get(name))
    key_ids = team_ids = None
    if q.get("key"):  # a misspelt key or team is an error, not an empty answer that looks like no traffic
        key_ids = [known_key(call, q["key"])]
    if q.get("team"):
        team = state.find_team(q["team"])
        if team is None:
            raise NotFound(f"no team named or with id {q['team']!r}; see GET /admin/v1/teams", code="team_not_found")
        team_ids = [team.id]
    rows = await usage_grouped(pool_of(call), group_by, since=since, until=until, key_ids=key_ids,
                               team_ids=team_ids, model=q.get("model"), provider=q.get("provider"))
    for r in rows:
        if "key" in r:
            k = state.keys.get(r["key"])
            r["key_id"], r["key"] = r["key"], k.name if k else r["key"]
        if "team" in r:
            t = state.teams.get(r["team"]) if r["team"] else None
            r["team_id"], r["team"] = r["team"], t.name if t else r["team"]
        if "day" in r:
            r["day"] = r["day"].isoformat()
        if "hour" in r:
            r["hour"] = r["hour"].astimezone(UTC).isoformat()
        r["cost_usd"] = r["cost_nusd"] / NUSD
        r["tools_usd"] = r["tools_nusd"] / NUSD  # the part of cost_usd the hosted tool uses cost
    return {"object": "list", "group_by": group_by, "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None, "data": rows}


async def usage_keys(call: Call) -> Any:
    """The keys `shieldes usage` lists with zeros when they have no usage in its window: the
    unrevoked ones, name and id only, by name a page at a time (a usage reader needs no more of
    the config, and a page of a million keys reads about `limit` of them)."""
    state, ref = call.ctx.projector.config, call.query.get("key")
    refuse_empty("key", ref)
    if ref:
        key = state.keys[known_key(call, ref)]
        return listing([] if key.revoked else [{"name": key.name, "id": key.id}], False, "name")
    limit, after, now = call.list_limit(), call.query.get("after"), time.time()

    def walk() -> list[dict[str, Any]]:
        rows = []
        for key in listed_keys(state, now, statuses=("active", "expired"), after=after):
            rows.append({"name": key.name, "id": key.id})
            if len(rows) > limit:  # one more than a page says whether there is a next one
                break
        return rows

    return page(await asyncio.to_thread(walk), "name", call)  # (the node serving meanwhile)


async def usage_live(call: Call) -> Any:
    """Per key, what this node knows: durable totals from the log plus its unflushed deltas, media
    units (images, audio_seconds, characters) and hosted tool uses (web_searches, file_searches,
    containers, tools_usd) named as in GET /usage and `shieldes usage`."""
    gw = call.ctx.gateway
    config, totals, unflushed = gw.state.config, gw.state.usage.totals, gw.meter.unflushed_by_key(gw.state.usage)
    rows = []
    none = Totals()
    for key_id in sorted(totals.keys() | unflushed.keys()):
        t, pending = totals.get(key_id, none), unflushed.get(key_id, none)
        key = config.keys.get(key_id)
        rows.append({"key_id": key_id, "key": key.name if key else key_id,
                     "requests": t.requests + pending.requests,
                     "prompt_tokens": t.prompt_tokens + pending.prompt_tokens,
                     "completion_tokens": t.completion_tokens + pending.completion_tokens,
                     "images": t.images + pending.images, "audio_seconds": t.audio_seconds + pending.audio_seconds,
                     "characters": t.characters + pending.characters,
                     "web_searches": t.web_searches + pending.web_searches,
                     "file_searches": t.file_searches + pending.file_searches,
                     "containers": t.containers + pending.containers,
                     "tools_usd": (t.tools_nusd + pending.tools_nusd) / NUSD,
                     "cost_usd": (t.cost_nusd + pending.cost_nusd) / NUSD, "unflushed_requests": pending.requests})
    return {"object": "list", "data": rows}


async def audit(call: Call) -> Any:
    q = call.query
    limit = call.limit()
    params = audit_params(
        actor=q.get("actor"), type_=q.get("type"), subject=q.get("subject"), limit=limit + 1,
        since=parse_time(q["since"], "since", ago=True) if q.get("since") else None,
        until=parse_time(q["until"], "until", end_of_day=True, ago=True) if q.get("until") else None,
        before=q.get("before"),
    )
    rows = await audit_page(pool_of(call), params)
    more = len(rows) > limit
    rows = rows[:limit]
    for r in rows:
        r["recorded_at"] = r["recorded_at"].astimezone(UTC).isoformat()
    return {"object": "list", "data": rows, "has_more": more,
            "next_before": rows[-1]["position"] if more and rows else None}


def _keys_limit(call: Call) -> int | None:
    if call.query.get("keys_limit") is None:
        return None
    value = int(call.query["keys_limit"])
    if not 1 <= value <= MAX_LIST_LIMIT:
        raise InvalidRequest(f"keys_limit must be between 1 and {MAX_LIST_LIMIT}, got {value}; "
                             "omit it for every key", param="keys_limit")
    return value


async def config_at(call: Call) -> Any:
    at = call.query.get("at")
    keys_limit = _keys_limit(call)
    if at is None:
        return await _config_answer({"at": "now", "position": call.ctx.projector.position}, call.ctx.projector.config,
                              keys_limit)
    point = parse_point(at)
    store = call.ctx.projector.store
    check_in_log(point, await store.head(), datetime.now(UTC), omit="`at`")
    tip, projection = await point_tip(store, point), call.ctx.projector.projection
    if tip == projection.config_tip[0]:
        # no config event since the point: the node's own config is the config then (it decoded
        # the whole snapshot for this, 8 s at a million keys)
        view = ConfigView(projection.config, tip)
    else:
        view = await load_config(store, projection.codec, upto=point.position, until=point.time,
                                 base=await _start_for(call, point))
    recorded_at = None
    if view.position:
        found = await call.ctx.projector.store.read(view.position - 1, 1, stream=CONFIG_STREAM)
        recorded_at = found[0].recorded_at.astimezone(UTC).isoformat() if found else None
    return await _config_answer({"at": at, "position": view.position, "recorded_at": recorded_at}, view.state,
                                keys_limit)


async def _config_answer(head: dict[str, Any], state: ConfigState, keys_limit: int | None) -> Any:
    """With every key, a streamed answer (config_stream.py): built in one go at a million keys it
    held the node's other requests for seconds."""
    if keys_limit is None:
        return Streamed(config_json(head, state))
    return {**head, **await asyncio.to_thread(config_view, state, keys_limit=keys_limit)}


async def _start_for(call: Call, point: Point) -> ConfigView:
    """Where a fold up to `point` starts: the newest snapshot before it (config_start.config_base),
    else position 0."""
    base = None
    if call.ctx.pool is not None:
        base = await config_base(call.ctx.projector.store, call.ctx.pool, mac_key(call.ctx.settings.cluster_secret),
                                 point)
    return base if base is not None else ConfigView(ConfigState(), 0)


# Config events folded between two reads of the log: a fold runs on the node's event loop at some
# 10,000 events a second, and chat requests wait while it runs, so it yields after each page.
FOLD_PAGE = 1000


async def _fold_to(call: Call, base: ConfigView, point: Point,
                   between: list[RecordedEvent] | None = None) -> ConfigView:
    """`base` continued with the config events after it that `point` includes (appended to
    `between` if given), a page at a time."""
    store, codec = call.ctx.projector.store, call.ctx.projector.projection.codec
    state, position = base.state, base.position
    while True:
        page = await store.read(position, FOLD_PAGE, stream=CONFIG_STREAM)
        for e in page:
            if not point.includes(e):
                return ConfigView(state, position)
            state = apply_config(state, codec.decode(e.type, e.version, e.data))
            position = e.position
            if between is not None:
                between.append(e)
        if len(page) < FOLD_PAGE:
            return ConfigView(state, position)


async def config_diff(call: Call) -> Any:
    a, b = call.query["from"], call.query.get("to") or str(call.ctx.projector.position)
    pa, pb = parse_point(a), parse_point(b)
    store = call.ctx.projector.store
    head = await store.head()
    for point, omit in ((pa, None), (pb, "`to`")):  # a future time is a fine "up to now" for `to`; a position is not
        check_in_log(Point(position=point.position), head, datetime.now(UTC), omit=omit)
    # the entities the events between touch, from their own events (config_diff.py): a diff of a
    # few events at a million keys decoded a snapshot and compared two whole configs (15 s)
    # (over more events the larger the config: the whole fold's cost grows with it)
    scoped = await scoped_diff(store, call.ctx.projector.projection.codec, pa, pb,
                               config_keys=len(call.ctx.projector.config.keys))
    if scoped is not None:
        start, events, changes = scoped
        return diff_answer(a, start, b, events[-1].position if events else start, len(events), changes)
    # else one fold, from the newest snapshot before `from`: to `from`, then on to `to` (it once
    # folded the whole stream twice without a pause, holding every request on the node for half a
    # minute at 100,000 keys)
    before = await _fold_to(call, await _start_for(call, pa), pa)
    await check_order(store, before.position, pa, pb, ("from", "to"))
    between: list[RecordedEvent] = []
    after = await _fold_to(call, before, pb, between)
    # entities of both states compared in a thread: the loop serves requests meanwhile
    changes = await asyncio.to_thread(diff, before.state, after.state, between)
    return diff_answer(a, before.position, b, after.position, len(between), changes)


async def snapshots(call: Call) -> Any:
    return {"object": "list", "data": [s.as_dict() for s in await list_snapshots(pool_of(call))]}


async def snapshot_create(call: Call) -> Any:
    # sealed as the scheduler's: an unsealed one is loaded by no node of a cluster with a secret
    info = await save_snapshot(pool_of(call), call.ctx.projector, node_id=call.ctx.node_id,
                               keep=call.ctx.settings.snapshots_kept, key=mac_key(call.ctx.settings.cluster_secret))
    return 201, info.as_dict()


async def provider_health(call: Call) -> Any:
    """Per deployment: this node's breaker and moving figures, every peer's gossiped view, and each
    deployment's share of the cluster's requests in the last hour (from the log)."""
    ctx = call.ctx
    state = ctx.projector.config
    breaker = ctx.cluster.breaker if ctx.cluster else None
    local = breaker.health() if breaker is not None else {}
    peers: dict[str, dict[str, Any]] = {}
    gossip = ctx.cluster.gossip if ctx.cluster else None
    if gossip is not None:
        for (node, _), ns in gossip.view.components.items():
            for name, h in ns.health.items():
                peers.setdefault(name, {})[node] = {"latency_ms": h.latency_ms, "error_rate": h.error_rate,
                                                    "requests": h.requests, "open": h.open}
    since = datetime.now(UTC) - timedelta(hours=1)
    traffic: dict[str, int] = {}
    if ctx.pool is not None:
        for r in await usage_grouped(ctx.pool, ["provider"], since=None, until=None, since_time=since):
            traffic[r["provider"]] = int(r["requests"])
    total = sum(traffic.values())
    rows = []
    for d in sorted(state.providers.values(), key=lambda d: d.name):
        mine = local.get(d.name)
        rows.append({
            "name": d.name, "type": d.kind, "models": list(d.models), "weight": d.weight,
            "breaker": "open" if breaker is not None and breaker.is_open(d.name) else "closed",
            "open_here": bool(mine and mine.open),
            "latency_ms": mine.latency_ms if mine else None, "error_rate": mine.error_rate if mine else None,
            "samples": mine.requests if mine else 0,
            "peers": peers.get(d.name, {}),
            "requests_last_hour": traffic.get(d.name, 0),
            "traffic_share": traffic.get(d.name, 0) / total if total else 0.0,
        })
    return {"object": "list", "node_id": ctx.node_id, "data": rows}


ROUTES: tuple[Route, ...] = (
    Route("GET", "/whoami", whoami, ANY, "Show the calling principal, its role and scopes", "session"),
    Route("GET", "/node", node_status, READ, "Show this node: log position, lag, database, peers, leader", "cluster",
          aliases=("/admin/status",)),
    Route("GET", "/cluster", cluster, READ, "Show every node, the leader and its epoch, gossip health", "cluster",
          reads_db=True),
    Route("GET", "/usage", usage, USAGE, "Usage summed per key, team, model, provider, day or hour", "usage",
          reads_db=True,
          query=(Field("group_by", "string", "comma-separated: day, hour, key, team, model, provider (default key)"),
                 Field("since", "string", "first UTC day counted, e.g. 2026-11-01, or the day this long ago: 7d"),
                 Field("until", "string", "last UTC day counted (inclusive), or the day this long ago: 1d"),
                 Field("key", "string", "only this key (name or id)"),
                 Field("team", "string", "only this team (name or id)"),
                 Field("model", "string", "only this model"),
                 Field("provider", "string", "only this provider (deployment)"))),
    Route("GET", "/usage/keys", usage_keys, USAGE, "The unrevoked keys (name and id) that usage per key lists, "
          "with zeros when they have none", "usage",
          query=(Field("key", "string", "only this key (name or id)"), *PAGE_FIELDS)),
    Route("GET", "/usage/live", usage_live, USAGE, "Per-key usage this node knows, unflushed deltas included",
          "usage", aliases=("/admin/usage",)),
    Route("GET", "/audit", audit, AUDIT, "Config changes, newest first (secrets redacted)", "audit",
          reads_db=True,
          query=(Field("actor", "string", "only changes by this actor"),
                 Field("type", "string", "event type, or a family such as virtual_key"),
                 Field("subject", "string", "key, provider or team name, model or id"),
                 Field("since", "string", "from this time (ISO date or timestamp)"),
                 Field("until", "string", "up to this time (a bare date includes that day)"),
                 Field("before", "integer", "only positions below this (the previous page's next_before)"),
                 Field("limit", "integer", "page size, 1-1000 (default 100)"))),
    Route("GET", "/config", config_at, AUDIT, "The config as of a log position or time (default now)", "audit",
          reads_db=True, query=(Field("at", "string", "a log position (e.g. 42) or an ISO 8601 time"),
                                Field("keys_limit", "integer",
                                      f"only the first N keys by name, 1-{MAX_LIST_LIMIT}, with keys_total "
                                      "counting them all (default: every key)"))),
    Route("GET", "/config/diff", config_diff, AUDIT, "What changed between two points, by which events and actors",
          "audit", reads_db=True,
          query=(Field("from", "string", "earlier point: a position or ISO time", required=True),
                 Field("to", "string", "later point (default: now)"))),
    Route("GET", "/snapshots", snapshots, READ, "List stored projection snapshots", "snapshots", reads_db=True),
    Route("POST", "/snapshots", snapshot_create, ADMIN, "Write a snapshot of this node's projection now",
          "snapshots"),
    Route("GET", "/providers/health", provider_health, READ,
          "Show live health per deployment: breaker, latency, error rate, traffic share", "providers", reads_db=True),
)
