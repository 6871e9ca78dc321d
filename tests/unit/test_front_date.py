"""The Date of the front's answers: formatted as each second begins while the node listens (not
per answer), and no timer left once the front closes."""

from __future__ import annotations

import asyncio
import time
from email.utils import parsedate_to_datetime

from aiohttp import web

from shieldes.gateway.front import Front
from shieldes.gateway.middleware import RequestIds


async def _observe(request: web.Request, handler: object) -> web.StreamResponse:
    raise AssertionError("no request is sent")


async def test_the_date_follows_the_clock_while_listening() -> None:
    front = Front(web.Application(), asyncio.Protocol, _observe, max_body=1000, ids=RequestIds())
    await front.start("127.0.0.1", 0, reuse_port=False)
    try:
        first = front.date
        deadline = time.monotonic() + 5
        while front.date == first and time.monotonic() < deadline:  # the next second, without polling the clock
            await asyncio.sleep(0.01)
        assert front.date != first
        shown = parsedate_to_datetime(front.date.decode()).timestamp()
        assert shown <= time.time() < shown + 1.5  # the current second (give or take the timer's wake-up)
        assert front.date.endswith(b" GMT")
    finally:
        front.stop_listening()
        await front.close()
    assert front._date_timer is not None and front._date_timer.cancelled()
