"""The mechanics shared by upstream chunk streams: priming (read up to the first chunk before the
gateway commits to this upstream), iteration, and returning or closing the connection; and the
read loop of streams translated from another API's event format (Anthropic, Bedrock, Gemini)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Sequence
from typing import Generic, Protocol, TypeVar

from shieldes.providers.base import Body, Target, TokenUsage
from shieldes.providers.http import TRANSPORT_ERRORS, transport_failure
from shieldes.providers.transport import UpstreamResponse


class HeldResponse:
    """An upstream response a stream holds, given back once (a stream ends one way): to the
    keep-alive pool when it was read to its end (`_finished`), closed otherwise (an abandoned
    answer: closing is what stops the upstream's work). A base class, not a helper function, so
    that releasing costs no call more than it did."""

    _resp: UpstreamResponse
    _released = False

    @property
    def _finished(self) -> bool:
        raise NotImplementedError

    def _release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._finished:
            self._resp.release()
        else:
            self._resp.close()


class UpstreamChunkStream(HeldResponse):
    """Subclasses implement `_chunks()` (parse the response into OpenAI chunks, raising
    UpstreamFailure) and set `_finished` once the upstream's stream ended properly."""

    # Defaults every stream starts with, on the class (one stream is made per request: each
    # assignment in __init__ would cost it; an instance's own value is set when it changes).
    _raw: AsyncGenerator[Body, None] | None = None
    _gen: AsyncGenerator[Body, None] | None = None
    _finished = False
    _usage: TokenUsage | None = None
    _first: Body | None = None
    dropped: Sequence[str] = ()  # what a translating provider left out of the request

    def __init__(self, resp: UpstreamResponse, target: Target) -> None:
        self._resp = resp
        self._target = target
        self._head: list[Body] = []

    @property
    def usage(self) -> TokenUsage | None:
        return self._usage

    @property
    def first(self) -> Body | None:
        """The first chunk, once primed (its id, created and model)."""
        return self._first

    def _chunks(self) -> AsyncGenerator[Body, None]:
        raise NotImplementedError

    async def prime(self) -> None:
        """Read the first chunk now, so that a failure arriving as the first event (an `error`
        event, an overloaded upstream, a silent one timing out) is raised by `Provider.stream()`,
        while the gateway can still try another deployment."""
        self._raw = self._chunks()
        with contextlib.suppress(StopAsyncIteration):  # an empty stream is not a failure here
            self._first = await self._raw.__anext__()
            self._head.append(self._first)

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

    async def aclose(self) -> None:
        if self._gen is not None:
            await self._gen.aclose()
        if self._raw is not None:
            await self._raw.aclose()
        self._release()


class Translator(Protocol):
    """A stream translator: the usage it read from the upstream's events, once it has."""

    @property
    def usage(self) -> TokenUsage | None: ...


TranslatorT = TypeVar("TranslatorT", bound=Translator)
EventT = TypeVar("EventT")


class TranslatedChunkStream(UpstreamChunkStream, Generic[TranslatorT, EventT]):
    """OpenAI chunks translated from another API's stream. Subclasses say how one network read
    splits into upstream events (`_events`), how an event becomes chunks (`_translate`), whether
    the translator has seen the stream's end event (`_ended`: reading stops there), and what the
    closing connection still gives (`_close`: the last chunks, or a failure for a cut-off stream)."""

    def __init__(self, resp: UpstreamResponse, target: Target, translator: TranslatorT,
                 dropped: Sequence[str] = ()) -> None:
        super().__init__(resp, target)
        self._translator = translator
        self.dropped = dropped

    @property
    def usage(self) -> TokenUsage | None:
        return self._translator.usage

    def _events(self, raw: bytes) -> list[EventT]:
        raise NotImplementedError

    def _translate(self, event: EventT) -> list[Body]:
        raise NotImplementedError

    def _ended(self) -> bool:
        return False

    def _close(self) -> list[Body]:
        return []

    async def _chunks(self) -> AsyncGenerator[Body, None]:
        try:
            while raw := await self._resp.read_chunk():
                for event in self._events(raw):
                    for chunk in self._translate(event):
                        yield chunk
                if self._ended():
                    self._finished = True
                    return
            for chunk in self._close():
                yield chunk
            self._finished = True
        except TRANSPORT_ERRORS as exc:
            raise transport_failure(self._target, exc) from exc
        finally:
            self._release()
