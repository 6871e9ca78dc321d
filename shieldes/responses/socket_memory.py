"""What one Responses WebSocket connection remembers: the most recent response of each of its lanes
(`stream_id`), so the next `response.create` can continue one by `previous_response_id` even when it
was not stored (`store: false`), as OpenAI's WebSocket mode does. Agents on a WebSocket send only
the new items of each turn; the gateway sends every upstream the whole conversation. A turn on one
lane may continue (fork) the latest response of another. Pure: no I/O."""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from shieldes.responses.history import History
from shieldes.responses.objects import Body

# the request-scoped key under which a WebSocket's response.create carries its lane's memory
SOCKET_MEMORY = "shieldes.socket_memory"
# lanes whose latest conversation a connection keeps: past it, the lane used longest ago is forgotten
# (its unstored responses can no longer be continued there; stored ones still can)
LANES_KEPT = 16


class Remembered(NamedTuple):
    response_id: str
    key_id: str
    history: History  # its conversation: the turns before it, its input, its output


class SocketMemory:
    """The latest response of each lane of one connection, with the key that made it: memory per
    connection stays bounded by LANES_KEPT conversations."""

    __slots__ = ("_kept", "_latest")

    def __init__(self, kept: int = LANES_KEPT) -> None:
        self._latest: OrderedDict[str | None, Remembered] = OrderedDict()
        self._kept = kept

    def lane(self, stream_id: str | None) -> LaneMemory:
        """What one `response.create` on lane `stream_id` (None: the connection's unnamed lane) reads
        and adds to."""
        return LaneMemory(self, stream_id)

    def remember(self, stream_id: str | None, response: Body, key_id: str, before: History) -> None:
        """`response` (its output) after `before` (the history it continued and its own input), as
        its lane's latest. A failed response is not remembered: the turn is sent again, not
        continued."""
        response_id = response.get("id")
        if not isinstance(response_id, str) or response.get("status") == "failed":
            return
        output = [item for item in response.get("output") or [] if isinstance(item, dict)]
        self._latest[stream_id] = Remembered(response_id, key_id, before.then(output))
        self._latest.move_to_end(stream_id)
        while len(self._latest) > self._kept:
            self._latest.popitem(last=False)

    def history(self, response_id: str, key_id: str) -> History | None:
        """The conversation of `response_id` if it is the latest response of one of this connection's
        lanes and `key_id` made it; None sends the lookup on to the stored responses."""
        for kept in self._latest.values():
            if kept.response_id == response_id and kept.key_id == key_id:
                return kept.history
        return None


class LaneMemory:
    """One lane's view of its connection's memory: what the Responses handler reads
    (`history`) and adds its response to (`remember`)."""

    __slots__ = ("_lane", "_memory")

    def __init__(self, memory: SocketMemory, lane: str | None) -> None:
        self._memory = memory
        self._lane = lane

    def remember(self, response: Body, key_id: str, before: History) -> None:
        self._memory.remember(self._lane, response, key_id, before)

    def history(self, response_id: str, key_id: str) -> History | None:
        return self._memory.history(response_id, key_id)
