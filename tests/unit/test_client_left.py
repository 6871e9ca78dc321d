"""When a request's wait is given up for its client leaving (shieldes/client_left.py), and when it
is not: an upstream call in flight, another task (a background run) of the same connection, the
node stopping at the same time."""

from __future__ import annotations

import asyncio

import pytest

from shieldes.client_left import Presence, abandon, waiting
from shieldes.errors import ClientLeft


def test_only_a_wait_before_any_upstream_call_is_given_up() -> None:
    assert abandon(gone=True, waiting=True)
    assert not abandon(gone=True, waiting=False)  # an upstream call in flight: let finish
    assert not abandon(gone=False, waiting=True)


async def _answer(presence: Presence, wait: asyncio.Future[None]) -> str:
    """A connection's task waiting before an upstream call (as a retry's backoff does)."""
    with waiting("its next attempt"):
        await wait
    return "answered"


def _start(presence: Presence, wait: asyncio.Future[None]) -> asyncio.Task[str]:
    task = asyncio.get_running_loop().create_task(_answer(presence, wait), context=presence.context())
    presence.task = task
    return task


async def test_a_client_leaving_during_the_wait_ends_it_with_client_left() -> None:
    presence = Presence()
    task = _start(presence, asyncio.get_running_loop().create_future())
    await asyncio.sleep(0)
    presence.left()
    with pytest.raises(ClientLeft) as left:
        await task
    assert left.value.status == 499 and left.value.code == "client_disconnected"
    assert "while the request waited for its next attempt" in left.value.message
    assert task.cancelling() == 0  # the cancellation was taken back, not left pending


async def test_a_client_gone_before_the_wait_ends_it_as_it_begins() -> None:
    presence = Presence()
    presence.gone = True  # (left while an upstream call was in flight: nothing cancelled then)
    wait = asyncio.get_running_loop().create_future()
    with pytest.raises(ClientLeft, match="had closed the connection when the request came to wait"):
        await _start(presence, wait)


async def test_the_node_stopping_meanwhile_cancels_as_before() -> None:
    presence = Presence()
    task = _start(presence, asyncio.get_running_loop().create_future())
    await asyncio.sleep(0)
    task.cancel()  # the node stopping (Front.close aborts the connection, cancelling its task)
    presence.left()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_another_task_of_the_connection_waits_on() -> None:
    """A task the request started (a background run) inherits the context, not the client."""
    presence = Presence()
    presence.task = asyncio.current_task()  # the connection's task is another one
    presence.gone = True
    wait = asyncio.get_running_loop().create_future()
    wait.set_result(None)
    other = asyncio.get_running_loop().create_task(_answer(presence, wait), context=presence.context())
    assert await other == "answered"


async def test_a_task_without_a_client_connection_waits_as_before() -> None:
    wait = asyncio.get_running_loop().create_future()
    wait.set_result(None)
    assert await _answer(Presence(), wait) == "answered"
