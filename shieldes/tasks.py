"""Owning background tasks: waiting with a timeout, and stopping them. Every start() in the code
base has a stop() built from these, so no task outlives its owner."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None, again_after: float = 1.0) -> None:
    """Cancel the tasks and wait until each has ended (ending by cancellation is the normal end).
    A task still running `again_after` seconds later is cancelled again, and so on: a cancellation
    can be absorbed (a database driver cancelling its query, 3.11's wait_for racing a result), and a
    loop that absorbed it would otherwise keep its owner's stop, and the process, waiting forever."""
    live = [t for t in tasks if t is not None]
    for task in live:
        task.cancel()
    for task in live:
        while not task.done():
            await asyncio.wait({task}, timeout=again_after)
            if not task.done():
                task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_event(event: asyncio.Event, timeout: float) -> None:
    """Wait for `event` at most `timeout` seconds (without asyncio.wait_for, whose 3.11 version can
    swallow a cancellation that races with the inner wait finishing)."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout)
    finally:
        waiter.cancel()


class Stoppable(Protocol):
    _stopping: bool
    _wake: asyncio.Event


async def stop_task(task: asyncio.Task[None], owner: Stoppable, patience: float = 1.0) -> None:
    """Ask a loop to stop (flag + wake), cancel it if it does not finish in `patience`, await it."""
    owner._stopping = True
    owner._wake.set()
    done, _ = await asyncio.wait({task}, timeout=patience)
    if not done:
        await cancel_and_wait(task)
    else:
        with contextlib.suppress(asyncio.CancelledError):
            await task
