"""Admin API routes over the request log (one row per HTTP request a node served, in its own
partitioned tables): a filtered, paged list and one request's detail. They read through the same
query function as `shieldes logs`. Captured bodies are shown only to a role with the bodies scope."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shieldes.errors import InvalidRequest
from shieldes.gateway.admin.api import Call, Field, Route
from shieldes.gateway.admin.read_routes import known_key, pool_of
from shieldes.requestlog import store
from shieldes.requestlog.filters import LogFilter, plain, request_not_found
from shieldes.roles import BODIES, READ, allows
from shieldes.timeparse import parse_time

MAX_NODES_PER_ID = 20  # one request id is logged once per node that served it (client-sent ids may repeat)


def _cursor(text: str) -> tuple[datetime, str]:
    """`next_before` is `<started_at ISO>|<request_id>` of the previous page's last row."""
    at, sep, rid = text.partition("|")
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        when = None
    if not sep or when is None or when.tzinfo is None or not rid:
        raise InvalidRequest("malformed `before` cursor: pass the previous page's `next_before` unchanged",
                             param="before")
    return when, rid


def log_filter(q: dict[str, Any]) -> LogFilter:
    """The query parameters as a LogFilter (refuses a bad status, time or cursor before any SQL)."""
    if q.get("status") is not None:
        store.status_clause(q["status"])
    f = LogFilter(
        key=q.get("key"), model=q.get("model"), status=q.get("status"), request_id=q.get("request_id"),
        node_id=q.get("node"), route=q.get("route"), error_code=q.get("error_code"), tag=q.get("tag"),
        since=parse_time(q["since"], "since", ago=True) if q.get("since") else None,
        until=parse_time(q["until"], "until", end_of_day=True, ago=True) if q.get("until") else None,
        before=_cursor(q["before"]) if q.get("before") else None,
    )
    if f.since and f.until and f.since > f.until:
        raise InvalidRequest("since is after until; swap them")
    return f


async def list_requests(call: Call) -> Any:
    f = log_filter(call.query)
    if f.key is not None:  # a misspelt key is an error (as in `shieldes logs`), not an empty page
        known_key(call, f.key)
    limit = call.limit()
    async with pool_of(call).connection() as conn:
        rows = await store.query(conn, f, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if more and rows else None
    return {"object": "list", "data": [plain(r) for r in rows], "has_more": more,
            "next_before": f"{plain(last)['started_at']}|{last['request_id']}" if last else None}


async def get_request(call: Call) -> Any:
    rid = call.path["request_id"]
    async with pool_of(call).connection() as conn:
        rows = await store.query(conn, LogFilter(request_id=rid), MAX_NODES_PER_ID)
        captured = await store.bodies(conn, rid) if rows else []
    if not rows:
        raise request_not_found(rid)
    may_read = allows(call.principal.role, BODIES)
    by_node = {b["node_id"]: b for b in captured}
    data = []
    for r in rows:
        row = plain(r)
        body = by_node.get(r["node_id"])
        if body is None:
            row["bodies"] = "not_captured"
        elif not may_read:
            row["bodies"] = "withheld"
        else:
            row.update(bodies="shown", request_body=body["request_body"], response_body=body["response_body"],
                       body_truncated=body["truncated"])
        data.append(row)
    return {"object": "list", "request_id": rid, "data": data}


_FILTERS = (
    Field("key", "string", "only this virtual key (name or id)"),
    Field("model", "string", "only this model (as requested, or the upstream model)"),
    Field("status", "string", "a status (429), a class (4xx, 5xx), error or ok"),
    Field("error_code", "string", "only refusals and failures with this code (budget_exceeded, upstream_error, ...)"),
    Field("tag", "string", "only requests carrying this tag (the client's `tags`, `metadata.tags` or x-litellm-tags)"),
    Field("since", "string", "from this time (ISO date or timestamp, UTC if no zone)"),
    Field("until", "string", "up to this time (a bare date includes that whole day)"),
    Field("request_id", "string", "the request with this x-request-id"),
    Field("node", "string", "only requests served by this node"),
    Field("route", "string", "only this route (/v1/chat/completions, unmatched) or a prefix ending in * (/v1/*)"),
    Field("limit", "integer", "page size, 1-1000 (default 100)"),
    Field("before", "string", "older than the previous page's last row (its `next_before`)"),
)

ROUTES: tuple[Route, ...] = (
    Route("GET", "/requests", list_requests, READ, "List requests served, newest first (refused and failed too)",
          "requests", reads_db=True, query=_FILTERS),
    Route("GET", "/requests/{request_id}", get_request, READ,
          "Show one request: a row per node that logged its id, captured bodies to admins", "requests",
          reads_db=True),
)
