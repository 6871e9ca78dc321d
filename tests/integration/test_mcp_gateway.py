"""The MCP gateway end to end: a real MCP server (the official SDK's, checking its own token), a
real node, and the official SDK's client pointed at /mcp/{name} with a virtual key."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from shieldes import secrets
from shieldes.gateway.observe import IN_FLIGHT
from shieldes.projections.commands import RevokeKey, UpdateKey
from shieldes.projections.shared_commands import AddMcpServer, UpdateMcpServer
from tests.cli import invoke
from tests.fake_mcp import TOKEN, Seen, running_mcp_server
from tests.integration.gateway_harness import Harness, harness, wait_until
from tests.ports import free_port

ENCRYPTION_KEY = secrets.generate_key()


@asynccontextmanager
async def mcp_session(h: Harness, key: str, server: str = "tools") -> AsyncIterator[ClientSession]:
    async with create_mcp_http_client(headers={"Authorization": f"Bearer {key}"}) as http, \
            streamable_http_client(f"{h.base}/mcp/{server}", http_client=http) as (read, write), \
            ClientSession(read, write) as session:
        yield session


@asynccontextmanager
async def gateway(database_url: str, **settings: Any) -> AsyncIterator[tuple[Harness, Seen]]:
    with running_mcp_server() as (url, seen):
        async with harness(database_url, providers=False, encryption_key=ENCRYPTION_KEY,
                           request_log_interval=0.05, **settings) as h:
            header = secrets.encrypt_secret(f"Bearer {TOKEN}", ENCRYPTION_KEY)
            await h.admin(AddMcpServer("tools", url, {"Authorization": header}))
            await h.sync()
            yield h, seen


def _calls(seen: Seen) -> int:
    return sum(1 for method, _ in seen.requests if method == "POST")


async def test_a_key_lists_and_calls_its_tools_and_nothing_else(database_url: str) -> None:
    async with gateway(database_url) as (h, seen):
        key = await h.create_key("agent", mcp=("tools/add", "tools/echo", "tools/count", "tools/held"))
        await h.sync()
        async with mcp_session(h, key) as session:
            init = await session.initialize()
            assert init.server_info.name == "tools-under-test"
            listed = await session.list_tools()
            assert sorted(t.name for t in listed.tools) == ["add", "count", "echo", "held"]  # not delete_everything
            result = await session.call_tool("add", {"a": 2, "b": 3})
            assert result.content[0].text == "5"  # type: ignore[union-attr]

            progress: list[tuple[float, float | None, str | None]] = []

            async def on_progress(done: float, total: float | None, message: str | None) -> None:
                progress.append((done, total, message))

            counted = await session.call_tool("count", {"n": 3}, progress_callback=on_progress)
            assert counted.content[0].text == "counted to 3"  # type: ignore[union-attr]
            assert progress == [(1.0, 3.0, "step 1"), (2.0, 3.0, "step 2"), (3.0, 3.0, "step 3")]

            # events are relayed as they come: the tool waits until its first progress reached us
            async def release(_done: float, _total: float | None, _message: str | None) -> None:
                seen.go.set()

            held = await session.call_tool("held", {}, progress_callback=release)
            assert held.content[0].text == "released"  # type: ignore[union-attr]

            before = _calls(seen)
            with pytest.raises(MCPError) as refused:
                await session.call_tool("delete_everything", {})
            assert "may not call tool 'delete_everything'" in str(refused.value)
            assert "--mcp" in str(refused.value) and "tools/delete_everything" in str(refused.value)
            assert _calls(seen) == before  # refused without reaching the server

        # the server got its own token on every request, and the virtual key never
        assert seen.requests and seen.refused == 0
        for _, headers in seen.requests:
            assert headers["authorization"] == f"Bearer {TOKEN}"
            assert not any(key in v for v in headers.values())
        assert any(m == "DELETE" for m, _ in seen.requests)  # the session's end went through
        assert any(m == "GET" for m, _ in seen.requests)  # and the server's stream
        # the session's headers passed through: every request after initialize carried both
        assert all("mcp-session-id" in headers and "mcp-protocol-version" in headers
                   for _, headers in seen.requests[1:])

        # every request is in the request log: server, method, tool, status
        writer = h.node.request_log
        assert writer is not None
        await wait_until(lambda: writer.buffer.added >= 8, timeout=10)
        assert await writer.flush_all(10)
        rows = h.sql("SELECT route, method, deployment, model, upstream_model, status, error_code, key_name "
                     "FROM request_log WHERE route = '/mcp/{name}' ORDER BY started_at")
        assert ("/mcp/{name}", "POST", "tools", "tools/call", "add", 200, None, "agent") in rows
        assert ("/mcp/{name}", "POST", "tools", "tools/call", "count", 200, None, "agent") in rows
        assert ("/mcp/{name}", "POST", "tools", "tools/call", "delete_everything", 200, "tool_not_allowed",
                "agent") in rows
        assert ("/mcp/{name}", "POST", "tools", "tools/list", None, 200, None, "agent") in rows
        assert any(r[1] == "DELETE" for r in rows)
        result = await asyncio.to_thread(invoke, h.database_url, "logs", "--json", "--route", "/mcp/*",
                                         "--model", "delete_everything")
        logged = json.loads(result.stdout)
        assert [(r["deployment"], r["model"], r["upstream_model"], r["error_code"]) for r in logged] == [
            ("tools", "tools/call", "delete_everything", "tool_not_allowed")]
        assert "may not call tool" in logged[0]["error_message"]

        async with aiohttp.ClientSession() as s, s.get(h.base + "/metrics") as r:
            metrics = await r.text()
        assert 'shieldes_mcp_requests_total{method="tools/call",outcome="ok",server="tools"} 3.0' in metrics
        assert 'shieldes_mcp_requests_total{method="tools/call",outcome="refused",server="tools"} 1.0' in metrics


async def test_refusals_before_the_server_is_reached(database_url: str) -> None:
    async with gateway(database_url) as (h, seen):
        key = await h.create_key("agent", mcp=("tools",))
        other = await h.create_key("no-mcp")  # no --mcp: no MCP server at all
        await h.sync()
        body = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "t", "version": "1"}}}
        headers = {"Accept": "application/json, text/event-stream"}
        async with aiohttp.ClientSession() as s:
            async def post(server: str, token: str | None) -> tuple[int, dict[str, Any]]:
                auth = {"Authorization": f"Bearer {token}"} if token else {}
                async with s.post(f"{h.base}/mcp/{server}", json=body, headers={**headers, **auth}) as r:
                    return r.status, await r.json()

            status, answer = await post("tools", None)
            assert status == 401 and answer["error"]["data"]["code"] == "invalid_api_key"
            status, answer = await post("tools", "sk-shd-not-a-key")
            assert status == 401 and "shieldes key create" in answer["error"]["message"]
            status, answer = await post("nope", key)
            assert status == 404 and "shieldes mcp list" in answer["error"]["message"]
            status, answer = await post("tools", other)
            assert status == 403 and "--mcp tools" in answer["error"]["message"]
            assert answer["jsonrpc"] == "2.0" and answer["error"]["data"]["code"] == "mcp_server_not_allowed"
        assert seen.requests == []

        # a key revoked mid-session is refused at its next request, on the spot
        async with mcp_session(h, key) as session:
            await session.initialize()
            assert len((await session.list_tools()).tools) == 5  # a SERVER entry: every tool
            await h.admin(RevokeKey("agent"))
            await h.sync()
            before = _calls(seen)
            with pytest.raises(MCPError) as refused:
                await session.call_tool("add", {"a": 1, "b": 1})
            assert "invalid or revoked API key" in str(refused.value)
            assert _calls(seen) == before


async def test_a_refused_batch_is_answered_with_an_array_even_of_one(database_url: str) -> None:
    """A batch (protocol 2025-03-26) the gateway refuses gets an array of errors, as JSON-RPC answers
    a batch, a batch of one included; a single message an object."""
    async with gateway(database_url) as (h, seen):
        key = await h.create_key("agent", mcp=("tools/add",))
        await h.sync()

        def call(rid: int, tool: str) -> dict[str, Any]:
            return {"jsonrpc": "2.0", "id": rid, "method": "tools/call", "params": {"name": tool, "arguments": {}}}

        headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession() as s:
            async def post(body: Any) -> Any:
                async with s.post(f"{h.base}/mcp/tools", json=body, headers=headers) as r:
                    assert r.status == 200
                    return await r.json()

            one = await post([call(7, "delete_everything")])
            assert isinstance(one, list) and [m["id"] for m in one] == [7]
            assert one[0]["error"]["data"]["code"] == "tool_not_allowed"
            two = await post([call(8, "add"), call(9, "delete_everything")])
            assert [m["id"] for m in two] == [8, 9]
            single = await post(call(10, "delete_everything"))
            assert isinstance(single, dict) and single["id"] == 10
        assert seen.requests == []


async def test_a_method_or_path_the_transport_lacks_gets_a_json_rpc_error(database_url: str) -> None:
    """A PUT to /mcp/{name} got a 405 in OpenAI's error shape, which MCP clients cannot read, and no
    `Allow`: now a JSON-RPC error with `Allow`, as MCP's Streamable HTTP servers answer it; a path
    under /mcp/ that no route serves is a JSON-RPC error too. GET and DELETE are still relayed."""
    async with gateway(database_url) as (h, seen):
        key = await h.create_key("agent", mcp=("tools",))
        await h.sync()
        auth = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
        async with aiohttp.ClientSession() as s:
            for method in ("PUT", "PATCH"):
                async with s.request(method, f"{h.base}/mcp/tools", headers=auth, json={}) as r:
                    got = await r.json()
                assert (r.status, r.headers.get("Allow")) == (405, "DELETE, GET, POST"), (method, got)
                assert got["jsonrpc"] == "2.0" and got["id"] is None and got["error"]["code"] == -32000, got
                assert got["error"]["data"]["code"] == "method_not_allowed"
                told = got["error"]["message"]
                assert told == f"{method} /mcp/tools is not served: this path takes DELETE, GET, POST"
            async with s.get(f"{h.base}/mcp/tools/extra", headers=auth) as r:
                got = await r.json()
            assert r.status == 404 and got["jsonrpc"] == "2.0" and got["error"]["data"]["code"] == "not_found", got
            assert seen.requests == []
            for method in ("GET", "DELETE"):  # relayed: the server answers them (no session here)
                async with s.request(method, f"{h.base}/mcp/tools", headers=auth) as r:
                    assert r.status != 405 and r.headers.get("Allow") is None, (method, r.status)
            assert [m for m, _ in seen.requests] == ["GET", "DELETE"]


async def test_a_servers_own_405_keeps_its_allow(database_url: str) -> None:
    """A server with no stream to offer answers GET with 405 and `Allow` (MCP's Streamable HTTP
    transport), one that ends no session so answers DELETE: `Allow` was dropped on the way."""
    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": "no"}},
                                 status=405, headers={"Allow": "POST"})

    app = web.Application()
    app.router.add_route("*", "/mcp", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with harness(database_url, providers=False) as h:
            await h.admin(AddMcpServer("post-only", f"http://127.0.0.1:{port}/mcp", {}))
            key = await h.create_key("agent", mcp=("post-only",))
            await h.sync()
            async with aiohttp.ClientSession() as s:
                for method in ("GET", "DELETE"):
                    async with s.request(method, f"{h.base}/mcp/post-only",
                                         headers={"Authorization": f"Bearer {key}"}) as r:
                        assert (r.status, r.headers.get("Allow")) == (405, "POST"), method
    finally:
        await runner.cleanup()


async def test_a_session_belongs_to_the_key_and_server_that_opened_it(database_url: str) -> None:
    async with gateway(database_url) as (h, seen):
        [(url,)] = h.sql("SELECT data->>'url' FROM events WHERE type = 'mcp_server.added'")
        header = secrets.encrypt_secret(f"Bearer {TOKEN}", ENCRYPTION_KEY)
        await h.admin(AddMcpServer("same", url, {"Authorization": header}))  # the same server, another name
        a = await h.create_key("a", mcp=("tools", "same"))
        b = await h.create_key("b", mcp=("tools",))
        await h.sync()
        answered: list[str] = []

        async def note(response: Any) -> None:
            if "mcp-session-id" in response.headers:
                answered.append(response.headers["mcp-session-id"])

        async with create_mcp_http_client(headers={"Authorization": f"Bearer {a}"}) as http:
            http.event_hooks["response"].append(note)
            async with streamable_http_client(f"{h.base}/mcp/tools", http_client=http) as (read, write), \
                    ClientSession(read, write) as session:
                await session.initialize()
                assert (await session.call_tool("add", {"a": 1, "b": 2})).content[0].text == "3"  # type: ignore[union-attr]
                sid = answered[0]
                upstream = seen.requests[-1][1]["mcp-session-id"]
                # the client holds the server's id wrapped; the server only ever sees its own id
                assert sid != upstream and upstream not in sid and set(answered) == {sid}
                assert {hd.get("mcp-session-id") for _, hd in seen.requests[1:]} == {upstream}

                before = len(seen.requests)
                altered = sid[:-2] + ("AA" if not sid.endswith("AA") else "BB")
                ping = {"jsonrpc": "2.0", "id": 7, "method": "ping"}
                async with aiohttp.ClientSession() as s:
                    async def send(method: str, server: str, token: str, session_id: str) -> tuple[int, Any]:
                        headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {token}",
                                   "Mcp-Session-Id": session_id, "MCP-Protocol-Version": "2025-06-18"}
                        async with s.request(method, f"{h.base}/mcp/{server}", headers=headers,
                                             json=ping if method == "POST" else None) as r:
                            return r.status, await r.json()

                    for method in ("POST", "GET", "DELETE"):
                        for server, token, given in (("tools", b, sid),  # another key
                                                     ("same", a, sid),  # another server, same key
                                                     ("tools", a, altered),  # an altered id
                                                     ("tools", a, upstream)):  # the server's bare id
                            status, body = await send(method, server, token, given)
                            assert status == 404, (method, server, given)
                            assert body["error"]["data"]["code"] == "mcp_session_not_found"
                            assert "start a new session" in body["error"]["message"]
                            assert body["id"] == (7 if method == "POST" else None)
                assert len(seen.requests) == before  # none of them reached the server

                # the key that opened it goes on as before
                assert (await session.call_tool("echo", {"text": "still mine"})).content[0].text == "still mine"  # type: ignore[union-attr]


async def test_a_client_leaving_the_servers_stream_ends_it_on_both_sides(database_url: str) -> None:
    """The GET stream (server to client) may stay quiet for ever, and agents leave it open when they
    exit (Claude Code, Gemini CLI and OpenCode send no DELETE): the relay notices the client is gone
    without writing to it and closes the server's stream then, not when the server next writes (this
    server pings every 15 s; a quiet one would be held until the node stopped)."""
    async with gateway(database_url) as (h, seen):
        key = await h.create_key("agent", mcp=("tools",))
        await h.sync()
        headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {key}",
                   "MCP-Protocol-Version": "2025-06-18"}
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                           "clientInfo": {"name": "t", "version": "1"}}}
        in_flight = h.node.http.app[IN_FLIGHT]  # type: ignore[union-attr]
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{h.base}/mcp/tools", json=init, headers=headers) as r:
                assert r.status == 200
                headers["Mcp-Session-Id"] = r.headers["Mcp-Session-Id"]
                await r.read()
            async with s.post(f"{h.base}/mcp/tools", json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                              headers=headers) as r:
                assert r.status == 202
            stream = await s.get(f"{h.base}/mcp/tools", headers={**headers, "Accept": "text/event-stream"})
            assert stream.status == 200 and stream.headers["Content-Type"].startswith("text/event-stream")
            await wait_until(lambda: seen.open == 1 and in_flight.count == 1)
            stream.close()  # the client's connection goes, with nothing sent on the stream
            await wait_until(lambda: seen.open == 0 and in_flight.count == 0, timeout=10)

        writer = h.node.request_log
        assert writer is not None and await writer.flush_all(10)
        rows = h.sql("SELECT method, status, error_code FROM request_log WHERE route = '/mcp/{name}' "
                     "AND method = 'GET'")
        assert rows == [("GET", 200, "client_disconnected")]


async def test_tool_calls_count_against_the_keys_rpm(database_url: str) -> None:
    async with gateway(database_url) as (h, seen):
        key = await h.create_key("agent", mcp=("*",), rpm=3)
        await h.sync()
        async with mcp_session(h, key) as session:
            await session.initialize()
            await session.list_tools()  # not a tool call: not counted
            for i in range(3):
                assert (await session.call_tool("echo", {"text": str(i)})).content[0].text == str(i)  # type: ignore[union-attr]
            before = _calls(seen)
            with pytest.raises(MCPError) as limited:
                await session.call_tool("echo", {"text": "over"})
            assert "rate limit reached for key 'agent'" in str(limited.value)
            assert _calls(seen) == before


async def test_update_changes_what_a_key_may_call(database_url: str) -> None:
    async with gateway(database_url) as (h, _seen):
        key = await h.create_key("agent", mcp=("tools/add",))
        await h.sync()
        async with mcp_session(h, key) as session:
            await session.initialize()
            assert [t.name for t in (await session.list_tools()).tools] == ["add"]
            await h.admin(UpdateKey("agent", mcp=("tools/add", "tools/echo")))
            await h.sync()
            assert sorted(t.name for t in (await session.list_tools()).tools) == ["add", "echo"]
            assert (await session.call_tool("echo", {"text": "hi"})).content[0].text == "hi"  # type: ignore[union-attr]
            with pytest.raises(MCPError, match="may use only some tools"):
                await session.list_resources()


async def test_json_answers_and_an_unreachable_server(database_url: str) -> None:
    with running_mcp_server(json_response=True) as (url, _seen):
        async with harness(database_url, providers=False, encryption_key=ENCRYPTION_KEY) as h:
            header = secrets.encrypt_secret(f"Bearer {TOKEN}", ENCRYPTION_KEY)
            await h.admin(AddMcpServer("json", url, {"Authorization": header}))
            await h.admin(AddMcpServer("down", "http://127.0.0.1:9/mcp", {}))
            await h.admin(AddMcpServer("wrong-token", url, {}))
            await h.admin(AddMcpServer("no-env", url, {"Authorization": "env:SHIELDES_TEST_UNSET_MCP_VAR"}))
            key = await h.create_key("agent", mcp=("json/add", "down", "wrong-token", "no-env"))
            await h.sync()
            async with mcp_session(h, key, "json") as session:
                await session.initialize()
                assert [t.name for t in (await session.list_tools()).tools] == ["add"]
                assert (await session.call_tool("add", {"a": 1, "b": 2})).content[0].text == "3"  # type: ignore[union-attr]
            async with mcp_session(h, key, "down") as session:
                with pytest.raises(MCPError, match="could not be reached"):
                    await session.initialize()
            async with mcp_session(h, key, "wrong-token") as session:
                with pytest.raises(MCPError, match="refused the gateway's credentials"):
                    await session.initialize()
            # the token given in place (`shieldes mcp update`): the same route and key work at once
            await h.admin(UpdateMcpServer("wrong-token", headers={"Authorization": header}))
            await h.sync()
            async with mcp_session(h, key, "wrong-token") as session:
                await session.initialize()
                assert (await session.list_tools()).tools
            async with mcp_session(h, key, "no-env") as session:
                with pytest.raises(MCPError, match="SHIELDES_TEST_UNSET_MCP_VAR is not set on this node"):
                    await session.initialize()


async def test_an_agent_calls_a_tool_through_the_node_with_one_key(database_url: str) -> None:
    """The OpenAI Agents SDK runs an agent whose model and MCP server are both reached through the
    node with the same virtual key: the model asks for the tool, the SDK calls it over /mcp/tools."""
    from agents import Agent, RunConfig, Runner
    from agents.mcp import MCPServerStreamableHttp
    from agents.models.openai_provider import OpenAIProvider

    from tests.fake_wire import ToolScript
    from tests.integration.test_responses_api import oai

    with running_mcp_server() as (url, seen):
        async with harness(database_url, encryption_key=ENCRYPTION_KEY) as h:
            h.upstream.tool_script = ToolScript({"add": {"a": 40, "b": 2}})
            header = secrets.encrypt_secret(f"Bearer {TOKEN}", ENCRYPTION_KEY)
            await h.admin(AddMcpServer("tools", url, {"Authorization": header}))
            key = await h.create_key("agent", models=("gpt-4o",), mcp=("tools/add", "tools/echo"))
            await h.sync()
            server = MCPServerStreamableHttp(
                params={"url": f"{h.base}/mcp/tools", "headers": {"Authorization": f"Bearer {key}"}},
                name="tools via shieldes")
            async with server:
                assert sorted(t.name for t in await server.list_tools()) == ["add", "echo"]
                agent = Agent(name="adder", instructions="Use the tools.", mcp_servers=[server], model="gpt-4o")
                config = RunConfig(model_provider=OpenAIProvider(openai_client=oai(h.base, key)),
                                   tracing_disabled=True)
                result = await Runner.run(agent, "What is 40 + 2?", run_config=config)
            assert "42" in result.final_output  # the tool's result went back to the model, which quotes it
            offered = h.upstream.requests_to("/v1/chat/completions")[0].body["tools"]
            assert sorted(t["function"]["name"] for t in offered) == ["add", "echo"]
            assert all(headers["authorization"] == f"Bearer {TOKEN}" for _, headers in seen.requests)
            assert any(m == "POST" for m, _ in seen.requests)


async def test_secrets_rotate_re_encrypts_mcp_header_values(database_url: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from shieldes.secrets import Keyring, key_id_of
    from tests.integration.test_secrets_rotation import NEW, OLD, ok

    monkeypatch.setenv("SHIELDES_TEST_TEAM", "platform")  # an --header-env header, read by the node
    both = {"SHIELDES_ENCRYPTION_KEY": NEW, "SHIELDES_ENCRYPTION_KEY_OLD": OLD}
    with running_mcp_server() as (url, seen):
        async with harness(database_url, providers=False, encryption_key=NEW, encryption_key_old=OLD) as h:
            await h.admin(AddMcpServer("tools", url, {"Authorization": Keyring(OLD).encrypt(f"Bearer {TOKEN}"),
                                                      "X-Team": "env:SHIELDES_TEST_TEAM"}))
            key = await h.create_key("agent", mcp=("tools",))
            await h.sync()
            async with mcp_session(h, key) as session:
                await session.initialize()
            assert seen.requests[0][1]["x-team"] == "platform"
            old_id, new_id = Keyring(OLD).current_key_id, Keyring(NEW).current_key_id
            assert await ok(database_url, "secrets", "status", env=both) == [
                {"provider": "mcp:tools", "key_id": old_id, "current": False}]
            done = await ok(database_url, "secrets", "rotate", env=both)
            assert [(r["provider"], r["from_key_id"], r["to_key_id"], r["rotated"]) for r in done] == [
                ("mcp:tools", old_id, new_id, True)]
            assert await ok(database_url, "secrets", "rotate", env=both) == []  # idempotent
            stored = h.sql("SELECT data->'headers' FROM events WHERE type = 'mcp_server.updated'")[-1][0]
            assert key_id_of(stored["Authorization"]) == new_id and stored["X-Team"] == "env:SHIELDES_TEST_TEAM"
        # the old key retired: a node holding only the new one reads the rotated header
        async with harness(database_url, providers=False, encryption_key=NEW) as h2, \
                mcp_session(h2, key) as session:
            await session.initialize()
            assert (await session.call_tool("add", {"a": 1, "b": 1})).content[0].text == "2"  # type: ignore[union-attr]
