"""What a save on the Keys page says besides "saved", in a real headless Chromium against a node: a
budget put on a key that may use a model without a price names the model, why its requests will
be refused and what to do (the admin API's `unpriced_models`), and so does the secret panel of a
key created with a budget; rotating an expired key says its new secret is refused until the expiry moves, and to
extend it in the key's Edit form. Screenshots go to $SHIELDES_SCREENSHOTS_TO when it is set."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from shieldes.projections.shared_commands import AddProvider
from tests.browser.console_driver import DESKTOP, PHONE, Browsers, screenshot, wait
from tests.browser.test_console import all_css, button, by_css, click, go, sign_in
from tests.integration.gateway_harness import UPSTREAM_KEY_ENV, harness

pytestmark = pytest.mark.cluster
TOKEN = "console-notes-admin-token-0123456789abc"
UNPRICED = "acme-private-llm"  # served, and in no price table
FORM = "form[aria-labelledby=edit-title] "


def _shot(d: Any, name: str) -> None:
    if os.environ.get("SHIELDES_SCREENSHOTS_TO"):  # for a person to look at, as test_console's
        screenshot(d, Path(os.environ["SHIELDES_SCREENSHOTS_TO"]) / name)


def _notes(d: Any) -> str:
    return "\n".join(e.text for e in all_css(d, "main .notes-panel") if e.is_displayed())


def _budget_then_rotate(chromium: Browsers, base: str, size: tuple[int, int], tag: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with chromium(*size) as d:
        sign_in(d, base, TOKEN)
        go(d, "keys", "table caption")
        if tag == "desktop":  # a key created with a budget: its secret's panel says it too
            create = "form[aria-labelledby=create-title] "
            by_css(d, create + "input[name=name]").send_keys("created-with-budget")
            by_css(d, create + "input[name=budget]").send_keys("3")
            by_css(d, create + "button[type=submit]").click()
            seen["created"] = wait(d, lambda d: all_css(d, "code.secret") and _notes(d), what="the new key's notes")
            button(d, "I have stored it").click()
        # a budget on a key allowed every model: the unpriced one would be refused under it
        click(d, f"button[aria-label='Edit app-{tag}']", "the key's Edit")
        budget = wait(d, lambda d: all_css(d, FORM + "input[name=budget]") and by_css(d, FORM + "input[name=budget]"),
                      what="the edit form")
        budget.send_keys("5")
        button(d, "Save").click()
        seen["budget"] = wait(d, _notes, what="the notes of the budget's save")
        seen["focus"] = d.switch_to.active_element.get_attribute("id")
        _shot(d, f"console-notes-budget-{tag}.png")
        button(d, "Dismiss").click()
        wait(d, lambda d: not _notes(d), what="the notes dismissed")

        # rotating an expired key (listed with "Show revoked and expired keys")
        by_css(d, "main label.inline input[type=checkbox]").click()
        click(d, f"button[aria-label='Rotate expired-{tag}']", "the expired key's Rotate")
        d.switch_to.alert.accept()
        seen["rotated"] = wait(d, lambda d: all_css(d, "code.secret") and _notes(d), what="the rotation's notes")
        seen["secret"] = by_css(d, "code.secret").text
        _shot(d, f"console-notes-rotated-{tag}.png")
    return seen


async def test_keys_page_says_what_a_budget_and_a_rotation_warn_of(chromium: Browsers, database_url: str) -> None:
    async with harness(database_url, admin_token=TOKEN) as h:
        await h.admin(AddProvider("private", "openai", h.upstream.url, f"env:{UPSTREAM_KEY_ENV}", (UNPRICED,)))
        for tag in ("desktop", "phone"):
            await h.create_key(f"app-{tag}")
            await h.create_key(f"expired-{tag}", expires_at=time.time() - 3600)
        await h.sync()
        desktop = await asyncio.to_thread(_budget_then_rotate, chromium, h.base, DESKTOP, "desktop")
        phone = await asyncio.to_thread(_budget_then_rotate, chromium, h.base, PHONE, "phone")

    assert UNPRICED in desktop["created"] and "403 model_not_priced" in desktop["created"], desktop["created"]
    for seen in (desktop, phone):
        budget = seen["budget"]
        assert UNPRICED in budget and "403 model_not_priced" in budget, budget
        assert "shieldes pricing set" in budget and "leave it out of the key's models" in budget, budget
        assert "gpt-4o" not in budget  # priced models are not named
        assert seen["focus"] == "notes-title"  # the reader is taken to what the save said
        rotated = seen["rotated"]
        assert "expired at" in rotated and "refused (401)" in rotated, rotated
        assert "Edit the key and extend its expiry" in rotated, rotated  # (the console's form, not the API)
        assert seen["secret"].startswith("sk-shd-")


def _unserved(chromium: Browsers, base: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with chromium(*PHONE) as d:
        sign_in(d, base, TOKEN)
        go(d, "keys", "table caption")
        button(d, "New key").click()
        create = "form[aria-labelledby=create-title] "
        wait(d, lambda d: by_css(d, create + "input[name=name]").is_displayed(), what="the create form")
        by_css(d, create + "input[name=name]").send_keys("early")
        by_css(d, create + "input[name=models]").send_keys("nobody-serves-this")
        by_css(d, create + "button[type=submit]").click()
        seen["notes"] = wait(d, lambda d: all_css(d, "code.secret") and _notes(d), what="the new key's notes")
        _shot(d, "console-notes-unserved-phone.png")
    return seen


async def test_a_model_no_provider_serves_says_where_providers_are_added(chromium: Browsers,
                                                                        database_url: str) -> None:
    async with harness(database_url, admin_token=TOKEN) as h:
        seen = await asyncio.to_thread(_unserved, chromium, h.base)

    notes = seen["notes"]
    assert "No provider serves model 'nobody-serves-this' yet" in notes, notes
    # the console does not add providers: the note names the command and why it is not here
    assert "An admin adds providers with shieldes provider add" in notes, notes
    assert "the console's Providers page shows them but does not change them" in notes, notes
