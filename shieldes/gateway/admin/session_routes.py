"""Console sessions from SSO: list them, revoke one or all of a user's, and sign out (the caller's
own session ends on every node). Each end is an `oidc_session.ended` event in the log, audited with
its actor, and every node refuses the session's token once it applies it."""

from __future__ import annotations

import time
from typing import Any

from shieldes.config_writer import LiveWrite, execute_live
from shieldes.gateway.admin.api import Call, Field, Route
from shieldes.projections.sessions import EndSession, EndUserSessions, SessionCommand
from shieldes.requestlog.filters import refuse_empty
from shieldes.roles import ADMIN, ANY
from shieldes.views import session_row, sessions_of

# ending a session twice is refused as "ended already", never done twice: so sending it again is safe
UNCONFIRMED_END = ("the session may or may not have ended: GET /admin/v1/sessions?status=all (the console's Sessions "
                   "page) shows it; sending the same request again is safe")


async def _write(call: Call, command: SessionCommand) -> LiveWrite:
    return await call.ctx.db_wait.run(execute_live(call.ctx.projector, command, actor=call.principal.actor),
                                      "the end of the session was not confirmed", advice=UNCONFIRMED_END)


def _ended(written: LiveWrite) -> dict[str, Any]:
    now = time.time()
    rows = [session_row(written.state.oidc_sessions[e.data["id"]], now) for e in written.events]
    return {"object": "list", "data": rows, "position": written.events[-1].position}


async def list_sessions(call: Call) -> Any:
    refuse_empty("user", call.query.get("user"))
    rows = sessions_of(call.ctx.projector.config, time.time(), user=call.query.get("user"),
                       every=call.query.get("status", "active") == "all")
    return {"object": "list", "data": rows, "has_more": False, "next_after": None}


async def revoke_session(call: Call) -> Any:
    return _ended(await _write(call, EndSession(call.path["session"], "revoked", time.time())))


async def revoke_user_sessions(call: Call) -> Any:
    return _ended(await _write(call, EndUserSessions(call.body["user"], time.time())))


async def sign_out(call: Call) -> Any:
    p = call.principal
    if p.session is None:  # a token is not a session: it stays valid until revoked
        return {"signed_out": False, "message": "an admin token has no session to end: forget it in the client, or "
                                                "revoke it (POST /admin/v1/admin-tokens/{name}/revoke)"}
    written = await _write(call, EndSession(p.session, "signed_out", time.time()))
    out: dict[str, Any] = {"signed_out": True, **_ended(written)}
    oidc = call.ctx.oidc
    # the user is signed in at the provider too: the console sends the browser there to end that
    # as well (RP-initiated logout), when the provider offers it
    logout = await oidc.logout_url(call.request, call.body.get("id_token_hint")) if oidc is not None else None
    if logout is not None:
        out["logout_url"] = logout
    return out


ROUTES: tuple[Route, ...] = (
    Route("GET", "/sessions", list_sessions, ADMIN, "List console sessions from SSO sign-in (never their tokens)",
          "sessions", query=(Field("user", "string", "only this user's sessions (as the audit log names them)"),
                             Field("status", "string", "active (default): running ones; all: ended and expired too",
                                   enum=("active", "all")))),
    Route("POST", "/sessions/{session}/revoke", revoke_session, ADMIN, "End one console session on every node",
          "sessions"),
    Route("POST", "/sessions/revoke", revoke_user_sessions, ADMIN, "End every console session of a user on every node",
          "sessions",
          body=(Field("user", "string", "the user (as GET /admin/v1/sessions names them)", required=True),)),
    Route("POST", "/sign-out", sign_out, ANY, "End the caller's own console session on every node", "session",
          body=(Field("id_token_hint", "string", "the ID token the sign-in gave (POST /ui/oidc/session's `id_token`): "
                                                 "named in the `logout_url` to the provider's end_session_endpoint"),)),
)
