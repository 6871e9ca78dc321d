"""A tiny OpenID Connect provider over real HTTP: discovery, an authorization endpoint that signs
in a preset user at once, a token endpoint that checks the client secret, the code and its PKCE
verifier (RFC 7636: required, as a provider set to require PKCE does), a JWKS with a test RSA
key that signs the ID tokens, and an end_session_endpoint (RP-Initiated Logout 1.0) that checks
its id_token_hint and sends the browser back to the registered post-logout URI."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

CLIENT_ID = "shieldes-console"
CLIENT_SECRET = "console-client-secret-for-tests"


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class FakeOidc:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-key-1"
        self.user: dict[str, Any] = {"sub": "u-1", "email": "ana@example.com", "roles": ["platform"]}
        self.codes: dict[str, dict[str, Any]] = {}
        self.token_requests: list[dict[str, str]] = []
        self.authorize_requests: list[dict[str, str]] = []
        self.require_pkce = True
        self.drop_claims: set[str] = set()  # standard claims left out of the ID token (a broken provider)
        self.offers_logout = True  # discovery names the end_session_endpoint
        self.logout_requests: list[dict[str, str]] = []
        self.post_logout_uris: set[str] = set()  # registered post-logout redirect URIs (empty: any)
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> FakeOidc:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self.discovery)
        app.router.add_get("/authorize", self.authorize)
        app.router.add_post("/token", self.token)
        app.router.add_get("/jwks", self.jwks)
        app.router.add_get("/logout", self.logout)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def node_settings(self, **extra: Any) -> dict[str, Any]:
        """A node's settings that sign console users in through this provider, with `extra`."""
        return {"oidc_issuer": self.url, "oidc_client_id": CLIENT_ID, "oidc_client_secret": CLIENT_SECRET, **extra}

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def discovery(self, request: web.Request) -> web.Response:
        doc = {
            "issuer": self.url, "authorization_endpoint": self.url + "/authorize",
            "token_endpoint": self.url + "/token", "jwks_uri": self.url + "/jwks",
            "response_types_supported": ["code"], "id_token_signing_alg_values_supported": ["RS256"],
        }
        if self.offers_logout:
            doc["end_session_endpoint"] = self.url + "/logout"
        return web.json_response(doc)

    async def logout(self, request: web.Request) -> web.Response:
        """RP-initiated logout: the hint must be an ID token this provider issued to the client (its
        expiry may have passed), the redirect one registered."""
        q = dict(request.query)
        self.logout_requests.append(q)
        hint = q.get("id_token_hint")
        if hint is not None:
            try:
                jwt.decode(hint, self.key.public_key(), algorithms=["RS256"], audience=CLIENT_ID,
                           options={"verify_exp": False})
            except jwt.InvalidTokenError:
                return web.Response(status=400, text="invalid id_token_hint")
        target = q.get("post_logout_redirect_uri")
        if target is None:
            return web.Response(text="signed out")
        if q.get("client_id") != CLIENT_ID or (self.post_logout_uris and target not in self.post_logout_uris):
            return web.Response(status=400, text="post_logout_redirect_uri is not registered")
        raise web.HTTPFound(target)

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        self.authorize_requests.append(dict(q))
        if q.get("client_id") != CLIENT_ID or q.get("response_type") != "code":
            return web.Response(status=400, text="bad authorization request")
        if self.require_pkce and q.get("code_challenge_method") != "S256":
            return web.Response(status=400, text="PKCE (code_challenge with S256) is required")
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"nonce": q["nonce"], "redirect_uri": q["redirect_uri"], "user": dict(self.user),
                            "challenge": q.get("code_challenge")}
        raise web.HTTPFound(q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]}))

    async def token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.token_requests.append({k: str(v) for k, v in form.items()})
        grant = self.codes.pop(str(form.get("code")), None)
        if form.get("client_secret") != CLIENT_SECRET or grant is None or form.get("redirect_uri") != grant[
                "redirect_uri"]:
            return web.json_response({"error": "invalid_grant"}, status=400)
        if grant["challenge"] is not None and s256(str(form.get("code_verifier", ""))) != grant["challenge"]:
            return web.json_response({"error": "invalid_grant", "error_description": "PKCE verification failed"},
                                     status=400)
        now = int(time.time())
        claims = {**grant["user"], "iss": self.url, "aud": CLIENT_ID, "iat": now, "exp": now + 300,
                  "nonce": grant["nonce"]}
        claims = {k: v for k, v in claims.items() if k not in self.drop_claims}
        id_token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})
        return web.json_response({"access_token": "at", "token_type": "Bearer", "id_token": id_token})

    async def jwks(self, request: web.Request) -> web.Response:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return web.json_response({"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]})
