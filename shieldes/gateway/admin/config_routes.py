"""Admin API routes that change the config: keys, budgets, teams and admin tokens (who may call
and what each may spend; providers, model aliases and pricing are in serving_routes).
Every write goes through the same decide functions as the CLI (`execute_live`), with the caller as
the recorded actor; a refused command appends nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from shieldes import secrets
from shieldes.config_writer import LiveWrite, execute_live
from shieldes.errors import InvalidRequest, NotFound
from shieldes.gateway.admin.api import (
    MAX_LIST_LIMIT,
    PAGE_FIELDS,
    Call,
    Field,
    Route,
    in_slices,
    listing,
    page,
    page_of_names,
)
from shieldes.projections.commands import (
    UNSET,
    Command,
    CreateKey,
    CreateTeam,
    RevokeKey,
    RotateKey,
    SetBudget,
    UpdateKey,
    find_team,
)
from shieldes.projections.shared_commands import (
    CreateAdminToken,
    RevokeAdminToken,
)
from shieldes.projections.state import ConfigState, Team, VirtualKey
from shieldes.requestlog.filters import refuse_empty
from shieldes.roles import ADMIN, KEYS_WRITE, READ, ROLES
from shieldes.timeparse import expiry
from shieldes.usage.admission import NUSD
from shieldes.views import (
    BUDGET_KINDS,
    budget_unpriced,
    budgeted,
    key_row,
    listed_keys,
    rotation_warnings,
    team_row,
    token_row,
    unpriced_for_key,
    unserved_warnings,
)

PERIOD = "budget period: 1d, Nd (e.g. 30d) or 1mo"


# After a write's wait on Postgres ran out the change may have committed or not (the answer to a
# COMMIT may be what stalled): the operator is told to look before sending it again.
UNCONFIRMED = ("it may or may not have been written: check the database (is it up and answering, a session "
               "holding locks in pg_stat_activity, free disk space), then look for the change in "
               "GET /admin/v1/audit before sending it again (a create sent again with the same Idempotency-Key "
               "is safe)")


async def write_command(call: Call, command: Command) -> LiveWrite:
    written = await call.ctx.db_wait.run(
        execute_live(call.ctx.projector, command, actor=call.principal.actor, idempotency=call.idempotency),
        "the change was not confirmed", advice=UNCONFIRMED)
    if written.replayed:
        call.headers["Idempotent-Replayed"] = "true"
    return written


def created_status(written: LiveWrite) -> int:
    return 200 if written.replayed else 201


# --- keys ------------------------------------------------------------------------------------------


def key_view(call: Call, state: ConfigState, key: VirtualKey, now: float) -> dict[str, Any]:
    """A key as the API shows it: the CLI's row plus revoked, budget and spend in the current period."""
    row = key_row(state, key, now)
    spend = None
    if key.budget is not None:
        gw = call.ctx.gateway
        spend = gw.meter.spent_nusd(gw.state.usage, "k:" + key.id, key.budget, int(now // 86400)) / NUSD
    row.update(revoked=key.revoked, team_id=key.team_id,
               budget=None if key.budget is None else {"amount_usd": key.budget.amount_usd,
                                                       "period": key.budget.period},
               spend_usd_in_period=spend)
    return row


def _key(state: ConfigState, ref: str) -> VirtualKey:
    key = state.find_key(ref)
    if key is None:
        raise NotFound(f"no virtual key named or with id {ref!r}; see GET /admin/v1/keys", code="key_not_found")
    return key


def with_position(row: dict[str, Any], written: LiveWrite) -> dict[str, Any]:
    return {**row, "position": written.events[-1].position}


async def list_keys(call: Call) -> Any:
    state, now = call.ctx.projector.config, time.time()
    q = call.query
    refuse_empty("team", q.get("team"))
    team = find_team(state, q["team"], subject=True) if q.get("team") else None  # (404 `team_not_found`)
    status, limit = q.get("status"), call.list_limit()

    def walk() -> list[VirtualKey]:
        keys = []
        for key in listed_keys(state, now, statuses=None if status in (None, "all") else (status,),
                               team_id=None if team is None else team.id, search=q.get("search") or "",
                               after=q.get("after")):
            keys.append(key)
            if len(keys) > limit:  # one more than a page says whether there is a next one
                break
        return keys

    # a filter few keys match walks every name (seconds at a million keys): in a thread, on the config
    # as it was (persistent: later writes leave it be), the node serving meanwhile
    keys = await asyncio.to_thread(walk)
    return page(await in_slices(keys, lambda key: key_view(call, state, key, now)), "name", call)


async def get_key(call: Call) -> Any:
    state = call.ctx.projector.config
    return key_view(call, state, _key(state, call.path["key"]), time.time())


def _period_needs_amount(body: dict[str, Any]) -> None:
    """A period means nothing without an amount: refused rather than silently ignored (as the CLI does)."""
    if body.get("budget_period") is not None and body.get("budget") is None:
        raise InvalidRequest("`budget_period` needs `budget` (the amount in USD to spend per period)", param="budget")


async def create_key(call: Call) -> Any:
    b = call.body
    _period_needs_amount(b)
    secret = secrets.new_virtual_key()
    command = CreateKey(
        id=secrets.new_id("key"), name=b["name"], key_hash=secrets.hash_key(secret),
        prefix=secrets.display_prefix(secret), models=tuple(b["models"]) if b.get("models") is not None else None,
        rpm=b.get("rpm"), tpm=b.get("tpm"), budget_usd=b.get("budget"),
        budget_period=b.get("budget_period") or "30d", team=b.get("team"),
        expires_at=expiry(b.get("expires_in"), b.get("expires_at"), time.time()),
        mcp=tuple(b["mcp"]) if b.get("mcp") else None,
    )
    written = await write_command(call, command)
    key = written.state.keys[written.events[0].data["id"]]
    row = with_position(key_view(call, written.state, key, time.time()), written)
    row.update(unpriced_models=unpriced_for_key(written.state, key),
               warnings=unserved_warnings(written.state, command.models))
    # the secret exists only in this response; a replay cannot show it again (only its hash is kept)
    row["key"] = None if written.replayed else secret
    return created_status(written), row


async def update_key(call: Call) -> Any:
    b = call.body
    if not b:
        raise InvalidRequest("nothing to change: send at least one of " + ", ".join(f.name for f in _KEY_UPDATE))
    command = UpdateKey(
        call.path["key"],
        models=UNSET if "models" not in b else (tuple(b["models"]) if b["models"] is not None else None),
        rpm=b.get("rpm", UNSET), tpm=b.get("tpm", UNSET), team=b.get("team", UNSET),
        expires_at=UNSET if "expires_at" not in b else (
            None if b["expires_at"] is None else expiry(None, b["expires_at"], time.time())),
        mcp=UNSET if "mcp" not in b else (tuple(b["mcp"]) if b["mcp"] else None),
    )
    written = await write_command(call, command)
    key = written.state.keys[_key(written.state, call.path["key"]).id]
    row = with_position(key_view(call, written.state, key, time.time()), written)
    if "models" in b or b.get("team") is not None:  # (as a create says it: models a budget refuses unpriced)
        row["unpriced_models"] = unpriced_for_key(written.state, key)
    row["warnings"] = unserved_warnings(written.state, command.models if isinstance(command.models, tuple) else None)
    return row


async def revoke_key(call: Call) -> Any:
    written = await write_command(call, RevokeKey(call.path["key"]))
    key = written.state.keys[written.events[0].data["id"]]
    return with_position(key_view(call, written.state, key, time.time()), written)


async def rotate_key(call: Call) -> Any:
    secret = secrets.new_virtual_key()
    written = await write_command(call, RotateKey(call.path["key"], secrets.hash_key(secret),
                                                  secrets.display_prefix(secret)))
    key = written.state.keys[written.events[0].data["id"]]
    now = time.time()
    return {**with_position(key_view(call, written.state, key, now), written), "key": secret,
            "warnings": rotation_warnings(key, now)}


# --- budgets -----------------------------------------------------------------------------------------


def _budget_kind(call: Call) -> str:
    kind = call.path["kind"]
    if kind not in ("key", "team"):
        raise NotFound(f"unknown budget subject kind {kind!r}: use /admin/v1/budgets/key/... or .../team/...",
                       code="not_found")
    return kind


async def set_budget(call: Call) -> Any:
    written = await write_command(call, SetBudget(_budget_kind(call), call.path["subject"], call.body["amount_usd"],
                                                  call.body.get("period") or "30d"))
    data = written.events[0].data
    return {"subject_kind": data["subject_kind"], "subject_id": data["subject_id"], "amount_usd": data["amount_usd"],
            "period": data["period"], "position": written.events[-1].position,
            "unpriced_models": budget_unpriced(written.state, data["subject_kind"], data["subject_id"])}


async def remove_budget(call: Call) -> Any:
    written = await write_command(call, SetBudget(_budget_kind(call), call.path["subject"], None, "30d"))
    data = written.events[0].data
    return {"subject_kind": data["subject_kind"], "subject_id": data["subject_id"], "amount_usd": None,
            "position": written.events[-1].position}


def budget_cursor(raw: str) -> tuple[str, str]:
    """The (kind, name) of a budget listing's `after` cursor, `key:NAME` or `team:NAME`: the listing
    holds keys then teams, whose names may be the same, so a name alone is not a place in it."""
    kind, sep, name = raw.partition(":")
    if not sep or kind not in BUDGET_KINDS:
        raise InvalidRequest(f"malformed `after` cursor {raw!r}: pass the previous page's `next_after` unchanged "
                             "(`key:NAME` or `team:NAME`; `team:` starts at the teams' budgets)", param="after")
    return kind, name


async def list_budgets(call: Call) -> Any:
    """Every budget (what a client that pages nothing expects) unless `limit` or `after` asks for a page."""
    state, now = call.ctx.projector.config, time.time()
    gw, today, q = call.ctx.gateway, int(now // 86400), call.query
    paged = "limit" in q or "after" in q
    after = budget_cursor(q["after"]) if q.get("after") is not None else None
    # the budgeted keys read and sorted in a thread (1.3 s at 143,000 of them), their views a slice at
    # a time: the node serves requests meanwhile
    subjects, more = await asyncio.to_thread(budgeted, state, after, call.list_limit() if paged else None)

    def view(s: VirtualKey | Team) -> dict[str, Any]:
        kind, budget = ("key" if isinstance(s, VirtualKey) else "team"), s.budget
        assert budget is not None  # (budgeted yields only subjects with one)
        spent = gw.meter.spent_nusd(gw.state.usage, kind[0] + ":" + s.id, budget, today) / NUSD
        return {"subject_kind": kind, "subject_id": s.id, "name": s.name,
                "amount_usd": budget.amount_usd, "period": budget.period, "spent_usd": spent}

    rows = await in_slices(subjects, view)
    return {"object": "list", "data": rows, "has_more": more,
            "next_after": f"{rows[-1]['subject_kind']}:{rows[-1]['name']}" if more and rows else None}


# --- teams -------------------------------------------------------------------------------------------


def _team_view(call: Call, state: ConfigState, team_id: str) -> dict[str, Any]:
    return _team_views(call, state, (team_id,))[0]


def _team_views(call: Call, state: ConfigState, team_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Teams as the API shows them: the CLI's row plus the active keys and the spend in the current
    period (a page of ten thousand is one call: what every row shares is looked up once)."""
    gw, today, counts = call.ctx.gateway, int(time.time() // 86400), state.team_keys
    meter, usage, teams = gw.meter, gw.state.usage, state.teams
    rows = []
    for team_id in team_ids:
        team = teams[team_id]
        row = team_row(team)
        row["keys"] = counts.get(team_id, 0)
        row["spend_usd_in_period"] = None if team.budget is None else \
            meter.spent_nusd(usage, "t:" + team_id, team.budget, today) / NUSD
        rows.append(row)
    return rows


async def list_teams(call: Call) -> Any:
    state, search = call.ctx.projector.config, (call.query.get("search") or "").lower()
    if len(state.team_ids_by_name) != len(state.teams):  # a log from before names were unique
        teams = [{"name": t.name, "id": t.id} for t in sorted(state.teams.values(), key=lambda t: t.name)
                 if search in t.name.lower()]
        listed = page(teams, "name", call)
        listed["data"] = _team_views(call, state, (t["id"] for t in listed["data"]))
        return listed
    ordered = call.ctx.orders.of("teams", state.team_ids_by_name)
    if search:  # a scan of the sorted names only (10,000 teams: about a millisecond), no team's view
        ordered = [n for n in ordered if search in n.lower()]
    names, more = page_of_names(ordered, call)
    by_name = state.team_ids_by_name  # the views of this page's teams only, a slice at a time
    return listing(await in_slices(names, lambda n: _team_view(call, state, by_name[n])), more, "name")


async def get_team(call: Call) -> Any:
    state, ref = call.ctx.projector.config, call.path["team"]
    team = state.find_team(ref)
    if team is None:
        raise NotFound(f"no team named or with id {ref!r}; see GET /admin/v1/teams", code="team_not_found")
    return _team_view(call, state, team.id)


async def create_team(call: Call) -> Any:
    b = call.body
    _period_needs_amount(b)
    written = await write_command(call, CreateTeam(secrets.new_id("team"), b["name"], b.get("budget"),
                                                   b.get("budget_period") or "30d"))
    team = _team_view(call, written.state, written.events[0].data["id"])
    return created_status(written), with_position(team, written)


# --- admin tokens --------------------------------------------------------------------------------------


async def list_tokens(call: Call) -> Any:
    state = call.ctx.projector.config
    return page([token_row(t) for t in sorted(state.admin_tokens.values(), key=lambda t: t.name)], "name", call)


async def create_token(call: Call) -> Any:
    token = secrets.new_admin_token()
    b = call.body
    written = await write_command(call, CreateAdminToken(secrets.new_id("adm"), b["name"], b["role"],
                                                         secrets.hash_key(token), secrets.display_prefix(token),
                                                         expiry(b.get("expires_in"), b.get("expires_at"), time.time())))
    row = with_position(token_row(written.state.admin_tokens[written.events[0].data["id"]]), written)
    row["token"] = None if written.replayed else token
    return created_status(written), row


async def revoke_token(call: Call) -> Any:
    written = await write_command(call, RevokeAdminToken(call.path["name"]))
    return with_position(token_row(written.state.admin_tokens[written.events[0].data["id"]]), written)


# --- the table ---------------------------------------------------------------------------------------

_KEY_CREATE = (
    Field("name", "string", "unique key name", required=True),
    Field("models", "array", "allowed models (omit or null: every model)", nullable=True),
    Field("rpm", "integer", "requests per minute, cluster-wide", nullable=True),
    Field("tpm", "integer", "tokens per minute, cluster-wide", nullable=True),
    Field("budget", "number", "spend limit in USD per budget period", nullable=True),
    Field("budget_period", "string", PERIOD),
    Field("team", "string", "team name or id the key belongs to", nullable=True),
    Field("expires_in", "string", "expiry from now, e.g. 12h, 30d, 2w"),
    Field("expires_at", "string", "expiry time, ISO 8601 (e.g. 2027-01-01T00:00:00Z)"),
    Field("mcp", "array", "MCP servers and tools it may use: SERVER, SERVER/TOOL or * (omit: none)", nullable=True),
)
_KEY_UPDATE = (
    Field("models", "array", "allowed models; null allows every model", nullable=True),
    Field("rpm", "integer", "requests per minute; null removes the limit", nullable=True),
    Field("tpm", "integer", "tokens per minute; null removes the limit", nullable=True),
    Field("team", "string", "team name or id; null takes the key out of its team", nullable=True),
    Field("expires_at", "string", "expiry time, ISO 8601; null: never expires", nullable=True),
    Field("mcp", "array", "MCP servers and tools it may use (SERVER, SERVER/TOOL or *); null or []: none",
          nullable=True),
)
ROUTES: tuple[Route, ...] = (
    Route("GET", "/keys", list_keys, READ, "List virtual keys", "keys",
          query=(Field("status", "string", "filter by status", enum=("active", "expired", "revoked", "all")),
                 Field("team", "string", "only keys of this team (name or id)"),
                 Field("search", "string", "only keys whose name contains this text"), *PAGE_FIELDS),
          aliases=("/admin/keys",)),
    Route("POST", "/keys", create_key, KEYS_WRITE, "Create a virtual key (its secret is returned once)", "keys",
          body=_KEY_CREATE, idempotent_create=True, returns_secret=True),
    Route("GET", "/keys/{key}", get_key, READ, "Show one key (by name or id)", "keys"),
    Route("PATCH", "/keys/{key}", update_key, KEYS_WRITE, "Change a key's models, limits, team or expiry", "keys",
          body=_KEY_UPDATE),
    Route("POST", "/keys/{key}/revoke", revoke_key, KEYS_WRITE, "Revoke a key on every node", "keys"),
    Route("POST", "/keys/{key}/rotate", rotate_key, KEYS_WRITE, "Give a key a new secret (returned once)", "keys",
          returns_secret=True),
    Route("GET", "/budgets", list_budgets, READ, "List budgets with spend in the current period", "budgets",
          query=(Field("limit", "integer", f"page size, 1-{MAX_LIST_LIMIT} (default 100; without `limit` "
                                           "or `after`, every budget in one answer)"),
                 Field("after", "string", "the previous page's `next_after`: `key:NAME` or `team:NAME`, a "
                                          "place in the order (keys by name, then teams by name)"))),
    Route("PUT", "/budgets/{kind}/{subject}", set_budget, KEYS_WRITE, "Set the budget of a key or team", "budgets",
          body=(Field("amount_usd", "number", "budget in USD per period", required=True),
                Field("period", "string", PERIOD))),
    Route("DELETE", "/budgets/{kind}/{subject}", remove_budget, KEYS_WRITE, "Remove the budget of a key or team",
          "budgets"),
    Route("GET", "/teams", list_teams, READ, "List teams", "teams",
          query=(Field("search", "string", "only teams whose name contains this text (any case)"), *PAGE_FIELDS)),
    Route("GET", "/teams/{team}", get_team, READ, "Show one team (by name or id) with its number of active keys",
          "teams"),
    Route("POST", "/teams", create_team, ADMIN, "Create a team", "teams",
          body=(Field("name", "string", "unique team name", required=True),
                Field("budget", "number", "team budget in USD per period", nullable=True),
                Field("budget_period", "string", PERIOD)), idempotent_create=True),
    Route("GET", "/admin-tokens", list_tokens, ADMIN, "List admin tokens (never their secrets)", "admin tokens",
          query=PAGE_FIELDS),
    Route("POST", "/admin-tokens", create_token, ADMIN, "Create an admin token (its secret is returned once)",
          "admin tokens", body=(Field("name", "string", "unique token name", required=True),
                                Field("role", "string", "what the token may do", required=True, enum=ROLES),
                                Field("expires_in", "string", "expiry from now, e.g. 12h, 90d (omit: never expires)"),
                                Field("expires_at", "string", "expiry time, ISO 8601 (omit: never expires)")),
          idempotent_create=True, returns_secret=True),
    Route("POST", "/admin-tokens/{name}/revoke", revoke_token, ADMIN, "Revoke an admin token on every node",
          "admin tokens"),
)
