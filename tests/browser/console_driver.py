"""Headless Chromium through Selenium, pointed at Debian's binaries (nothing is downloaded: the
driver path is explicit, so Selenium Manager never runs). Skips with the reason when absent."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


@contextmanager
def chromium(width: int, height: int) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--force-device-scale-factor=1", "--hide-scrollbars",
                "--no-first-run", "--disable-extensions", "--disable-background-networking"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_window_size(width, height)
    try:
        yield driver
    finally:
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
