"""Details of the console an operator reads at a glance, in a real headless Chromium against a
node: money below a cent is written out (never `$3e-7`), the leader's badge stands apart from its
node's name, and the team form's fields sit on one line."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.browser.console_driver import DESKTOP, chromium, require_chromium, wait
from tests.browser.test_console import all_css, by_css, go, sign_in
from tests.integration.gateway_harness import harness

pytestmark = pytest.mark.cluster
TOKEN = "console-details-admin-token-0123456789"
AMOUNTS = (3e-7, 1.23e-5, 0.00001, 0.004, 0.5, 20, 1234.5, 0)


def _read(base: str, node_id: str) -> dict[str, Any]:
    with chromium(*DESKTOP) as d:
        sign_in(d, base, TOKEN)
        # the overview re-draws every 2 s: read the cell's text inside the wait
        node = wait(d, lambda d: [c.text for c in all_css(d, "main tbody th") if node_id in c.text], what="node row")[0]
        usd = d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "import('/ui/core.js').then((m) => done(arguments[0].map(m.fmt.usd)), (e) => done(String(e)));",
            list(AMOUNTS))
        go(d, "keys", "form[aria-label='Create a team']")
        tops = [round(label.rect["y"]) for label in all_css(d, "form[aria-label='Create a team'] label")]
        return {"node": node, "usd": usd, "team_label_tops": tops,
                "team_form": by_css(d, "form[aria-label='Create a team']").text}


async def test_money_leader_badge_and_team_form_read_right(database_url: str) -> None:
    require_chromium()
    async with harness(database_url, admin_token=TOKEN) as h:
        seen = await asyncio.to_thread(_read, h.base, h.node.node_id)
    assert seen["usd"] == ["$0.0000003", "$0.000012", "$0.00001", "$0.004", "$0.50", "$20.00", "$1,234.50", "$0.00"]
    assert seen["node"] == f"{h.node.node_id} leader"
    # a select is a pixel or two taller than an input; a hint under one field made it ~20 px
    tops = seen["team_label_tops"]
    assert len(tops) == 3 and max(tops) - min(tops) <= 4, tops
