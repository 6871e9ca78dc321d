"""Owning background tasks: waiting with a timeout, and stopping them. Every start() in the code
base has a stop() built from these, so no task outlives its owner. And waiting cheaply, as an idle
node's loops do all the time: `Wake` (no task per wait, no timer while there is nothing to do) and
`sleep_to_tick` (periodic loops with the same interval wake the event loop once between them)."""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any, Protocol

TICK_SLACK = 1e-6  # seconds


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


class Wake:
    """A loop's wake-up signal, waited on with an optional timeout, for one waiter (the loop that
    owns it). Unlike asyncio.Event.wait under asyncio.wait, a wait makes no task: a future that
    `set()` or a timer resolves. An idle node's loops wait this way every tick."""

    def __init__(self) -> None:
        self._set = False
        self._waiter: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def set(self) -> None:
        self._set = True
        _resolve(self._waiter)

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    def within(self, delay: float) -> None:
        """End the wait under way within `delay` s (a wait with no timeout, or a later one): a loop
        that sleeps while it has nothing to do is told that work arrived, to do it `delay` s later.
        Without a wait under way, nothing: the loop sees the work before it waits again."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        loop = waiter.get_loop()
        timer = self._timer
        if timer is not None:
            if timer.when() <= loop.time() + delay:
                return
            timer.cancel()
        self._timer = loop.call_later(delay, _resolve, waiter)

    async def wait(self, timeout: float | None = None) -> bool:
        """Until set, or `timeout` s passed (None: no timeout); True if set."""
        if self._set:
            return True
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        self._timer = loop.call_later(timeout, _resolve, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            if self._timer is not None:
                self._timer.cancel()
            self._waiter = self._timer = None
        return self._set


def _resolve(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


def next_tick(now: float, interval: float) -> float:
    """The first multiple of `interval` after `now` (on the event loop's clock). Periodic loops that
    sleep until their next tick, rather than for an interval after their work, fire together when
    their intervals agree (the defaults: 1 s): one wake-up of the loop instead of one each."""
    # (a timer may fire a hair before its time: a tick that close counts as the one just passed)
    return (math.floor((now + TICK_SLACK) / interval) + 1) * interval


async def sleep_to_tick(interval: float) -> float:
    """Sleep until next_tick(now, interval); returns that tick (when the sleep was due)."""
    loop = asyncio.get_running_loop()
    due = next_tick(loop.time(), interval)
    woken: asyncio.Future[None] = loop.create_future()
    timer = loop.call_at(due, _resolve, woken)  # (at `due` itself, so loops on one tick share it)
    try:
        await woken
    finally:
        timer.cancel()
    return due


class Stoppable(Protocol):
    _stopping: bool
    _wake: Wake


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
