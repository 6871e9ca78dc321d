"""The node's one upstream client never carries state from one call to the next."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestServer

from shieldes.providers.registry import open_client
from shieldes.providers.upstream_connection import Timeouts


async def test_cookies_set_by_an_upstream_are_not_replayed_to_later_calls() -> None:
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        resp = web.json_response({"ok": True})
        resp.set_cookie("session", "belongs-to-key-a")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    async with TestServer(app, host="localhost") as server, open_client() as client:
        for _ in range(2):
            r = await client.post(f"http://localhost:{server.port}/v1/chat/completions", b"{}",
                                  {"Content-Type": "application/json"}, Timeouts(connect=5, total=10))
            assert r.status == 200
            assert "session=belongs-to-key-a" in r.headers["set-cookie"]
            await r.read()
    assert seen == [None, None]
