"""`shieldes admin-token create|list|revoke`: principals of the admin API and console. A token's
secret is printed once; only its sha256 and a display prefix reach the log. A revoked token is
refused by every node as soon as it applies the event (the same path as a key revocation)."""

from __future__ import annotations

import time

import click

from shieldes import secrets
from shieldes.cli.common import cli_context, json_option, list_named, run, write
from shieldes.cli.oneline import OneLineGroup, handle_errors
from shieldes.cli.output import emit
from shieldes.errors import InvalidRequest
from shieldes.projections.shared_commands import CreateAdminToken, RevokeAdminToken
from shieldes.roles import ROLES
from shieldes.timeparse import expiry
from shieldes.views import iso, token_row

COLUMNS = ("id", "name", "role", "prefix", "status", "expires_at")


@click.group("admin-token", cls=OneLineGroup)
def admin_token_group() -> None:
    """Tokens for the admin API and web console (roles: admin, operator, viewer, auditor)."""


@admin_token_group.command("create")
@click.option("--name", required=True, help="unique token name (recorded as the actor of its changes)")
@click.option("--role", required=True, type=click.Choice(ROLES), help="what the token may do")
@click.option("--expires-in", default=None, help="expiry from now, e.g. 12h, 90d (default: never expires)")
@click.option("--expires-at", default=None, help="expiry time, ISO 8601 (default: never expires)")
@json_option
@handle_errors
def create(name: str, role: str, expires_in: str | None, expires_at: str | None, as_json: bool) -> None:
    """Create an admin token and print its secret once."""
    ctx = cli_context()
    expires = expiry(expires_in, expires_at, time.time())  # a bad value is refused before anything is sent
    api = ctx.remote()
    if api is not None:
        body = {"name": name, "role": role, **({"expires_at": iso(expires)} if expires is not None else {})}
        answer = api.call("POST", "/admin-tokens", body, create=True)
        if answer.get("token") is None:  # a retry found the first create: its secret exists only as a hash
            raise InvalidRequest(f"admin token {name!r} was created but its secret was lost on the way back; revoke "
                                 f"it (`shieldes admin-token revoke {name}`) and create another")
        row = {**{c: answer.get(c) for c in COLUMNS}, "position": answer["position"]}
        token = answer["token"]
    else:
        token = secrets.new_admin_token()
        command = CreateAdminToken(secrets.new_id("adm"), name, role, secrets.hash_key(token),
                                   secrets.display_prefix(token), expires)
        written = run(write(command))
        row = {**token_row(written.state.admin_tokens[command.id]), "position": written.position}
    if ctx.as_json:
        emit({**row, "token": token}, as_json=True)
        return
    emit(row, as_json=False, columns=COLUMNS)
    click.echo(f"\ntoken: {token}")
    click.echo("Store this token now: it will not be shown again.")


@admin_token_group.command("list")
@json_option
@handle_errors
def list_(as_json: bool) -> None:
    """Admin tokens (secrets are never shown)."""
    list_named("admin-tokens", COLUMNS,
               lambda state: [token_row(t) for t in sorted(state.admin_tokens.values(), key=lambda t: t.name)])


@admin_token_group.command("revoke")
@click.argument("name")
@json_option
@handle_errors
def revoke(name: str, as_json: bool) -> None:
    """Revoke admin token NAME (or id): every node refuses it as soon as it sees the event."""
    ctx = cli_context()
    api = ctx.remote()
    if api is not None:
        from shieldes.cli.remote import segment

        answer = api.call("POST", f"/admin-tokens/{segment(name)}/revoke")
        emit({**{c: answer.get(c) for c in COLUMNS}, "position": answer["position"]}, as_json=ctx.as_json)
        return
    written = run(write(RevokeAdminToken(name)))
    token = written.state.admin_tokens[written.events[0].data["id"]]
    emit({**token_row(token), "position": written.position}, as_json=ctx.as_json)
