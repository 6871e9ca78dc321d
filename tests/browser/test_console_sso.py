"""Single sign-on in a real headless Chromium against a node and a small OIDC provider: "Sign in
with SSO" lands signed in as the provider's user, and a link carrying someone else's session in its
fragment (/ui/#session=..., login CSRF) signs nobody in; an admin sees the sessions, and Sign out
ends the session on the nodes (its token is refused after)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from tests.browser.console_driver import DESKTOP, chromium, require_chromium, screenshot, wait
from tests.browser.test_console import LOADED, all_css, by_css
from tests.fake_oidc import CLIENT_ID, CLIENT_SECRET, FakeOidc
from tests.integration.admin_client import AdminClient
from tests.integration.gateway_harness import harness
from tests.integration.test_admin_oidc import sign_in

pytestmark = pytest.mark.cluster


def _browse(base: str, attacker_session: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with chromium(*DESKTOP) as d:
        d.get(base + "/ui/#session=" + attacker_session)
        wait(d, lambda d: all_css(d, "input#token") and all_css(d, "a.button[href='/ui/oidc/login']"),
             what="the sign-in form with its SSO button")
        seen["planted"] = {"url": d.current_url, "stored": d.execute_script(
            "return sessionStorage.getItem('shieldes.token')"), "who_hidden": by_css(d, "#who").get_attribute("hidden")}
        by_css(d, "a.button[href='/ui/oidc/login']").click()
        wait(d, lambda d: all_css(d, LOADED + "h1"), what="the console after SSO")
        seen["signed_in"] = {"who": by_css(d, "#who-name").text, "url": d.current_url}
        # the admin's Sessions page lists this session; Sign out ends it on every node
        d.get(base + "/ui/#/sessions")
        wait(d, lambda d: all_css(d, LOADED + "table tbody th") and "ana@example.com" in by_css(
            d, LOADED + "table tbody th").text, what="the sessions page")
        seen["sessions"] = [r.text for r in all_css(d, LOADED + "table tbody tr")]
        if os.environ.get("SHIELDES_SCREENSHOTS_TO"):  # for a person to look at, as test_console's
            screenshot(d, Path(os.environ["SHIELDES_SCREENSHOTS_TO"]) / "console-sessions-desktop.png")
        seen["token"] = d.execute_script("return sessionStorage.getItem('shieldes.token')")
        by_css(d, "#sign-out").click()
        wait(d, lambda d: all_css(d, "input#token") and "ended on every node" in by_css(d, "#toast").text,
             what="the sign-in form after signing out")
    return seen


async def test_sso_signs_in_this_browser_and_a_planted_session_signs_in_nobody(database_url: str) -> None:
    require_chromium()
    idp = await FakeOidc().start()
    try:
        async with harness(database_url, oidc_issuer=idp.url, oidc_client_id=CLIENT_ID,
                           oidc_client_secret=CLIENT_SECRET, oidc_role_map="platform=admin,staff=viewer") as h:
            idp.user = {"sub": "u-666", "email": "mallory@example.com", "roles": ["staff"]}
            status, attacker = await sign_in(h.base)
            assert status == 200, attacker
            idp.user = {"sub": "u-1", "email": "ana@example.com", "roles": ["platform"]}
            seen = await asyncio.to_thread(_browse, h.base, attacker)
            ended = (await AdminClient(h.base, seen["token"]).get("/admin/v1/whoami"))[0]
    finally:
        await idp.stop()
    planted = seen["planted"]
    assert planted["stored"] is None and planted["who_hidden"] is not None, planted  # not signed in
    assert "session=" not in planted["url"], planted  # and the session is gone from the address bar
    assert seen["signed_in"]["who"].startswith("ana@example.com · admin"), seen
    assert "#sso" not in seen["signed_in"]["url"], seen
    assert len(seen["sessions"]) == 2 and all("active" in row for row in seen["sessions"]), seen  # mallory's too
    assert "ana@example.com (this session)" in seen["sessions"][0] and "this session" not in seen["sessions"][1]
    assert ended == 401  # signing out ended the session, not only forgot it in the tab
