"""What an operator reads in the console, in a real headless Chromium against a node: a latency
nothing measured (a deployment with no request, or none that succeeded) reads as a dash, never
"0.0 ms", and a measured one under 0.1 ms keeps its digits; on a phone (390x844) the request list
shows each request's time and status without scrolling sideways, every page of the navigation
is on screen, and the Keys page shows its key list first (the create form folds behind "New key").
Counts read as words do ("1 team", not "1 teams")."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shieldes.projections.commands import CreateTeam
from shieldes.projections.shared_commands import AddProvider
from tests.browser.console_driver import DESKTOP, PHONE, Browsers, wait
from tests.browser.test_console import TRAFFIC_WAIT, all_css, by_css, go, sign_in
from tests.integration.gateway_harness import UPSTREAM_KEY_ENV, harness

pytestmark = pytest.mark.cluster
TOKEN = "console-operator-admin-token-0123456789"
DASH = "\N{EN DASH}"  # what the console shows for a figure nothing measured

# a table's body rows as {column label: cell text}, found by its caption
ROWS_JS = """
const t = [...document.querySelectorAll("main table")].find((t) => t.caption && t.caption.textContent === arguments[0]);
if (!t) return null;
const heads = [...t.tHead.rows[0].cells].map((c) => c.textContent.trim());
return [...t.tBodies[0].rows].map((r) =>
  Object.fromEntries([...r.cells].map((c, i) => [heads[i], c.textContent.trim()])));
"""
# every element matching the selector: whether it lies inside the window, left to right
ON_SCREEN_JS = """
return [...document.querySelectorAll(arguments[0])].map((e) => {
  const r = e.getBoundingClientRect();
  return r.width > 0 && r.left >= 0 && r.right <= window.innerWidth + 0.5;
});
"""
# the Keys page: the top of the key list and of the create form (null when folded away), and
# whether the "New key" button that unfolds the form is shown
KEYS_JS = """
const top = (e) => e && e.offsetParent !== null ? e.getBoundingClientRect().top : null;
const list = [...document.querySelectorAll("main table")].find((t) => t.caption.textContent === "Virtual keys");
const newKey = document.querySelector("main button.new-key");
return {list: top(list), form: top(document.querySelector("main form#create-key")),
        new_key: !!newKey && newKey.offsetParent !== null, height: window.innerHeight};
"""
SAMPLES = (None, 0, 0.004, 0.028, 0.3, 12.345)


def rows(d: Any, caption: str) -> list[dict[str, str]] | None:
    return d.execute_script(ROWS_JS, caption)  # type: ignore[no-any-return]


def by_name(d: Any, caption: str, column: str) -> dict[str, str]:
    return {r[column]: r for r in rows(d, caption) or []}  # type: ignore[misc]


def _desktop(chromium: Browsers, base: str) -> dict[str, Any]:
    with chromium(*DESKTOP) as d:
        sign_in(d, base, TOKEN)
        # the overview's routing table comes from the nodes' heartbeats: wait for the failed attempt
        routing = wait(d, lambda d: (r := by_name(d, "Routing (last 60 s)", "Deployment"))
                       and r.get("broken", {}).get("Errors", DASH) not in (DASH, "0.0%") and r,
                       TRAFFIC_WAIT, "the failed attempt")
        formatted = d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "import('/ui/core.js').then((m) => done([arguments[0].map(m.fmt.latency), arguments[0].map(m.fmt.ms)]))"
            ".catch((e) => done(String(e)));", list(SAMPLES))
        keys = _keys_layout(d)
        go(d, "providers", "table caption")
        providers = wait(d, lambda d: (r := by_name(d, "Deployments", "Deployment")) and "broken" in r and r,
                         what="the deployments")
        go(d, "requests", "table caption")
        listed = wait(d, lambda d: (r := rows(d, "Requests, newest first")) and len(r) == 3 and r,
                      what="three requests listed")
        by_css(d, "button[aria-label^='Open request']").click()
        wait(d, lambda d: all_css(d, "#req-id"), what="request detail")
        detail = by_css(d, "section[aria-labelledby=req-title]").text
        go(d, "audit", "#asof-point")
        counts = wait(d, lambda d: [p.text for p in all_css(d, "main p") if "at this point" in p.text],
                      what="the config's counts")[0]
        return {"routing": routing, "formatted": formatted, "providers": providers, "listed": listed,
                "detail": detail, "counts": counts, "keys": keys}


def _phone(chromium: Browsers, base: str) -> dict[str, Any]:
    with chromium(*PHONE) as d:
        sign_in(d, base, TOKEN)
        nav = d.execute_script(ON_SCREEN_JS, "#nav a")
        keys = _keys_layout(d)
        by_css(d, "button.new-key").click()  # the folded create form opens, its first field focused
        wait(d, lambda d: by_css(d, "form#create-key").is_displayed(), what="the create form unfolded")
        keys["focus"] = d.switch_to.active_element.get_attribute("name")
        keys["expanded"] = by_css(d, "button.new-key").get_attribute("aria-expanded")
        go(d, "requests", "table caption")
        wait(d, lambda d: len(all_css(d, "main tbody tr")) == 3, what="three requests listed")
        region = by_css(d, "main .scroll")
        seen = {
            "nav": nav,
            "keys": keys,
            "when": d.execute_script(ON_SCREEN_JS, "main tbody tr > th button"),
            "status": d.execute_script(ON_SCREEN_JS, "main tbody tr .badge"),
            "codes": d.execute_script(ON_SCREEN_JS, "main tbody tr td .sub"),
            "sideways": d.execute_script("return arguments[0].scrollWidth - arguments[0].clientWidth", region),
            "text": by_css(d, "main table").text,
        }
        # the audit list too: each change, who made it and its time-travel buttons
        go(d, "audit", "#asof-point")
        region = by_css(d, "main .scroll")
        seen["audit_sideways"] = d.execute_script("return arguments[0].scrollWidth - arguments[0].clientWidth",
                                                  region)
        seen["audit_buttons"] = d.execute_script(ON_SCREEN_JS, "main .scroll tbody button")
        seen["audit_text"] = region.text
        return seen


def _keys_layout(d: Any) -> dict[str, Any]:
    """Where the Keys page puts its key list and its create form, and what is shown."""
    go(d, "keys", "table caption")
    return d.execute_script(KEYS_JS)  # type: ignore[no-any-return]


async def test_unmeasured_latency_reads_as_a_dash_and_the_request_list_fits_a_phone(chromium: Browsers,
                                                                                    database_url: str) -> None:
    async with harness(database_url, admin_token=TOKEN, request_log_interval=0.05) as h:
        # a deployment whose only attempt failed (nothing listens on port 1): requests, no latency
        await h.admin(AddProvider("broken", "openai", "http://127.0.0.1:1/v1", f"env:{UPSTREAM_KEY_ENV}",
                                  ("only-broken",)))
        await h.admin(CreateTeam("team_one", "one", None, "30d"))
        key = await h.create_key("a-rather-long-key-name")
        await h.sync()
        await h.chat_logged(key, ("gpt-4o-mini", "only-broken", "gpt-4o"))
        desktop = await asyncio.to_thread(_desktop, chromium, h.base)
        phone = await asyncio.to_thread(_phone, chromium, h.base)

    routing = desktop["routing"]
    assert routing["claude"]["Latency"] == DASH and routing["claude"]["Errors"] == DASH  # no request at all
    assert routing["broken"]["Latency"] == DASH  # requests, none that succeeded
    assert routing["openai"]["Latency"].endswith(" ms") and routing["openai"]["Latency"] != "0.0 ms"
    providers = desktop["providers"]
    assert providers["claude"]["Latency"] == DASH and providers["broken"]["Latency"] == DASH
    assert providers["openai"]["Latency"].endswith(" ms")
    assert all(r["Latency"].endswith(" ms") and r["Latency"] != "0.0 ms" for r in desktop["listed"])
    assert "Latency\n" in desktop["detail"] and " ms" in desktop["detail"]
    assert desktop["counts"].startswith("1 team, 0 prices, 0 admin tokens"), desktop["counts"]
    assert desktop["formatted"] == [[DASH, DASH, "<0.01 ms", "0.03 ms", "0.3 ms", "12.3 ms"],
                                    [DASH, "0.0 ms", "<0.01 ms", "0.03 ms", "0.3 ms", "12.3 ms"]]

    # Keys: a desktop shows the create form above the list; a phone the list at the top of the
    # screen, the form folded behind "New key"
    keys = desktop["keys"]
    assert keys["form"] is not None and keys["form"] < keys["list"] and not keys["new_key"], keys
    keys = phone["keys"]
    assert keys["form"] is None and keys["new_key"] and keys["list"] < keys["height"] / 2, keys
    assert keys["focus"] == "name" and keys["expanded"] == "true", keys
    assert phone["nav"] and all(phone["nav"]), phone["nav"]
    assert phone["when"] and all(phone["when"]) and all(phone["status"]) and all(phone["codes"]), phone
    assert phone["sideways"] <= 0, phone
    assert "a-rather-long-key-name" in phone["text"]  # the key shows under the model
    assert phone["audit_sideways"] <= 0 and phone["audit_buttons"] and all(phone["audit_buttons"]), phone
    assert "by test" in phone["audit_text"]  # the actor shows under the change
