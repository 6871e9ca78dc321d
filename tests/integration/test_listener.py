"""The listener against real Postgres: NOTIFY wakes it, the poll covers lost notifications, and a
terminated LISTEN connection reconnects and catches up without missing an event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest

from shieldes.cluster.listener import Listener
from shieldes.events.catalog import CONFIG_STREAM, UsageRecorded, usage_stream
from shieldes.events.codec import Codec
from shieldes.events.pg_store import PostgresEventStore
from shieldes.events.store import AppendOptions, NewEvent
from shieldes.projections.projector import Projector


def price(i: int) -> NewEvent:
    return NewEvent("pricing.set", 1, {"model": f"m{i}", "input_per_1m": 1.0, "output_per_1m": 2.0})


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait on a condition (checked on every loop turn), not a fixed sleep."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


@pytest.fixture
async def running(database_url: str, pg_store: PostgresEventStore) -> AsyncIterator[Callable[..., Any]]:
    started: list[Listener] = []

    async def make(**kw: Any) -> tuple[Listener, Projector, list[int]]:
        projector = Projector(pg_store)
        seen: list[int] = []
        projector.on_event(lambda rec, _ev: seen.append(rec.position))
        listener = Listener(database_url, projector, **kw)
        await listener.start()
        started.append(listener)
        await until(lambda: listener.connected)
        return listener, projector, seen

    yield make
    for listener in started:
        await listener.stop()


async def test_notify_wakes_the_projector_before_the_poll(
    running: Any, pg_store: PostgresEventStore
) -> None:
    listener, projector, _ = await running(poll_interval=30.0)
    result = await pg_store.append(CONFIG_STREAM, [price(1)], AppendOptions())
    await until(lambda: projector.position == result.last_position, timeout=10.0)
    assert listener.notifications >= 1
    assert "m1" in projector.config.pricing


async def test_a_lost_notification_is_covered_by_the_poll(running: Any, pg_store: PostgresEventStore) -> None:
    listener, projector, _ = await running(poll_interval=0.2)
    # usage events are never notified: only the poll by position can deliver this one
    event = UsageRecorded(node_id="n1", epoch=1, seq=1, deltas=())
    result = await pg_store.append(usage_stream("n1"), [NewEvent.of(event, Codec())], AppendOptions())
    await until(lambda: projector.position == result.last_position, timeout=10.0)
    assert listener.notifications == 0
    assert projector.usage.durable_seq("n1", 1) == 1


async def test_terminated_connection_reconnects_and_misses_nothing(
    running: Any, pg_store: PostgresEventStore, database_url: str
) -> None:
    # a poll far in the future: only NOTIFY and the catch-up after reconnect can deliver events
    listener, projector, seen = await running(poll_interval=60.0, backoff_base=0.2)
    stop = asyncio.Event()
    appended: list[int] = []

    async def writer() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            r = await pg_store.append(CONFIG_STREAM, [price(i)], AppendOptions())
            appended.append(r.last_position)
            await asyncio.sleep(0.002)

    task = asyncio.create_task(writer())
    await until(lambda: len(appended) >= 20)
    old_pid = listener.backend_pid
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (old_pid,))
    # appends continue while the listener is down and during the reconnect
    await until(lambda: listener.connects == 2 and listener.connected)
    n = len(appended)
    await until(lambda: len(appended) >= n + 20)
    stop.set()
    await task
    await until(lambda: projector.position == appended[-1], timeout=10.0)
    assert listener.backend_pid != old_pid
    assert seen == appended  # every event applied exactly once, in order
    assert listener.lag == 0

    # again, but this time nothing is appended after the reconnect: only its catch-up can deliver
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (listener.backend_pid,))
    await until(lambda: not listener.connected)
    last = [(await pg_store.append(CONFIG_STREAM, [price(1000 + i)], AppendOptions())).last_position
            for i in range(5)]
    await until(lambda: projector.position == last[-1], timeout=5.0)
    assert listener.connects == 3
    assert seen == appended + last
