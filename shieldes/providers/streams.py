"""The mechanics shared by upstream chunk streams: priming (read up to the first chunk before the
gateway commits to this upstream), iteration, and returning or closing the connection."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator

import aiohttp

from shieldes.providers.base import Body, Target, TokenUsage


class UpstreamChunkStream:
    """Subclasses implement `_chunks()` (parse the response into OpenAI chunks, raising
    UpstreamFailure) and set `_finished` once the upstream's stream ended properly."""

    def __init__(self, resp: aiohttp.ClientResponse, target: Target) -> None:
        self._resp = resp
        self._target = target
        self._raw: AsyncGenerator[Body, None] | None = None
        self._gen: AsyncGenerator[Body, None] | None = None
        self._head: list[Body] = []
        self._finished = False
        self._usage: TokenUsage | None = None

    @property
    def usage(self) -> TokenUsage | None:
        return self._usage

    def _chunks(self) -> AsyncGenerator[Body, None]:
        raise NotImplementedError

    async def prime(self) -> None:
        """Read the first chunk now, so that a failure arriving as the first event (an `error`
        event, an overloaded upstream, a silent one timing out) is raised by `Provider.stream()`,
        while the gateway can still try another deployment."""
        self._raw = self._chunks()
        with contextlib.suppress(StopAsyncIteration):  # an empty stream is not a failure here
            self._head.append(await self._raw.__anext__())

    def __aiter__(self) -> AsyncGenerator[Body, None]:
        if self._gen is None:
            self._gen = self._iterate()
        return self._gen

    async def _iterate(self) -> AsyncGenerator[Body, None]:
        while self._head:
            yield self._head.pop(0)
        if self._raw is None:
            self._raw = self._chunks()
        async for chunk in self._raw:
            yield chunk

    def _release(self) -> None:
        # A fully read response goes back to the keep-alive pool; an abandoned one is closed.
        if self._finished:
            self._resp.release()
        else:
            self._resp.close()

    async def aclose(self) -> None:
        if self._gen is not None:
            await self._gen.aclose()
        if self._raw is not None:
            await self._raw.aclose()
        self._release()
