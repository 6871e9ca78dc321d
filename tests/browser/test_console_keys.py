"""The Keys page as an operator uses it, in a real headless Chromium against a node: a key and a
team created without a budget (the form sends no period then, which the API would refuse), and a
key's edit that keeps a budget period the console does not offer (14d, set from the CLI)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from shieldes.projections.commands import CreateTeam
from tests.browser.console_driver import DESKTOP, chromium, require_chromium, wait
from tests.browser.test_console import all_css, button, by_css, go, sign_in
from tests.browser.test_console_operator import rows
from tests.integration.gateway_harness import harness

pytestmark = pytest.mark.cluster
TOKEN = "console-keys-admin-token-0123456789abc"


def _names(d: Any) -> list[str]:
    return [r.get("Name", "") for r in rows(d, "Virtual keys") or []]


def _team_or_error(d: Any) -> bool:
    listed = "no-budget-team" in [r["Name"] for r in rows(d, "Teams") or []]
    return listed or "error" in (by_css(d, "#toast").get_attribute("class") or "")


def _create_and_edit(base: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with chromium(*DESKTOP) as d:
        sign_in(d, base, TOKEN)
        go(d, "keys", "form#create-key")
        by_css(d, "form#create-key input[name=name]").send_keys("no-budget")
        by_css(d, "form#create-key button[type=submit]").click()
        wait(d, lambda d: all_css(d, "code.secret") or by_css(d, "form#create-key p.error").text,
             what="the new key's secret or an error")
        seen["create_error"] = by_css(d, "form#create-key p.error").text
        seen["secret"] = [e.text for e in all_css(d, "code.secret")]
        by_css(d, "form[aria-label='Create a team'] input[name=name]").send_keys("no-budget-team")
        button(d, "Create team").click()
        wait(d, _team_or_error, what="the new team or an error")
        seen["teams"] = [r["Name"] for r in rows(d, "Teams") or []]
        seen["toast"] = by_css(d, "#toast").text

        # edit the key whose budget period the select does not offer: only its rpm changes
        by_css(d, "button[aria-label='Edit fortnight']").click()
        form = "form[aria-labelledby=edit-title] "
        seen["period_shown"] = wait(d, lambda d: all_css(d, form + "select[name=budget_period]")
                                    and by_css(d, form + "select[name=budget_period]").get_attribute("value"),
                                    what="the edit form")
        rpm = by_css(d, form + "input[name=rpm]")
        rpm.clear()
        rpm.send_keys("42")
        button(d, "Save").click()
        wait(d, lambda d: not all_css(d, form), what="the edit saved")
    return seen


async def _key(base: str, name: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"{base}/admin/v1/keys/{name}",
                                                    headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        assert r.status == 200, await r.text()
        return await r.json()  # type: ignore[no-any-return]


async def test_a_key_and_a_team_without_a_budget_and_an_edit_keeping_its_period(database_url: str) -> None:
    require_chromium()
    async with harness(database_url, admin_token=TOKEN) as h:
        await h.admin(CreateTeam("team_ops", "ops", 100.0, "30d"))
        await h.create_key("fortnight", budget_usd=3.0, budget_period="14d", team="ops")
        await h.sync()
        seen = await asyncio.to_thread(_create_and_edit, h.base)
        fortnight = await _key(h.base, "fortnight")
        created = await _key(h.base, "no-budget")

    assert seen["create_error"] == "" and seen["secret"] and seen["secret"][0].startswith("sk-shd-"), seen
    assert created["budget_usd"] is None
    assert "no-budget-team" in seen["teams"], seen["toast"]
    assert seen["period_shown"] == "14d"
    assert fortnight["rpm"] == 42
    assert fortnight["budget_usd"] == 3.0 and fortnight["budget_period"] == "14d" and fortnight["team"] == "ops"
