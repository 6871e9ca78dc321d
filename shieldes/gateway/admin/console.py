"""The web console: static files shipped in the package (shieldes/console/), served under /ui/ by
every node, plus the OIDC sign-in routes. The console itself reads only the admin API."""

from __future__ import annotations

import html
import time
from collections.abc import Awaitable, Callable
from importlib import resources

from aiohttp import web

from shieldes.config_writer import execute_live
from shieldes.errors import ShieldesError
from shieldes.gateway.admin.api import API_HEADERS
from shieldes.gateway.admin.context import AdminContext
from shieldes.gateway.admin.oidc import Session
from shieldes.gateway.middleware import note_error, record_of
from shieldes.projections.sessions import StartSession

TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
# Everything the console loads comes from this node: no CDN, no inline script.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# Over HTTPS (SHIELDES_TLS_CERT) the browser is told to come back over HTTPS only, so a network
# attacker cannot strip TLS from a later visit and read a token as it is typed or sent.
HSTS = {"Strict-Transport-Security": "max-age=31536000"}


def page_headers(request: web.Request) -> dict[str, str]:
    return {**SECURITY_HEADERS, **HSTS} if request.secure else SECURITY_HEADERS


def _assets() -> dict[str, bytes]:
    root = resources.files("shieldes") / "console"
    return {entry.name: entry.read_bytes() for entry in root.iterdir()
            if entry.is_file() and any(entry.name.endswith(ext) for ext in TYPES)}


SIGN_IN_FAILED = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign-in failed · shieldes console</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/app.css">
</head>
<body>
<header class="top"><div class="brand"><span class="logo" aria-hidden="true">&#9670;</span> shieldes</div></header>
<main id="main" class="panel signin">
<h1>Sign-in failed</h1>
<p class="error" role="alert">{message}</p>
<p><a class="button primary" href="/ui/">Back to sign-in</a></p>
<p class="muted">Error code: <code>{code}</code></p>
</main>
</body>
</html>
"""


def in_browser(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
               ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The sign-in routes are where a browser lands: a refusal there (no role for this user, a
    stale state, a provider that cannot be reached) is a page in words with a way back to the
    sign-in form, under the same status; other clients get the API's JSON error."""
    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ShieldesError as exc:
            if "text/html" not in request.headers.get("Accept", ""):
                raise
            note_error(request, exc.code, exc.message)  # the request log says why, as for a JSON refusal
            page = SIGN_IN_FAILED.format(message=html.escape(exc.message), code=html.escape(exc.code or "error"))
            return web.Response(text=page, status=exc.status, content_type="text/html", charset="utf-8",
                                headers={"Cache-Control": "no-store", **page_headers(request)})

    return handle


def add_console_routes(app: web.Application, ctx: AdminContext) -> None:
    assets = _assets()  # read once at start: a handful of small files

    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name") or "index.html"
        body = assets.get(name)
        if body is None:
            raise web.HTTPNotFound()
        ext = name[name.rfind("."):]
        return web.Response(body=body, headers={"Content-Type": TYPES[ext], "Cache-Control": "no-cache",
                                                **page_headers(request)})

    async def to_console(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/ui/")

    async def sign_in_options(request: web.Request) -> web.StreamResponse:
        return web.json_response({"oidc": ctx.oidc is not None, "node_id": ctx.node_id}, headers=API_HEADERS)

    app.router.add_get("/ui", to_console)
    app.router.add_get("/ui/", asset)
    app.router.add_get("/ui/sign-in.json", sign_in_options)
    if ctx.oidc is not None:
        app.router.add_get("/ui/oidc/login", in_browser(ctx.oidc.login))
        oidc = ctx.oidc

        async def record(session: Session, retry_key: str | None) -> None:
            command = StartSession(session.id, session.subject, session.role, time.time(), session.expires_at)
            # the retry key with this hand-off's session: a start already written for it is found, not refused
            idempotency = (retry_key, session.id) if retry_key is not None else None
            await ctx.db_wait.run(execute_live(ctx.projector, command, actor=f"oidc:{session.subject}",
                                               idempotency=idempotency),
                                  "the sign-in could not be recorded", advice="sign in again in a moment")

        async def redeem(request: web.Request) -> web.StreamResponse:
            async def record_here(session: Session, retry_key: str | None) -> None:
                await record(session, retry_key)
                rec = record_of(request)  # the request log's row of the sign-in names who signed in
                if rec is not None:
                    rec.actor = f"oidc:{session.subject}"

            try:
                resp = await oidc.redeem(request, record_here)
            except ShieldesError as exc:
                exc.headers.update(API_HEADERS)
                raise
            resp.headers.update(API_HEADERS)
            return resp

        app.router.add_get("/ui/oidc/callback", in_browser(oidc.callback))
        app.router.add_post("/ui/oidc/session", redeem)
    app.router.add_get("/ui/{name}", asset)
