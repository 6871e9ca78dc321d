"""`shieldes key create|list|show|update|revoke|rotate`: virtual keys. A secret is shown once, at
creation or rotation; only its sha256 and a short display prefix reach the log.

Each command works on the database directly, or through a node's admin API when SHIELDES_ADMIN_URL
(or --admin-url) is set; both print the same. The domain model (commands, state, the fold) is
imported by the direct path only: a remote command does not need it."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click

from shieldes.cli.common import budget_period_for, cli_context, json_option, run, run_read, split_list
from shieldes.cli.oneline import OneLineGroup, handle_errors
from shieldes.cli.output import emit, notes
from shieldes.errors import CommandRejected, InvalidRequest

if TYPE_CHECKING:
    from shieldes.cli.remote import AdminApi

COLUMNS = ("id", "name", "prefix", "status", "team", "models", "rpm", "tpm", "budget_usd", "budget_period",
           "expires_at")
PRINT_PAGE = 10_000  # keys a direct-mode `key list` prints at a time (as a remote one gets them)
ONCE = "Store this key now: it will not be shown again."


def _show_secret(row: dict[str, Any], secret: str, as_json: bool, secret_only: bool = False) -> None:
    if secret_only:
        click.echo(secret)
        return
    if as_json:
        emit({**row, "key": secret}, as_json=True)
        return
    emit(row, as_json=False, columns=COLUMNS[:5])
    click.echo(f"\nkey: {secret}")
    click.echo(ONCE)


def _remote_row(answer: dict[str, Any]) -> dict[str, Any]:
    """The admin API's key as the direct mode prints it: the same columns, then the position."""
    return {**_fields(answer), "position": answer["position"]}


def _fields(answer: dict[str, Any]) -> dict[str, Any]:
    """A key of the admin API as the direct mode shows it (`mcp`: [] from a node that predates it)."""
    return {**{c: answer[c] for c in COLUMNS}, "mcp": answer.get("mcp", [])}


def _no_key(ref: str) -> str:
    return f"no virtual key named or with id {ref!r}; see `shieldes key list`"


@click.group("key", cls=OneLineGroup)
def key_group() -> None:
    """Virtual keys (KEY arguments take a key's name or id)."""


@key_group.command("create")
@click.option("--name", required=True, help="unique key name")
@click.option("--models", help="comma-separated allowed models (default: every model)")
@click.option("--rpm", type=int, help="requests per minute, cluster-wide")
@click.option("--tpm", type=int, help="tokens per minute, cluster-wide")
@click.option("--budget", "budget_usd", type=float, metavar="USD", help="spend limit per budget period")
@click.option("--budget-period", metavar="P", help="1d, 30d (Nd) or 1mo; with --budget (default 30d)")
@click.option("--team", help="team name or id the key belongs to")
@click.option("--expires-in", metavar="DURATION", help="e.g. 12h, 30d, 2w")
@click.option("--expires-at", metavar="ISO", help="e.g. 2027-01-01 or 2027-01-01T00:00:00Z")
@click.option("--mcp", help="comma-separated MCP servers and tools it may use: SERVER, SERVER/TOOL or * "
                           "(default: none; docs/mcp.md)")
@click.option("--secret-only", is_flag=True, help="print only the key's secret (for scripts: export K=$(...))")
@json_option
@handle_errors
def create(
    name: str, models: str | None, rpm: int | None, tpm: int | None, budget_usd: float | None,
    budget_period: str | None, team: str | None, expires_in: str | None, expires_at: str | None,
    mcp: str | None, secret_only: bool, as_json: bool,
) -> None:
    """Create a key and print its secret once."""
    ctx = cli_context()
    allowed = split_list(models)
    mcp_allowed = split_list(mcp, "--mcp")
    period = budget_period_for(budget_usd, budget_period)
    api = ctx.remote()
    if api is not None:
        body: dict[str, Any] = {"name": name, "models": list(allowed) if allowed is not None else None,
                                "rpm": rpm, "tpm": tpm, "budget": budget_usd, "team": team}
        body = {k: v for k, v in body.items() if v is not None}
        if budget_usd is not None:
            body["budget_period"] = period
        body.update({k: v for k, v in (("expires_in", expires_in), ("expires_at", expires_at)) if v is not None})
        if mcp_allowed:
            body["mcp"] = list(mcp_allowed)
        answer = api.call("POST", "/keys", body, create=True)
        if answer.get("key") is None:  # a retry found the first create: its secret exists only as a hash
            raise InvalidRequest(f"key {name!r} was created but its secret was lost on the way back; give it a "
                                 f"new one with `shieldes key rotate {name}`")
        row = _remote_row(answer)
        notes(row, answer.get("unpriced_models") or [], answer.get("warnings") or [], ctx.as_json)
        _show_secret(row, answer["key"], ctx.as_json, secret_only)
        return

    from shieldes import secrets
    from shieldes.cli.common import write
    from shieldes.projections.commands import CreateKey
    from shieldes.timeparse import expiry
    from shieldes.views import key_row, unpriced_for_key, unserved_warnings

    now = time.time()
    secret = secrets.new_virtual_key()
    command = CreateKey(
        id=secrets.new_id("key"), name=name, key_hash=secrets.hash_key(secret),
        prefix=secrets.display_prefix(secret), models=allowed, rpm=rpm, tpm=tpm, budget_usd=budget_usd,
        budget_period=period, team=team, expires_at=expiry(expires_in, expires_at, now), mcp=mcp_allowed,
    )
    written = run(write(command))
    state = written.state
    created = state.keys[command.id]
    row = key_row(state, created, now)
    row["position"] = written.position
    notes(row, unpriced_for_key(state, created), unserved_warnings(state, command.models), ctx.as_json)
    _show_secret(row, secret, ctx.as_json, secret_only)


@key_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="include revoked keys")
@click.option("--team", default=None, help="only keys of this team (name or id)")
@click.option("--search", default=None, help="only keys whose name contains this text (in any case)")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="at most this many keys, the first by name")
@json_option
@handle_errors
def list_(show_all: bool, team: str | None, search: str | None, limit: int | None, as_json: bool) -> None:
    """Keys by name (active and expired; --all adds revoked ones). Secrets are never shown."""
    from shieldes.cli.stream_out import emit_pages
    from shieldes.requestlog.filters import refuse_empty

    refuse_empty("team", team)  # (through the API an empty --team was no filter: every key)
    ctx = cli_context()
    api = ctx.remote()
    if api is not None:
        query = {k: v for k, v in (("team", team), ("search", search)) if v}
        wanted = None if show_all else ("active", "expired")
        pages = api.pages("/keys", status="all", most=limit, kept=lambda k: (
            wanted is None or k["status"] in wanted), **query)
        # printed a page at a time as the pages come (a million keys: the first lines at once)
        emit_pages(([_fields(k) for k in rows] for rows in pages), as_json=ctx.as_json, columns=COLUMNS)
        return
    from itertools import islice

    from shieldes.cli.common import read_config
    from shieldes.projections.commands import find_team
    from shieldes.views import key_row, listed_keys

    state = run_read(read_config()).state
    found = None if team is None else find_team(state, team, subject=True)  # (`team_not_found`, as remote)
    now = time.time()
    keys = listed_keys(state, now, statuses=None if show_all else ("active", "expired"),
                       team_id=None if found is None else found.id, search=search or "")
    listed = islice(keys, None if limit is None else min(limit, sys.maxsize))  # (a --limit past any count: all)
    pages = iter(lambda: [key_row(state, k, now) for k in islice(listed, PRINT_PAGE)], [])
    emit_pages(pages, as_json=ctx.as_json, columns=COLUMNS)


@key_group.command("show")
@click.argument("key")
@json_option
@handle_errors
def show(key: str, as_json: bool) -> None:
    """One key's settings."""
    ctx = cli_context()
    api = ctx.remote()
    if api is not None:
        from shieldes.cli.remote import segment

        answer = api.call("GET", f"/keys/{segment(key)}", not_found=_no_key(key))
        emit(_fields(answer), as_json=ctx.as_json, vertical=True)
        return
    from shieldes.cli.common import read_config
    from shieldes.projections.commands import find_key
    from shieldes.views import key_row

    state = run_read(read_config()).state
    emit(key_row(state, find_key(state, key), time.time()), as_json=ctx.as_json, vertical=True)


@key_group.command("revoke")
@click.argument("key")
@json_option
@handle_errors
def revoke(key: str, as_json: bool) -> None:
    """Revoke KEY: every node refuses it as soon as it sees the event."""
    ctx = cli_context()
    api = ctx.remote()
    if api is not None:
        from shieldes.cli.remote import segment

        answer = api.call("POST", f"/keys/{segment(key)}/revoke", not_found=_no_key(key))
        emit({"id": answer["id"], "name": answer["name"], "revoked": True, "position": answer["position"]},
             as_json=ctx.as_json)
        return
    from shieldes.cli.common import write
    from shieldes.projections.commands import RevokeKey

    written = run(write(RevokeKey(key)))
    revoked = written.state.keys[written.events[0].data["id"]]
    emit({"id": revoked.id, "name": revoked.name, "revoked": True, "position": written.position},
         as_json=ctx.as_json)


@key_group.command("rotate")
@click.argument("key")
@click.option("--secret-only", is_flag=True, help="print only the new secret (for scripts: export K=$(...))")
@json_option
@handle_errors
def rotate(key: str, secret_only: bool, as_json: bool) -> None:
    """Give KEY a new secret (printed once); the old secret stops working."""
    ctx = cli_context()
    api = ctx.remote()
    if api is not None:
        from shieldes.cli.remote import segment

        answer = api.call("POST", f"/keys/{segment(key)}/rotate", not_found=_no_key(key))
        row = _remote_row(answer)
        notes(row, [], answer.get("warnings") or [], ctx.as_json and not secret_only)
        _show_secret(row, answer["key"], ctx.as_json, secret_only)
        return
    from shieldes import secrets
    from shieldes.cli.common import write
    from shieldes.projections.commands import RotateKey
    from shieldes.views import key_row, rotation_warnings

    secret = secrets.new_virtual_key()
    written = run(write(RotateKey(key, secrets.hash_key(secret), secrets.display_prefix(secret))))
    rotated, now = written.state.keys[written.events[0].data["id"]], time.time()
    row = key_row(written.state, rotated, now)
    row["position"] = written.position
    notes(row, [], rotation_warnings(rotated, now), ctx.as_json and not secret_only)
    _show_secret(row, secret, ctx.as_json, secret_only)


@key_group.command("update")
@click.argument("key")
@click.option("--models", help="new comma-separated allowed models")
@click.option("--all-models", is_flag=True, help="allow every model")
@click.option("--rpm", type=int, help="new requests-per-minute limit")
@click.option("--no-rpm", is_flag=True, help="remove the rpm limit")
@click.option("--tpm", type=int, help="new tokens-per-minute limit")
@click.option("--no-tpm", is_flag=True, help="remove the tpm limit")
@click.option("--team", help="move the key to this team (name or id)")
@click.option("--no-team", is_flag=True, help="take the key out of its team")
@click.option("--expires-in", metavar="DURATION", help="new expiry from now, e.g. 30d")
@click.option("--expires-at", metavar="ISO", help="new expiry time")
@click.option("--no-expiry", is_flag=True, help="the key never expires")
@click.option("--mcp", help="new comma-separated MCP servers and tools it may use (replaces the old list)")
@click.option("--no-mcp", is_flag=True, help="no MCP server at all")
@json_option
@handle_errors
def update(
    key: str, models: str | None, all_models: bool, rpm: int | None, no_rpm: bool,
    tpm: int | None, no_tpm: bool,
    team: str | None, no_team: bool, expires_in: str | None, expires_at: str | None, no_expiry: bool,
    mcp: str | None, no_mcp: bool, as_json: bool,
) -> None:
    """Change KEY's models, limits, team, expiry or MCP access; a --no-X flag clears X."""
    from shieldes.timeparse import expiry

    ctx = cli_context()
    now = time.time()
    pairs = (("--models", models, "--all-models", all_models), ("--rpm", rpm, "--no-rpm", no_rpm),
             ("--tpm", tpm, "--no-tpm", no_tpm), ("--team", team, "--no-team", no_team),
             ("--expires-in/--expires-at", expires_in or expires_at, "--no-expiry", no_expiry),
             ("--mcp", mcp, "--no-mcp", no_mcp))
    for name, value, clear_name, clear in pairs:
        if value is not None and clear:
            raise InvalidRequest(f"{name} and {clear_name} contradict each other; pass one")
    allowed = split_list(models) if models is not None else None
    mcp_allowed = split_list(mcp, "--mcp")
    expires = expiry(expires_in, expires_at, now) if (expires_in or expires_at) is not None else None
    api = ctx.remote()
    if api is not None:
        _update_remote(api, key, allowed, all_models, rpm, no_rpm, tpm, no_tpm, team, no_team, expires, no_expiry,
                       mcp_allowed, no_mcp)
        return
    from shieldes.cli.common import write
    from shieldes.projections.commands import UNSET, UpdateKey
    from shieldes.views import key_row, unpriced_for_key, unserved_warnings

    command = UpdateKey(
        key,
        models=None if all_models else (allowed if models is not None else UNSET),
        rpm=None if no_rpm else (rpm if rpm is not None else UNSET),
        tpm=None if no_tpm else (tpm if tpm is not None else UNSET),
        team=None if no_team else (team if team is not None else UNSET),
        expires_at=None if no_expiry else (expires if expires is not None else UNSET),
        mcp=None if no_mcp else (mcp_allowed if mcp_allowed is not None else UNSET),
    )
    written = run(write(command))
    data = written.events[0].data
    updated = written.state.keys[data.get("id") or data["key_id"]]
    row = key_row(written.state, updated, now)
    row["position"] = written.position
    # new models, or a team with a budget: say which of them a budget refuses for want of a price
    unpriced = unpriced_for_key(written.state, updated) if models is not None or all_models or team else []
    notes(row, unpriced, unserved_warnings(written.state, command.models if isinstance(command.models, tuple)
                                            else None), ctx.as_json)
    emit(row, as_json=ctx.as_json)


def _update_remote(api: AdminApi, key: str, allowed: tuple[str, ...] | None, all_models: bool, rpm: int | None,
                   no_rpm: bool, tpm: int | None, no_tpm: bool, team: str | None, no_team: bool,
                   expires: float | None, no_expiry: bool, mcp: tuple[str, ...] | None = None,
                   no_mcp: bool = False) -> None:
    """`key update` as a PATCH: a JSON null clears a value, an absent field keeps it."""
    from shieldes.cli.remote import segment
    from shieldes.views import iso

    ctx = cli_context()
    body: dict[str, Any] = {}
    for field, value, clear in (("models", list(allowed) if allowed is not None else None, all_models),
                                ("rpm", rpm, no_rpm), ("tpm", tpm, no_tpm), ("team", team, no_team),
                                ("expires_at", iso(expires), no_expiry),
                                ("mcp", list(mcp) if mcp is not None else None, no_mcp)):
        if clear:
            body[field] = None
        elif value is not None:
            body[field] = value
    path = f"/keys/{segment(key)}"
    if not body:  # the direct mode's refusal, which names the key
        current = api.call("GET", path, not_found=_no_key(key))
        raise CommandRejected(f"nothing to change for key {current['name']!r}; pass at least one option")
    answer = api.call("PATCH", path, body, not_found=_no_key(key))
    row = _remote_row(answer)
    notes(row, answer.get("unpriced_models") or [], answer.get("warnings") or [], ctx.as_json)
    emit(row, as_json=ctx.as_json)
