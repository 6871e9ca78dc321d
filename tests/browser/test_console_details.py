"""Details of the console an operator reads at a glance, in a real headless Chromium against a
node: money below a cent is written out (never `$3e-7`), the leader's badge stands apart from its
node's name, the team form's fields sit on one line, the request log filters by error code, and the
usage table ranks a day's keys as the chart does."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.browser.console_driver import DESKTOP, Browsers, wait
from tests.browser.test_console import TRAFFIC_WAIT, all_css, by_css, go, sign_in
from tests.integration.gateway_harness import harness

pytestmark = pytest.mark.cluster
TOKEN = "console-details-admin-token-0123456789"
AMOUNTS = (3e-7, 1.23e-5, 0.00001, 0.004, 0.5, 20, 1234.5, 0)


def _read(chromium: Browsers, base: str, node_id: str) -> dict[str, Any]:
    with chromium(*DESKTOP) as d:
        sign_in(d, base, TOKEN)
        # the overview re-draws every 2 s: read the cell's text inside the wait, until the node holds
        # the leadership it takes just after it starts (a read before that is a node without a badge)
        node = wait(d, lambda d: [c.text for c in all_css(d, "main tbody th")
                                  if node_id in c.text and "leader" in c.text], what="the node's leader badge")[0]
        usd = d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "import('/ui/core.js').then((m) => done(arguments[0].map(m.fmt.usd)), (e) => done(String(e)));",
            list(AMOUNTS))
        go(d, "keys", "form[aria-label='Create a team']")
        tops = [round(label.rect["y"]) for label in all_css(d, "form[aria-label='Create a team'] label")]
        go(d, "requests", "table caption")
        wait(d, lambda d: len(all_css(d, "main tbody tr")) == 3, what="three requests listed")
        by_css(d, "form[aria-label='Request filters'] input[name=error_code]").send_keys("model_not_allowed")
        by_css(d, "form[aria-label='Request filters'] button[type=submit]").click()
        refused = wait(d, lambda d: (rows := [r.text for r in all_css(d, "main tbody tr")]) and len(rows) == 1
                       and "model_not_allowed" in rows[0] and rows, what="only the refused request")
        go(d, "providers", "table caption")
        served = wait(d, lambda d: (cells := [c.text for c in all_css(d, "main td") if "served" in c.text])
                      and "100.0% · 2 served" in cells and cells, TRAFFIC_WAIT, "the two requests served")
        return {"node": node, "usd": usd, "team_label_tops": tops, "refused": refused,
                "columns": by_css(d, "main thead").text, "served": served}


async def test_money_leader_badge_and_team_form_read_right(chromium: Browsers, database_url: str) -> None:
    async with harness(database_url, admin_token=TOKEN, request_log_interval=0.05) as h:
        narrow = await h.create_key("narrow", models=("gpt-4o-mini",))
        await h.sync()
        await h.chat_logged(narrow, ("gpt-4o-mini", "gpt-4o-mini", "gpt-4o"))
        seen = await asyncio.to_thread(_read, chromium, h.base, h.node.node_id)
    assert seen["usd"] == ["$0.0000003", "$0.000012", "$0.00001", "$0.004", "$0.50", "$20.00", "$1,234.50", "$0.00"]
    assert seen["node"] == f"{h.node.node_id} leader"
    # a select is a pixel or two taller than an input; a hint under one field made it ~20 px
    tops = seen["team_label_tops"]
    assert len(tops) == 3 and max(tops) - min(tops) <= 4, tops
    assert "narrow" in seen["refused"][0] and "403" in seen["refused"][0]
    # what the providers page counts per deployment: requests served (failures are in the error rate)
    assert "SERVED (1 H)" in seen["columns"].upper() and "100.0% · 2 served" in seen["served"]


def _usage_rows(chromium: Browsers, base: str, requests: int) -> list[str]:
    with chromium(*DESKTOP) as d:
        sign_in(d, base, TOKEN)
        go(d, "usage", "svg.chart")
        wait(d, lambda d: by_css(d, "#usage-total").text == str(requests), TRAFFIC_WAIT, "usage of all traffic")
        return [r.text for r in all_css(d, "main table tbody tr")]


async def test_usage_table_ranks_a_days_groups_like_the_chart(chromium: Browsers, database_url: str) -> None:
    async with harness(database_url, admin_token=TOKEN, request_log_interval=0.05) as h:
        keys = {name: await h.create_key(name) for name in ("alpha", "bravo", "charlie")}
        await h.sync()
        for name, n in (("alpha", 1), ("bravo", 3), ("charlie", 2)):
            await h.chat_logged(keys[name], ("gpt-4o-mini",) * n)
        await h.flush()
        listed = await asyncio.to_thread(_usage_rows, chromium, h.base, 6)
    # the biggest first, as the legend and the per-key bars rank them (was by name, Z to A)
    assert [r.split()[1] for r in listed] == ["bravo", "charlie", "alpha"], listed
