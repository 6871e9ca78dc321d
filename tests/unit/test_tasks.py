"""Stopping background tasks (shieldes/tasks.py)."""

from __future__ import annotations

import asyncio

from shieldes.tasks import cancel_and_wait


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
