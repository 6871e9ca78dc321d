from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser.console_driver import Browsers, require_chromium


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browsers]:
    """The worker's shared headless Chromium processes (console_driver.Browsers), quit at its end."""
    require_chromium()
    browsers = Browsers()
    try:
        yield browsers
    finally:
        browsers.close()
