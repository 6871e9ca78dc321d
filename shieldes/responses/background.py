"""Background responses (`background: true`): the state of one run on the node that runs it, and
the pure decisions every node makes about a run (what a reader sees when its node died, what a
cancel answers, how events are numbered). No I/O and no clock here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import orjson

from shieldes.errors import InvalidRequest
from shieldes.responses.objects import Body
from shieldes.responses.store import RunState

PENDING = ("queued", "in_progress")
FINISHED = ("completed", "failed", "incomplete")  # cancel refuses these, as OpenAI does
DIED = "its node stopped answering the cluster, or restarted"
DRAINED = "its node was shut down"
STOPPED = "the node running this background response ({node}) stopped before it finished ({why}); create it again"


def pending(response: Body) -> bool:
    """A background response still queued or running (by its row or snapshot)."""
    return response.get("background") is True and response.get("status") in PENDING


def owner_gone(epoch: int | None, owner_epoch: int | None, alive: bool) -> bool:
    """Whether the boot that ran a response is gone: the node's row is missing (it left), holds a
    newer boot epoch (it restarted) or its heartbeat lapsed (it died)."""
    return epoch is None or owner_epoch != epoch or not alive


def stopped(response: Body, node: str | None, why: str) -> Body:
    """The response as `failed`, saying its node stopped and to create it again."""
    return dict(response, status="failed", error={"code": "server_error",
                                                   "message": STOPPED.format(node=node or "?", why=why)})


def cancelled(response: Body, usage: Body | None) -> Body:
    """The response as cancelled, with the usage billed for what ran."""
    return dict(response, status="cancelled", usage=usage if usage is not None else response.get("usage"))


def check_cancellable(response: Body) -> None:
    """A background response that finished cannot be cancelled (OpenAI's 400); a cancelled one is
    answered again as it is (idempotent); a pending one is cancelled."""
    status = response.get("status")
    if status in FINISHED:
        raise InvalidRequest(f"Cannot cancel a {status} response." if status != "incomplete" else
                             "Cannot cancel a response in terminal state.", param="response_id")


def numbered(event: Body, seq: int, response_id: str) -> Body:
    """An event as a background run records it: numbered by its place in the run (the upstream's
    own numbers do not survive failover or an error event the gateway adds) and, for events that
    carry the response, naming the run's id and `background: true` (a native upstream answers
    under its own id)."""
    out = dict(event, sequence_number=seq)
    response = out.get("response")
    if isinstance(response, dict):
        out["response"] = dict(response, id=response_id, background=True)
    return out


def ended(response: Body, events: list[Body]) -> Body:
    """A run's response once its stream is over: as the stream ended it, or `failed` with the
    error event that broke it."""
    if response.get("status") not in ("queued", "in_progress"):
        return response
    error = next((e.get("error") for e in reversed(events) if e.get("type") == "error"), None)
    message = error.get("message") if isinstance(error, dict) else None
    return dict(response, status="failed", error={"code": "server_error",
                                                   "message": message or "the upstream stream ended early; retry"})


def seen(state: RunState) -> Body:
    """A row's response as readers see it: `failed` once the boot running it is gone."""
    if pending(state.response) and owner_gone(state.epoch, state.owner_epoch, state.owner_alive):
        return stopped(state.response, state.node, DIED)
    return state.response


def sse_events(buffer: bytes) -> tuple[list[Body], bytes]:
    """The whole SSE events in `buffer` (their data parsed) and what is left of it."""
    *whole, rest = buffer.replace(b"\r\n", b"\n").split(b"\n\n")
    events: list[Body] = []
    for frame in whole:
        data = b"\n".join(line[5:].removeprefix(b" ") for line in frame.split(b"\n") if line.startswith(b"data:"))
        if data and data != b"[DONE]":
            parsed = orjson.loads(data)
            if isinstance(parsed, dict):
                events.append(parsed)
    return events, rest


def sse_frame(event: Body) -> bytes:
    return b"event: " + str(event.get("type", "")).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What a run stores besides its response and events."""

    key_id: str
    created_at: float
    previous_response_id: str | None
    model: str
    input: list[Body]


class Run:
    """One background response on the node running it: its response as it stands, its events in
    order, whether a cancel was asked, and how much of it the database holds. Readers on this node
    follow it from memory; other nodes read its row."""

    def __init__(self, response: Body, info: RunInfo) -> None:
        self.id: str = response["id"]
        self.response = response
        self.info = info
        self.events: list[Body] = []
        self.frames: list[bytes] = []
        self.written = 0  # events the row holds
        self.landed = False  # the row was inserted (later writes only update it)
        self.deleted = False  # its row was deleted while it ran (DELETE /v1/responses/{id}): it was stopped
        self.dirty = True  # the response changed since the last write
        self.ended = False
        self.cancel_asked = False
        self.task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._buffer = b""

    def _notify(self) -> None:
        self.dirty = True
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def add(self, event: Body) -> None:
        event = numbered(event, len(self.events), self.id)
        self.events.append(event)
        self.frames.append(sse_frame(event))
        response = event.get("response")
        if isinstance(response, dict) and not self.ended:
            self.response = response
        self._notify()

    def feed(self, data: bytes) -> None:
        """SSE bytes as the stream relay writes them (a native read may hold several events)."""
        events, self._buffer = sse_events(self._buffer + data)
        for event in events:
            self.add(event)

    def end(self, response: Body, event: str | None = None) -> None:
        """The run is over: `response` is final; `event` (e.g. response.failed) is added for it."""
        if self.ended:
            return
        if event is not None:
            self.add({"type": event, "response": response})
        self.response = dict(response, id=self.id, background=True)
        self.ended = True
        self._notify()

    def deltas(self) -> int:
        return sum(1 for e in self.events if str(e.get("type", "")).endswith(".delta"))

    async def follow(self, after: int, shown: Callable[[int], bytes] | None = None) -> AsyncIterator[bytes]:
        """The frames after index `after`, then each new one as it comes, until the run ends.
        `shown(i)`: frame i as this reader may see it (default: as recorded)."""
        i = after + 1
        while True:
            changed = self._changed
            while i < len(self.frames):
                yield self.frames[i] if shown is None else shown(i)
                i += 1
            if self.ended:
                return
            await changed.wait()

    async def until_ended(self) -> None:
        while not self.ended:
            await self._changed.wait()
