"""`shieldes key create|list|show|update|revoke|rotate`: virtual keys. A secret is shown once, at
creation or rotation; only its sha256 and a short display prefix reach the log."""

from __future__ import annotations

import time
from typing import Any

import click

from shieldes import secrets
from shieldes.cli.common import (
    OneLineGroup,
    budget_period_for,
    cli_context,
    emit,
    handle_errors,
    json_option,
    read_config,
    run,
    split_list,
    warn,
    write,
)
from shieldes.errors import InvalidRequest
from shieldes.projections.commands import UNSET, CreateKey, RevokeKey, RotateKey, UpdateKey, find_key
from shieldes.projections.state import ConfigState
from shieldes.timeparse import expiry
from shieldes.views import key_row

COLUMNS = ("id", "name", "prefix", "status", "team", "models", "rpm", "tpm", "budget_usd", "budget_period",
           "expires_at")
ONCE = "Store this key now: it will not be shown again."


def unserved_warnings(state: ConfigState, models: tuple[str, ...] | None) -> list[str]:
    """Allowed models no provider serves yet: not an error (keys may come first), but said."""
    served = set(state.all_models())
    return [
        f"no provider serves model {m!r} yet: requests for it get 404 until a provider lists it "
        f"(`shieldes provider add ... --models {m}` or `shieldes provider update NAME --models ...`)"
        for m in models or () if m not in served
    ]


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
@click.option("--secret-only", is_flag=True, help="print only the key's secret (for scripts: export K=$(...))")
@json_option
@handle_errors
def create(
    name: str, models: str | None, rpm: int | None, tpm: int | None, budget_usd: float | None,
    budget_period: str | None, team: str | None, expires_in: str | None, expires_at: str | None,
    secret_only: bool, as_json: bool,
) -> None:
    """Create a key and print its secret once."""
    ctx = cli_context()
    now = time.time()
    secret = secrets.new_virtual_key()
    command = CreateKey(
        id=secrets.new_id("key"), name=name, key_hash=secrets.hash_key(secret),
        prefix=secrets.display_prefix(secret),
        models=split_list(models), rpm=rpm, tpm=tpm, budget_usd=budget_usd,
        budget_period=budget_period_for(budget_usd, budget_period),
        team=team, expires_at=expiry(expires_in, expires_at, now),
    )
    written = run(write(command))
    state = written.state
    created = state.keys[command.id]
    row = key_row(state, created, now)
    row["position"] = written.position
    team_ = state.teams.get(created.team_id) if created.team_id else None
    if created.budget is not None or (team_ is not None and team_.budget is not None):
        from shieldes.usage.pricing import unpriced, unpriced_warning  # the shipped price table: budgets only

        served = {m for d in state.providers.values() for m in d.models}
        missing = unpriced(state.pricing, [m for m in served if created.allows_model(m)])
        if missing:
            row["unpriced_models"] = missing
            warn(unpriced_warning(missing))
    warnings = unserved_warnings(state, command.models)
    if ctx.as_json and warnings:
        row["warnings"] = warnings
    else:
        for w in warnings:
            warn(w)
    _show_secret(row, secret, ctx.as_json, secret_only)


@key_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="include revoked keys")
@json_option
@handle_errors
def list_(show_all: bool, as_json: bool) -> None:
    """Keys (active and expired; --all adds revoked ones). Secrets are never shown."""
    ctx = cli_context()
    state = run(read_config()).state
    now = time.time()
    rows = [key_row(state, k, now) for k in sorted(state.keys.values(), key=lambda k: k.name)
            if show_all or not k.revoked]
    emit(rows, as_json=ctx.as_json, columns=COLUMNS)


@key_group.command("show")
@click.argument("key")
@json_option
@handle_errors
def show(key: str, as_json: bool) -> None:
    """One key's settings."""
    ctx = cli_context()
    state = run(read_config()).state
    emit(key_row(state, find_key(state, key), time.time()), as_json=ctx.as_json, vertical=True)


@key_group.command("revoke")
@click.argument("key")
@json_option
@handle_errors
def revoke(key: str, as_json: bool) -> None:
    """Revoke KEY: every node refuses it as soon as it sees the event."""
    ctx = cli_context()
    written = run(write(RevokeKey(key)))
    revoked = written.state.keys[written.events[0].data["id"]]
    emit({"id": revoked.id, "name": revoked.name, "revoked": True, "position": written.position},
         as_json=ctx.as_json)


@key_group.command("rotate")
@click.argument("key")
@json_option
@handle_errors
def rotate(key: str, as_json: bool) -> None:
    """Give KEY a new secret (printed once); the old secret stops working."""
    ctx = cli_context()
    secret = secrets.new_virtual_key()
    written = run(write(RotateKey(key, secrets.hash_key(secret), secrets.display_prefix(secret))))
    row = key_row(written.state, written.state.keys[written.events[0].data["id"]], time.time())
    row["position"] = written.position
    _show_secret(row, secret, ctx.as_json)


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
@json_option
@handle_errors
def update(
    key: str, models: str | None, all_models: bool, rpm: int | None, no_rpm: bool,
    tpm: int | None, no_tpm: bool,
    team: str | None, no_team: bool, expires_in: str | None, expires_at: str | None, no_expiry: bool,
    as_json: bool,
) -> None:
    """Change KEY's models, limits, team or expiry; a --no-X flag clears X."""
    ctx = cli_context()
    now = time.time()
    pairs = (("--models", models, "--all-models", all_models), ("--rpm", rpm, "--no-rpm", no_rpm),
             ("--tpm", tpm, "--no-tpm", no_tpm), ("--team", team, "--no-team", no_team),
             ("--expires-in/--expires-at", expires_in or expires_at, "--no-expiry", no_expiry))
    for name, value, clear_name, clear in pairs:
        if value is not None and clear:
            raise InvalidRequest(f"{name} and {clear_name} contradict each other; pass one")
    command = UpdateKey(
        key,
        models=None if all_models else (split_list(models) if models is not None else UNSET),
        rpm=None if no_rpm else (rpm if rpm is not None else UNSET),
        tpm=None if no_tpm else (tpm if tpm is not None else UNSET),
        team=None if no_team else (team if team is not None else UNSET),
        expires_at=None if no_expiry else (
            expiry(expires_in, expires_at, now) if (expires_in or expires_at) is not None else UNSET
        ),
    )
    written = run(write(command))
    data = written.events[0].data
    row = key_row(written.state, written.state.keys[data.get("id") or data["key_id"]], now)
    row["position"] = written.position
    warnings = unserved_warnings(written.state, command.models if isinstance(command.models, tuple) else None)
    if ctx.as_json and warnings:
        row["warnings"] = warnings
    else:
        for w in warnings:
            warn(w)
    emit(row, as_json=ctx.as_json)
