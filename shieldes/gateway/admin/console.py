"""The web console: static files shipped in the package (shieldes/console/), served under /ui/ by
every node, plus the OIDC sign-in routes. The console itself reads only the admin API."""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from shieldes.gateway.admin.context import AdminContext

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


def _assets() -> dict[str, bytes]:
    root = resources.files("shieldes") / "console"
    return {entry.name: entry.read_bytes() for entry in root.iterdir()
            if entry.is_file() and any(entry.name.endswith(ext) for ext in TYPES)}


def add_console_routes(app: web.Application, ctx: AdminContext) -> None:
    assets = _assets()  # read once at start: a handful of small files

    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name") or "index.html"
        body = assets.get(name)
        if body is None:
            raise web.HTTPNotFound()
        ext = name[name.rfind("."):]
        return web.Response(body=body, headers={"Content-Type": TYPES[ext], "Cache-Control": "no-cache",
                                                **SECURITY_HEADERS})

    async def to_console(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound("/ui/")

    async def sign_in_options(request: web.Request) -> web.StreamResponse:
        return web.json_response({"oidc": ctx.oidc is not None, "node_id": ctx.node_id},
                                 headers={"Cache-Control": "no-store"})

    app.router.add_get("/ui", to_console)
    app.router.add_get("/ui/", asset)
    app.router.add_get("/ui/sign-in.json", sign_in_options)
    if ctx.oidc is not None:
        app.router.add_get("/ui/oidc/login", ctx.oidc.login)
        app.router.add_get("/ui/oidc/callback", ctx.oidc.callback)
    app.router.add_get("/ui/{name}", asset)
