"""The Keys page as an operator uses it, in a real headless Chromium against a node: a key and a
team created without a budget (the form sends no period then, which the API would refuse), a
key's edit that keeps a budget period the console does not offer (14d, set from the CLI), a list
longer than a page read on with "More keys" and narrowed by a search the node answers, and a name
of 128 characters that wraps in its cell instead of pushing the key's buttons off the table (and
in the usage chart's legend instead of widening a phone's page); the audit page's config as of a
point lists the first 50 keys by name and says how many there are."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from shieldes.projections.commands import CreateTeam
from tests.browser.console_driver import DESKTOP, PHONE, chromium, require_chromium, wait
from tests.browser.test_console import all_css, button, by_css, go, sign_in
from tests.browser.test_console_operator import rows
from tests.integration.gateway_harness import harness

pytestmark = pytest.mark.cluster
TOKEN = "console-keys-admin-token-0123456789abc"
LISTED = 230  # more than two of the console's pages (100 keys each)
LONG = "long-" + "x" * 123  # the longest name allowed

# whether the element lies inside the visible part of its scrolling table region
IN_REGION_JS = """
const e = arguments[0], region = e.closest(".scroll");
const r = e.getBoundingClientRect(), box = region.getBoundingClientRect();
return r.width > 0 && r.left >= box.left && r.right <= box.right + 0.5;
"""


def _names(d: Any) -> list[str]:
    return [r.get("Name", "") for r in rows(d, "Virtual keys") or []]


def _team_or_error(d: Any) -> bool:
    listed = "no-budget-team" in [r["Name"] for r in rows(d, "Teams") or []]
    return listed or "error" in (by_css(d, "#toast").get_attribute("class") or "")


def _find(d: Any, text: str, count: int) -> list[str]:
    find = by_css(d, "main input[name=search]")
    find.clear()
    find.send_keys(text)
    button(d, "Find").click()
    return wait(d, lambda d: len(names := _names(d)) == count and names, what=f"the keys holding {text!r}")  # type: ignore[no-any-return]


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


def _pages(base: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with chromium(*DESKTOP) as d:
        sign_in(d, base, TOKEN)
        go(d, "keys", "table caption")
        wait(d, lambda d: len(_names(d)) == 100, what="the first page of keys")
        seen["first"] = _names(d)
        seen["count"] = by_css(d, "main p.key-count").text
        button(d, "More keys").click()
        wait(d, lambda d: len(_names(d)) == 200, what="the second page of keys")
        button(d, "More keys").click()
        wait(d, lambda d: len(_names(d)) == LISTED, what="the last page of keys")
        seen["all"] = _names(d)
        seen["more_left"] = bool(all_css(d, "main button.more-keys"))
        seen["last_count"] = by_css(d, "main p.key-count").text
        # a search the node answers, past the pages read so far
        seen["found"] = _find(d, "key-22", 10)
        seen["found_more"] = bool(all_css(d, "main button.more-keys"))
        seen["none"] = _find(d, "nothing-like-it", 1)
    return seen


def _long_name(base: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with chromium(*DESKTOP) as d:
        sign_in(d, base, TOKEN)
        go(d, "keys", "table caption")
        revoke = wait(d, lambda d: all_css(d, f"button[aria-label='Revoke {LONG}']"), what="the long key")[0]
        seen["revoke_visible"] = d.execute_script(IN_REGION_JS, revoke)
    with chromium(*PHONE) as d:  # the usage chart's legend names the key: the page stays in the window
        sign_in(d, base, TOKEN)
        go(d, "usage", "ul.legend li")
        seen["usage_sideways"] = d.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    return seen


def _as_of(base: str) -> dict[str, Any]:
    with chromium(*DESKTOP) as d:
        sign_in(d, base, TOKEN)
        go(d, "audit", "#asof-point")
        keys = wait(d, lambda d: (r := rows(d, "Keys")) and r, what="the config's keys")
        note = [p.text for p in all_css(d, "main p.keys-shown")]
        return {"keys": [r["Key"] for r in keys], "note": note}


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


async def test_the_key_list_pages_on_and_searches_on_the_node(database_url: str) -> None:
    require_chromium()
    async with harness(database_url, admin_token=TOKEN) as h:
        for i in range(LISTED):
            await h.create_key(f"key-{i:03d}")
        await h.sync()
        seen = await asyncio.to_thread(_pages, h.base)

    expected = [f"key-{i:03d}" for i in range(LISTED)]
    assert seen["first"] == expected[:100]
    assert seen["count"] == "The first 100 keys by name."
    assert seen["all"] == expected and not seen["more_left"]
    assert seen["last_count"] == f"{LISTED} keys."
    assert seen["found"] == [f"key-{i}" for i in range(220, 230)] and not seen["found_more"]
    assert seen["none"] == ["No key name holds \u201cnothing-like-it\u201d."]


async def test_a_name_of_128_characters_wraps_in_its_cell(database_url: str) -> None:
    require_chromium()
    async with harness(database_url, admin_token=TOKEN) as h:
        key = await h.create_key(LONG, budget_usd=5.0)
        await h.sync()
        await h.chat_logged(key, ("gpt-4o-mini",))
        await h.flush()
        seen = await asyncio.to_thread(_long_name, h.base)

    assert seen["revoke_visible"] is True
    assert seen["usage_sideways"] <= 0, seen


async def test_the_audit_page_shows_the_first_keys_of_the_config_as_of_a_point(database_url: str) -> None:
    require_chromium()
    async with harness(database_url, admin_token=TOKEN) as h:
        for i in range(60):
            await h.create_key(f"key-{i:03d}")
        await h.sync()
        seen = await asyncio.to_thread(_as_of, h.base)

    # GET /admin/v1/config?keys_limit=50: not every key of the cluster drawn into the panel
    assert seen["keys"] == [f"key-{i:03d}" for i in range(50)]
    assert seen["note"] == ["The first 50 of 60 keys by name."]
