"""Which MCP servers and tools a key may use: pure decisions on its allow-list (`key --mcp`).

Entries: `*` (every server and tool), `SERVER` (every tool of that server; `SERVER/*` says the
same), `SERVER/TOOL` (that tool alone). A key without entries uses no MCP server: tools act on
other systems, so access is granted, never assumed (unlike `--models`, whose default is every
model). A key holding only tool entries for a server may open a session with it and list and call
those tools; the server's other features (resources, prompts, completions) need a `SERVER` entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from shieldes.errors import CommandRejected

ANY = "*"
MAX_ENTRY = 256
_SERVER_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_TOOL_OK = re.compile(r"^[^\s,/]{1,128}$")
# methods any key allowed on a server may send: the session's own plumbing and the tool list (filtered)
SESSION_METHODS = frozenset({"initialize", "ping", "tools/list", "logging/setLevel"})


def check_server_name(name: str) -> str:
    """An MCP server's name: it is a URL path segment (/mcp/NAME) and the first part of an entry."""
    if not _SERVER_OK.match(name):
        raise CommandRejected(f"invalid MCP server name {name!r}: use 1-128 letters, digits and . _ - "
                              "(starting with a letter or digit)")
    return name


def check_entries(entries: Iterable[str], servers: Mapping[str, Any]) -> tuple[str, ...]:
    """A key's MCP allow-list as given (`--mcp`), each entry checked; a server not registered is
    refused (an entry that names nothing is a mistake, not a grant for later)."""
    out: list[str] = []
    for entry in entries:
        entry = entry.strip()
        if entry == ANY:
            out.append(entry)
            continue
        server, slash, tool = entry.partition("/")
        if not _SERVER_OK.match(server) or (slash and not (tool == ANY or _TOOL_OK.match(tool))):
            raise CommandRejected(f"invalid --mcp entry {entry!r}: use SERVER, SERVER/TOOL or * (e.g. "
                                  "--mcp github,jira/search_issues)")
        if server not in servers:
            raise CommandRejected(f"--mcp {entry}: no MCP server named {server!r}; register it with "
                                  "`shieldes mcp add` or see `shieldes mcp list`")
        out.append(server if tool == ANY else entry)
    if len(set(out)) != len(out):
        raise CommandRejected("an entry is listed twice in --mcp; list each once")
    return tuple(out)


def allows_server(entries: tuple[str, ...] | None, server: str) -> bool:
    """The key may reach `server` at all (some entry names it or all servers)."""
    if not entries:
        return False
    prefix = server + "/"
    return any(e in (ANY, server) or e.startswith(prefix) for e in entries)


def whole_server(entries: tuple[str, ...] | None, server: str) -> bool:
    """The key may use everything `server` offers (not only some of its tools)."""
    return bool(entries) and any(e in (ANY, server) for e in entries or ())


def allows_tool(entries: tuple[str, ...] | None, server: str, tool: str) -> bool:
    return whole_server(entries, server) or f"{server}/{tool}" in (entries or ())


def allows_method(entries: tuple[str, ...] | None, server: str, method: str) -> bool:
    """A JSON-RPC method other than tools/call (those are checked per tool): the session's
    plumbing and notifications for any key allowed on the server, the rest with a SERVER entry."""
    return whole_server(entries, server) or method in SESSION_METHODS or method.startswith("notifications/")


def filter_tools(entries: tuple[str, ...] | None, server: str, tools: list[Any]) -> list[Any]:
    """A tools/list result's `tools`, only those the key may call."""
    if whole_server(entries, server):
        return tools
    return [t for t in tools if isinstance(t, dict) and isinstance(t.get("name"), str)
            and allows_tool(entries, server, t["name"])]
