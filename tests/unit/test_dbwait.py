"""DbWait, the bound of a request's wait on Postgres: the caller's answer comes at the bound even
when the operation's cancellation is slow (psycopg's, on a server that does not answer, takes up to
10 s), the slow cancellation is awaited by stop(), and errors become the error tree's."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from shieldes.dbwait import DbWait
from shieldes.errors import DatabaseUnavailable, InvalidRequest, ShieldesError


async def stalled(cancel_takes: float, cancelled: list[float]) -> None:
    """A query a stalled server never answers, whose cancellation itself takes a while."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        await asyncio.sleep(cancel_takes)
        cancelled.append(time.monotonic())
        raise


async def test_the_answer_comes_at_the_bound_not_after_the_cancellation() -> None:
    wait, cancelled = DbWait(0.05), []
    began = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as refused:
        await wait.run(stalled(0.5, cancelled), "things cannot be read right now")
    answered = time.monotonic() - began
    assert 0.05 <= answered < 0.4, answered
    assert refused.value.status == 503 and refused.value.code == "database_unavailable"
    assert refused.value.message == ("things cannot be read right now: Postgres did not answer within 0.05 s (a "
                                     "stalled server, a lock held or a full disk); retry shortly")
    assert wait.cancelling == 1 and not cancelled
    await wait.stop()  # the cancellation still running is awaited before the pool closes
    assert wait.cancelling == 0 and len(cancelled) == 1


async def test_a_cancelled_request_cancels_its_operation() -> None:
    wait, cancelled = DbWait(10.0), []
    request = asyncio.ensure_future(wait.run(stalled(0.0, cancelled), "x"))
    await asyncio.sleep(0.01)
    request.cancel()
    with pytest.raises(asyncio.CancelledError):
        await request
    await wait.stop()
    assert len(cancelled) == 1


async def test_results_and_errors() -> None:
    wait = DbWait(1.0)

    async def value() -> int:
        return 7

    async def failing(exc: BaseException) -> None:
        raise exc

    def items(exc: psycopg.Error) -> ShieldesError | None:
        return InvalidRequest("fix the items") if isinstance(exc, psycopg.errors.UniqueViolation) else None

    assert await wait.run(value(), "x") == 7
    with pytest.raises(InvalidRequest, match="fix the items"):
        await wait.run(failing(psycopg.errors.UniqueViolation("duplicate key")), "x", refused=items)
    for exc in (psycopg.OperationalError("connection refused\nmore"), OSError("network unreachable")):
        with pytest.raises(DatabaseUnavailable) as down:
            await wait.run(failing(exc), "things cannot be read right now", refused=items)
        assert down.value.message == f"things cannot be read right now ({str(exc).splitlines()[0]}); retry shortly"
    with pytest.raises(InvalidRequest, match="already ours"):  # the error tree's own pass through
        await wait.run(failing(InvalidRequest("already ours")), "x")
    assert wait.cancelling == 0
