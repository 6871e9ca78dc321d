"""The Keys page as an operator uses it, in a real headless Chromium against a node: a key and a
team created without a budget (the form sends no period then, which the API would refuse), a
key's edit that keeps a budget period the console does not offer (14d, set from the CLI), a list
longer than a page read on with "More keys" and narrowed by a search the node answers, and a name
of 128 characters that wraps in its cell instead of pushing the key's buttons off the table (and
in the usage chart's legend instead of widening a phone's page); the audit page's config as of a
point lists the first 50 keys by name and says how many there are; with 1100 teams, a key is put in team
1100 by name through "Find a team" and edited into another past the first page, and a key of team
1050 keeps it when another field is saved (the team field offered the first 1000 teams before)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from shieldes.events.catalog import CONFIG_STREAM, TeamCreated
from shieldes.events.codec import Codec
from shieldes.events.store import AppendOptions, NewEvent
from shieldes.projections.commands import CreateTeam
from tests.browser.console_driver import DESKTOP, PHONE, Browsers, screenshot, wait
from tests.browser.test_console import all_css, button, by_css, click, go, sign_in
from tests.browser.test_console_operator import rows
from tests.integration.gateway_harness import harness

pytestmark = pytest.mark.cluster
TOKEN = "console-keys-admin-token-0123456789abc"
LISTED = 230  # more than two of the console's pages (100 keys each)
TEAMS = 1100  # more than the 1000 teams the team field read before it paged
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


def _create_and_edit(chromium: Browsers, base: str) -> dict[str, Any]:
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
        click(d, "button[aria-label='Edit fortnight']", "fortnight's Edit")
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


def _pages(chromium: Browsers, base: str) -> dict[str, Any]:
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


def _long_name(chromium: Browsers, base: str) -> dict[str, Any]:
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


def _as_of(chromium: Browsers, base: str) -> dict[str, Any]:
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


async def test_a_key_and_a_team_without_a_budget_and_an_edit_keeping_its_period(chromium: Browsers,
                                                                                database_url: str) -> None:
    async with harness(database_url, admin_token=TOKEN) as h:
        await h.admin(CreateTeam("team_ops", "ops", 100.0, "30d"))
        await h.create_key("fortnight", budget_usd=3.0, budget_period="14d", team="ops")
        await h.sync()
        seen = await asyncio.to_thread(_create_and_edit, chromium, h.base)
        fortnight = await _key(h.base, "fortnight")
        created = await _key(h.base, "no-budget")

    assert seen["create_error"] == "" and seen["secret"] and seen["secret"][0].startswith("sk-shd-"), seen
    assert created["budget_usd"] is None
    assert "no-budget-team" in seen["teams"], seen["toast"]
    assert seen["period_shown"] == "14d"
    assert fortnight["rpm"] == 42
    assert fortnight["budget_usd"] == 3.0 and fortnight["budget_period"] == "14d" and fortnight["team"] == "ops"


async def test_the_key_list_pages_on_and_searches_on_the_node(chromium: Browsers, database_url: str) -> None:
    async with harness(database_url, admin_token=TOKEN) as h:
        for i in range(LISTED):
            await h.create_key(f"key-{i:03d}")
        await h.sync()
        seen = await asyncio.to_thread(_pages, chromium, h.base)

    expected = [f"key-{i:03d}" for i in range(LISTED)]
    assert seen["first"] == expected[:100]
    assert seen["count"] == "The first 100 keys by name."
    assert seen["all"] == expected and not seen["more_left"]
    assert seen["last_count"] == f"{LISTED} keys."
    assert seen["found"] == [f"key-{i}" for i in range(220, 230)] and not seen["found_more"]
    assert seen["none"] == ["No key name holds \u201cnothing-like-it\u201d: check the spelling, or clear the search to "
                            "list every key."]


async def test_a_name_of_128_characters_wraps_in_its_cell(chromium: Browsers, database_url: str) -> None:
    async with harness(database_url, admin_token=TOKEN) as h:
        key = await h.create_key(LONG, budget_usd=5.0)
        await h.sync()
        await h.chat_logged(key, ("gpt-4o-mini",))
        await h.flush()
        seen = await asyncio.to_thread(_long_name, chromium, h.base)

    assert seen["revoke_visible"] is True
    assert seen["usage_sideways"] <= 0, seen


async def test_the_audit_page_shows_the_first_keys_of_the_config_as_of_a_point(chromium: Browsers,
                                                                               database_url: str) -> None:
    async with harness(database_url, admin_token=TOKEN) as h:
        for i in range(60):
            await h.create_key(f"key-{i:03d}")
        await h.sync()
        seen = await asyncio.to_thread(_as_of, chromium, h.base)

    # GET /admin/v1/config?keys_limit=50: not every key of the cluster drawn into the panel
    assert seen["keys"] == [f"key-{i:03d}" for i in range(50)]
    assert seen["note"] == ["The first 50 of 60 keys by name."]


CREATE, EDIT = "form#create-key ", "form[aria-labelledby=edit-title] "


def _offered(d: Any, form: str) -> list[str]:
    return [o.get_attribute("value") for o in all_css(d, form + "select[name=team] option")]


def _choose_found(d: Any, form: str, text: str, team: str) -> None:
    """Type `text` into the form's "Find a team" and choose `team` among the names the node finds."""
    from selenium.webdriver.support.select import Select

    by_css(d, form + "input[name=team_search]").send_keys(text)
    wait(d, lambda d: _offered(d, form) == ["", team], what=f"{team} found")
    Select(by_css(d, form + "select[name=team]")).select_by_value(team)


def _teams_at_scale(chromium: Browsers, base: str, shots: Any) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with chromium(*DESKTOP) as d:
        sign_in(d, base, TOKEN)
        go(d, "keys", "form#create-key")
        wait(d, lambda d: len(_offered(d, CREATE)) == 101, what="the first page of teams")
        seen["first"] = _offered(d, CREATE)
        seen["count"] = by_css(d, CREATE + ".team-count").text
        seen["table"] = [r["Name"] for r in rows(d, "Teams") or []]
        seen["table_count"] = by_css(d, "main p.teams-count").text
        button(d, "More teams", by_css(d, CREATE)).click()
        wait(d, lambda d: len(_offered(d, CREATE)) == 201, what="the second page of teams")
        seen["second"] = _offered(d, CREATE)

        # create a key in the last team by name: the node finds it
        by_css(d, CREATE + "input[name=name]").send_keys("late")
        _choose_found(d, CREATE, "1099", "team-1099")
        by_css(d, CREATE + "button[type=submit]").click()
        wait(d, lambda d: all_css(d, "code.secret") or by_css(d, CREATE + "p.error").text, what="the new key")
        seen["create_error"] = by_css(d, CREATE + "p.error").text

        # edit a key of team 1050 (past the first page): its team is chosen and stays on Save
        click(d, "button[aria-label='Edit member']", "member's Edit")
        seen["member_team"] = wait(d, lambda d: len(_offered(d, EDIT)) > 1
                                   and by_css(d, EDIT + "select[name=team]").get_attribute("value"),
                                   what="the edit form's teams")
        screenshot(d, shots / "team-field-edit.png", full_page=False)
        rpm = by_css(d, EDIT + "input[name=rpm]")
        rpm.clear()
        rpm.send_keys("7")
        button(d, "Save").click()
        wait(d, lambda d: not all_css(d, EDIT), what="member saved")

        # edit a key into a team found past the first page
        click(d, "button[aria-label='Edit mover']", "mover's Edit")
        wait(d, lambda d: len(_offered(d, EDIT)) == 101, what="the edit form's teams")
        _choose_found(d, EDIT, "team-1077", "team-1077")
        screenshot(d, shots / "team-field-found.png", full_page=False)
        button(d, "Save").click()
        wait(d, lambda d: not all_css(d, EDIT), what="mover saved")
    return seen


async def test_a_key_goes_in_any_of_ten_thousand_teams_by_a_search_on_the_node(chromium: Browsers, database_url: str,
                                                                                tmp_path: Any) -> None:
    async with harness(database_url, admin_token=TOKEN) as h:
        codec = Codec()  # the teams in one append, as bench/bench_keys_scale.py writes them
        await h.store.append(CONFIG_STREAM, [NewEvent.of(TeamCreated(f"team_{i:04d}", f"team-{i:04d}"), codec)
                                             for i in range(TEAMS)], AppendOptions(metadata={"actor": "test"}))
        await h.create_key("member", team="team-1050")
        await h.create_key("mover")
        await h.sync()
        shots = Path(os.environ.get("SHIELDES_SCREENSHOTS_TO") or tmp_path)
        seen = await asyncio.to_thread(_teams_at_scale, chromium, h.base, shots)
        late, member, mover = [await _key(h.base, n) for n in ("late", "member", "mover")]

    names = [f"team-{i:04d}" for i in range(TEAMS)]
    assert seen["first"] == ["", *names[:100]] and seen["second"] == ["", *names[:200]]
    assert seen["count"] == "The first 100 teams by name."
    assert seen["table"] == names[:100] and seen["table_count"] == "The first 100 teams by name."
    assert seen["create_error"] == "" and late["team"] == "team-1099"
    assert seen["member_team"] == "team-1050"
    assert member["team"] == "team-1050" and member["rpm"] == 7
    assert mover["team"] == "team-1077"
