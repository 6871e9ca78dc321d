"""Who is calling the admin API: the bootstrap token (SHIELDES_ADMIN_TOKEN, role admin), an
event-sourced admin token (looked up by hash in the node's memory, so a revocation is felt as soon
as the node applies it), or a console session from OIDC sign-in (signed, short-lived)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from shieldes.errors import AuthenticationFailed, ShieldesError
from shieldes.gateway.admin.context import AdminContext
from shieldes.secrets import hash_key

BOOTSTRAP_ACTOR = "bootstrap-token"


class AdminDisabled(ShieldesError):
    status = 404
    type = "invalid_request_error"
    code = "admin_disabled"


@dataclass(frozen=True)
class Principal:
    name: str
    role: str
    kind: str  # "bootstrap" | "token" | "oidc"

    @property
    def actor(self) -> str:
        """How changes made by this principal are recorded in the log (`audit_log.actor`)."""
        if self.kind == "bootstrap":
            return BOOTSTRAP_ACTOR
        return f"{self.kind}:{self.name}"


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def authenticate(ctx: AdminContext, authorization: str | None) -> Principal:
    configured = ctx.settings.admin_token
    state = ctx.projector.config
    if not configured and not state.admin_tokens and ctx.oidc is None:
        raise AdminDisabled("the admin API is disabled: set SHIELDES_ADMIN_TOKEN on the node (or create a token "
                            "with `shieldes admin-token create`), then send `Authorization: Bearer <token>`")
    scheme, _, given = (authorization or "").strip().partition(" ")
    given = given.strip()
    if scheme.lower() == "bearer" and given:
        # compared in constant time over digests, so not even the length leaks
        if configured and hmac.compare_digest(_digest(given), _digest(configured)):
            return Principal("bootstrap", "admin", "bootstrap")
        token = state.admin_token_by_hash(hash_key(given))
        if token is not None:
            return Principal(token.name, token.role, "token")
        if ctx.oidc is not None:
            session = ctx.oidc.verify_session(given)
            if session is not None:
                return Principal(session.subject, session.role, "oidc")
    raise AuthenticationFailed("missing, wrong or revoked admin token: send `Authorization: Bearer <token>` with "
                               "SHIELDES_ADMIN_TOKEN or a token from `shieldes admin-token create`",
                               code="invalid_admin_token")
