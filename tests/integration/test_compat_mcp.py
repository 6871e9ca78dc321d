"""What bench/compat.py's MCP runs (`claude-mcp`, `codex-mcp`, `gemini-mcp`, `opencode-mcp`:
bench/compat_mcp.py) rest on: the ticket server (a real MCP server that takes only its own token and
records each call), and the fake upstream calling an MCP tool the way Codex offers it (inside a
Responses `namespace` tool, the call naming the namespace) through a real node, on a native and on
a translated deployment."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from bench import compat_mcp
from shieldes.projections.shared_commands import UpdateProvider
from tests.fake_mcp import running_mcp_server
from tests.fake_upstream import FakeUpstream
from tests.integration.gateway_harness import UPSTREAM_KEY, harness

# the tools as Codex 0.171 sends them: its own functions, an MCP server's tools in a namespace
CODEX_TOOLS = [
    {"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {}}},
    {"type": "namespace", "name": "mcp__tickets", "description": "Tools in the mcp__tickets namespace.",
     "tools": [{"type": "function", "name": "lookup_ticket", "strict": False,
                "parameters": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}}]},
    {"type": "web_search", "external_web_access": False},
]


async def call_tool(url: str, token: str) -> str:
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http, \
            streamable_http_client(url, http_client=http) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        result = await session.call_tool(compat_mcp.TOOL, {"id": compat_mcp.TICKET})
        return " ".join(getattr(c, "text", "") for c in result.content)


async def test_the_ticket_server_takes_its_own_token_only_and_records_each_call() -> None:
    tickets = compat_mcp.Tickets()
    with running_mcp_server(tickets.token, build=tickets.build) as (url, seen):
        assert tickets.marker in await call_tool(url, tickets.token)
        assert tickets.calls == [(compat_mcp.TICKET, f"Bearer {tickets.token}")]
        with pytest.raises(BaseException):  # noqa: B017 (the SDK raises its own group of errors)
            await call_tool(url, "sk-shd-a-virtual-key")
        assert seen.refused >= 1 and len(tickets.calls) == 1


async def responses(base: str, key: str, body: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.post(f"{base}/v1/responses", json=body,
                                                    headers={"Authorization": f"Bearer {key}"}) as r:
        assert r.status == 200, await r.text()
        answer: dict[str, Any] = await r.json()
        return answer


@pytest.mark.parametrize("mode", ["native", "translate"])
async def test_codex_shaped_mcp_tool_round_through_the_node(database_url: str, mode: str) -> None:
    up = FakeUpstream(api_key=UPSTREAM_KEY, models=("gpt-4o",), reply="PONG", tool_script=compat_mcp.McpScript())
    async with harness(database_url, upstream=up) as h:
        await h.admin(UpdateProvider("openai", responses=mode))
        key = await h.create_key("agent")
        await h.sync()
        ask = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": compat_mcp.PROMPT}]}]
        first = await responses(h.base, key, {"model": "gpt-4o", "input": ask, "tools": CODEX_TOOLS})
        call = first["output"][-1]
        assert (call["type"], call["name"], call.get("namespace")) == ("function_call", "lookup_ticket",
                                                                      "mcp__tickets")
        assert json.loads(call["arguments"]) == {"id": compat_mcp.TICKET}

        result = {"type": "function_call_output", "call_id": call["call_id"], "output": "Ticket: open, MARKER-42"}
        called = {k: call[k] for k in ("type", "call_id", "name", "namespace", "arguments")}
        final = await responses(h.base, key, {"model": "gpt-4o", "input": [*ask, called, result],
                                              "tools": CODEX_TOOLS})
        text = final["output"][-1]["content"][0]["text"]
        assert "PONG" in text and "MARKER-42" in text
