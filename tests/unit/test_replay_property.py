"""Property: for random command sequences (valid and invalid) applied via decide + append, the
state built live equals the state replayed from the log from the start (in-memory store)."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import HealthCheck, given, settings

from shieldes.events.memory_store import InMemoryEventStore
from tests.strategies import assert_replay_equals_live, steps


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_replay_equals_live_in_memory(sequence: list[Any]) -> None:
    asyncio.run(assert_replay_equals_live(InMemoryEventStore(), sequence))
