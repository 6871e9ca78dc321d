"""How the console lays out what an operator reads, in a real headless Chromium against a node: the
audit page's diff names each changed entity readably (a name wraps between its parts, never inside
a word) at 1280 px and on a phone (390 px), and the overview's cards fill each of their rows to
the right edge at 1280 and 1440 px and on a phone (no card left alone on a row of empty columns).
Screenshots go to $SHIELDES_SCREENSHOTS_TO when it is set."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from shieldes.projections.commands import CreateTeam, SetBudget, UpdateKey
from shieldes.projections.shared_commands import AddProvider
from tests.browser.console_driver import DESKTOP, PHONE, Browsers, screenshot, wait
from tests.browser.test_console import all_css, by_css, cut_tables, go, sign_in
from tests.integration.gateway_harness import UPSTREAM_KEY_ENV, harness

pytestmark = pytest.mark.cluster
TOKEN = "console-layout-admin-token-0123456789ab"
WIDE = (1440, 900)
# names as operators write them: words joined by hyphens, underscores and dots, and one run of
# 40 characters without any
KEY = "customer-support-assistant-production-eu-west"
TEAM = "customer_success_platform_emea"
PROVIDER = "azure.openai.eastus2.production"
RUN = "abcdefghijklmnopqrstuvwxyz0123456789abcd"

# Each line break inside an element's own text (its .sub lines left out): the characters either
# side of it. A break the layout made between two letters of a word shows as e.g. ["a", "l"].
BREAKS_JS = """
const out = [];
for (const el of document.querySelectorAll(arguments[0])) {
  const walk = document.createTreeWalker(el, NodeFilter.SHOW_TEXT,
    { acceptNode: (n) => (n.parentElement.closest(".sub") ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT) });
  let prev = null, top = null;  // the character before (a space at a line's end has no box) and the line's top
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    for (let i = 0; i < n.data.length; i++) {
      const r = document.createRange();
      r.setStart(n, i);
      r.setEnd(n, i + 1);
      const rect = r.getClientRects()[0];
      if (rect && rect.width > 0) {
        if (top !== null && rect.top > top + 2) out.push([el.textContent, prev, n.data[i]]);
        top = rect.top;
      }
      prev = n.data[i];
    }
  }
}
return out;
"""
# The overview's cards by row: how many, and the gap between the row and the cards' box on each side
CARD_ROWS_JS = """
const box = document.querySelector("main .cards").getBoundingClientRect();
const rows = new Map();
for (const c of document.querySelectorAll("main .cards > .card")) {
  const r = c.getBoundingClientRect();
  const key = Math.round(r.top);
  const row = rows.get(key) || { cards: 0, left: Infinity, right: -Infinity };
  row.cards += 1;
  row.left = Math.min(row.left, r.left);
  row.right = Math.max(row.right, r.right);
  rows.set(key, row);
}
return [...rows.values()].map((r) => ({ cards: r.cards, left: Math.round(r.left - box.left),
                                         right: Math.round(box.right - r.right) }));
"""
# a card whose content is wider than the card (a value or title cut at its edge)
CARD_OVERFLOW_JS = """
return [...document.querySelectorAll("main .cards > .card")].filter((c) => c.scrollWidth > c.clientWidth + 1)
  .map((c) => c.getAttribute("aria-label"));
"""
BREAK_AFTER = set(" -_./:@")  # a name wraps after a space or one of its separators


def _shot(d: Any, name: str) -> None:
    if os.environ.get("SHIELDES_SCREENSHOTS_TO"):  # for a person to look at, as test_console's
        screenshot(d, Path(os.environ["SHIELDES_SCREENSHOTS_TO"]) / name)


def _mid_word(breaks: list[list[str]]) -> list[list[str]]:
    """The breaks neither after a separator nor before a space, nor in a run of 12 characters
    without any (which must break somewhere)."""
    def allowed(text: str, before: str, after: str) -> bool:
        return before in BREAK_AFTER or after == " " or RUN in text
    return [b for b in breaks if not allowed(*b)]


def _overview(d: Any, tag: str) -> dict[str, Any]:
    go(d, "overview", "table caption")
    wait(d, lambda d: "…" not in by_css(d, "main .cards").text, what="request rates")
    _shot(d, f"console-layout-overview-{tag}.png")
    return {"rows": d.execute_script(CARD_ROWS_JS), "overflow": d.execute_script(CARD_OVERFLOW_JS)}


def _diff(d: Any, tag: str) -> dict[str, Any]:
    go(d, "audit", "#asof-point")
    first = wait(d, lambda d: all_css(d, "button[aria-label^='Diff from change']"), what="the changes")[-1]
    first.click()  # the oldest change: every entity since shows in the diff
    wait(d, lambda d: KEY in by_css(d, "section[aria-labelledby=diff-title]").text, what="the diff")
    _shot(d, f"console-layout-audit-{tag}.png")
    cells = "section[aria-labelledby=diff-title] tbody th, section[aria-labelledby=asof-title] tbody th"
    return {"breaks": d.execute_script(BREAKS_JS, cells), "cut": cut_tables(d),
            "sideways": d.execute_script("return document.documentElement.scrollWidth - window.innerWidth"),
            "text": by_css(d, "section[aria-labelledby=diff-title]").text}


def _look(chromium: Browsers, base: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for tag, size in (("desktop", DESKTOP), ("wide", WIDE), ("phone", PHONE)):
        with chromium(*size) as d:
            sign_in(d, base, TOKEN)
            seen[f"overview-{tag}"] = _overview(d, tag)
            if tag != "wide":
                seen[f"diff-{tag}"] = _diff(d, tag)
    return seen


async def test_audit_names_wrap_between_words_and_overview_cards_fill_their_rows(chromium: Browsers,
                                                                                 database_url: str) -> None:
    async with harness(database_url, admin_token=TOKEN) as h:
        await h.admin(CreateTeam("team_emea", TEAM, 100.0, "30d"))
        await h.admin(AddProvider(PROVIDER, "openai", h.upstream.url, f"env:{UPSTREAM_KEY_ENV}", ("gpt-4o",)))
        await h.create_key(KEY, rpm=60, team=TEAM)
        await h.create_key(RUN)
        await h.admin(SetBudget("key", KEY, 25.0, "30d"))
        await h.admin(UpdateKey(KEY, models=("gpt-4o", "gpt-4o-mini")))
        await h.sync()
        seen = await asyncio.to_thread(_look, chromium, h.base)

    for tag in ("desktop", "phone"):
        diff = seen[f"diff-{tag}"]
        assert KEY in diff["text"] and TEAM in diff["text"] and PROVIDER in diff["text"], diff["text"]
        assert diff["breaks"], f"{tag}: no name wraps at all (the test would prove nothing)"
        assert not _mid_word(diff["breaks"]), f"{tag}: names broken inside a word: {_mid_word(diff['breaks'])}"
        assert diff["sideways"] <= 0, f"{tag}: the page scrolls sideways ({diff['sideways']} px)"
    assert not seen["diff-desktop"]["cut"], seen["diff-desktop"]["cut"]
    for tag in ("desktop", "wide", "phone"):
        overview = seen[f"overview-{tag}"]
        assert sum(r["cards"] for r in overview["rows"]) == 7, overview
        # every row of cards reaches both edges: none left alone beside empty columns
        assert all(r["left"] <= 1 and r["right"] <= 1 for r in overview["rows"]), (tag, overview["rows"])
        assert not overview["overflow"], (tag, overview["overflow"])
