"""Admin API routes for MCP servers: register, list, update, remove (the CLI's `shieldes mcp`). Header
values are encrypted by the node that takes the request and never returned."""

from __future__ import annotations

from typing import Any

from shieldes.errors import InvalidRequest, NotFound
from shieldes.gateway.admin.api import PAGE_FIELDS, Call, Field, Route, page
from shieldes.gateway.admin.config_routes import created_status, with_position, write_command
from shieldes.mcp.servers import stored_headers
from shieldes.projections.shared_commands import AddMcpServer, RemoveMcpServer, UpdateMcpServer
from shieldes.roles import ADMIN, READ
from shieldes.views import mcp_server_row


def _strings(b: dict[str, Any], name: str) -> dict[str, str]:
    value = b.get(name) or {}
    if not all(isinstance(v, str) for v in value.values()):
        raise InvalidRequest(f"`{name}` must map header names to strings, e.g. {{\"Authorization\": \"Bearer T\"}}",
                             param=name)
    return dict(value)


async def list_servers(call: Call) -> Any:
    state = call.ctx.projector.config
    return page([mcp_server_row(m) for m in sorted(state.mcp_servers.values(), key=lambda m: m.name)], "name", call)


async def get_server(call: Call) -> Any:
    server = call.ctx.projector.config.mcp_servers.get(call.path["name"])
    if server is None:
        raise NotFound(f"no MCP server named {call.path['name']!r}; see GET /admin/v1/mcp-servers",
                       code="mcp_server_not_found")
    return mcp_server_row(server)


async def add_server(call: Call) -> Any:
    b = call.body
    values, envs = _strings(b, "headers"), _strings(b, "header_envs")
    headers = stored_headers(call.ctx.settings, values, envs)
    written = await write_command(call, AddMcpServer(b["name"], b["url"], headers))
    return created_status(written), with_position(mcp_server_row(written.state.mcp_servers[b["name"]]), written)


async def update_server(call: Call) -> Any:
    b = call.body
    replaced = "headers" in b or "header_envs" in b
    values, envs = _strings(b, "headers"), _strings(b, "header_envs")
    refs = stored_headers(call.ctx.settings, values, envs) if replaced else None
    url = b.get("url")
    if url is not None and not isinstance(url, str):
        raise InvalidRequest("`url` must be a string, e.g. \"https://mcp.example.com/mcp\"", param="url")
    written = await write_command(call, UpdateMcpServer(call.path["name"], url, refs))
    return with_position(mcp_server_row(written.state.mcp_servers[call.path["name"]]), written)


async def remove_server(call: Call) -> Any:
    written = await write_command(call, RemoveMcpServer(call.path["name"]))
    return {"name": call.path["name"], "removed": True, "position": written.events[-1].position}


ROUTES: tuple[Route, ...] = (
    Route("GET", "/mcp-servers", list_servers, READ, "List MCP servers (header values never shown)", "mcp servers",
          query=PAGE_FIELDS),
    Route("GET", "/mcp-servers/{name}", get_server, READ, "Show one MCP server", "mcp servers"),
    Route("POST", "/mcp-servers", add_server, ADMIN, "Register an MCP server, reached at /mcp/{name}",
          "mcp servers",
          body=(Field("name", "string", "unique server name (the path segment of /mcp/{name})", required=True),
                Field("url", "string", "the server's Streamable HTTP endpoint, e.g. https://mcp.example.com/mcp",
                      required=True),
                Field("headers", "object", "headers sent to the server with every request, e.g. "
                      "{\"Authorization\": \"Bearer T\"}; stored encrypted, never returned"),
                Field("header_envs", "object", "headers whose value each node reads from an environment variable, "
                      "e.g. {\"Authorization\": \"GITHUB_MCP_AUTH\"}")),
          idempotent_create=True),
    Route("PATCH", "/mcp-servers/{name}", update_server, ADMIN, "Change an MCP server in place (a rotated "
          "token, a moved endpoint)", "mcp servers",
          body=(Field("url", "string", "a new Streamable HTTP endpoint"),
                Field("headers", "object", "with header_envs, the new set of headers replacing every header "
                      "(values stored encrypted, never returned); omit both to keep them"),
                Field("header_envs", "object", "headers of the new set read from an environment variable on each "
                      "node"))),
    Route("DELETE", "/mcp-servers/{name}", remove_server, ADMIN, "Remove an MCP server", "mcp servers"),
)
