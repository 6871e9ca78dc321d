"""A key's expiry on the Keys page, in a real headless Chromium against a node, at desktop and phone
sizes: set on a new key and changed and cleared in Edit, in the browser's own time zone (Asia/Tokyo,
UTC+09:00, here) and sent as the UTC instant the admin API takes; a time in the past or a date left
half typed is refused in the form in plain words. An expired key's rotation says to edit the key and
extend its expiry, and its Edit button opens the form at the Expires field; the list says which keys
have expired and, to a viewer, who can extend them. A team's budget is edited on the page and says
which models its keys may use have no price (the admin API's `unpriced_models`). Screenshots go to
$SHIELDES_SCREENSHOTS_TO when it is set."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from shieldes.projections.commands import CreateTeam
from shieldes.projections.shared_commands import AddProvider
from tests.browser.console_driver import DESKTOP, PHONE, Browsers, screenshot, wait
from tests.browser.test_console import all_css, button, by_css, click, go, sign_in
from tests.integration.gateway_harness import UPSTREAM_KEY_ENV, harness

pytestmark = pytest.mark.cluster
TOKEN = "console-expiry-admin-token-0123456789abc"
ZONE = "Asia/Tokyo"  # UTC+09:00 all year: a local time is 9 h ahead of the instant sent
UNPRICED = "acme-private-llm"  # served, and in no price table
CREATE, EDIT = "form#create-key ", "form[aria-labelledby=edit-title] "
SIZES = {"desktop": DESKTOP, "phone": PHONE}


def _shot(d: Any, name: str) -> None:
    if os.environ.get("SHIELDES_SCREENSHOTS_TO"):
        screenshot(d, Path(os.environ["SHIELDES_SCREENSHOTS_TO"]) / name)


def _in_zone(d: Any) -> None:
    d.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": ZONE})


def _set(d: Any, css: str, value: str) -> None:
    """A datetime-local input's value as a picker leaves it (typing into one depends on the locale)."""
    d.execute_script("const e = arguments[0]; e.value = arguments[1];"
                     "e.dispatchEvent(new Event('input', {bubbles: true}));"
                     "e.dispatchEvent(new Event('change', {bubbles: true}));", by_css(d, css), value)


def _open_create(d: Any, tag: str) -> None:
    if tag == "phone":  # the form folds behind "New key" on a phone
        button(d, "New key").click()
        wait(d, lambda d: by_css(d, CREATE + "input[name=name]").is_displayed(), what="the create form")


def _create(d: Any, name: str, expires: str) -> str:
    """Create a key with this expiry: the form's error, or "created" once the secret shows."""
    by_css(d, CREATE + "input[name=name]").send_keys(name)
    _set(d, CREATE + "input[name=expires_at]", expires)
    by_css(d, CREATE + "button[type=submit]").click()
    return wait(d, lambda d: by_css(d, CREATE + "p.error").text or (all_css(d, "code.secret") and "created"),  # type: ignore[no-any-return]
                what="the new key or an error")


def _edit(d: Any, name: str) -> None:
    click(d, f"button[aria-label='Edit {name}']", f"{name}'s Edit")
    wait(d, lambda d: all_css(d, EDIT + "input[name=expires_at]"), what="the edit form")


def _save(d: Any) -> str:
    """Save the edit form: "saved" once it closed, else the form's error."""
    button(d, "Save").click()
    return wait(d, lambda d: "saved" if not all_css(d, EDIT) else by_css(d, EDIT + "p.error").text,  # type: ignore[no-any-return]
                what="the edit saved or an error")


def _expiry_forms(chromium: Browsers, base: str, tag: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with chromium(*SIZES[tag]) as d:
        _in_zone(d)
        sign_in(d, base, TOKEN)
        go(d, "keys", "table caption")
        _open_create(d, tag)
        seen["hint"] = by_css(d, CREATE + "input[name=expires_at] ~ small.hint").text
        seen["past"] = _create(d, f"past-{tag}", "2020-01-01T09:00")
        by_css(d, CREATE + "input[name=name]").clear()
        # a date half typed: the browser holds no value, and the form says what is missing
        exp = by_css(d, CREATE + "input[name=expires_at]")
        _set(d, CREATE + "input[name=expires_at]", "")
        exp.send_keys("03")
        by_css(d, CREATE + "input[name=name]").send_keys(f"half-{tag}")
        by_css(d, CREATE + "button[type=submit]").click()
        seen["half"] = wait(d, lambda d: by_css(d, CREATE + "p.error").text != seen["past"]
                            and by_css(d, CREATE + "p.error").text, what="the half-typed date refused")
        _shot(d, f"console-expiry-refused-{tag}.png")
        button(d, "Never expires", by_css(d, CREATE)).click()
        by_css(d, CREATE + "input[name=name]").clear()
        _set(d, CREATE + "input[name=expires_at]", "2031-03-04T10:30")
        seen["echo"] = by_css(d, CREATE + "output.utc-echo").text
        seen["created"] = _create(d, f"expiring-{tag}", "2031-03-04T10:30")
        seen["echo_after"] = by_css(d, CREATE + "output.utc-echo").text  # the form was reset
        button(d, "I have stored it").click()
        seen["column"] = wait(d, lambda d: [c.text for c in all_css(d, "main td.fit") if "2031" in c.text],
                              what="the Expires column")
        seen["column_title"] = [t.get_attribute("title") for t in all_css(d, "main td.fit time")]

        _edit(d, f"expiring-{tag}")
        seen["edit_shows"] = by_css(d, EDIT + "input[name=expires_at]").get_attribute("value")
        _shot(d, f"console-expiry-edit-{tag}.png")
        _set(d, EDIT + "input[name=expires_at]", "2000-05-05T05:05")
        seen["edit_past"] = _save(d)
        _set(d, EDIT + "input[name=expires_at]", "2032-01-01T00:00")
        seen["changed"] = _save(d)
    return seen


def _clear(chromium: Browsers, base: str, name: str) -> str:
    with chromium(*DESKTOP) as d:
        _in_zone(d)
        sign_in(d, base, TOKEN)
        go(d, "keys", "table caption")
        _edit(d, name)
        button(d, "Never expires", by_css(d, EDIT)).click()
        return _save(d)


async def _key(base: str, name: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"{base}/admin/v1/keys/{name}",
                                                    headers={"Authorization": f"Bearer {TOKEN}"}) as r:
        assert r.status in (200, 404), await r.text()
        return await r.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("tag", ["desktop", "phone"])
async def test_a_keys_expiry_is_set_changed_and_cleared_in_local_time(chromium: Browsers, database_url: str,
                                                                     tag: str) -> None:
    async with harness(database_url, admin_token=TOKEN) as h:
        seen = await asyncio.to_thread(_expiry_forms, chromium, h.base, tag)
        changed = await _key(h.base, f"expiring-{tag}")
        refused = [await _key(h.base, f"{k}-{tag}") for k in ("past", "half")]
        cleared = await asyncio.to_thread(_clear, chromium, h.base, f"expiring-{tag}")
        after = await _key(h.base, f"expiring-{tag}")

    assert "your local time (Asia/Tokyo, UTC+09:00)" in seen["hint"] and "never expires" in seen["hint"], seen
    assert seen["past"] == ("The expiry is in the past: pick a later date and time, or clear it for a key that "
                            "never expires."), seen
    assert seen["half"].startswith("The expiry is not a complete date and time: fill in the day"), seen
    assert all(r["error"]["code"] == "key_not_found" for r in refused), refused  # nothing was sent
    assert seen["created"] == "created", seen
    assert seen["echo"] == "= 2031-03-04 01:30:00Z in UTC, as the key list shows it", seen
    assert seen["echo_after"] == "", seen
    assert seen["column"] == ["2031-03-04 01:30:00Z"], seen  # 10:30 in Tokyo
    assert seen["column_title"] == ["your local time: 2031-03-04 10:30 (Asia/Tokyo, UTC+09:00)"], seen
    assert seen["edit_shows"] == "2031-03-04T10:30", seen  # the key's expiry in local time again
    assert seen["edit_past"].startswith("The expiry is in the past"), seen
    assert seen["changed"] == "saved" and changed["expires_at"] == "2031-12-31T15:00:00Z", (seen, changed)
    assert cleared == "saved" and after["expires_at"] is None and after["status"] == "active", after


def _rotate_and_extend(chromium: Browsers, base: str, tag: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    name = f"expired-{tag}"
    with chromium(*SIZES[tag]) as d:
        sign_in(d, base, TOKEN)
        go(d, "keys", "table caption")
        by_css(d, "main label.inline input[type=checkbox]").click()  # "Show revoked and expired keys"
        seen["listed"] = wait(d, lambda d: [e.text for e in all_css(d, "main p.expired-keys")], what="the expired note")
        click(d, f"button[aria-label='Rotate {name}']", "the expired key's Rotate")
        seen["confirm"] = d.switch_to.alert.text
        d.switch_to.alert.accept()
        seen["warning"] = wait(d, lambda d: all_css(d, "code.secret") and by_css(d, ".secret-panel .expired-note").text,
                               what="the rotation's warning")
        _shot(d, f"console-expiry-rotated-{tag}.png")
        button(d, f"Edit {name}", by_css(d, ".secret-panel")).click()
        wait(d, lambda d: all_css(d, EDIT + "input[name=expires_at]"), what="the edit form")
        seen["focus"] = d.switch_to.active_element.get_attribute("name")
        _set(d, EDIT + "input[name=expires_at]", "2033-06-01T12:00")
        seen["saved"] = _save(d)
    return seen


def _viewer_sees(chromium: Browsers, base: str, token: str) -> list[str]:
    with chromium(*DESKTOP) as d:
        sign_in(d, base, token)
        go(d, "keys", "table caption")
        by_css(d, "main label.inline input[type=checkbox]").click()
        return wait(d, lambda d: [e.text for e in all_css(d, "main p.expired-keys")], what="the expired note")  # type: ignore[no-any-return]


async def test_an_expired_keys_rotation_leads_to_its_edit_form(chromium: Browsers, database_url: str) -> None:
    async with harness(database_url, admin_token=TOKEN) as h:
        for tag in SIZES:
            await h.create_key(f"expired-{tag}", expires_at=time.time() - 3600)
        await h.create_key("lapsed", expires_at=time.time() - 60)
        await h.sync()
        async with aiohttp.ClientSession() as s, s.post(
                h.base + "/admin/v1/admin-tokens", headers={"Authorization": f"Bearer {TOKEN}"},
                json={"name": "viewer-ui", "role": "viewer"}) as r:
            viewer = (await r.json())["token"]
        seen = {tag: await asyncio.to_thread(_rotate_and_extend, chromium, h.base, tag) for tag in SIZES}
        keys = {tag: await _key(h.base, f"expired-{tag}") for tag in SIZES}
        viewer_note = await asyncio.to_thread(_viewer_sees, chromium, h.base, viewer)

    for tag in SIZES:
        s = seen[tag]
        assert f"expired-{tag}" in s["listed"][0] and "Edit the key and extend its expiry" in s["listed"][0], s
        assert "The key has expired: the new secret is refused too until you extend its expiry (Edit)." in s["confirm"]
        assert "its new secret is refused (401)" in s["warning"], s
        assert "Edit the key and extend its expiry" in s["warning"] and "PATCH" not in s["warning"], s
        assert s["focus"] == "expires_at", s
        assert s["saved"] == "saved", s
        assert keys[tag]["status"] == "active" and keys[tag]["expires_at"].startswith("2033-06-01"), keys[tag]
    # a viewer cannot edit: told who can, and the command
    assert "lapsed" in viewer_note[0] and "An operator or admin extends it" in viewer_note[0], viewer_note
    assert "shieldes key update NAME --expires-in 30d" in viewer_note[0], viewer_note


def _team_budget(chromium: Browsers, base: str, tag: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with chromium(*SIZES[tag]) as d:
        sign_in(d, base, TOKEN)
        go(d, "keys", "table caption")
        click(d, f"button[aria-label='Edit the budget of team-{tag}']", "the team's Edit budget")
        budget = wait(d, lambda d: all_css(d, EDIT + "input[name=budget]") and by_css(d, EDIT + "input[name=budget]"),
                      what="the team budget form")
        budget.send_keys("10")
        button(d, "Save").click()
        seen["notes"] = wait(d, lambda d: "\n".join(e.text for e in all_css(d, "main .notes-panel")), what="the notes")
        seen["focus"] = d.switch_to.active_element.get_attribute("id")
        _shot(d, f"console-team-budget-{tag}.png")
    return seen


async def test_a_team_budget_edit_names_the_models_without_a_price(chromium: Browsers, database_url: str) -> None:
    async with harness(database_url, admin_token=TOKEN) as h:
        await h.admin(AddProvider("private", "openai", h.upstream.url, f"env:{UPSTREAM_KEY_ENV}", (UNPRICED,)))
        for tag in SIZES:
            await h.admin(CreateTeam(f"team_{tag}", f"team-{tag}", None, "30d"))
            await h.create_key(f"member-{tag}", team=f"team-{tag}")
        await h.sync()
        seen = {tag: await asyncio.to_thread(_team_budget, chromium, h.base, tag) for tag in SIZES}
        async with aiohttp.ClientSession() as s, s.get(h.base + "/admin/v1/teams/team-desktop",
                                                       headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            team = await r.json()

    assert team["budget_usd"] == 10.0 and team["budget_period"] == "30d", team
    for tag in SIZES:
        notes = seen[tag]["notes"]
        assert f"No price for {UNPRICED}: while team team-{tag}'s budget applies" in notes, notes
        assert "403 model_not_priced" in notes and "shieldes pricing set" in notes, notes
        assert "leave it out of those keys' models (Edit on each key)" in notes, notes
        assert seen[tag]["focus"] == "notes-title", seen[tag]
