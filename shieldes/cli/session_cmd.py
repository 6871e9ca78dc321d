"""`shieldes session list|revoke`: console sessions from SSO sign-in. Revoking one (or every one of
a user) appends `oidc_session.ended`, and every node refuses the session's token as soon as it
applies the event; the browser is signed out at its next request."""

from __future__ import annotations

import time

import click

from shieldes.cli.common import cli_context, json_option, run, write
from shieldes.cli.oneline import OneLineGroup, handle_errors
from shieldes.cli.output import emit
from shieldes.errors import InvalidRequest
from shieldes.projections.sessions import EndSession, EndUserSessions, SessionCommand
from shieldes.requestlog.filters import refuse_empty
from shieldes.views import session_row, sessions_of

COLUMNS = ("id", "user", "role", "status", "started_at", "expires_at")


@click.group("session", cls=OneLineGroup)
def session_group() -> None:
    """Console sessions from SSO sign-in (list, revoke on every node)."""


@session_group.command("list")
@click.option("--user", default=None, help="only this user's sessions (as the audit log names them)")
@click.option("--all", "every", is_flag=True, help="ended and expired sessions too")
@json_option
@handle_errors
def list_(user: str | None, every: bool, as_json: bool) -> None:
    """Console sessions, newest first (their tokens are never stored)."""
    from shieldes.cli.common import read_config, run_read

    refuse_empty("user", user)  # (through the API it listed every user's sessions, on Postgres none)
    ctx = cli_context()
    api = ctx.remote()
    if api is not None:
        query = {"status": "all" if every else "active", **({"user": user} if user else {})}
        rows = api.call("GET", "/sessions", query=query)["data"]
    else:
        rows = sessions_of(run_read(read_config()).state, time.time(), user=user, every=every)
    emit([{c: r[c] for c in COLUMNS} for r in rows], as_json=ctx.as_json, columns=COLUMNS)


@session_group.command("revoke")
@click.argument("session_id", required=False)
@click.option("--user", default=None, help="revoke every running session of this user instead")
@json_option
@handle_errors
def revoke(session_id: str | None, user: str | None, as_json: bool) -> None:
    """End console session SESSION_ID (or every session of --user) on every node."""
    if session_id is not None and user is not None:
        raise InvalidRequest("pass either SESSION_ID or --user USER, not both")
    if session_id is None and user is None:
        raise InvalidRequest("name the session to end: SESSION_ID (from `shieldes session list`), or --user USER "
                             "for every session of that user")
    ctx = cli_context()
    api = ctx.remote()
    if api is not None:
        from shieldes.cli.remote import segment

        answer = (api.call("POST", f"/sessions/{segment(session_id)}/revoke") if session_id is not None
                  else api.call("POST", "/sessions/revoke", {"user": user}))
        rows = answer["data"]
    else:
        command: SessionCommand = (EndSession(session_id, "revoked", time.time()) if session_id is not None
                                   else EndUserSessions(str(user), time.time()))
        written = run(write(command))
        now = time.time()
        rows = [session_row(written.state.oidc_sessions[e.data["id"]], now) for e in written.events]
    emit([{c: r[c] for c in COLUMNS} for r in rows], as_json=ctx.as_json, columns=COLUMNS)
