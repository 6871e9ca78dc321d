"""Who is calling the admin API: the bootstrap token (SHIELDES_ADMIN_TOKEN, role admin), an
event-sourced admin token (looked up by hash in the node's memory, so a revocation is felt as soon
as the node applies it), or a console session from OIDC sign-in (signed, short-lived). Failed
sign-ins are bounded per client address and per node (sign_in_limit.py).

A node that cannot reach Postgres and knows (from gossip or NOTIFY) that the log has moved past what
it applied may have missed a revocation another node acknowledged: it accepts no revocable
credential (admin token, console session) until it reads the log again, and says to use another node."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from dataclasses import dataclass

from shieldes.errors import AuthenticationFailed, DatabaseUnavailable, RateLimited, ShieldesError, retry_after_seconds
from shieldes.gateway.admin.context import AdminContext
from shieldes.gateway.admin.oidc import Session
from shieldes.secrets import hash_key

BOOTSTRAP_ACTOR = "bootstrap-token"
log = logging.getLogger("shieldes.admin")


class TooManySignIns(RateLimited):
    code = "too_many_sign_in_attempts"


class AdminDisabled(ShieldesError):
    status = 404
    type = "invalid_request_error"
    code = "admin_disabled"


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    kind: str  # "bootstrap" | "token" | "oidc"
    session: str | None = None  # an OIDC principal's session id (sign-out ends it)
    signed: Session | None = None  # an OIDC principal's session as its token says (renewed on activity)

    @property
    def actor(self) -> str:
        """How changes made by this principal are recorded in the log (`audit_log.actor`)."""
        if self.kind == "bootstrap":
            return BOOTSTRAP_ACTOR
        return f"{self.kind}:{self.name}"


class CredentialsUnconfirmed(DatabaseUnavailable):
    code = "credentials_unconfirmed"


def _check_current(ctx: AdminContext) -> None:
    """Refuse to vouch for a revocable credential on a node cut off from a log that moved on."""
    lag = ctx.projector.lag
    if not lag:  # caught up with every position it heard of: the common case costs one comparison
        return
    _, info = ctx.readiness()
    if info.get("database") == "unreachable":
        raise CredentialsUnconfirmed(
            f"this node cannot reach Postgres and the log has moved {lag} position(s) past what it applied, so it "
            "cannot tell whether this admin token or console session was revoked meanwhile: use another node, or "
            "retry once this one reads the log again (its /ready stops saying `degraded`)")


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def authenticate(ctx: AdminContext, authorization: str | None, client: str | None = None) -> Principal:
    """The principal of `authorization` from `client` (its address, for the sign-in limit)."""
    configured = ctx.settings.admin_token
    state = ctx.projector.config
    if not configured and not state.admin_tokens and ctx.oidc is None:
        raise AdminDisabled("the admin API is disabled: set SHIELDES_ADMIN_TOKEN on the node (or create a token "
                            "with `shieldes admin-token create`), then send `Authorization: Bearer <token>`")
    now = time.monotonic()
    wait = ctx.sign_in.wait(client, now)
    scheme, _, given = (authorization or "").strip().partition(" ")
    given = given.strip()
    if scheme.lower() == "bearer" and given:
        # tokens shieldes makes carry 256 random bits: looked at even while the limit holds, so an
        # attacker's failures never lock their holders out
        token = state.admin_token_by_hash(hash_key(given))
        if token is not None and token.usable(time.time()):
            _check_current(ctx)
            return Principal(token.name, token.role, "token")
        if ctx.oidc is not None:
            wall = time.time()
            session = ctx.oidc.verify_session(given, wall)
            # a session ended early (signed out, revoked) is refused as soon as this node applies it
            held = state.oidc_sessions.get(session.id) if session is not None else None
            if session is not None and (held is None or held.ended is None):
                ctx.oidc.check_idle(session, wall)  # a signed token, not a guess: refused without counting
                _check_current(ctx)
                return Principal(session.subject, session.role, "oidc", session.id, session)
        # compared in constant time over digests, so not even the length leaks; an operator chose
        # it, so it is only compared while the limit allows a guess
        if wait is None and configured and hmac.compare_digest(_digest(given), _digest(configured)):
            return Principal("bootstrap", "admin", "bootstrap")
    if ctx.sign_in.fail(client, now):
        log.warning("admin sign-in: too many failed attempts (client %s; at most %d a minute per address, %d per "
                    "node): guessable credentials are refused with 429 for a while", client or "unknown",
                    ctx.settings.admin_sign_in_failures, ctx.settings.admin_sign_in_failures_total)
    if wait is not None:
        ctx.sign_in.limited += 1
        seconds = retry_after_seconds(wait)
        raise TooManySignIns(f"too many failed sign-ins from this address or to this node: try again in {seconds} s "
                             "with a valid admin token (tokens from `shieldes admin-token create` and SSO sessions "
                             "are accepted meanwhile)", retry_after=wait)
    raise AuthenticationFailed("missing, wrong, expired or revoked admin token: send `Authorization: Bearer <token>` "
                               "with SHIELDES_ADMIN_TOKEN or a token from `shieldes admin-token create`",
                               code="invalid_admin_token")
