"""What a console user sees while Postgres is unreachable (a TCP proxy in front of it is cut), in
real headless Chromium: signed in with SSO, the pages that read the node's memory keep working and
a page that reads Postgres says so with what to do; Sign out says the session could not be ended
and that the tab forgot it; an SSO sign-in says it could not be recorded and to sign in again; once
Postgres is back, the same SSO sign-in goes through."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from tests.browser.console_driver import DESKTOP, Browsers, screenshot, wait
from tests.browser.test_console import LOADED, all_css, by_css
from tests.fake_oidc import CLIENT_ID, CLIENT_SECRET, FakeOidc
from tests.resilience.support import TcpProxy, node_via

pytestmark = pytest.mark.cluster


def _shot(d: Any, name: str) -> None:
    if os.environ.get("SHIELDES_SCREENSHOTS_TO"):  # for a person to look at, as test_console's
        screenshot(d, Path(os.environ["SHIELDES_SCREENSHOTS_TO"]) / name)


def _error(d: Any) -> str:
    return next((e.text for e in all_css(d, "main p.error, form p.error") if e.text), "")


def _sso(d: Any, base: str) -> None:
    d.get(base + "/ui/")
    wait(d, lambda d: all_css(d, "a.button[href='/ui/oidc/login']"), what="the SSO button")
    by_css(d, "a.button[href='/ui/oidc/login']").click()


def _through_the_cut(chromium: Browsers, base: str, proxy: TcpProxy, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with chromium(*DESKTOP) as d:
        _sso(d, base)
        wait(d, lambda d: all_css(d, LOADED + "h1"), what="the console after SSO")
        loop.call_soon_threadsafe(proxy.cut)
        d.get(base + "/ui/#/keys")  # from the node's memory
        wait(d, lambda d: all_css(d, LOADED + "h1") and by_css(d, LOADED + "h1").text.startswith("Keys"), what="keys")
        seen["keys"] = _error(d)
        d.get(base + "/ui/#/audit")  # reads Postgres
        seen["audit"] = wait(d, _error, what="the audit page's error")
        _shot(d, "console-outage-audit-desktop.png")
        by_css(d, "#sign-out").click()
        seen["sign_out"] = wait(d, lambda d: all_css(d, "input#token") and by_css(d, "#toast").text,
                                what="the sign-out note")
        _shot(d, "console-outage-sign-out-desktop.png")
        _sso(d, base)
        seen["sign_in"] = wait(d, lambda d: all_css(d, "input#token") and _error(d), what="the sign-in's refusal")
        _shot(d, "console-outage-sign-in-desktop.png")
        loop.call_soon_threadsafe(proxy.restore)
        for _ in range(10):  # a pooled connection the cut broke may refuse once more: sign in again
            _sso(d, base)
            wait(d, lambda d: all_css(d, LOADED + "h1") or _error(d), what="the sign-in after the outage")
            if all_css(d, LOADED + "h1"):
                break
        seen["after"] = by_css(d, "#who-name").text
    return seen


async def test_the_console_through_a_postgres_outage(chromium: Browsers, database_url: str) -> None:
    idp = await FakeOidc().start()
    proxy = await TcpProxy(database_url).start()
    try:
        async with node_via(database_url, proxy.url_for(database_url), oidc_issuer=idp.url,
                            oidc_client_id=CLIENT_ID, oidc_client_secret=CLIENT_SECRET,
                            oidc_role_map="platform=admin", db_request_timeout=2.0, db_admin_read_timeout=2.0) as h:
            seen = await asyncio.to_thread(_through_the_cut, chromium, h.base, proxy, asyncio.get_running_loop())
    finally:
        await proxy.stop()
        await idp.stop()
    assert seen["keys"] == "", seen  # served from memory
    assert "database" in seen["audit"].lower() and "retry" in seen["audit"].lower(), seen
    assert "could not end the session (the database did not confirm it)" in seen["sign_out"], seen
    assert "forgot" in seen["sign_out"], seen
    assert "could not be recorded" in seen["sign_in"] and "sign in again" in seen["sign_in"], seen
    assert seen["after"].startswith("ana@example.com · admin"), seen
