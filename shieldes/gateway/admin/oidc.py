"""Console sign-in with OpenID Connect (authorization code flow with discovery).

/ui/oidc/login redirects to the provider with a fresh state, nonce and PKCE challenge (their values
kept in a signed, HttpOnly cookie); /ui/oidc/callback exchanges the code with the PKCE verifier at
the token endpoint, verifies the ID token's signature (the provider's JWKS), issuer, audience,
expiry and nonce, maps the role claim to a shieldes role and hands the session to the console through
an HttpOnly cookie that only this browser holds (it passed the state check): the page redeems it
with a same-origin POST /ui/oidc/session. A session is never taken from the URL, so a link cannot
sign a victim in as someone else (login CSRF). The hand-off is redeemed once in the whole cluster:
it carries no usable token, only the session to start, and the redeem appends that session's
`oidc_session.started` to the log with the optimistic position check, so a second redeem of a
captured cookie, on this node or another, finds the session started and gets nothing. Session
tokens are HMAC-signed with a key derived from the client secret, so every node with the same
settings accepts them; they expire after SHIELDES_OIDC_SESSION_SECONDS, or after
SHIELDES_OIDC_IDLE_SECONDS unused: a token carries its idle deadline, signed, and every admin
request the user makes is answered with the token renewed (X-Shieldes-Session), so every node
enforces the idle timeout from the token alone. Signing out sends the browser to the provider's
end_session_endpoint when its discovery names one (RP-initiated logout)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
from aiohttp import web

from shieldes.errors import AuthenticationFailed, CommandRejected, InvalidRequest, PermissionDenied, UpstreamError
from shieldes.roles import ROLES, parse_role_map
from shieldes.settings import Settings

SESSION_PREFIX = "shd-oidc-"
STATE_COOKIE = "shieldes_oidc"
STATE_SECONDS = 600
CALLBACK = "/ui/oidc/callback"
# the hand-off from the callback to the console page: a cookie the page redeems at once
HANDOFF_COOKIE = "shieldes_oidc_handoff"
HANDOFF_PATH = "/ui/oidc/session"
HANDOFF_SECONDS = 120
# the renewed session token on an admin API answer (its idle deadline moved on)
RENEWED_HEADER = "X-Shieldes-Session"
# the console's live refreshes say so: they are not the user's activity and renew nothing
ACTIVITY_HEADER = "X-Shieldes-Activity"
# an ID token longer than this is not kept for the logout hint (the hand-off cookie must stay
# below the browsers' 4 KiB); the logout then names the client instead
MAX_HINT = 2400


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def role_for(claim: Any, role_map: dict[str, str]) -> str | None:
    """The most powerful role the claim's values map to (a string or a list of strings)."""
    values = [claim] if isinstance(claim, str) else [v for v in claim if isinstance(v, str)] if isinstance(
        claim, list) else []
    roles = {role_map.get(v, v if v in ROLES else "") for v in values} - {""}
    return next((r for r in ROLES if r in roles), None)  # ROLES is ordered most powerful first


MAX_GRANTS = 16  # claim values a session keeps to map again (a user in hundreds of groups keeps the granting ones)


def granting(claim: Any, role_map: dict[str, str]) -> tuple[str, ...]:
    """The claim's values that map to a role: a session keeps them, and its role is mapped from them
    again with the node's SHIELDES_OIDC_ROLE_MAP at each request, so a changed map takes effect on
    sessions already signed in."""
    values = [claim] if isinstance(claim, str) else [v for v in claim if isinstance(v, str)] if isinstance(
        claim, list) else []
    return tuple(v for v in values if len(v) <= 256 and (v in role_map or v in ROLES))[:MAX_GRANTS]


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of a PKCE verifier (RFC 7636 section 4.2)."""
    return _b64(hashlib.sha256(verifier.encode("ascii")).digest())


def _pending(saved: dict[str, Any] | None) -> Session | None:
    """The session a verified hand-off cookie's payload names, if well formed."""
    pending = saved.get("pending") if saved is not None else None
    if not isinstance(pending, dict) or pending.get("role") not in ROLES or not isinstance(pending.get("sid"), str) \
            or not isinstance(pending.get("exp"), (int, float)):
        return None
    hint = pending.get("idt")
    return Session(str(pending.get("sub")), str(pending["role"]), float(pending["exp"]), pending["sid"],
                   id_token=hint if isinstance(hint, str) else None, grants=_grants(pending.get("grants")))


def _grants(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str))[:MAX_GRANTS] if isinstance(value, list) else ()


@dataclass(frozen=True)
class Session:
    subject: str
    role: str
    expires_at: float
    id: str  # the session in the log (oidc_session.started): ended there, refused everywhere
    idle_until: float | None = None  # refused after this unless renewed (None: no idle timeout)
    id_token: str | None = None  # the provider's ID token, for the logout's id_token_hint (hand-off only)
    grants: tuple[str, ...] = ()  # the role claim's values that granted the role (granting())


class SessionIdle(AuthenticationFailed):
    code = "session_idle"


class SessionRoleGone(AuthenticationFailed):
    code = "session_role_gone"


class OidcLogin:
    def __init__(self, settings: Settings, *, timeout: float = 10.0) -> None:
        """`timeout`: how long a sign-in waits on the provider (discovery, token exchange, JWKS)."""
        assert settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret
        self.issuer = settings.oidc_issuer.rstrip("/")
        self.client_id = settings.oidc_client_id
        self.client_secret = settings.oidc_client_secret
        self.role_claim = settings.oidc_role_claim
        self.role_map = parse_role_map(settings.oidc_role_map)
        self.redirect_url = settings.oidc_redirect_url
        self.session_seconds = settings.oidc_session_seconds
        self.idle_seconds = settings.oidc_idle_seconds
        self._key = hashlib.sha256(b"shieldes-oidc-session\x00" + self.client_secret.encode()).digest()
        self.timeout = timeout
        self._discovery: dict[str, Any] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcLogin | None:
        if not (settings.oidc_issuer and settings.oidc_client_id and settings.oidc_client_secret):
            return None
        return cls(settings)

    # --- signed values -------------------------------------------------------------------------

    def _sign(self, payload: dict[str, Any]) -> str:
        body = _b64(orjson.dumps(payload))
        return body + "." + _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())

    def _unsign(self, token: str) -> dict[str, Any] | None:
        body, _, sig = token.partition(".")
        want = _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())
        if not sig or not hmac.compare_digest(sig, want):
            return None
        try:
            payload = orjson.loads(_unb64(body))
        except (ValueError, orjson.JSONDecodeError):
            return None
        if not isinstance(payload, dict) or float(payload.get("exp", 0)) < time.time():
            return None
        return payload

    def issue_session(self, session: Session, now: float) -> str:
        """The session's token, its idle deadline `now` + SHIELDES_OIDC_IDLE_SECONDS (never past its expiry)."""
        payload: dict[str, Any] = {"sub": session.subject, "role": session.role, "exp": session.expires_at,
                                   "sid": session.id}
        if self.idle_seconds > 0:
            payload["idle"] = min(session.expires_at, now + self.idle_seconds)
        if session.grants:
            payload["grants"] = list(session.grants)
        return SESSION_PREFIX + self._sign(payload)

    def verify_session(self, token: str, now: float) -> Session | None:
        """The session a token carries, if signed here and not expired (whether it has ended early
        is the log's to say: auth.py asks the node's config; whether it sat idle too long is
        `idle_until`'s)."""
        if not token.startswith(SESSION_PREFIX):
            return None
        payload = self._unsign(token[len(SESSION_PREFIX):])
        # a token without a session id (signed by an earlier release) could not be ended: refused
        if payload is None or payload.get("role") not in ROLES or not isinstance(payload.get("sid"), str):
            return None
        idle = payload.get("idle")
        idle_until = float(idle) if isinstance(idle, (int, float)) and not isinstance(idle, bool) else None
        grants = _grants(payload.get("grants"))
        role = str(payload["role"])
        if grants:  # the role as this node's SHIELDES_OIDC_ROLE_MAP maps the user's groups now
            mapped = role_for(list(grants), self.role_map)
            if mapped is None:
                raise SessionRoleGone(f"SHIELDES_OIDC_ROLE_MAP no longer maps {', '.join(grants)!s} to a role, so this "
                                      "console session has none; ask an administrator, then sign in again at /ui/")
            role = mapped
        return Session(str(payload["sub"]), role, float(payload["exp"]), payload["sid"], idle_until, grants=grants)

    def check_idle(self, session: Session, now: float) -> None:
        """Refuse a session left unused past its idle deadline (a signed-in user who walked away)."""
        if self.idle_seconds > 0 and session.idle_until is not None and session.idle_until < now:
            raise SessionIdle(f"this console session was unused for more than {self.idle_seconds:g} s "
                              "(SHIELDES_OIDC_IDLE_SECONDS) and has timed out; sign in again at /ui/")

    def renew(self, session: Session, now: float) -> str | None:
        """The session's token with its idle deadline moved to `now` (None: no idle timeout to move)."""
        return self.issue_session(session, now) if self.idle_seconds > 0 else None

    async def logout_url(self, request: web.Request, id_token_hint: str | None) -> str | None:
        """Where to send the browser to end the user's session at the provider too (OpenID Connect
        RP-Initiated Logout 1.0), back to the console after; None if its discovery names no
        end_session_endpoint or cannot be read (the shieldes session is ended either way)."""
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
                doc = await self.discovery(session)
        except UpstreamError:
            return None
        endpoint = doc.get("end_session_endpoint")
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            return None
        params = {"client_id": self.client_id, "post_logout_redirect_uri": self.post_logout_uri(request)}
        if id_token_hint:
            params = {"id_token_hint": id_token_hint, **params}
        return endpoint + ("&" if "?" in endpoint else "?") + urlencode(params)

    def post_logout_uri(self, request: web.Request) -> str:
        """The console's address next to the registered callback (register it at the provider as a
        post-logout redirect URI)."""
        redirect = self._redirect_uri(request)
        return redirect[:-len(CALLBACK)] + "/ui/" if redirect.endswith(CALLBACK) else \
            f"{request.scheme}://{request.host}/ui/"

    # --- the provider ----------------------------------------------------------------------------

    async def _get_json(self, session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
        try:
            async with session.get(url) as resp:
                if resp.status != 200:
                    raise UpstreamError(f"the OIDC provider answered {resp.status} for {url}; "
                                        "check SHIELDES_OIDC_ISSUER")
                data = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:  # a provider that never answers: the timeout
            raise UpstreamError(f"cannot reach the OIDC provider at {url} ({exc or 'no answer in time'}); check "
                                "SHIELDES_OIDC_ISSUER and that the provider is up") from None
        if not isinstance(data, dict):
            raise UpstreamError(f"the OIDC provider sent no JSON object from {url}")
        return data

    async def discovery(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        if self._discovery is None:
            doc = await self._get_json(session, self.issuer + "/.well-known/openid-configuration")
            for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(doc.get(name), str):
                    raise UpstreamError(f"the OIDC discovery document has no {name}")
            self._discovery = doc
        return self._discovery

    def _redirect_uri(self, request: web.Request) -> str:
        return self.redirect_url or f"{request.scheme}://{request.host}{CALLBACK}"

    async def login(self, request: web.Request) -> web.StreamResponse:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session:
            doc = await self.discovery(session)
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        # PKCE (RFC 7636, S256): a code is redeemed only with the verifier this browser's cookie holds,
        # and providers set to require it (Okta, Entra, Keycloak can) accept the sign-in
        verifier = secrets.token_urlsafe(48)
        query = urlencode({"response_type": "code", "client_id": self.client_id, "scope": "openid email profile",
                           "redirect_uri": self._redirect_uri(request), "state": state, "nonce": nonce,
                           "code_challenge": pkce_challenge(verifier), "code_challenge_method": "S256"})
        resp = web.HTTPFound(doc["authorization_endpoint"] + "?" + query)
        resp.set_cookie(STATE_COOKIE, self._sign({"state": state, "nonce": nonce, "verifier": verifier,
                                                  "exp": time.time() + STATE_SECONDS}),
                        max_age=STATE_SECONDS, path="/ui/oidc", httponly=True, samesite="Lax",
                        secure=self._secure(request))
        return resp

    def _secure(self, request: web.Request) -> bool:
        # behind a load balancer that ends TLS the node sees http, but the browser comes back to
        # the https callback it was registered with
        return request.scheme == "https" or self._redirect_uri(request).startswith("https://")

    async def redeem(self, request: web.Request,
                     record: Callable[[Session, str | None], Awaitable[None]]) -> web.StreamResponse:
        """POST /ui/oidc/session: the console page takes the session the callback left in this
        browser's hand-off cookie. A browser that did not go through the callback itself (a link
        someone sent) has none, so nobody is signed in. `record` appends the session's start to the
        log and refuses a session started already: the hand-off is good once in the cluster, and the
        token is made only then (the cookie holds none a thief could use instead).

        The page's `Idempotency-Key` (a random value it keeps for its retries) goes to `record`: a
        start whose 503 came after it committed (the wait ran out on the COMMIT's answer) is found
        by that key, so the page's retry finishes the same sign-in. A replay of the cookie without
        the page's key is refused as before."""
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            raise PermissionDenied("an SSO sign-in is finished only by the console's own page; open /ui/ and "
                                   "sign in with SSO", code="oidc_cross_site")
        retry_key = request.headers.get("Idempotency-Key")
        if retry_key is not None and not 1 <= len(retry_key) <= 200:
            raise InvalidRequest("Idempotency-Key must be 1-200 characters; send the same random value with each "
                                 "retry of one sign-in")
        saved = self._unsign(request.cookies.get(HANDOFF_COOKIE, ""))
        pending = _pending(saved)
        if pending is None:
            raise AuthenticationFailed("no SSO sign-in to finish in this browser (it expired after "
                                       f"{HANDOFF_SECONDS} s, or was finished already); sign in again at /ui/",
                                       code="oidc_no_sign_in")
        # a database that cannot take the start now leaves the cookie in place: the page may try again
        try:
            await record(pending, retry_key)
        except CommandRejected:  # the log holds this session: the hand-off was redeemed before
            raise AuthenticationFailed("this SSO sign-in was finished already (a hand-off is redeemed once); "
                                       "sign in again at /ui/", code="oidc_no_sign_in") from None
        answer = {"session": self.issue_session(pending, time.time())}
        if pending.id_token:  # the page keeps it for the logout's id_token_hint
            answer["id_token"] = pending.id_token
        resp = web.json_response(answer, headers={"Cache-Control": "no-store"})
        resp.del_cookie(HANDOFF_COOKIE, path=HANDOFF_PATH)
        return resp

    async def callback(self, request: web.Request) -> web.StreamResponse:
        """The provider sends the browser back here: the session to start goes to this browser's
        hand-off cookie (its start is appended to the log when the page redeems it)."""
        import jwt  # the optional sign-in path only

        if "error" in request.query:
            raise AuthenticationFailed(f"the OIDC provider refused the sign-in: {request.query['error'][:200]}",
                                       code="oidc_refused")
        code, state = request.query.get("code"), request.query.get("state")
        saved = self._unsign(request.cookies.get(STATE_COOKIE, ""))
        if not code or not state or saved is None or not hmac.compare_digest(str(saved.get("state")), state):
            raise InvalidRequest("the sign-in state is missing, expired or does not match; start again at /ui/",
                                 code="oidc_state_mismatch")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session:
            doc = await self.discovery(session)
            form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self._redirect_uri(request),
                    "client_id": self.client_id, "client_secret": self.client_secret,
                    "code_verifier": str(saved.get("verifier", ""))}
            try:
                async with session.post(doc["token_endpoint"], data=form) as resp:
                    tokens = await resp.json(content_type=None)
                    if resp.status != 200 or not isinstance(tokens, dict) or "id_token" not in tokens:
                        raise AuthenticationFailed("the OIDC provider did not issue an ID token for this code; "
                                                   "start again at /ui/", code="oidc_refused")
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise UpstreamError(f"cannot reach the OIDC provider's token endpoint ({exc or 'no answer in time'}); "
                                    "check that the provider is up, then sign in again at /ui/") from None
            jwks = await self._get_json(session, doc["jwks_uri"])
        try:
            header = jwt.get_unverified_header(tokens["id_token"])
            keys = [k for k in jwks.get("keys", []) if not header.get("kid") or k.get("kid") == header.get("kid")]
            if not keys:
                raise jwt.InvalidTokenError("no signing key in the provider's JWKS matches the ID token")
            # an ID token must name its subject and expiry (OpenID Connect Core 2): without `exp`
            # one would be good forever, without `sub` there is no one to sign in
            claims = jwt.decode(tokens["id_token"], jwt.PyJWK(keys[0]).key, algorithms=["RS256", "ES256", "PS256"],
                                audience=self.client_id, issuer=doc.get("issuer", self.issuer),
                                options={"require": ["exp", "sub"]})
        except jwt.InvalidTokenError as exc:
            raise AuthenticationFailed(f"the ID token is not valid ({exc}); start again at /ui/",
                                       code="oidc_invalid_token") from None
        if not hmac.compare_digest(str(claims.get("nonce", "")), str(saved.get("nonce"))):
            raise AuthenticationFailed("the ID token's nonce does not match this sign-in; start again at /ui/",
                                       code="oidc_invalid_token")
        role = role_for(claims.get(self.role_claim), self.role_map)
        if role is None:
            raise PermissionDenied(f"no shieldes role for this user: claim {self.role_claim!r} holds no value mapped "
                                   "by SHIELDES_OIDC_ROLE_MAP; ask an administrator", code="oidc_no_role")
        # the actor in the audit log: an email the provider says it has not verified could be anyone's
        # (a user may type any address at some providers), so that user is named by the subject id
        if claims.get("email_verified") is False or claims.get("email_verified") == "false":
            who = str(claims["sub"])
        else:
            who = str(claims.get("email") or claims.get("preferred_username") or claims["sub"])
        # the session goes to this browser only, in a cookie the page redeems (never in the URL:
        # a link carrying one would sign whoever opens it in as its owner)
        signed_in = Session(who, role, time.time() + self.session_seconds, "ses_" + secrets.token_urlsafe(16))
        hint = {"idt": tokens["id_token"]} if isinstance(tokens["id_token"], str) and len(
            tokens["id_token"]) <= MAX_HINT and isinstance(doc.get("end_session_endpoint"), str) else {}
        done = web.HTTPFound("/ui/#sso")
        done.headers["Cache-Control"] = "no-store"
        done.del_cookie(STATE_COOKIE, path="/ui/oidc")
        done.set_cookie(HANDOFF_COOKIE, self._sign({"pending": {"sub": signed_in.subject, "role": signed_in.role,
                                                               "exp": signed_in.expires_at, "sid": signed_in.id,
                                                               "grants": list(granting(claims.get(self.role_claim),
                                                                                       self.role_map)),
                                                               **hint},
                                                   "exp": time.time() + HANDOFF_SECONDS}),
                        max_age=HANDOFF_SECONDS, path=HANDOFF_PATH, httponly=True, samesite="Lax",
                        secure=self._secure(request))
        return done
