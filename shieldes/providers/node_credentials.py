"""Credentials a node gets for itself (Bedrock's AWS chain, Vertex's Google tokens; Entra ID's in
entra.py): when it cannot get them, a deployment cannot be used on this node, the same on every
attempt until the operator acts. That is a ProviderMisconfigured, not an upstream failure: the
model's other deployments are tried, nothing is retried, the deployment's breaker and error rate
see nothing, and the node's log says so once per outage (and once when it is over). Each source
(Entra ID's too) is fetched once at a time, shared by the requests waiting for it (SharedFetch),
and a request whose client leaves stops waiting for it at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from shieldes.client_left import waiting
from shieldes.errors import ProviderMisconfigured
from shieldes.tasks import cancel_and_wait

log = logging.getLogger(__name__)
T = TypeVar("T")


def one_line(exc: BaseException, limit: int = 600) -> str:
    """A credential library's message (often several lines: one per source tried): one line, bounded."""
    text = " ".join(str(exc).split()) or "no detail"
    return f"{type(exc).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def unusable(deployment: str, why: str) -> ProviderMisconfigured:
    """The client's one line: which deployment, what is missing here and what to do (in `why`)."""
    return ProviderMisconfigured(f"deployment {deployment!r} cannot be used on this node: {why}")


class Outages:
    """Which credential sources are failing (by a key the caller chooses: a key file, the AWS
    chain), so each outage is logged once when it starts and once when it ends."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._failing: set[str] = set()

    def failed(self, key: str, why: str) -> None:
        if key not in self._failing:
            self._failing.add(key)
            log.warning("MISCONFIGURED: %s: %s", self._what, why)

    def recovered(self, key: str) -> None:
        if key in self._failing:
            self._failing.discard(key)
            log.info("%s: credentials are coming again%s", self._what, f" ({key})" if key else "")


class Bounded:
    """google-auth's HTTP transport with every call's timeout at most `seconds` (its token requests
    name none: 120 s by default, every request for the deployments waiting meanwhile)."""

    def __init__(self, request: Any, seconds: float) -> None:
        self._request = request
        self._seconds = seconds

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["timeout"] = min(float(kwargs.get("timeout") or self._seconds), self._seconds)
        return self._request(*args, **kwargs)


class SharedFetch(Generic[T]):
    """One fetch at a time per source (a key file, the AWS chain), shared by every request that
    waits for it. A request whose client leaves stops waiting, but the fetch goes on
    (asyncio.shield): the next request joins it rather than starting a second one in parallel
    (a fetch in a worker thread cannot be stopped anyway). The fetch returns its outcome rather than
    raising, so that one nobody waits for any more leaves no unretrieved exception."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: dict[str, asyncio.Task[T]] = {}

    def start(self, key: str, fetch: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
        """The fetch under way for `key`, or one started with `fetch()` (a renewal nobody waits for)."""
        task = self._tasks.get(key)
        if task is None or task.done():
            task = self._tasks[key] = asyncio.ensure_future(fetch())
            task.set_name(f"{self._name}-{key}" if key else self._name)
        return task

    async def get(self, key: str, fetch: Callable[[], Awaitable[T]]) -> T:
        """The outcome of the fetch under way for `key`, or of one started with `fetch()`; a wait
        given up when the request's client leaves (client_left.py), the fetch going on."""
        fetching = self.start(key, fetch)
        with waiting(f"a cloud credential ({self._name})"):
            return await asyncio.shield(fetching)

    async def close(self) -> None:
        """Stops the fetches under way (at the node's stop)."""
        for task in list(self._tasks.values()):
            await cancel_and_wait(task)
        self._tasks.clear()
