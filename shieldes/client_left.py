"""A request whose client left while it waited before any upstream call was in flight: a cloud
credential being fetched, a retry's backoff between attempts. Such a wait is given up at once (the
request's holds released, nothing billed, its row saying the client left), rather than kept until
it ends for an answer nobody reads. An upstream call in flight is let finish, so its usage is
accounted (the upstream bills the tokens whoever reads them), but no further attempt (a retry, a
failover) starts for a client that left.

The front's connection (gateway/front_connection.py) owns a `Presence` and answers its requests in
tasks whose context names it (made once per connection; each task runs in a copy of it, the copy
create_task makes anyway: nothing more per request). A wait marks itself with `waiting()`; a
connection that closes cancels its task only while it is in such a wait, and the wait turns that
cancellation into ClientLeft. Requests answered elsewhere (aiohttp's routes, a WebSocket's
messages) have no Presence, and a task a request starts (a background run) is not the
connection's: their waits run as before."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import Context, ContextVar, copy_context
from typing import Any

from shieldes.errors import ClientLeft

# The Presence of the connection whose requests a task answers. Python wants context variables
# made once, at module level; each connection's tasks run in a context of their own holding it.
_PRESENCE: ContextVar[Presence | None] = ContextVar("presence", default=None)


def abandon(gone: bool, waiting: bool) -> bool:
    """Whether a request is given up on now: its client gone while it waits before any upstream
    call is in flight (when the client leaves during such a wait, or when the request comes to one
    after its client left: the next attempt's backoff). An upstream call in flight is not waiting
    here: it finishes, and is accounted."""
    return gone and waiting


class Presence:
    """Whether a client connection is still there, for the task answering its requests."""

    __slots__ = ("fired", "gone", "task", "waiting")

    def __init__(self) -> None:
        self.task: asyncio.Task[Any] | None = None  # the task answering the connection's requests
        self.gone = False  # the client closed the connection
        self.waiting = False  # that task is in a wait before any upstream call (waiting())
        self.fired = False  # it was cancelled for leaving, not yet caught by its wait

    def context(self) -> Context:
        """A context for the connection's tasks (each gets a copy: what one sets is not the next one's)."""
        context = copy_context()
        context.run(_PRESENCE.set, self)
        return context

    def left(self) -> None:
        """The client closed the connection: a wait before any upstream call is given up now."""
        self.gone = True
        task = self.task
        if task is not None and not self.fired and not task.done() and abandon(True, self.waiting):
            self.fired = True
            task.cancel()


@contextmanager
def waiting(what: str) -> Iterator[None]:
    """A wait before any upstream call is in flight, for `what` ("a cloud credential"), given up
    with ClientLeft if the request's client leaves during it or had left before it."""
    presence = _PRESENCE.get()
    task = asyncio.current_task()
    if presence is None or presence.task is not task or task is None:  # (a task of its own: a background run)
        yield
        return
    if abandon(presence.gone, True):
        raise ClientLeft(_message(f"had closed the connection when the request came to wait for {what}"))
    presence.waiting = True
    try:
        yield
    except asyncio.CancelledError:
        if not presence.fired:
            raise
        presence.fired = False
        if task.uncancel():  # cancelled by another too (the node stopping): that one stands
            raise
        raise ClientLeft(_message(f"closed the connection while the request waited for {what}")) from None
    finally:
        presence.waiting = False


def _message(left: str) -> str:
    return (f"the client {left}; the request was given up then: nothing more was sent upstream and nothing "
            "billed (a client that timed out needs a longer timeout)")
