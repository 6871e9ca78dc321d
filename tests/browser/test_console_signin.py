"""Signing in to the console with a token the nodes refuse, and being signed out when a token is
revoked mid-session, in a real headless Chromium against a node: the console says what happened in
its own words (not "Signed out" before anyone signed in, nor the API's advice on which header to
send)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from shieldes import secrets
from shieldes.projections.shared_commands import CreateAdminToken, RevokeAdminToken
from tests.browser.console_driver import DESKTOP, Browsers, screenshot, wait
from tests.browser.test_console import LOADED, all_css, by_css
from tests.integration.admin_client import AdminClient
from tests.integration.gateway_harness import Harness, harness

pytestmark = pytest.mark.cluster
TOKEN = "console-signin-admin-token-0123456789"


def _message(d: Any) -> str:
    return wait(d, lambda d: all_css(d, "form.signin p.error") and by_css(d, "form.signin p.error").text,
                what="the sign-in form's message")  # type: ignore[no-any-return]


def _submit(d: Any, token: str) -> None:
    field = wait(d, lambda d: all_css(d, "input#token") and by_css(d, "input#token"), what="the sign-in form")
    field.clear()
    field.send_keys(token)
    by_css(d, "form.signin button[type=submit]").click()


def _console(chromium: Browsers, h: Harness, loop: asyncio.AbstractEventLoop, operator: str) -> dict[str, str]:
    seen: dict[str, str] = {}
    with chromium(*DESKTOP) as d:
        d.get(h.base + "/ui/")
        _submit(d, "shd-adm-not-a-token")
        seen["wrong"] = _message(d)
        _submit(d, operator)
        wait(d, lambda d: all_css(d, LOADED + "h1"), what="the first page")
        asyncio.run_coroutine_threadsafe(h.admin(RevokeAdminToken("ops")), loop).result(10)
        seen["revoked"] = _message(d)  # the next refresh (every 2 s on the overview) is refused
    return seen


async def test_a_refused_token_and_a_revoked_one_say_what_happened(chromium: Browsers, database_url: str) -> None:
    async with harness(database_url, admin_token=TOKEN) as h:
        operator = secrets.new_admin_token()
        await h.admin(CreateAdminToken(secrets.new_id("adm"), "ops", "operator", secrets.hash_key(operator),
                                       secrets.display_prefix(operator)))
        await h.sync()
        seen = await asyncio.to_thread(_console, chromium, h, asyncio.get_running_loop(), operator)

    assert seen["wrong"].startswith("This token was refused: it is mistyped, revoked or not an admin token."), seen
    assert "shieldes admin-token create" in seen["wrong"] and "Signed out" not in seen["wrong"]
    assert "Authorization" not in seen["wrong"] + seen["revoked"]
    assert seen["revoked"].startswith("Signed out: the nodes no longer accept this token (revoked"), seen


def _left_alone(chromium: Browsers, h: Harness) -> dict[str, Any]:
    """Sign in with a token, keep using the console past the idle timeout, then leave it alone."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    seen: dict[str, Any] = {}
    with chromium(*DESKTOP) as d:
        d.get(h.base + "/ui/")
        _submit(d, TOKEN)
        wait(d, lambda d: all_css(d, LOADED + "h1"), what="the first page")
        signed_in_at = time.monotonic()
        while time.monotonic() - signed_in_at < 3.0:  # used: a key pressed every 0.5 s, past the 2 s
            ActionChains(d).send_keys(Keys.SHIFT).perform()
            time.sleep(0.5)
        seen["in_use"] = {"signed_in": not by_css(d, "#who").get_attribute("hidden"),
                          "stored": d.execute_script("return sessionStorage.getItem('shieldes.token')")}
        seen["idle"] = _message(d)
        seen["stored"] = d.execute_script("return sessionStorage.getItem('shieldes.token')")
        if os.environ.get("SHIELDES_SCREENSHOTS_TO"):  # for a person to look at, as test_console's
            screenshot(d, Path(os.environ["SHIELDES_SCREENSHOTS_TO"]) / "console-token-idle-desktop.png")
    return seen


async def test_a_token_console_left_unused_forgets_the_token(chromium: Browsers, database_url: str) -> None:
    """The nodes refuse an idle SSO session; a token they cannot time out (the CLI uses it too), so
    the console tab forgets it once unused for SHIELDES_OIDC_IDLE_SECONDS, and not while in use."""
    async with harness(database_url, admin_token=TOKEN, oidc_idle_seconds=2.0) as h:
        seen = await asyncio.to_thread(_left_alone, chromium, h)
        status, still = await AdminClient(h.base, TOKEN).get("/admin/v1/whoami")
    assert seen["in_use"] == {"signed_in": True, "stored": TOKEN}, seen
    assert seen["idle"].startswith("Signed out: this console was unused for longer than the idle timeout (2 s"), seen
    assert "SHIELDES_OIDC_IDLE_SECONDS" in seen["idle"] and seen["stored"] is None, seen
    assert status == 200 and still["idle_seconds"] == 2.0, (status, still)  # the token itself still works
