"""Coding agents calling an MCP tool through the node (`claude-mcp`, `codex-mcp`, `gemini-mcp`,
`opencode-mcp` in bench/compat.py).

A real MCP server (the official SDK over Streamable HTTP, tests/fake_mcp.py) offers
`lookup_ticket(id)`, which answers a random marker and refuses any request without its own bearer
token. The node registers it (`shieldes mcp add tickets --url ... --header 'Authorization: Bearer
TOKEN'`) and a key is created with `--mcp tickets`; that virtual key is the only credential the
client holds, for its model calls and for the MCP server at the node's `/mcp/tickets`:

  claude -p PROMPT --mcp-config FILE --strict-mcp-config --allowedTools mcp__tickets__lookup_ticket
      FILE: {"mcpServers": {"tickets": {"type": "http", "url": NODE/mcp/tickets,
                                        "headers": {"Authorization": "Bearer KEY"}}}}
  codex exec PROMPT    config.toml: the node as model provider, and [mcp_servers.tickets] with
                       url = NODE/mcp/tickets, bearer_token_env_var = "SHIELDES_KEY", the tool
                       approved ahead; a `--responses native` deployment's model, then a
                       `translate` one's (the upstream sees chat completions)
  gemini -p PROMPT     settings.json: the Gemini API key sign-in (the node's Gemini API, translated
                       to chat), and mcpServers.tickets with httpUrl = NODE/mcp/tickets, the
                       Authorization header, trust = true (headless, an untrusted tool is denied)
  opencode run PROMPT  opencode.json: an OpenAI-compatible provider at the node, and mcp.tickets
                       (type remote, url, headers), the tool allowed by `permission`

The fake upstream, offered a tool whose name holds `lookup_ticket` (Claude Code names it
mcp__tickets__lookup_ticket, Gemini CLI mcp_tickets_lookup_ticket, OpenCode tickets_lookup_ticket;
Codex gives it its own name), calls it with the ticket id, then quotes
the tool result it gets back. A run passes only if the server saw the call with that id and its own
token (the virtual key reached it nowhere), the node's request log holds the key's `tools/call` row
for the server and tool, and the client's output holds the marker.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context, MCPServer

from tests.fake_mcp import Seen
from tests.fake_wire import ToolScript

SERVER, TOOL = "tickets", "lookup_ticket"
SEARCH = "ToolSearch"  # Claude Code's own tool that loads deferred tools' schemas
TICKET = "TCK-4711"
PROMPT = f"Look up ticket {TICKET} with the {SERVER} tool and reply with what it says."


@dataclass
class Tickets:
    """The ticket server's side of a run: the marker its tool answers, the bearer token it takes,
    and each call as (id argument, Authorization header it came with)."""

    marker: str = field(default_factory=lambda: f"MARKER-{os.urandom(6).hex()}")
    token: str = field(default_factory=lambda: f"tickets-{os.urandom(12).hex()}")
    calls: list[tuple[str, str]] = field(default_factory=list)

    def build(self, seen: Seen) -> MCPServer:
        server = MCPServer("tickets")

        @server.tool()
        def lookup_ticket(id: str, ctx: Context) -> str:  # (`id`: the argument as the tool schema names it)
            """Look up a support ticket by its id (e.g. TCK-1) and return its status."""
            self.calls.append((id, (ctx.headers or {}).get("authorization", "")))
            return f"Ticket {id}: open, {self.marker}"

        return server


@dataclass(frozen=True)
class McpScript(ToolScript):
    """The fake upstream's tool round for these runs: the first offered tool whose name holds
    `lookup_ticket` (each client names MCP tools its own way), called with the ticket id; no other
    tool (Claude Code's Read, Codex's shell) is called."""

    calls: dict[str, dict[str, Any]] = field(default_factory=lambda: {TOOL: {"id": TICKET}})

    def call(self, offered: list[str], answered: bool) -> tuple[str, dict[str, Any]] | None:
        if answered:
            return None
        return next(((name, {"id": TICKET}) for name in offered if TOOL in name), None)

    def call_messages(self, offered: list[str], deferred: list[str],
                      answered: list[str]) -> tuple[str, dict[str, Any]] | None:
        """Claude Code (2.1.3xx) defers MCP tools behind its ToolSearch tool: named in a system
        reminder, without a schema until ToolSearch `select:NAME` loads it (tool_reference blocks in
        its result; the next request adds it to `tools`). The model loads the ticket tool so, then
        calls it; a tool offered at once is called at once."""
        if any(TOOL in name for name in answered):
            return None
        loaded = next((name for name in offered if TOOL in name), None)
        if loaded is not None:
            return loaded, {"id": TICKET}
        hidden = next((name for name in deferred if TOOL in name), None)
        if hidden is not None and SEARCH in offered and SEARCH not in answered:
            return SEARCH, {"query": f"select:{hidden}"}
        return None


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: str


def verdict(code: int, out: str, err: str, tickets: Tickets, seen: Seen, rows: list[dict[str, Any]],
            key: str, offered: list[str], left_open: int = 0) -> Verdict:
    """Whether the client's tool call went through the node to the server and its result came back:
    the server ran the call with the ticket id and its own token, no request reached it with the
    virtual key, the node logged the key's `tools/call` of the tool, and the output quotes the marker;
    and, the client gone, the node left none of its requests open on the server (`left_open`: a
    GET stream still relayed after the client exited)."""
    called = [name for name in offered if TOOL in name]
    if not called:
        return Verdict(False, f"the client offered the model no tool named *{TOOL}* (it offered: "
                              f"{', '.join(sorted(set(offered)))[:400] or 'none'}): {(err or out).strip()[-400:]}")
    leaked = [h for _, headers in seen.requests for h, v in headers.items() if key in v]
    if leaked:
        return Verdict(False, f"the virtual key reached the MCP server (in {', '.join(sorted(set(leaked)))})")
    right = [c for c in tickets.calls if c == (TICKET, f"Bearer {tickets.token}")]
    if not right:
        return Verdict(False, f"the MCP server saw no {TOOL}({TICKET!r}) with its own token (calls: "
                              f"{[c[0] for c in tickets.calls]}; {seen.refused} refused); exit {code}: "
                              f"{(err or out).strip()[-400:]}")
    logged = [r for r in rows if r.get("model") == "tools/call" and r.get("upstream_model") == TOOL
              and r.get("deployment") == SERVER and r.get("status") == 200]
    if not logged:
        return Verdict(False, f"no tools/call row of {SERVER}/{TOOL} in the node's request log for the key "
                              f"(rows: {[(r.get('model'), r.get('upstream_model'), r.get('status')) for r in rows]})")
    if code != 0 or tickets.marker not in out:
        return Verdict(False, f"the tool ran, but the answer did not quote its result: exit {code}: "
                              f"{(err or out).strip()[-400:]}")
    if left_open:
        return Verdict(False, f"the tool call went through, but the client exited and {left_open} of its requests "
                              "stayed open on the MCP server: the node went on relaying them")
    methods = sorted({logged_as(r) for r in rows})
    return Verdict(True, f"{out.strip()[-80:]}; {called[0]} called through /mcp/{SERVER} "
                         f"(server saw its own token; log: {', '.join(methods)})")


def logged_as(row: dict[str, Any]) -> str:
    """A request-log row as the verdict lists it: the JSON-RPC method (GET and DELETE have none: the
    HTTP method), with a status other than 2xx and an error code (client_disconnected, ...) shown."""
    status = int(row.get("status") or 0)
    return " ".join([str(row.get("model") or row.get("method")), *([str(status)] if not 200 <= status < 300 else []),
                     *([str(row["error_code"])] if row.get("error_code") else [])])


async def streams_left(seen: Seen, before: int, timeout: float = 10) -> int:
    """How many of the client's requests are still open on the MCP server once `timeout` passed, or 0
    as soon as none is (called after the client exited: the node notices a quiet stream's client left
    within a second). `before`: those open when the client started (another run's, not this one's)."""
    deadline = time.monotonic() + timeout
    while seen.open > before and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return max(0, seen.open - before)


async def logged_rows(env: dict[str, str], root: Path, key_name: str, methods: set[str],
                      timeout: float = 20) -> list[dict[str, Any]]:
    """The key's request-log rows on /mcp/* (each client has a key of its own), once a tools/call row
    and a row of each HTTP method in `methods` (those the server saw) are among them (the node writes
    the log in batches), or `timeout` passed."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run([sys.executable, "-m", "shieldes", "logs", "--json", "--key", key_name,
                              "--route", "/mcp/*", "--limit", "1000"],
                             cwd=root, env=env, capture_output=True, text=True, check=False)
        rows: list[dict[str, Any]] = json.loads(out.stdout) if out.returncode == 0 else []
        done = any(r.get("model") == "tools/call" for r in rows) and methods <= {r.get("method") for r in rows}
        if done or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.2)


def claude_config(node: str, key: str) -> dict[str, Any]:
    """Claude Code's --mcp-config: the node's route for the server, the virtual key as bearer token."""
    return {"mcpServers": {SERVER: {"type": "http", "url": f"{node}/mcp/{SERVER}",
                                    "headers": {"Authorization": f"Bearer {key}"}}}}


def claude_args(config: Path) -> list[str]:
    return ["-p", PROMPT, "--mcp-config", str(config), "--strict-mcp-config",
            "--allowedTools", f"mcp__{SERVER}__{TOOL}"]


def codex_config(node: str, model: str) -> str:
    """Codex's config.toml: the node as its model provider and as the MCP server's URL, the virtual key
    (SHIELDES_KEY) for both; the tool approved ahead, as --allowedTools does for Claude Code."""
    return (f'model = "{model}"\nmodel_provider = "shieldes"\n\n'
            f'[model_providers.shieldes]\nname = "shieldes"\nbase_url = "{node}/v1"\nenv_key = "SHIELDES_KEY"\n'
            f'wire_api = "responses"\n\n'
            f'[mcp_servers.{SERVER}]\nurl = "{node}/mcp/{SERVER}"\nbearer_token_env_var = "SHIELDES_KEY"\n\n'
            # `codex exec` runs with approval policy never: a tool needing approval fails, so approve this one
            f'[mcp_servers.{SERVER}.tools.{TOOL}]\napproval_mode = "approve"\n')


def gemini_settings(node: str, key: str) -> dict[str, Any]:
    """Gemini CLI's settings.json: the Gemini API key sign-in (its model calls on the node's Gemini
    API, as the `gemini` run), and the node's route as a Streamable HTTP server (`httpUrl`) with the
    virtual key; `trust`, since in headless mode a tool that would ask for confirmation is denied
    (and not even offered to the model)."""
    return {"security": {"auth": {"selectedType": "gemini-api-key"}},
            "mcpServers": {SERVER: {"httpUrl": f"{node}/mcp/{SERVER}",
                                    "headers": {"Authorization": f"Bearer {key}"}, "trust": True}}}


def opencode_config(node: str, model: str) -> dict[str, Any]:
    """OpenCode's opencode.json: an OpenAI-compatible provider at the node (chat completions) and the
    node's route as a remote MCP server, the virtual key (SHIELDES_KEY) for both; the server's tools
    allowed ahead (OpenCode names them SERVER_TOOL; its default allows them, but a call that asks is
    rejected by `opencode run`)."""
    return {"$schema": "https://opencode.ai/config.json",
            "provider": {"shieldes": {"npm": "@ai-sdk/openai-compatible", "name": "shieldes",
                                      "models": {model: {"name": model}},
                                      "options": {"baseURL": f"{node}/v1", "apiKey": "{env:SHIELDES_KEY}"}}},
            "model": f"shieldes/{model}", "small_model": f"shieldes/{model}",
            "mcp": {SERVER: {"type": "remote", "url": f"{node}/mcp/{SERVER}", "enabled": True,
                             "headers": {"Authorization": "Bearer {env:SHIELDES_KEY}"}}},
            "permission": {f"{SERVER}_*": "allow"},
            "autoupdate": False, "share": "disabled"}
