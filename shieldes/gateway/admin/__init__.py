"""The admin surface of a node: the versioned REST API under /admin/v1 (one route table, its
OpenAPI document at /admin/v1/openapi.json), the web console under /ui/, and optional OIDC
sign-in for the console. Every node serves all of it; writes go to the shared log."""

from __future__ import annotations

from aiohttp import web

from shieldes import __version__
from shieldes.gateway.admin import (
    config_routes,
    mcp_routes,
    read_routes,
    requestlog_routes,
    serving_routes,
    session_routes,
)
from shieldes.gateway.admin.api import PREFIX, Route, gate, openapi, register
from shieldes.gateway.admin.console import add_console_routes
from shieldes.gateway.admin.context import ADMIN, AdminContext
from shieldes.gateway.middleware import ADMIN_GATE, request_id
from shieldes.gateway.routes import json_response

ROUTES: tuple[Route, ...] = (config_routes.ROUTES + serving_routes.ROUTES + mcp_routes.ROUTES
                             + read_routes.ROUTES + requestlog_routes.ROUTES + session_routes.ROUTES)


def add_admin_routes(app: web.Application, ctx: AdminContext) -> None:
    app[ADMIN] = ctx
    app[ADMIN_GATE] = gate
    document = openapi(ROUTES, __version__)

    async def openapi_json(request: web.Request) -> web.StreamResponse:
        return json_response(document, request_id(request))

    # Registered first: a fixed path wins over any templated one. Public: it holds no data.
    app.router.add_get(PREFIX + "/openapi.json", openapi_json)
    register(app, ROUTES)
    add_console_routes(app, ctx)
