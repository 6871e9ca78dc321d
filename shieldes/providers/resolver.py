"""Upstream host names resolved once per TTL. A burst of new upstream connections (a fleet of
agents opening streams together) would otherwise each ask the system resolver, a few at a time
(the event loop resolves names in a small thread pool), and queue behind each other; in
Kubernetes every lookup of a public name is several DNS queries (the search domains). Concurrent
misses share one lookup; a name whose addresses all refuse a connection is looked up again.
aiohttp does the same by default (10 s)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable

TTL_SECONDS = 10.0
MAX_NAMES = 1024  # upstream hosts are a handful (the deployments'); a bound all the same

Address = tuple[int, str]  # (address family, IP address)


def literal(host: str) -> Address | None:
    """The address a host names itself, when it is an IP address."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET, host)


class Resolver:
    """Host name -> IP addresses, kept for `ttl` seconds (of `clock`, time.monotonic by default).
    Used inside one event loop."""

    def __init__(self, ttl: float = TTL_SECONDS, clock: Callable[[], float] | None = None) -> None:
        self._ttl = ttl
        self._clock = clock
        self._known: dict[tuple[str, int], tuple[float, tuple[Address, ...]]] = {}
        self._pending: dict[tuple[str, int], asyncio.Future[tuple[Address, ...]]] = {}
        self.lookups = 0  # names actually asked of the system resolver

    def _now(self) -> float:
        # (not the loop's clock: on Python 3.11 get_running_loop() makes a getpid syscall per request)
        return self._clock() if self._clock is not None else time.monotonic()

    async def addresses(self, host: str, port: int) -> tuple[Address, ...]:
        own = literal(host)
        if own is not None:
            return (own,)
        key = (host, port)
        known = self._known.get(key)
        if known is not None and known[0] > self._now():
            return known[1]
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Address, ...]] = loop.create_future()
        self._pending[key] = future
        try:
            self.lookups += 1
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            found = tuple(dict.fromkeys((family, str(sockaddr[0])) for family, _, _, _, sockaddr in infos))
            if not found:
                raise OSError(f"no address for {host}")
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # (retrieved: a lookup no one else waited on is not an unhandled error)
            raise
        finally:
            del self._pending[key]
        if len(self._known) >= MAX_NAMES:
            self._known.clear()
        self._known[key] = (self._now() + self._ttl, found)
        future.set_result(found)
        return found

    def forget(self, host: str, port: int) -> None:
        """Look `host` up again next time (none of its addresses took a connection)."""
        self._known.pop((host, port), None)
