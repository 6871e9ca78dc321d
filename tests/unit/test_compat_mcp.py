"""bench/compat_mcp.py's decisions: which tool the fake upstream calls, and when a client's MCP run
passes (the tool ran on the server with the server's own token, the node logged the call for the
key, the answer quotes the tool's result)."""

from __future__ import annotations

import json
from typing import Any

from bench import compat_mcp
from bench.compat_mcp import TICKET, McpScript, Tickets, verdict
from tests.fake_mcp import Seen
from tests.fake_wire import answered_calls, deferred_named, loaded_tools

KEY = "sk-shd-virtual-key"
OFFERED = ["Read", "mcp__tickets__lookup_ticket"]


def row(**over: Any) -> dict[str, Any]:
    return {"model": "tools/call", "upstream_model": "lookup_ticket", "deployment": "tickets", "status": 200,
            "method": "POST", **over}


def ran() -> tuple[Tickets, Seen]:
    tickets, seen = Tickets(), Seen()
    tickets.calls.append((TICKET, f"Bearer {tickets.token}"))
    seen.requests.append(("POST", {"authorization": f"Bearer {tickets.token}"}))
    return tickets, seen


def test_the_script_calls_the_lookup_tool_by_any_name_once() -> None:
    script = McpScript()
    assert script.call(["Read", "exec_command"], answered=False) is None
    assert script.call(["Read", "mcp__tickets__lookup_ticket"], False) == ("mcp__tickets__lookup_ticket",
                                                                           {"id": TICKET})
    assert script.call(["lookup_ticket"], False) == ("lookup_ticket", {"id": TICKET})  # (Codex: in a namespace)
    assert script.call(["lookup_ticket"], answered=True) is None


def test_the_script_loads_a_deferred_tool_through_tool_search_first() -> None:
    """Claude Code 2.1.3xx: the MCP tool named in a system reminder, loaded by ToolSearch
    `select:NAME` (whose tool_reference result loads it, as the Messages API does), then called."""
    name = "mcp__tickets__lookup_ticket"
    reminder = ("<system-reminder>\nThe following deferred tools are now available via ToolSearch. Their schemas "
                "are NOT loaded. Use ToolSearch with query \"select:<name>[,<name>...]\" to load tool schemas before "
                f"calling them:\nCronCreate\nWebFetch\n{name}\n</system-reminder>")
    ask: list[dict[str, Any]] = [{"role": "user", "content": [{"type": "text", "text": reminder}]}]
    assert deferred_named(ask) == ["CronCreate", "WebFetch", name]
    tools = [{"name": "ToolSearch"}, {"name": "DeferredToolPlaceholder", "defer_loading": True},
             {"name": name, "defer_loading": True}]
    script = McpScript()
    assert loaded_tools(tools, ask) == ["ToolSearch"]
    assert script.call_messages(["ToolSearch"], [name], []) == ("ToolSearch", {"query": f"select:{name}"})
    history = [*ask, {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "ToolSearch"}]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                             "content": [{"type": "tool_reference", "tool_name": name}]}]}]
    offered, answered = loaded_tools(tools, history), answered_calls(history)
    assert offered == ["ToolSearch", name] and answered == ["ToolSearch"]
    assert script.call_messages(offered, [name], answered) == (name, {"id": TICKET})
    assert script.call_messages(offered, [name], [*answered, name]) is None
    assert script.call_messages(["ToolSearch"], [name], ["ToolSearch"]) is None  # (not loaded: no second search)
    assert script.call_messages([name], [], []) == (name, {"id": TICKET})  # (offered at once: called at once)


def test_a_run_passes_when_the_call_went_through_and_came_back() -> None:
    tickets, seen = ran()
    got = verdict(0, f"It is open, {tickets.marker}", "", tickets, seen, [row(model="initialize"), row()], KEY,
                  OFFERED)
    assert got.ok and "mcp__tickets__lookup_ticket" in got.detail and "initialize, tools/call" in got.detail
    rows = [row(), row(model=None, method="GET", status=405), row(model=None, method="DELETE"),
            row(model=None, method="GET", error_code="client_disconnected")]
    refused = verdict(0, f"It is open, {tickets.marker}", "", tickets, seen, rows, KEY, OFFERED)
    assert refused.ok  # (a refused request, and how a stream ended, are shown)
    assert "log: DELETE, GET 405, GET client_disconnected, tools/call)" in refused.detail


def test_a_run_fails_without_each_proof() -> None:
    tickets, seen = ran()
    out = f"It is open, {tickets.marker}"
    assert "offered the model no tool" in verdict(0, out, "", tickets, seen, [row()], KEY, ["Read"]).detail
    assert "no tools/call row" in verdict(0, out, "", tickets, seen, [row(model="tools/list")], KEY, OFFERED).detail
    assert "no tools/call row" in verdict(0, out, "", tickets, seen, [row(status=403)], KEY, OFFERED).detail
    assert "did not quote" in verdict(0, "It is open", "", tickets, seen, [row()], KEY, OFFERED).detail
    assert "did not quote" in verdict(1, out, "", tickets, seen, [row()], KEY, OFFERED).detail

    other = Tickets()  # the server saw the call with a token not its own (or another ticket)
    other.calls.append((TICKET, f"Bearer {KEY}"))
    other.calls.append(("TCK-1", f"Bearer {other.token}"))
    assert "saw no lookup_ticket" in verdict(0, out, "", other, seen, [row()], KEY, OFFERED).detail

    still = verdict(0, out, "", tickets, seen, [row()], KEY, OFFERED, left_open=1)
    assert not still.ok and "1 of its requests stayed open on the MCP server" in still.detail

    seen.requests.append(("GET", {"authorization": f"Bearer {tickets.token}", "x-forwarded": KEY}))
    leaked = verdict(0, out, "", tickets, seen, [row()], KEY, OFFERED)
    assert not leaked.ok and "virtual key reached the MCP server (in x-forwarded)" in leaked.detail


def test_the_clients_configs_hold_the_node_route_and_the_key() -> None:
    claude = compat_mcp.claude_config("http://node:1", KEY)["mcpServers"]["tickets"]
    assert claude == {"type": "http", "url": "http://node:1/mcp/tickets", "headers": {"Authorization": f"Bearer {KEY}"}}
    codex = compat_mcp.codex_config("http://node:1", "gpt-5-codex")
    assert 'url = "http://node:1/mcp/tickets"' in codex and 'bearer_token_env_var = "SHIELDES_KEY"' in codex
    assert KEY not in codex  # (read from the environment)
    gemini = compat_mcp.gemini_settings("http://node:1", KEY)
    assert gemini["mcpServers"]["tickets"] == {"httpUrl": "http://node:1/mcp/tickets", "trust": True,
                                               "headers": {"Authorization": f"Bearer {KEY}"}}
    assert gemini["security"]["auth"]["selectedType"] == "gemini-api-key"
    opencode = compat_mcp.opencode_config("http://node:1", "gpt-4o-mini")
    assert opencode["mcp"]["tickets"] == {"type": "remote", "url": "http://node:1/mcp/tickets", "enabled": True,
                                          "headers": {"Authorization": "Bearer {env:SHIELDES_KEY}"}}
    assert opencode["permission"] == {"tickets_*": "allow"} and opencode["model"] == "shieldes/gpt-4o-mini"
    assert opencode["provider"]["shieldes"]["options"]["baseURL"] == "http://node:1/v1"
    assert KEY not in json.dumps(opencode)  # (read from the environment)
