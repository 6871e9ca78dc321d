"""Single sign-on in a real headless Chromium against a node and a small OIDC provider: "Sign in
with SSO" lands signed in as the provider's user, and a link carrying someone else's session in its
fragment (/ui/#session=..., login CSRF) signs nobody in; an admin sees the sessions, and Sign out
ends the session on the nodes (its token is refused after) and at the provider; a console left
unused times out; a redeem answered 503 is tried again by the page with the same key."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.browser.console_driver import DESKTOP, Browsers, screenshot, wait
from tests.browser.test_console import LOADED, all_css, by_css, cut_tables
from tests.fake_oidc import CLIENT_ID, CLIENT_SECRET, FakeOidc
from tests.integration.admin_client import AdminClient
from tests.integration.gateway_harness import harness
from tests.integration.sso_client import sign_in

pytestmark = pytest.mark.cluster


def _browse(chromium: Browsers, base: str, attacker_session: str) -> dict[str, Any]:
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
        seen["cut"] = cut_tables(d)  # (at 1280 px the sessions table fits, its Revoke buttons on screen)
        if os.environ.get("SHIELDES_SCREENSHOTS_TO"):  # for a person to look at, as test_console's
            screenshot(d, Path(os.environ["SHIELDES_SCREENSHOTS_TO"]) / "console-sessions-desktop.png")
        seen["token"] = d.execute_script("return sessionStorage.getItem('shieldes.token')")
        by_css(d, "#sign-out").click()
        # the browser goes through the provider's logout and comes back to the sign-in form
        wait(d, lambda d: all_css(d, "input#token") and "identity provider too" in by_css(d, "form p.notice").text,
             what="the sign-in form after signing out at the provider")
        seen["after_sign_out"] = {"url": d.current_url, "note": by_css(d, "form p.notice").text,
                                  "stored": d.execute_script("return [sessionStorage.getItem('shieldes.token'), "
                                                             "sessionStorage.getItem('shieldes.id_token')]")}
        if os.environ.get("SHIELDES_SCREENSHOTS_TO"):
            screenshot(d, Path(os.environ["SHIELDES_SCREENSHOTS_TO"]) / "console-signed-out-desktop.png")
    return seen


def _idle(chromium: Browsers, base: str) -> dict[str, Any]:
    """Sign in with SSO, then leave the console alone on its live Overview page."""
    with chromium(*DESKTOP) as d:
        d.get(base + "/ui/")
        wait(d, lambda d: all_css(d, "a.button[href='/ui/oidc/login']"), what="the SSO button")
        by_css(d, "a.button[href='/ui/oidc/login']").click()
        wait(d, lambda d: all_css(d, LOADED + "h1"), what="the console after SSO")
        wait(d, lambda d: all_css(d, "input#token") and "idle timeout" in by_css(d, "form p.error").text,
             timeout=60, what="the sign-in form once the unused session timed out")
        if os.environ.get("SHIELDES_SCREENSHOTS_TO"):
            screenshot(d, Path(os.environ["SHIELDES_SCREENSHOTS_TO"]) / "console-idle-desktop.png")
        return {"note": by_css(d, "form p.error").text,
                "stored": d.execute_script("return sessionStorage.getItem('shieldes.token')")}


# Before any of the console's scripts: the page's first redeem is answered 503 without reaching the
# node (as when the database did not confirm it), and every redeem's Idempotency-Key is noted.
FIRST_REDEEM_UNAVAILABLE = """
(() => {
  const real = window.fetch.bind(window);
  window.redeemKeys = [];
  window.fetch = (url, init) => {
    if (!String(url).endsWith("/ui/oidc/session")) return real(url, init);
    window.redeemKeys.push((init && init.headers && init.headers["Idempotency-Key"]) || null);
    if (window.redeemKeys.length > 1) return real(url, init);
    const body = {error: {message: "the sign-in could not be recorded; sign in again in a moment",
                          type: "api_error", code: "database_unavailable"}};
    return Promise.resolve(new Response(JSON.stringify(body), {status: 503,
                                        headers: {"Content-Type": "application/json"}}));
  };
})();
"""


def _first_redeem_unavailable(chromium: Browsers, base: str) -> dict[str, Any]:
    with chromium(*DESKTOP) as d:
        d.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": FIRST_REDEEM_UNAVAILABLE})
        d.get(base + "/ui/")
        wait(d, lambda d: all_css(d, "a.button[href='/ui/oidc/login']"), what="the SSO button")
        by_css(d, "a.button[href='/ui/oidc/login']").click()
        wait(d, lambda d: all_css(d, LOADED + "h1") or all_css(d, "form p.error"),
             what="the console, or the sign-in form's error, after SSO")
        return {"who": by_css(d, "#who-name").text if all_css(d, LOADED + "h1") else None,
                "error": "".join(e.text for e in all_css(d, "form p.error")),
                "keys": d.execute_script("return window.redeemKeys")}


async def test_the_page_tries_a_redeem_answered_503_again_with_the_same_key(chromium: Browsers,
                                                                            database_url: str) -> None:
    """A 503 on the redeem (the database did not confirm the sign-in) is tried again by the page with
    the same random Idempotency-Key, so a start written after all finishes that sign-in (the node's
    side: test_admin_sessions.py)."""
    idp = await FakeOidc().start()
    try:
        async with harness(database_url, oidc_issuer=idp.url, oidc_client_id=CLIENT_ID,
                           oidc_client_secret=CLIENT_SECRET, oidc_role_map="platform=admin") as h:
            seen = await asyncio.to_thread(_first_redeem_unavailable, chromium, h.base)
    finally:
        await idp.stop()
    assert seen["who"] is not None and seen["who"].startswith("ana@example.com · admin"), seen
    keys = seen["keys"]
    assert len(keys) == 2 and keys[0] == keys[1] and re.fullmatch(r"[0-9a-f]{32}", keys[0] or ""), seen


async def test_sso_signs_in_this_browser_and_a_planted_session_signs_in_nobody(chromium: Browsers,
                                                                               database_url: str) -> None:
    idp = await FakeOidc().start()
    try:
        async with harness(database_url, oidc_issuer=idp.url, oidc_client_id=CLIENT_ID,
                           oidc_client_secret=CLIENT_SECRET, oidc_role_map="platform=admin,staff=viewer") as h:
            idp.user = {"sub": "u-666", "email": "mallory@example.com", "roles": ["staff"]}
            status, attacker = await sign_in(h.base)
            assert status == 200, attacker
            idp.user = {"sub": "u-1", "email": "ana@example.com", "roles": ["platform"]}
            idp.post_logout_uris = {h.base + "/ui/"}
            seen = await asyncio.to_thread(_browse, chromium, h.base, attacker)
            ended = (await AdminClient(h.base, seen["token"]).get("/admin/v1/whoami"))[0]
            logouts = list(idp.logout_requests)
    finally:
        await idp.stop()
    planted = seen["planted"]
    assert planted["stored"] is None and planted["who_hidden"] is not None, planted  # not signed in
    assert "session=" not in planted["url"], planted  # and the session is gone from the address bar
    assert seen["signed_in"]["who"].startswith("ana@example.com · admin"), seen
    assert "#sso" not in seen["signed_in"]["url"], seen
    assert len(seen["sessions"]) == 2 and all("active" in row for row in seen["sessions"]), seen  # mallory's too
    assert "ana@example.com (this session)" in seen["sessions"][0] and "this session" not in seen["sessions"][1]
    assert not seen["cut"], seen["cut"]
    assert ended == 401  # signing out ended the session, not only forgot it in the tab
    # and at the provider (RP-initiated logout), with the ID token as hint, back to the console
    assert len(logouts) == 1 and logouts[0]["id_token_hint"] and logouts[0]["post_logout_redirect_uri"] == \
        seen["after_sign_out"]["url"], (logouts, seen["after_sign_out"])
    assert seen["after_sign_out"]["stored"] == [None, None], seen


async def test_an_sso_console_left_unused_times_out(chromium: Browsers, database_url: str) -> None:
    """The live page keeps polling, but its refreshes are not the user's activity: past the idle
    timeout the node refuses the session and the console says why."""
    idp = await FakeOidc().start()
    try:
        async with harness(database_url, oidc_issuer=idp.url, oidc_client_id=CLIENT_ID,
                           oidc_client_secret=CLIENT_SECRET, oidc_role_map="platform=admin",
                           oidc_idle_seconds=2.0) as h:
            seen = await asyncio.to_thread(_idle, chromium, h.base)
    finally:
        await idp.stop()
    assert seen["stored"] is None and "SHIELDES_OIDC_IDLE_SECONDS" in seen["note"], seen
