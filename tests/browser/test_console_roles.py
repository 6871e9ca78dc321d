"""What the console says instead of showing nothing, in a real headless Chromium against a node: a
role that may not change keys (or teams) is told so on the Keys page, a link to a page the role may
not open lands on its first page saying which role it needs, and an empty list says what to do."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from tests.browser.console_driver import DESKTOP, Browsers, wait
from tests.browser.test_console import all_css, button, by_css, go, sign_in
from tests.integration.gateway_harness import harness

pytestmark = pytest.mark.cluster
TOKEN = "console-roles-admin-token-0123456789abc"


def _empty_text(d: Any, caption: str) -> str:
    """The text of a table's empty row, once the table (found by its caption) shows one."""
    return wait(d, lambda d: [c.text for t in all_css(d, "main table") if t.find_element("css selector", "caption").text
                              == caption for c in t.find_elements("css selector", "td.empty")],
                what=f"the empty {caption} table")[0]


def _note(d: Any) -> str:
    return " ".join(e.text for e in all_css(d, "main .role-note"))


def _walk(chromium: Browsers, base: str, tokens: dict[str, str]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with chromium(*DESKTOP) as d:
        sign_in(d, base, TOKEN)
        go(d, "keys", "table caption")
        seen["admin_keys"], seen["admin_teams"] = _empty_text(d, "Virtual keys"), _empty_text(d, "Teams")
        seen["admin_note"] = _note(d)
        go(d, "requests", "table caption")
        seen["requests"] = _empty_text(d, "Requests, newest first")
        by_css(d, "form[aria-label='Request filters'] input[name=model]").send_keys("gpt-4o")
        by_css(d, "form[aria-label='Request filters'] button[type=submit]").click()
        before = seen["requests"]
        seen["requests_filtered"] = wait(d, lambda d: (t := _empty_text(d, "Requests, newest first")) != before and t,
                                         what="the filtered list")
        go(d, "usage", "table caption")
        seen["usage"] = _empty_text(d, "Usage per day and key")
        button(d, "Sign out").click()

        sign_in(d, base, tokens["viewer"])
        go(d, "keys", "table caption")
        seen["viewer_note"] = _note(d)
        seen["viewer_keys"] = _empty_text(d, "Virtual keys")
        d.execute_script("location.hash = '#/sessions'")  # a link to an admin's page
        seen["viewer_sessions"] = wait(d, lambda d: by_css(d, "#toast").text, what="the refusal")
        wait(d, lambda d: all_css(d, "main[data-page=overview]:not([aria-busy]) h1"), what="the first page")
        seen["viewer_hash"] = d.execute_script("return location.hash")
        button(d, "Sign out").click()

        sign_in(d, base, tokens["operator"])
        go(d, "keys", "table caption")
        seen["operator_note"] = _note(d)
    return seen


async def test_roles_and_empty_lists_say_what_to_do(chromium: Browsers, database_url: str) -> None:
    async with harness(database_url, admin_token=TOKEN) as h:
        tokens = {}
        async with aiohttp.ClientSession() as s:
            for role in ("viewer", "operator"):
                async with s.post(h.base + "/admin/v1/admin-tokens", headers={"Authorization": f"Bearer {TOKEN}"},
                                  json={"name": f"{role}-ui", "role": role}) as r:
                    tokens[role] = (await r.json())["token"]
        seen = await asyncio.to_thread(_walk, chromium, h.base, tokens)

    # empty lists say what to do, not only that they are empty
    assert seen["admin_keys"].startswith("No keys yet: create one with the form above"), seen
    assert seen["admin_teams"].startswith("No teams yet: create one with the form below"), seen
    assert seen["admin_note"] == "", seen  # an admin is not told about roles
    assert seen["requests"].startswith("No requests yet: the nodes log each request"), seen
    assert seen["requests_filtered"].startswith("No requests match these filters: widen"), seen
    assert seen["usage"].startswith("No usage in this range: pick an earlier From date"), seen
    # a viewer is told why there is nothing to click, and where a link to an admin's page went
    assert "Read only: your role (viewer)" in seen["viewer_note"] and "operator or admin" in seen["viewer_note"], seen
    assert "Creating teams needs the admin role" in seen["viewer_note"], seen
    assert seen["viewer_keys"].startswith("No keys yet: an operator or admin creates them"), seen
    refusal = "The Sessions page needs the admin role; this token's role is viewer."
    assert seen["viewer_sessions"].startswith(refusal), seen
    assert seen["viewer_hash"] == "#/overview", seen
    # an operator changes keys but not teams
    assert "Read only" not in seen["operator_note"], seen
    assert "Creating teams needs the admin role (this token's is operator)" in seen["operator_note"], seen
