"""What one Responses WebSocket connection remembers: its most recent response, so the next
`response.create` on the connection can continue it by `previous_response_id` even when it was not
stored (`store: false`), as OpenAI's WebSocket mode does. Agents on a WebSocket send only the new
items of each turn; the gateway sends every upstream the whole conversation. Pure: no I/O."""

from __future__ import annotations

from typing import Any

Body = dict[str, Any]

# the request-scoped key under which a WebSocket's response.create carries its connection's memory
SOCKET_MEMORY = "shieldes.socket_memory"


class SocketMemory:
    """The conversation up to and including the connection's latest response (its input items, those
    of the turns before it and its output items), with the key that made it. One response only:
    memory per connection stays bounded by one conversation."""

    __slots__ = ("items", "key_id", "response_id")

    def __init__(self) -> None:
        self.response_id: str | None = None
        self.key_id: str | None = None
        self.items: list[Body] = []

    def remember(self, response: Body, key_id: str, before: list[Body]) -> None:
        """`response` (its output) after `before` (the history it continued and its own input). A
        failed response is not remembered: the turn is sent again, not continued."""
        response_id = response.get("id")
        if not isinstance(response_id, str) or response.get("status") == "failed":
            return
        output = [item for item in response.get("output") or [] if isinstance(item, dict)]
        self.response_id, self.key_id, self.items = response_id, key_id, before + output

    def history(self, response_id: str, key_id: str) -> list[Body] | None:
        """The conversation of `response_id` if it is this connection's latest response and `key_id`
        made it; None sends the lookup on to the stored responses."""
        if response_id != self.response_id or key_id != self.key_id:
            return None
        return list(self.items)
