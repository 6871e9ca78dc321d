"""The web console in a real headless Chromium against two real node processes: sign in with a
token, create a key and read its secret once, see usage charts move after traffic, open one of its
requests in the request log, revoke the key and see the gateway refuse it, step the audit view back
in time. Screenshots of every page at 1280 px and at phone width go to the test's output directory
(and to $SHIELDES_SCREENSHOTS_TO)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from shieldes.projections.commands import CreateTeam
from shieldes.projections.shared_commands import AddMcpServer, AddProvider, SetPricing
from tests import pg
from tests.browser.console_driver import DESKTOP, PHONE, Browsers, screenshot, wait
from tests.cluster.harness import UPSTREAM_KEY_ENV, Cluster, get_json
from tests.cluster.test_admin_api_cluster import api as admin_api
from tests.cluster.test_three_nodes import chat

pytestmark = pytest.mark.cluster
BOOT = "browser-admin-bootstrap-token-0123456789"
# Traffic reaches another node's page through a usage flush, the log and a 5 s page refresh: on a
# busy machine that chain can take longer than an interaction, so these waits are generous.
TRAFFIC_WAIT = 45.0
PAGES = ("overview", "keys", "usage", "requests", "audit", "providers", "sessions")


@pytest.fixture
def cluster(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    url = pg.fresh_database(pg_server)
    c = Cluster(url, tmp_path_factory.mktemp("console"), env_overrides={"SHIELDES_ADMIN_TOKEN": BOOT})
    try:
        c.start_upstream()
        c.admin(AddProvider("openai", "openai", c.upstream_url, f"env:{UPSTREAM_KEY_ENV}", ("gpt-4o-mini", "gpt-4o")),
                AddProvider("backup", "openai", c.upstream_url, f"env:{UPSTREAM_KEY_ENV}", ("gpt-4o-mini",), 0.5),
                # dear prices, so cost and budget bars are visible in the screenshots
                SetPricing("gpt-4o-mini", 150.0, 600.0),
                SetPricing("gpt-4o", 400.0, 1600.0, multipliers=(("flex", 0.5), ("priority", 2.0)),
                           per_use=(("container", 0.03), ("file_search", 0.0025))),
                SetPricing("dall-e-3", 0.0, 0.0, per_image=0.08),
                SetPricing("gpt-realtime", 4.0, 16.0, 0.4, modalities=(
                    ("audio_cache_read", 0.4), ("audio_input", 32.0), ("audio_output", 64.0))),
                AddMcpServer("github", "https://mcp.example.com/mcp", {"Authorization": "env:GITHUB_MCP_TOKEN"}),
                CreateTeam("team_search", "search", 20.0, "30d"))
        for name in ("node-a", "node-b"):
            c.start(c.add_node(name))
        for node in c.nodes:
            c.wait_ready(node)
        yield c
    finally:
        c.stop_all()
        pg.drop_database(pg_server, url)


def _tagged_chat(base: str, key: str, *tags: str) -> int:
    """HTTP status of one chat completion whose body carries `tags` (never forwarded; recorded)."""
    client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=10)
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                                   extra_body={"tags": list(tags)})
    return 200


def by_css(driver: Any, css: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css)


def all_css(driver: Any, css: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, css))


def button(driver: Any, text: str, within: Any = None) -> Any:
    from selenium.webdriver.common.by import By

    root = within or driver
    return root.find_element(By.XPATH, f".//button[normalize-space()='{text}'] | .//a[normalize-space()='{text}']")


# The console names the page shown on <main> and marks it aria-busy until the page's data is in. A
# wait on `ready_css` alone could be met by the previous page before the click's navigation runs.
LOADED = "main[data-page]:not([aria-busy]) "


def sign_in(driver: Any, base: str, token: str, landing: str = "Overview") -> None:
    driver.get(base + "/ui/")
    field = wait(driver, lambda d: all_css(d, "input#token") and by_css(d, "input#token"), what="sign-in form")
    field.send_keys(token)
    by_css(driver, "form.signin button[type=submit]").click()
    wait(driver, lambda d: all_css(d, LOADED + "h1") and landing in by_css(d, LOADED + "h1").text,
         what=f"{landing} after sign-in")


def click(driver: Any, css: str, what: str, *, holding: str = "", index: int = 0) -> None:
    """Click the `index`th element matching `css` (whose text holds `holding`) inside a wait, found
    anew on each try: a live page re-drawn between finding and clicking (the request list refreshes
    every 5 s) makes an element found before stale."""
    def attempt(d: Any) -> bool:
        found = [e for e in all_css(d, css) if holding in e.text]
        if len(found) <= index:
            return False
        found[index].click()
        return True

    wait(driver, attempt, what=what)


def go(driver: Any, page: str, ready_css: str) -> None:
    by_css(driver, f"#nav a[data-page={page}]").click()
    wait(driver, lambda d: all_css(d, f"main[data-page={page}]:not([aria-busy]) {ready_css}"), what=f"{page} page")


def more_traffic(c: Cluster) -> tuple[int, str]:
    """A few more keys with traffic on both nodes, so every page has something to show; returns
    the number of requests sent and a key to send more with."""
    keys = [c.create_key("search-prod", team="search", rpm=600, budget_usd=0.5, budget_period="1d")[0],
            c.create_key("batch-jobs", models=("gpt-4o-mini",), budget_usd=2.0)[0],
            c.create_key("support-bot", tpm=100_000)[0]]
    c.wait_position(c.cli("key", "list"))
    # A budgeted request without max_tokens holds all the budget left until it settles, and a peer
    # learns of the release by gossip: each budgeted key sends through one node, so none is refused.
    plan = [(keys[0], "gpt-4o", 6, (0,)), (keys[1], "gpt-4o-mini", 4, (1,)), (keys[2], "gpt-4o-mini", 2, (0, 1)),
            (keys[2], "gpt-4o", 1, (0, 1))]
    sent = 0
    for secret, model, n, nodes in plan:
        for i in range(n):
            assert chat(c.nodes[nodes[i % len(nodes)]].base, secret, model) == 200
            sent += 1
    return sent, keys[2]


def watch_overview_refresh(driver: Any, cluster: Cluster, key: str) -> None:
    """Traffic while the overview watches moves requests/s; a refresh patches what changed in place,
    so elements read before it, and the focus, survive it."""
    from selenium.common.exceptions import StaleElementReferenceException

    stamp, rate = by_css(driver, "#refreshed"), by_css(driver, "section[aria-label=Requests] .big")
    first = stamp.text
    driver.execute_script("document.querySelector('main .scroll').focus()")

    def live_rate(d: Any) -> bool:
        chat(cluster.nodes[0].base, key)
        try:
            return stamp.text != first and rate.text != "0.0/s"
        except StaleElementReferenceException:
            raise AssertionError("a live refresh replaced the overview instead of patching it") from None

    wait(driver, live_rate, TRAFFIC_WAIT, "requests per second after traffic")
    assert driver.switch_to.active_element.get_attribute("aria-label") == "Nodes", "a refresh took the focus"


def cut_tables(driver: Any) -> list[str]:
    """The page's tables wider than their place (each scrolls sideways, a column cut at the edge)."""
    return driver.execute_script(  # type: ignore[no-any-return]
        "return [...document.querySelectorAll('main .scroll')].filter((e) => e.scrollWidth > e.clientWidth + 1)"
        ".map((e) => `${e.getAttribute('aria-label')}: ${e.scrollWidth} px in ${e.clientWidth} px`)")


def shoot_all(driver: Any, out: Path, tag: str, requests: int, cluster: Cluster, key: str) -> list[Path]:
    shots = []
    cuts: dict[str, list[str]] = {}  # by page, its tables wider than the window (all pages told at once)
    ready = {"overview": "table caption", "keys": "table caption", "usage": "svg.chart", "requests": "table caption",
             "audit": "#asof-point", "providers": "table caption", "sessions": "table caption"}
    for page in PAGES:
        go(driver, page, ready[page])
        if page == "overview":  # two polls: rates need two samples
            wait(driver, lambda d: "…" not in by_css(d, "main").text, what="request rates")
            watch_overview_refresh(driver, cluster, key)
        if page == "usage":
            wait(driver, lambda d: int(by_css(d, "#usage-total").text) >= requests, TRAFFIC_WAIT,
                 "usage of all traffic")
        if page == "requests":  # with one request open
            click(driver, "button[aria-label^='Open request']", "a request opened")
            wait(driver, lambda d: all_css(d, "#req-id"), what="request detail")
        if page == "providers":  # the MCP servers agents reach, header sources never values; per-image prices
            wait(driver, lambda d: "MCP servers" in by_css(d, "main").text, what="the MCP servers")
            text = by_css(driver, "main").text
            assert "/mcp/github" in text and "Authorization: env:GITHUB_MCP_TOKEN" in text, text
            assert "per image" in text.lower() and "dall-e-3" in text, text
            assert "flex \u00d70.5, priority \u00d72" in text and "container $0.03" in text, text  # tiers, hosted tools
            # cache and audio prices (`pricing set --modality`)
            assert all(f"audio {kind}" in text for kind in ("cache read $0.40", "input $32.00", "output $64.00")), text
        if page == "audit":  # show a diff too: from the middle of the history to now
            buttons = all_css(driver, "button[aria-label^='Diff from change']")
            buttons[len(buttons) // 2].click()
            wait(driver, lambda d: "Changes from" in by_css(d, "#diff-title").text, what="diff shown")
        shots.append(screenshot(driver, out / f"console-{page}-{tag}.png"))
        # at 1280 px every page's tables fit: a cut column (a key's Revoke, the cost, an audit diff's
        # fields) does not show it scrolls
        if tag == "desktop":
            cut = cut_tables(driver)
            if cut:
                cuts[page] = cut
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= driver.get_window_size()["width"] + 1, f"{page} scrolls sideways ({width} px; only tables may)"
    assert not cuts, f"tables wider than the window at 1280 px: {cuts}"
    return shots


# The whole flow, two browsers and two nodes in one test: 115-180 s at a load average of 10-11 on
# two cores, past the suite's default 120 s, while every step's own wait still holds.
@pytest.mark.timeout(300)
def test_console_flows_in_chromium(chromium: Browsers, cluster: Cluster, tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import Select

    a, b = cluster.nodes
    out = tmp_path / "screenshots"
    out.mkdir()
    shots: list[Path] = []
    with chromium(*DESKTOP) as driver:
        # a wrong token is refused with the API's message; the right one signs in
        driver.get(a.base + "/ui/")
        wait(driver, lambda d: all_css(d, "input#token"), what="sign-in form")
        shots.append(screenshot(driver, out / "console-signin-desktop.png"))
        by_css(driver, "input#token").send_keys("not-a-token")
        by_css(driver, "form.signin button[type=submit]").click()
        wait(driver, lambda d: "admin token" in by_css(d, "form.signin .error").text, what="refusal message")
        sign_in(driver, a.base, BOOT)
        assert "bootstrap" in by_css(driver, "#who-name").text and "admin" in by_css(driver, "#who-name").text

        # create a key: the secret is shown once
        go(driver, "keys", "form[aria-labelledby=create-title]")
        by_css(driver, "input[name=name]").send_keys("browser-app")
        by_css(driver, "form[aria-labelledby=create-title] input[name=budget]").send_keys("25")
        team = "form[aria-labelledby=create-title] select[name=team]"
        wait(driver, lambda d: any(o.text == "search" for o in all_css(d, team + " option")),
             what="the team field's first page")  # (read from the node after the form is drawn)
        Select(by_css(driver, team)).select_by_visible_text("search")
        by_css(driver, "form[aria-labelledby=create-title] button[type=submit]").click()
        secret = wait(driver, lambda d: all_css(d, "code.secret") and by_css(d, "code.secret").text,
                      what="the new key's secret").strip()
        assert secret.startswith("sk-shd-")
        shots.append(screenshot(driver, out / "console-key-created-desktop.png"))
        button(driver, "I have stored it").click()
        wait(driver, lambda d: not all_css(d, "code.secret"), what="secret panel closed")
        driver.refresh()
        wait(driver, lambda d: all_css(d, "table caption"), what="keys table after reload")
        assert secret not in driver.page_source
        row = wait(driver, lambda d: [r for r in all_css(d, "tbody tr") if "browser-app" in r.text], what="key row")[0]
        assert "active" in row.text and "search" in row.text and "$0.00 / $25.00" in row.text

        # traffic on the other node: the usage chart and total move
        go(driver, "usage", "svg.chart")
        wait(driver, lambda d: by_css(d, "#usage-total").text == "0", what="no usage yet")
        for n in range(3):  # the second with cost-attribution tags, as LiteLLM apps send them
            assert (chat(b.base, secret) if n != 1 else _tagged_chat(b.base, secret, "team-a", "checkout")) == 200
        wait(driver, lambda d: by_css(d, "#usage-total").text == "3", TRAFFIC_WAIT, "usage total after traffic")
        wait(driver, lambda d: any("browser-app" in (r.get_attribute("textContent") or "")
                                   for r in all_css(d, "svg.chart rect")), what="the key's bar in the chart")

        # the request log: the key's requests (served by node b) listed on node a; open one
        wait(driver, lambda d: len(admin_api(a.base, "GET", "/requests?key=browser-app", BOOT)[1]["data"]) == 3,
             TRAFFIC_WAIT, "the key's requests written to the request log")
        go(driver, "requests", "table caption")
        by_css(driver, "form[aria-label='Request filters'] input[name=key]").send_keys("browser-app")
        by_css(driver, "form[aria-label='Request filters'] button[type=submit]").click()
        wait(driver, lambda d: len(all_css(d, "button[aria-label^='Open request']")) == 3, what="the key's requests")
        # the list is re-drawn when the filtered page arrives: read and click inside waits
        wait(driver, lambda d: all("browser-app" in r.text and "200" in r.text for r in all_css(d, "main tbody tr")),
             what="the key's rows, all served")

        def open_second(d: Any) -> str:
            opener = all_css(d, "button[aria-label^='Open request']")[1]
            opened = str(opener.get_attribute("aria-label")).removeprefix("Open request ")
            opener.click()
            return opened

        rid = wait(driver, open_second, what="a request opened")
        wait(driver, lambda d: by_css(d, "#req-id").text == rid, what="request detail")
        detail = by_css(driver, "section[aria-labelledby=req-title]").text
        assert b.node_id in detail and "gpt-4o" in detail and "Latency" in detail and "Prompt tokens" in detail
        assert "Tags\nteam-a, checkout" in detail, detail
        wait(driver, lambda d: "selected" in (all_css(d, "main tbody tr")[1].get_attribute("class") or ""),
             what="the opened row marked")
        click(driver, "main tbody tr", "the first row")  # a click anywhere on a row opens it too
        wait(driver, lambda d: by_css(d, "#req-id").text != rid, what="the other request's detail")

        # revoke in the console: the gateway refuses the key on both nodes
        go(driver, "keys", "table caption")
        row = wait(driver, lambda d: [r for r in all_css(d, "tbody tr") if "browser-app" in r.text], what="row")[0]
        assert "$" in row.text and "$0.00 /" not in row.text  # spend against the budget bar moved
        # a budget of a ten-millionth of a dollar: the diff below writes it out (JavaScript: 1e-7)
        assert admin_api(a.base, "PUT", "/budgets/key/browser-app", BOOT,
                         {"amount_usd": 0.0000001, "period": "30d"})[0] == 200
        button(driver, "Revoke", row).click()
        driver.switch_to.alert.accept()
        wait(driver, lambda d: not [r for r in all_css(d, "tbody tr") if "browser-app" in r.text], what="row gone")
        for node in (a, b):
            # each node learns of the revocation from the log: milliseconds, but one chat call alone
            # can take seconds on a loaded machine, so the default bound, not 2 s
            assert wait(driver, lambda d, n=node: chat(n.base, secret) == 401, what=f"key refused on {node.node_id}")

        # why a request was refused: the list names the error code, the opened request the message
        # the gateway's refusals, not the console's own wrong sign-in above (a 401 on /admin/*): the
        # list is read once, so it must find them already written
        wait(driver, lambda d: admin_api(a.base, "GET", "/requests?status=401&route=%2Fv1%2F%2A", BOOT)[1]["data"],
             TRAFFIC_WAIT, "the gateway's refusals written to the request log")
        go(driver, "requests", "table caption")
        Select(by_css(driver, "form[aria-label='Request filters'] select[name=status]")).select_by_value("4xx")
        by_css(driver, "form[aria-label='Request filters'] button[type=submit]").click()
        click(driver, "main tbody tr", "a refused request listed with its error code", holding="invalid_api_key")
        opened = "section[aria-labelledby=req-title]"
        wait(driver, lambda d: "Why" in by_css(d, opened).text, what="the refusal's reason")
        assert "invalid or revoked API key" in by_css(driver, opened).text

        # audit: the creation and revocation by the signed-in principal; step back to before the key
        go(driver, "audit", "#asof-point")
        rows = wait(driver, lambda d: [r for r in all_css(d, "tbody tr") if "virtual_key" in r.text], what="audit")
        assert "bootstrap-token" in rows[0].text and "virtual_key.revoked" in rows[0].text
        created = next(r for r in rows if "virtual_key.created" in r.text).text.split()[0]  # its position
        by_css(driver, f"button[aria-label='Config as of change {created}']").click()
        wait(driver, lambda d: f"change #{created}" in by_css(d, "#asof-point").text, what="config as of the creation")
        asof_keys = by_css(driver, "section[aria-labelledby=asof-title]").text
        assert "browser-app" in asof_keys and "active" in asof_keys
        button(driver, "◀ Step back").click()
        wait(driver, lambda d: "browser-app" not in by_css(d, "section[aria-labelledby=asof-title]").text,
             what="the key absent before its creation")
        button(driver, "Now").click()
        wait(driver, lambda d: by_css(d, "#asof-point").text == "now", what="back to now")
        by_css(driver, f"button[aria-label='Diff from change {created}']").click()
        wait(driver, lambda d: "browser-app" in by_css(d, "section[aria-labelledby=diff-title]").text,
             what="diff naming the key")
        diffed = by_css(driver, "section[aria-labelledby=diff-title]").text
        assert '"amount_usd":0.0000001' in diffed and "e-7" not in diffed, diffed

        sent, spare = more_traffic(cluster)
        total = 3 + sent

        # edit limits, the budget and the MCP access of a key in the console
        go(driver, "keys", "table caption")
        wait(driver, lambda d: "search-prod" in by_css(d, "main table").text, what="keys made elsewhere listed")
        by_css(driver, "button[aria-label='Edit search-prod']").click()
        form = by_css(driver, "form[aria-labelledby=edit-title]")
        for name, value in (("rpm", "900"), ("budget", "0.75"), ("mcp", "github/search_code")):
            box = by_css(form, f"input[name={name}]")
            box.clear()
            box.send_keys(value)
        button(driver, "Save", form).click()
        row = wait(driver, lambda d: [r for r in all_css(d, "tbody tr") if "search-prod" in r.text and "900" in r.text],
                   what="edited row")[0]
        assert "/ $0.75" in row.text and "github/search_code" in row.text  # its MCP access, in the MCP column
        shots += shoot_all(driver, out, "desktop", total, cluster, spare)
        # keyboard: the skip link is the first stop and lands on the page content
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        driver.execute_script("document.body.tabIndex = -1; document.body.focus(); "
                              "document.body.removeAttribute('tabindex')")
        ActionChains(driver).send_keys(Keys.TAB).perform()
        assert driver.switch_to.active_element.get_attribute("class") == "skip"
        ActionChains(driver).send_keys(Keys.ENTER).perform()
        wait(driver, lambda d: d.switch_to.active_element.get_attribute("id") == "main", what="skip to content")
        assert driver.current_url.endswith(f"#/{PAGES[-1]}"), f"the skip link left the page: {driver.current_url}"

        # roles in the console: a viewer gets no write controls, an auditor only usage and audit
        tokens = {role: admin_api(a.base, "POST", "/admin-tokens", BOOT,
                                  {"name": f"{role}-ui", "role": role})[1]["token"] for role in ("viewer", "auditor")}
        button(driver, "Sign out").click()
        sign_in(driver, a.base, tokens["viewer"])
        go(driver, "keys", "table caption")
        assert not all_css(driver, "form[aria-labelledby=create-title]") and "Revoke" not in by_css(driver, "main").text
        button(driver, "Sign out").click()
        sign_in(driver, a.base, tokens["auditor"], landing="Usage")
        visible = [e.text for e in all_css(driver, "#nav a") if e.is_displayed()]
        assert visible == ["Usage", "Audit"], visible

    with chromium(*PHONE) as phone:
        sign_in(phone, b.base, BOOT)  # the other node serves the same console
        shots += shoot_all(phone, out, "phone", total, cluster, spare)

    assert all(p.stat().st_size > 10_000 for p in shots)
    target = os.environ.get("SHIELDES_SCREENSHOTS_TO")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        for p in shots:
            shutil.copy(p, Path(target) / p.name)
    assert get_json(a.base + "/ready")[0] == 200
