"""`shieldes mcp add|list|remove`: upstream MCP servers clients reach at /mcp/NAME with a virtual
key. Their headers (an Authorization token, ...) are secrets: stored encrypted or as `env:VAR`
references, like provider keys, and never shown again (docs/mcp.md)."""

from __future__ import annotations

from typing import Any

import click

from shieldes.cli.common import Written, cli_context, json_option, list_named, remove_named, run, write
from shieldes.cli.oneline import OneLineGroup, handle_errors
from shieldes.cli.output import emit
from shieldes.errors import CommandRejected
from shieldes.mcp.servers import parse_header, stored_headers
from shieldes.projections.shared_commands import AddMcpServer, RemoveMcpServer, UpdateMcpServer
from shieldes.views import mcp_server_row

COLUMNS = ("name", "url", "route", "headers")


def _pairs(specs: tuple[str, ...], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in specs:
        name, value = parse_header(spec)
        if name in out:  # (the last one won, silently)
            raise CommandRejected(f"{option} {name!r} is given twice; give each header once")
        out[name] = value
    return out


def _emit_answer(answer: dict[str, Any]) -> None:
    """The server as the admin API answered a write: `mcp list`'s columns and the log position."""
    emit({**{c: answer[c] for c in COLUMNS}, "position": answer["position"]}, as_json=cli_context().as_json)


def _emit_written(name: str, written: Written) -> None:
    """The server as a direct write left it: `mcp list`'s row and the log position."""
    emit({**mcp_server_row(written.state.mcp_servers[name]), "position": written.position},
         as_json=cli_context().as_json)


@click.group("mcp", cls=OneLineGroup)
def mcp_group() -> None:
    """MCP servers reached through the gateway at /mcp/NAME (docs/mcp.md)."""


@mcp_group.command("add")
@click.argument("name")
@click.option("--url", required=True, help="the server's Streamable HTTP endpoint, e.g. https://mcp.example.com/mcp")
@click.option("--header", "headers", multiple=True, metavar="'NAME: VALUE'",
              help="a header sent to the server with every request (repeatable), stored encrypted")
@click.option("--header-env", "header_envs", multiple=True, metavar="'NAME: VAR'",
              help="a header whose value each node reads from environment variable VAR (repeatable)")
@json_option
@handle_errors
def add(name: str, url: str, headers: tuple[str, ...], header_envs: tuple[str, ...], as_json: bool) -> None:
    """Register MCP server NAME at --url; keys allowed it (`key create/update --mcp`) reach it at /mcp/NAME."""
    ctx = cli_context()
    values, envs = _pairs(headers, "--header"), _pairs(header_envs, "--header-env")
    api = ctx.remote()
    if api is not None:
        body: dict[str, Any] = {"name": name, "url": url}
        if values:
            body["headers"] = values
        if envs:
            body["header_envs"] = envs
        _emit_answer(api.call("POST", "/mcp-servers", body, create=True))
        return
    _emit_written(name, run(write(AddMcpServer(name, url, stored_headers(ctx.settings, values, envs)))))


@mcp_group.command("update")
@click.argument("name")
@click.option("--url", default=None, help="a new Streamable HTTP endpoint")
@click.option("--header", "headers", multiple=True, metavar="'NAME: VALUE'",
              help="the new set of headers (repeatable; replaces every header), stored encrypted")
@click.option("--header-env", "header_envs", multiple=True, metavar="'NAME: VAR'",
              help="a header of the new set read from environment variable VAR on each node (repeatable)")
@json_option
@handle_errors
def update(name: str, url: str | None, headers: tuple[str, ...], header_envs: tuple[str, ...], as_json: bool) -> None:
    """Change MCP server NAME in place (a rotated token, a moved endpoint): /mcp/NAME answers throughout, and
    keys keep their access. Headers given replace the whole set; none given keeps them."""
    ctx = cli_context()
    values, envs = _pairs(headers, "--header"), _pairs(header_envs, "--header-env")
    replaced = bool(values or envs)
    api = ctx.remote()
    if api is not None:
        from shieldes.cli.remote import segment

        body: dict[str, Any] = {}
        if url is not None:
            body["url"] = url
        if replaced:
            body["headers"], body["header_envs"] = values, envs
        _emit_answer(api.call("PATCH", f"/mcp-servers/{segment(name)}", body))
        return
    refs = stored_headers(ctx.settings, values, envs) if replaced else None
    _emit_written(name, run(write(UpdateMcpServer(name, url, refs))))


@mcp_group.command("remove")
@click.argument("name")
@json_option
@handle_errors
def remove(name: str, as_json: bool) -> None:
    """Remove MCP server NAME: /mcp/NAME stops reaching it on every node."""
    remove_named("name", name, "mcp-servers", RemoveMcpServer(name))


@mcp_group.command("list")
@json_option
@handle_errors
def list_(as_json: bool) -> None:
    """All MCP servers (header values never shown: only `encrypted` or their env:VAR)."""
    list_named("mcp-servers", COLUMNS,
               lambda state: [mcp_server_row(m) for m in sorted(state.mcp_servers.values(), key=lambda m: m.name)])
