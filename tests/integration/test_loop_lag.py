"""shieldes_event_loop_lag_seconds: a node whose event loop is held up shows it on /metrics."""

from __future__ import annotations

import asyncio
import time

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from shieldes.loop_lag import IDLE_INTERVAL
from tests.integration.gateway_harness import harness


async def late_wake_ups(base: str, over: float) -> float:
    """How many of the node's probe wake-ups came more than `over` seconds late, by its /metrics."""
    async with aiohttp.ClientSession() as session, session.get(base + "/metrics") as answer:
        text = await answer.text()
    buckets = {float(sample.labels["le"]): sample.value for family in text_string_to_metric_families(text)
               if family.name == "shieldes_event_loop_lag_seconds" for sample in family.samples
               if sample.name.endswith("_bucket")}
    return buckets[float("inf")] - buckets[over]


async def test_a_held_up_event_loop_shows_in_the_lag_histogram(database_url: str) -> None:
    async with harness(database_url) as h:  # (the node runs on this test's event loop)
        before = await late_wake_ups(h.base, 0.25)
        # a blocking call on the loop, longer than the idle probe's sleep: its wake-up is due inside
        time.sleep(IDLE_INTERVAL + 0.4)
        deadline = time.monotonic() + 10
        while await late_wake_ups(h.base, 0.25) == before:
            assert time.monotonic() < deadline, "the probe saw no late wake-up after the loop was held up"
            await asyncio.sleep(0.05)
