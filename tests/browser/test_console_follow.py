"""From a failing request to its key, in a real headless Chromium against a node: the request log
lists a budget refusal, the opened request names its key as a link, and the link opens the Keys
page on that key (found by name among more keys than a page holds, and shown when it has been
revoked since), where its budget can be raised."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shieldes.projections.shared_commands import SetPricing
from tests.browser.console_driver import DESKTOP, Browsers, wait
from tests.browser.test_console import all_css, by_css, click, go, sign_in
from tests.browser.test_console_operator import rows
from tests.integration.gateway_harness import harness

pytestmark = pytest.mark.cluster
TOKEN = "console-follow-admin-token-0123456789abc"


def _follow(chromium: Browsers, base: str, request_id: str) -> dict[str, Any]:
    with chromium(*DESKTOP) as d:
        sign_in(d, base, TOKEN)
        go(d, "requests", "table caption")
        by_css(d, "main input[name=request_id]").send_keys(request_id)
        click(d, "main form button[type=submit]", "the filter")
        click(d, f"tr[data-request-id='{request_id}'] button", "the refused request")
        link = wait(d, lambda d: all_css(d, "dl.detail a.key-link"), what="the key in the opened request")[0]
        seen: dict[str, Any] = {"link": link.text}
        link.click()
        wait(d, lambda d: all_css(d, "main[data-page=keys]:not([aria-busy]) table caption"), what="the Keys page")
        seen["keys"] = [r["Name"] for r in rows(d, "Virtual keys") or []]
        seen["search"] = by_css(d, "main input[name=search]").get_attribute("value")
        seen["status"] = [r["Status"] for r in rows(d, "Virtual keys") or []]
        seen["edit"] = bool(all_css(d, "button[aria-label='Edit checkout-api']"))
        return seen


async def test_a_refused_request_leads_to_its_key(chromium: Browsers, database_url: str) -> None:
    async with harness(database_url, admin_token=TOKEN) as h:
        await h.admin(SetPricing("gpt-4o", 2.5, 10.0))
        for i in range(120):  # the key is not on the first page of keys by name
            await h.create_key(f"batch-{i:03d}")
        key = await h.create_key("checkout-api", budget_usd=0.0000001)
        await h.sync()
        await h.chat_logged(key, ("gpt-4o",))
        [(request_id,)] = h.sql("SELECT request_id FROM request_log WHERE error_code = 'budget_exceeded'")
        seen = await asyncio.to_thread(_follow, chromium, h.base, request_id)

    assert seen["link"] == "checkout-api"
    assert seen["keys"] == ["checkout-api"] and seen["search"] == "checkout-api" and seen["edit"], seen
