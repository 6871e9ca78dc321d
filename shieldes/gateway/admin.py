"""Read-only admin HTTP surface under /admin/, guarded by SHIELDES_ADMIN_TOKEN.

GET /admin/status  node id, log position and lag, database state, unflushed usage, peers, leader,
                   asyncio task count (for soak tests)
GET /admin/keys    virtual keys: id, name, prefix, revoked, limits, budget, spend in the period
GET /admin/usage   per-key usage this node knows: durable totals from the log + unflushed deltas

Nothing here is secret: key hashes, provider secret references and the admin token never appear in
a response. The token is compared in constant time (hmac.compare_digest over SHA-256 digests, so not
even its length leaks). With SHIELDES_ADMIN_TOKEN unset the routes answer 404 with how to enable them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any

from aiohttp import web

from shieldes.errors import AuthenticationFailed, ShieldesError
from shieldes.gateway.middleware import request_id
from shieldes.gateway.routes import GATEWAY, READINESS, json_response
from shieldes.gateway.service import Gateway
from shieldes.projections.state import Budget, VirtualKey
from shieldes.usage.meter import NUSD


class AdminDisabled(ShieldesError):
    status = 404
    type = "invalid_request_error"
    code = "admin_disabled"


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def check_token(configured: str | None, authorization: str | None) -> None:
    """Raise unless `authorization` is `Bearer <configured token>`."""
    if not configured:
        raise AdminDisabled("the admin API is disabled: set SHIELDES_ADMIN_TOKEN on the node to enable "
                            "it, then send `Authorization: Bearer <token>`")
    scheme, _, given = (authorization or "").strip().partition(" ")
    ok = hmac.compare_digest(_digest(given.strip()), _digest(configured))
    if scheme.lower() != "bearer" or not ok:
        raise AuthenticationFailed("missing or wrong admin token: send `Authorization: Bearer "
                                   "<SHIELDES_ADMIN_TOKEN>`", code="invalid_admin_token")


def _gateway(request: web.Request) -> Gateway:
    gw = request.app[GATEWAY]
    check_token(gw.settings.admin_token, request.headers.get("Authorization"))
    return gw


def _budget(b: Budget | None) -> dict[str, Any] | None:
    return None if b is None else {"amount_usd": b.amount_usd, "period": b.period}


def _key_view(gw: Gateway, key: VirtualKey, today: int) -> dict[str, Any]:
    spend = None
    if key.budget is not None:
        spend = gw.meter.spent_nusd(gw.state.usage, "k:" + key.id, key.budget, today) / NUSD
    team = gw.state.config.teams.get(key.team_id) if key.team_id else None
    return {
        "id": key.id, "name": key.name, "prefix": key.prefix, "revoked": key.revoked,
        "team": team.name if team else key.team_id, "models": list(key.models) if key.models else None,
        "expires_at": key.expires_at, "rpm": key.rpm, "tpm": key.tpm, "budget": _budget(key.budget),
        "spend_usd_in_period": spend,
    }


async def status(request: web.Request) -> web.StreamResponse:
    gw = _gateway(request)
    _, info = request.app[READINESS]()
    cluster = getattr(gw.meter, "cluster", None)  # the ClusterRuntime once the cluster runs
    peers: list[str] = []
    leader: bool | None = None
    if cluster is not None:
        peers = sorted(set(cluster.alive_ids()) - {cluster.node_id})
        leader = bool(cluster.leader.is_leader)
    out = {
        "node_id": info.get("node_id"), "status": info.get("status"), "position": info.get("position"),
        "lag": info.get("lag"), "database": info.get("database"),
        "unflushed_usage_deltas": gw.meter.buffered(), "usage_buffer_max": gw.meter.buffer_max,
        "peers": peers, "leader": leader, "cluster": info.get("cluster"),
        "asyncio_tasks": len(asyncio.all_tasks()),
    }
    return json_response(out, request_id(request))


async def keys(request: web.Request) -> web.StreamResponse:
    gw = _gateway(request)
    today = int(time.time() // 86400)
    data = [_key_view(gw, k, today) for k in sorted(gw.state.config.keys.values(), key=lambda k: k.name)]
    return json_response({"object": "list", "data": data}, request_id(request))


async def usage(request: web.Request) -> web.StreamResponse:
    gw = _gateway(request)
    config = gw.state.config
    totals = gw.state.usage.totals
    unflushed = gw.meter.unflushed_by_key()
    rows = []
    for key_id in sorted(totals.keys() | unflushed.keys()):
        t = totals.get(key_id)
        durable = (t.requests, t.prompt_tokens, t.completion_tokens, t.cost_nusd) if t else (0, 0, 0, 0)
        pending = unflushed.get(key_id, (0, 0, 0, 0))
        key = config.keys.get(key_id)
        req, prompt, completion, nusd = (a + b for a, b in zip(durable, pending, strict=True))
        rows.append({
            "key_id": key_id, "key": key.name if key else key_id, "requests": req, "prompt_tokens": prompt,
            "completion_tokens": completion, "cost_usd": nusd / NUSD, "unflushed_requests": pending[0],
        })
    return json_response({"object": "list", "data": rows}, request_id(request))


def add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/admin/status", status)
    app.router.add_get("/admin/keys", keys)
    app.router.add_get("/admin/usage", usage)
