"""Signing in to the console with a token the nodes refuse, and being signed out when a token is
revoked mid-session, in a real headless Chromium against a node: the console says what happened in
its own words (not "Signed out" before anyone signed in, nor the API's advice on which header to
send)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shieldes import secrets
from shieldes.projections.shared_commands import CreateAdminToken, RevokeAdminToken
from tests.browser.console_driver import DESKTOP, chromium, require_chromium, wait
from tests.browser.test_console import LOADED, all_css, by_css
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


def _console(h: Harness, loop: asyncio.AbstractEventLoop, operator: str) -> dict[str, str]:
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


async def test_a_refused_token_and_a_revoked_one_say_what_happened(database_url: str) -> None:
    require_chromium()
    async with harness(database_url, admin_token=TOKEN) as h:
        operator = secrets.new_admin_token()
        await h.admin(CreateAdminToken(secrets.new_id("adm"), "ops", "operator", secrets.hash_key(operator),
                                       secrets.display_prefix(operator)))
        await h.sync()
        seen = await asyncio.to_thread(_console, h, asyncio.get_running_loop(), operator)

    assert seen["wrong"].startswith("This token was refused: it is mistyped, revoked or not an admin token."), seen
    assert "shieldes admin-token create" in seen["wrong"] and "Signed out" not in seen["wrong"]
    assert "Authorization" not in seen["wrong"] + seen["revoked"]
    assert seen["revoked"].startswith("Signed out: the nodes no longer accept this token (revoked"), seen
