"""The node's one upstream session never carries state from one call to the next."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestServer

from shieldes.providers.registry import open_session
from shieldes.settings import Settings


async def test_cookies_set_by_an_upstream_are_not_replayed_to_later_calls() -> None:
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        resp = web.json_response({"ok": True})
        resp.set_cookie("session", "belongs-to-key-a")
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    async with TestServer(app, host="localhost") as server:
        session = open_session(Settings())
        try:
            for _ in range(2):
                async with session.post(f"http://localhost:{server.port}/v1/chat/completions", json={}) as r:
                    assert r.status == 200
        finally:
            await session.close()
    assert seen == [None, None]
