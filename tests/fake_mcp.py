"""A real MCP server for tests: the official SDK's MCPServer over Streamable HTTP (uvicorn in a
thread on a free port), with tools of the tests' own, a bearer token it checks, and a record of
the headers each request brought."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.ports import free_port

TOKEN = "upstream-secret-token-123"


@dataclass
class Seen:
    """What the server received: every request's headers (lower-case names) and method."""

    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    refused: int = 0
    open: int = 0  # requests being answered now (a GET's stream stays open until either side ends it)
    go: threading.Event = field(default_factory=threading.Event)  # releases the `held` tool


class _CheckToken:
    """Refuses (401) a request without `Authorization: Bearer TOKEN`; records every request."""

    def __init__(self, app: ASGIApp, seen: Seen, token: str) -> None:
        self.app, self.seen, self.token = app, seen, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.seen.requests.append((scope["method"], headers))
        if headers.get("authorization") != f"Bearer {self.token}":
            self.seen.refused += 1
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": b'{"error": "bad token"}'})
            return
        self.seen.open += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.seen.open -= 1


def build_server(seen: Seen) -> MCPServer:
    server = MCPServer("tools-under-test")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    @server.tool()
    def echo(text: str) -> str:
        """Echo the text back."""
        return text

    @server.tool()
    def delete_everything() -> str:
        """A tool no test key should reach."""
        return "deleted"

    @server.tool()
    async def count(n: int, ctx: Context) -> str:
        """Count to n, reporting progress for each step."""
        for i in range(1, n + 1):
            await ctx.report_progress(i, n, f"step {i}")
            await asyncio.sleep(0.01)
        return f"counted to {n}"

    @server.tool()
    async def held(ctx: Context) -> str:
        """Reports progress, then waits until the client has seen it (a relay that held the
        stream back would leave it waiting)."""
        await ctx.report_progress(1, 2, "waiting for the client")
        deadline = time.monotonic() + 10
        while not seen.go.is_set():
            if time.monotonic() > deadline:
                return "the progress never reached the client"
            await asyncio.sleep(0.01)
        return "released"

    return server




@contextmanager
def running_mcp_server(token: str = TOKEN, *, json_response: bool = False,
                       build: Callable[[Seen], MCPServer] = build_server) -> Iterator[tuple[str, Seen]]:
    """(endpoint URL, what it saw) of a server running until the block ends; `build` makes its
    MCPServer (default: the tests' tools)."""
    seen = Seen()
    app: Any = build(seen).streamable_http_app(json_response=json_response)
    port = free_port()
    config = uvicorn.Config(_CheckToken(app, seen, token), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test MCP server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/mcp", seen
    finally:
        server.should_exit = True
        thread.join(10)
