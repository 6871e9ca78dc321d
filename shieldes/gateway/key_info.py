"""What an application may read of its own virtual key with only that key: GET /v1/key (shieldes's
shape), LiteLLM's GET /key/info and OpenRouter's GET /api/v1/key (and /api/v1/auth/key), so a
script written for either asks how much budget is left as it did there. Always the caller's own
key, never another's; never a secret (the display prefix and ids only). From memory: the key and
team as projected, the spend as the meter counts it for admission (no database I/O)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from aiohttp import web

from shieldes.errors import PermissionDenied
from shieldes.gateway.middleware import request_id
from shieldes.gateway.routes import GATEWAY, authenticate, json_response
from shieldes.projections.periods import period_reset_at
from shieldes.projections.state import Budget, ConfigState, VirtualKey
from shieldes.secrets import hash_key
from shieldes.usage.admission import NUSD
from shieldes.views import iso

Spent = Callable[[str, Budget], float]  # (subject "k:<id>"/"t:<id>", its budget) -> USD spent in the period
# OpenRouter's `limit_reset` names calendar windows; a shieldes period maps when it is one of them
_OPENROUTER_RESET = {"1d": "daily", "1mo": "monthly"}


def _budget(budget: Budget | None, spent: float, today: int) -> dict[str, Any] | None:
    if budget is None:
        return None
    return {"amount_usd": budget.amount_usd, "period": budget.period, "spent_usd": spent,
            # (in decimal, as `shieldes budget show` says it: a float difference showed $0.000014 as
            # 0.000014000000000000123)
            "remaining_usd": float(max(Decimal(0), Decimal(str(budget.amount_usd)) - Decimal(str(spent)))),
            "resets_at": period_reset_at(budget.period, today).isoformat().replace("+00:00", "Z")}


def key_info(state: ConfigState, key: VirtualKey, spent: Spent, now: float) -> dict[str, Any]:
    """The key as its holder sees it: name, team, models (None: every model), rpm/tpm, its budget
    and its team's (each with the spend in the current period, what is left and when the period
    turns) and expiry."""
    today = int(now // 86400)
    team = state.teams.get(key.team_id) if key.team_id else None
    team_budget = team.budget if team is not None else None
    return {
        "object": "key", "id": key.id, "name": key.name, "prefix": key.prefix,
        "team": None if team is None else {"id": team.id, "name": team.name},
        "models": None if key.models is None else list(key.models),
        "rpm": key.rpm, "tpm": key.tpm,
        "budget": _budget(key.budget, spent("k:" + key.id, key.budget) if key.budget else 0.0, today),
        "team_budget": None if team is None or team_budget is None else
        _budget(team_budget, spent("t:" + team.id, team_budget), today),
        "expires_at": iso(key.expires_at),
    }


def litellm_info(info: dict[str, Any]) -> dict[str, Any]:
    """LiteLLM's /key/info answer for `info` (key_info): `key` is the key's id (LiteLLM gives the
    stored hash; shieldes gives nothing derived from the secret), `models` [] for every model."""
    budget = info["budget"]
    return {"key": info["id"], "info": {
        "key_name": info["prefix"], "key_alias": info["name"],
        "spend": budget["spent_usd"] if budget else None,
        "max_budget": budget["amount_usd"] if budget else None,
        "budget_duration": budget["period"] if budget else None,
        "budget_reset_at": budget["resets_at"] if budget else None,
        "expires": info["expires_at"], "models": info["models"] or [],
        "tpm_limit": info["tpm"], "rpm_limit": info["rpm"],
        "team_id": info["team"]["id"] if info["team"] else None, "blocked": False,
    }}


def openrouter_info(info: dict[str, Any]) -> dict[str, Any]:
    """OpenRouter's /api/v1/key answer for `info` (key_info): `usage` is the spend in the budget's
    period (OpenRouter's is all time), `limit_reset` null for a period OpenRouter has no name for."""
    budget = info["budget"]
    return {"data": {
        "label": info["name"], "usage": budget["spent_usd"] if budget else 0.0,
        "limit": budget["amount_usd"] if budget else None,
        "limit_remaining": budget["remaining_usd"] if budget else None,
        "limit_reset": _OPENROUTER_RESET.get(budget["period"]) if budget else None,
        "is_free_tier": False,
        "rate_limit": None if info["rpm"] is None else {"requests": info["rpm"], "interval": "1m"},
        "expires_at": info["expires_at"],
    }}


def _own_info(request: web.Request) -> dict[str, Any]:
    gw = request.app[GATEWAY]
    key = authenticate(request)
    meter, usage = gw.meter, gw.state.usage
    return key_info(gw.state.config, key, lambda subject, budget: meter.spent_nusd(
        usage, subject, budget, int(meter.clock() // 86400)) / NUSD, meter.clock())


async def own_key(request: web.Request) -> web.StreamResponse:
    return json_response(_own_info(request), request_id(request))


async def litellm_key_info(request: web.Request) -> web.StreamResponse:
    info = _own_info(request)
    asked = request.query.get("key")  # LiteLLM's: a key to read; here only the caller's own
    if asked is not None and asked != info["id"] and hash_key(asked.removeprefix("Bearer ").strip()) != \
            request.app[GATEWAY].state.config.keys[info["id"]].key_hash:
        raise PermissionDenied("a virtual key may read only its own information: call GET /key/info without "
                               "`key`, with the key to read as the API key", code="key_not_own")
    return json_response(litellm_info(info), request_id(request))


async def openrouter_key(request: web.Request) -> web.StreamResponse:
    return json_response(openrouter_info(_own_info(request)), request_id(request))


def add_key_info_routes(app: web.Application) -> None:
    app.router.add_get("/v1/key", own_key)
    app.router.add_get("/key/info", litellm_key_info)
    app.router.add_get("/api/v1/key", openrouter_key)
    app.router.add_get("/api/v1/auth/key", openrouter_key)
