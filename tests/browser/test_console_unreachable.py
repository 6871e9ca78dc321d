"""When the console cannot reach its node (restarting, network down) or a proxy in front of it
answers with its own page, the console says so in words with what to do, not the browser's
"Failed to fetch" or a bare "HTTP 502"; the overview comes back by itself once the node answers.
Real headless Chromium against a node: the network cut through Chromium's own offline mode, the
proxy a real HTTP server in front of the node."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.browser.console_driver import DESKTOP, Browsers, wait
from tests.browser.test_console import all_css, by_css, sign_in
from tests.integration.gateway_harness import harness

pytestmark = pytest.mark.cluster
TOKEN = "console-unreachable-admin-token-0123456789"


def _error(d: Any) -> str:
    return next((e.text for e in all_css(d, "main p.error") if e.text), "")


def _offline_and_back(chromium: Browsers, base: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with chromium(*DESKTOP) as d:
        sign_in(d, base, TOKEN)
        d.execute_cdp_cmd("Network.enable", {})
        d.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        seen["offline"] = wait(d, _error, what="the overview's error while offline")
        d.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        wait(d, lambda d: not _error(d) and all_css(d, "time#refreshed"), what="the overview back")
    return seen


def _behind_a_proxy(chromium: Browsers, base: str) -> str:
    with chromium(*DESKTOP) as d:
        sign_in(d, base, TOKEN)
        by_css(d, "#nav a[data-page=keys]").click()  # the proxy now answers the admin API with its page
        return wait(d, _error, what="the keys page's error")  # type: ignore[no-any-return]


async def test_an_unreachable_node_and_a_proxys_error_page_are_said_in_words(chromium: Browsers,
                                                                             database_url: str) -> None:
    async with harness(database_url, admin_token=TOKEN) as h:
        seen = await asyncio.to_thread(_offline_and_back, chromium, h.base)

        # a proxy in front of the node: passes everything through, but answers GET /admin/v1/keys
        # as a load balancer does when its backend fails, with an HTML page
        async def relay(request: web.Request) -> web.StreamResponse:
            if request.path == "/admin/v1/keys":
                return web.Response(status=502, text="<html><body>502 Bad Gateway</body></html>",
                                    content_type="text/html")
            async with aiohttp.ClientSession() as s, s.request(
                    request.method, h.base + request.path_qs, headers={k: v for k, v in request.headers.items()
                                                                       if k.lower() != "host"},
                    data=await request.read()) as r:
                return web.Response(status=r.status, body=await r.read(), headers={
                    k: v for k, v in r.headers.items() if k.lower() in ("content-type", "content-security-policy")})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", relay)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            proxied = await asyncio.to_thread(_behind_a_proxy, chromium, f"http://127.0.0.1:{port}")
        finally:
            await runner.cleanup()

    assert seen["offline"].startswith("Cannot reach the node: it may be restarting, or the network is down."), seen
    assert "Failed to fetch" not in seen["offline"]
    assert proxied.startswith("The node answered 502 Bad Gateway without saying why (a proxy in front of it?)"), \
        proxied
