"""A TCP proxy in front of Postgres for tests that drive real node processes from plain (blocking)
code: it runs on an event loop of its own thread. `cut()` drops every connection and closes new
ones until `restore()`; `drop_notifications()` keeps every connection up but delivers no NOTIFY to
the connections that sent LISTEN (a notification lost on its way: the node's LISTEN connection
stays up and says `listening`)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any

from tests.resilience.support import TcpProxy

NOTIFICATION = ord("A")  # the backend's NotificationResponse message


class NotifyDroppingProxy(TcpProxy):
    def __init__(self, target_url: str) -> None:
        super().__init__(target_url)
        self.dropping = False
        self.dropped = 0  # notifications not delivered

    def _pumps(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up_reader: asyncio.StreamReader,
               up_writer: asyncio.StreamWriter) -> list[Coroutine[Any, Any, None]]:
        listens = asyncio.Event()
        return [self._from_client(reader, up_writer, listens), self._from_server(up_reader, writer, listens)]

    async def _from_client(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, listens: asyncio.Event) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ConnectionError):
            while data := await src.read(65536):
                if b"LISTEN " in data:
                    listens.set()
                await self._flowing.wait()
                dst.write(data)
                await dst.drain()

    async def _from_server(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, listens: asyncio.Event) -> None:
        """Once the client sent LISTEN, the server's bytes are read message by message (the client
        waited for the answer before it, so they start at a message's first byte)."""
        held = b""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ConnectionError):
            while data := await src.read(65536):
                await self._flowing.wait()
                if listens.is_set():
                    data, held = self._without_notifications(held + data)
                dst.write(data)
                await dst.drain()

    def _without_notifications(self, data: bytes) -> tuple[bytes, bytes]:
        """(the whole messages of `data` to deliver, the incomplete rest to hold)."""
        out, at = bytearray(), 0
        while len(data) - at >= 5:
            end = at + 1 + int.from_bytes(data[at + 1:at + 5], "big")
            if end > len(data):
                break
            if self.dropping and data[at] == NOTIFICATION:
                self.dropped += 1
            else:
                out += data[at:end]
            at = end
        return bytes(out), data[at:]


class ProxyThread:
    """A NotifyDroppingProxy on an event loop of its own thread."""

    def __init__(self, database_url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-proxy", daemon=True)
        self._thread.start()
        self.proxy: NotifyDroppingProxy = self._call(NotifyDroppingProxy(database_url).start())

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def url_for(self, database_url: str) -> str:
        return self.proxy.url_for(database_url)

    def cut(self) -> None:
        """Returns once every connection through the proxy is closed."""
        async def cut() -> None:
            self.proxy.cut()

        self._call(cut())

    def restore(self) -> None:
        self._loop.call_soon_threadsafe(self.proxy.restore)

    def drop_notifications(self, on: bool) -> None:
        self.proxy.dropping = on

    @property
    def dropped(self) -> int:
        return self.proxy.dropped

    def stop(self) -> None:
        self._call(self.proxy.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
