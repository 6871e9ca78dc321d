"""Headless Chromium through Selenium, pointed at Debian's binaries (nothing is downloaded: the
driver path is explicit, so Selenium Manager never runs). Skips with the reason when absent."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("SHIELDES_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SHIELDES_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
DESKTOP = (1280, 900)
PHONE = (390, 844)


def require_chromium() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (Path(p).exists() or shutil.which(p))]
    if missing:
        pytest.skip(f"browser tests need Debian's chromium and chromium-driver ({', '.join(missing)} missing): "
                    "apt-get install -y chromium chromium-driver (.ci/run does)")


def _start(width: int, height: int) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--force-device-scale-factor=1", "--hide-scrollbars",
                "--no-first-run", "--disable-extensions", "--disable-background-networking"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


def _as_new(driver: Any) -> None:
    """What a fresh browser would give the next use: one new tab (the old tab's sessionStorage, CDP
    overrides, alerts and history go with it), no cookies (they are per host, not per port: every
    test's node is on 127.0.0.1), nothing cached."""
    from selenium.common.exceptions import NoAlertPresentException

    old = driver.window_handles
    driver.switch_to.new_window("tab")
    fresh = driver.current_window_handle
    for handle in old:
        driver.switch_to.window(handle)
        with suppress(NoAlertPresentException):
            driver.switch_to.alert.dismiss()
        driver.close()
    driver.switch_to.window(fresh)
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.execute_cdp_cmd("Network.clearBrowserCache", {})


class Browsers:
    """Headless Chromium processes a test worker's browser tests share: a browser's start and quit
    cost about 0.9 s of CPU, a fresh tab and cleared cookies and cache next to nothing. Each use
    (`with browsers(width, height) as driver`) holds a browser no other use holds, in a new tab at
    that size; a use that raised quits its browser instead of handing it on. close() quits every
    browser started, idle or still held (a use cut off by a test's timeout)."""

    def __init__(self) -> None:
        self._started: list[Any] = []
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    @contextmanager
    def __call__(self, width: int, height: int) -> Iterator[Any]:
        with self._lock:
            driver = self._idle.pop() if self._idle else None
        if driver is None:
            driver = _start(width, height)
            with self._lock:
                self._started.append(driver)
        driver.set_window_size(width, height)
        try:
            yield driver
            _as_new(driver)
        except BaseException:
            self._quit(driver)
            raise
        with self._lock:
            self._idle.append(driver)

    def _quit(self, driver: Any) -> None:
        with self._lock:
            if driver not in self._started:
                return
            self._started.remove(driver)
        driver.quit()

    def close(self) -> None:
        with self._lock:
            started, self._started, self._idle = self._started, [], []
        for driver in started:
            driver.quit()


# A page shows once its admin API calls answer (each a Postgres query on the node): on a loaded
# 2-core machine (load average 10) that took seconds, so 10 s left no margin; a wait is on a
# condition and ends as soon as it holds, the bound only decides how long a failure takes.
WAIT = 30.0


def wait(driver: Any, cond: Callable[[Any], Any], timeout: float = WAIT, what: str = "condition") -> Any:
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:  # the console re-renders live pages: an element found a moment ago may be replaced
        return WebDriverWait(driver, timeout, poll_frequency=0.05,
                             ignored_exceptions=(StaleElementReferenceException,)).until(cond)
    except TimeoutException:
        raise AssertionError(f"{what} not reached within {timeout}s") from None


def screenshot(driver: Any, path: Path, *, full_page: bool = True) -> Path:
    """The whole page (not just the viewport): the window grows to the document's height."""
    driver.execute_script("window.scrollTo(0, 0); "
                          "for (const e of document.querySelectorAll('.scroll')) e.scrollLeft = 0;")
    width = driver.get_window_size()["width"]
    height = driver.get_window_size()["height"]
    if full_page:
        doc = int(driver.execute_script(
            "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)"))
        driver.set_window_size(width, max(height, min(doc + 120, 4000)))
    driver.save_screenshot(str(path))
    driver.set_window_size(width, height)
    return path
