"""Stopping background tasks (shieldes/tasks.py)."""

from __future__ import annotations

import asyncio

import pytest

from shieldes.log_poller import next_poll
from shieldes.snapshots.scheduler import quiet_wait
from shieldes.tasks import Wake, cancel_and_wait, next_tick, sleep_to_tick


async def test_a_task_that_absorbs_a_cancellation_is_cancelled_again_until_it_ends() -> None:
    absorbed = 0

    async def stubborn() -> None:
        nonlocal absorbed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                absorbed += 1
                if absorbed == 3:  # gives up on the third
                    raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, again_after=0.01), 5)
    assert task.cancelled() and absorbed == 3


async def test_a_task_that_ends_on_its_first_cancellation_is_cancelled_once() -> None:
    cancels = 0

    async def polite() -> None:
        nonlocal cancels
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancels += 1
            raise

    task = asyncio.create_task(polite())
    await asyncio.sleep(0)
    await cancel_and_wait(task, None, again_after=0.01)
    assert task.cancelled() and cancels == 1


async def test_a_wake_ends_on_set_or_timeout_and_makes_no_task() -> None:
    wake = Wake()
    before = len(asyncio.all_tasks())
    assert not await wake.wait(0.01)  # timed out
    waiter = asyncio.create_task(wake.wait())  # (this test's own task: the wait in it makes none)
    await asyncio.sleep(0.01)
    assert len(asyncio.all_tasks()) == before + 1
    wake.set()
    assert await waiter and wake.is_set()
    assert await wake.wait(3600)  # already set: at once
    wake.clear()
    assert not wake.is_set()


async def test_within_ends_a_wait_with_no_timeout_and_never_delays_one() -> None:
    loop = asyncio.get_running_loop()
    wake = Wake()
    wake.within(0.01)  # nobody waits: nothing
    waiter = asyncio.create_task(wake.wait())
    await asyncio.sleep(0.01)
    started = loop.time()
    wake.within(0.05)
    wake.within(10.0)  # a later deadline does not replace the earlier one
    assert not await waiter  # ended by the timer, not set
    assert 0.04 <= loop.time() - started < 1.0
    waiter = asyncio.create_task(wake.wait(0.05))
    await asyncio.sleep(0)
    wake.within(10.0)  # nor does it delay a wait's own timeout
    started = loop.time()
    await asyncio.wait_for(waiter, 1.0)
    assert loop.time() - started < 0.5


def test_next_tick_is_the_next_multiple_of_the_interval() -> None:
    assert next_tick(100.3, 1.0) == 101.0
    assert next_tick(101.0, 1.0) == 102.0  # at a tick: the next one
    assert next_tick(100.9999999999, 1.0) == 102.0  # a timer firing a hair early counts as on its tick
    assert next_tick(7.31, 0.1) == pytest.approx(7.4)
    assert next_tick(0.0, 30.0) == 30.0


async def test_loops_sleeping_to_the_same_tick_wake_together() -> None:
    loop = asyncio.get_running_loop()
    tick = await sleep_to_tick(0.1)  # just past a tick: the three sleeps below begin before the next one
    dues = await asyncio.gather(sleep_to_tick(0.05), sleep_to_tick(0.05), sleep_to_tick(0.1))
    assert dues[0] == dues[1] == next_tick(tick, 0.05)  # the same timer time: one wake-up of the loop
    assert dues[2] == next_tick(tick, 0.1) and dues[2] - dues[0] == pytest.approx(0.05)
    assert loop.time() >= max(dues)


def test_the_poller_polls_at_least_every_interval_and_a_wake_up_replaces_a_tick() -> None:
    # a poll on the timer: the next tick, shared with the node's other loops
    assert next_poll(10.0, 1.0, woken=False) == 11.0
    assert next_poll(10.002, 1.0, woken=False) == 11.0
    # a poll on a wake-up (a flush, NOTIFY): an interval later, so wake-ups every half interval
    # (a flush each SHIELDES_FLUSH_INTERVAL under load) are the only polls
    assert next_poll(10.4, 1.0, woken=True) == 11.4
    for began in (10.0, 10.002, 10.4, 10.999):
        for woken in (False, True):
            assert began < next_poll(began, 1.0, woken) <= began + 1.0


def test_an_idle_snapshot_scheduler_sleeps_until_the_log_moves() -> None:
    rules = dict(every_events=100, every_seconds=300.0)
    assert quiet_wait(50, 50, 1000.0, **rules) == float("inf")  # the newest snapshot holds all
    assert quiet_wait(60, 50, 100.0, **rules) == 200.0  # too few events: the time rule, or a move
    assert quiet_wait(60, 50, 300.0, **rules) is None  # due now
    assert quiet_wait(150, 50, 0.0, **rules) is None
