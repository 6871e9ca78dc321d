"""A FakeUpstream served from a background thread, for tests whose nodes are separate processes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.fake_upstream import FakeUpstream


@contextmanager
def threaded_upstream(**kw: Any) -> Iterator[FakeUpstream]:
    loop = asyncio.new_event_loop()
    up = FakeUpstream(**kw)
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(up.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield up
    finally:
        asyncio.run_coroutine_threadsafe(up.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
