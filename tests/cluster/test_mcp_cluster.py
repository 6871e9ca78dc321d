"""The MCP gateway on two real node processes: a server registered through node A's admin API (its
header encrypted by A) is usable through node B, a session opened through A continues through B,
and a key revoked with the CLI is refused by B at once, before the server is reached."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from shieldes import secrets
from tests.cluster.harness import Cluster, ready_nodes, until
from tests.cluster.test_admin_api_cluster import api, cli_json
from tests.fake_mcp import TOKEN, running_mcp_server

pytestmark = pytest.mark.cluster
BOOT = "cluster-admin-bootstrap-token-0123456789"
PROPAGATION_BOUND = 1.0  # seconds; config travels by LISTEN/NOTIFY (the nodes poll only every 30 s)
ACCEPT = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}


@pytest.fixture(scope="module")
def cluster(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with ready_nodes(pg_server, tmp_path_factory.mktemp("mcp-cluster"),
                     env_overrides={"SHIELDES_ADMIN_TOKEN": BOOT,
                                    "SHIELDES_ENCRYPTION_KEY": secrets.generate_key()}) as c:
        yield c


async def call_add(base: str, key: str) -> str | None:
    """The add tool's answer through `base`; None while the node refuses (it has not applied the
    key or the server yet)."""
    try:
        return await _call_add(base, key)
    except MCPError:
        return None


async def _call_add(base: str, key: str) -> str:
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {key}"}) as http, \
            streamable_http_client(f"{base}/mcp/tools", http_client=http) as (read, write), \
            ClientSession(read, write) as session:
        await session.initialize()
        result = await session.call_tool("add", {"a": 20, "b": 22})
        return str(result.content[0].text)  # type: ignore[union-attr]


async def post(base: str, key: str, message: dict[str, Any], session_id: str | None = None) -> tuple[int, Any, Any]:
    """One JSON-RPC message POSTed as MCP clients do: (status, session id answered, the reply)."""
    headers = {**ACCEPT, "Authorization": f"Bearer {key}"}
    if session_id:
        headers["Mcp-Session-Id"] = session_id
    async with aiohttp.ClientSession() as s, s.post(f"{base}/mcp/tools", json=message, headers=headers) as r:
        text = await r.text()
        data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
        reply = json.loads(data[-1]) if data else (json.loads(text) if text.strip() else None)
        return r.status, r.headers.get("Mcp-Session-Id"), reply


def test_a_server_added_on_a_is_usable_on_b(cluster: Cluster) -> None:
    a, b = cluster.nodes
    with running_mcp_server() as (url, seen):
        status, added = api(a.base, "POST", "/mcp-servers", BOOT, {
            "name": "tools", "url": url, "headers": {"Authorization": f"Bearer {TOKEN}"}})
        assert status == 201 and added["headers"] == {"Authorization": "encrypted"}
        key = cli_json(cluster, "key", "create", "--name", "agent", "--mcp", "tools/add")["key"]

        # B decrypts the header A encrypted, and relays the call with it
        until(lambda: asyncio.run(call_add(b.base, key)) == "42", PROPAGATION_BOUND * 5, "tool call through B")
        assert all(h["authorization"] == f"Bearer {TOKEN}" for _, h in seen.requests)

        other = cli_json(cluster, "key", "create", "--name", "other", "--mcp", "tools")["key"]
        until(lambda: asyncio.run(post(b.base, other, {"jsonrpc": "2.0", "id": 0, "method": "ping"}))[0] != 401,
              PROPAGATION_BOUND * 5, "the other key on B")

        # the gateway keeps no session state: a session opened through A goes on through B, and it
        # belongs to the key that opened it (bound by a MAC every node checks with the cluster secret)
        async def across() -> None:
            init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                               "clientInfo": {"name": "t", "version": "1"}}}
            status, sid, reply = await post(a.base, key, init)
            assert status == 200 and sid and reply["result"]["serverInfo"]["name"] == "tools-under-test"
            status, _, _ = await post(b.base, key, {"jsonrpc": "2.0", "method": "notifications/initialized"}, sid)
            assert status == 202
            status, _, reply = await post(b.base, key, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, sid)
            assert status == 200 and [t["name"] for t in reply["result"]["tools"]] == ["add"]
            call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                    "params": {"name": "delete_everything", "arguments": {}}}
            status, _, reply = await post(b.base, key, call, sid)
            assert status == 200 and reply["error"]["data"]["code"] == "tool_not_allowed"
            upstream = seen.requests[-1][1]["mcp-session-id"]
            assert upstream != sid and upstream not in sid  # the server sees its own id, the client a wrapped one

            before = len(seen.requests)
            ping = {"jsonrpc": "2.0", "id": 4, "method": "ping"}
            altered = sid[:-2] + ("AA" if not sid.endswith("AA") else "BB")
            for base, token, given in ((b.base, other, sid), (a.base, other, sid), (b.base, key, altered)):
                status, _, reply = await post(base, token, ping, given)
                assert status == 404 and reply["error"]["data"]["code"] == "mcp_session_not_found", reply
            assert len(seen.requests) == before  # refused on the spot, on either node
            status, _, reply = await post(b.base, key, ping, sid)
            assert status == 200 and reply["result"] == {}

        asyncio.run(across())

        # revoked on the CLI: B refuses the key before anything reaches the server
        cli_json(cluster, "key", "revoke", "agent")
        until(lambda: asyncio.run(post(b.base, key, {"jsonrpc": "2.0", "id": 9, "method": "ping"}))[0] == 401,
              PROPAGATION_BOUND, "revoked key refused by B")
        before = len(seen.requests)
        status, _, reply = asyncio.run(post(b.base, key, {"jsonrpc": "2.0", "id": 10, "method": "ping"}))
        assert status == 401 and reply["error"]["data"]["code"] == "invalid_api_key"
        assert len(seen.requests) == before
