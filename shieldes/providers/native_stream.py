"""What the pass-through streams (anthropic_native, gemini_native) share: one upstream response
read by one generator (what `prime` read first, then the rest), released to the keep-alive pool
when read to its end, closed otherwise; a transport failure raised as an UpstreamFailure."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator
from typing import Generic, Protocol, TypeVar

from shieldes.providers.base import Target, TokenUsage
from shieldes.providers.http import TRANSPORT_ERRORS, transport_failure
from shieldes.providers.streams import HeldResponse
from shieldes.providers.transport import UpstreamResponse

T = TypeVar("T")


class StreamWatch(Protocol):
    """What reads a pass-through stream's events on the side: the usage they report, and whether
    the final one came."""

    @property
    def usage(self) -> TokenUsage | None: ...

    @property
    def done(self) -> bool: ...


class HeldStream(HeldResponse, ABC, Generic[T]):
    """`watch` reads the events on the side; `dropped` names what of the request the upstream
    could not take."""

    watch: StreamWatch

    def __init__(self, resp: UpstreamResponse, target: Target) -> None:
        self._resp = resp
        self._target = target
        self._head: list[T] = []  # read before the client got anything (prime)
        self._gen: AsyncGenerator[T, None] | None = None
        self.dropped: list[str] = []

    @property
    def usage(self) -> TokenUsage | None:
        return self.watch.usage

    @property
    def _finished(self) -> bool:
        """Whether the upstream's answer was read to its end (its connection can be reused)."""
        return self.watch.done

    @abstractmethod
    def _rest(self) -> AsyncGenerator[T, None]:
        """The stream's items after the head."""

    async def _chunk(self) -> bytes:
        """The body's next read (b"" at its end)."""
        try:
            return await self._resp.read_chunk()
        except TRANSPORT_ERRORS as exc:
            self._release()
            raise transport_failure(self._target, exc) from exc

    def _items(self) -> AsyncGenerator[T, None]:
        if self._gen is None:
            self._gen = self._read()
        return self._gen

    async def _read(self) -> AsyncGenerator[T, None]:
        try:
            while self._head:
                yield self._head.pop(0)
            async for item in self._rest():
                yield item
        finally:
            self._release()

    async def aclose(self) -> None:
        if self._gen is not None:
            await self._gen.aclose()
        self._release()
