"""The conversation that comes before a Responses turn's own input (a previous response's, from a
WebSocket's memory, the stored responses or a conversation), with what the turn's checks need to
know of it, found once as it was put together: its size in prompt bytes, the call ids it made
(when they all fit a native upstream's rule and every output in it answers a call), and whether it
holds items only this gateway reads (its reasoning and compaction items).

A turn then checks only its own items: an agent's history is tens of kB, and every turn scanned
and encoded all of it again before its own few items (about 60 us of CPU a turn at 66 kB). A
WebSocket's memory extends the history of each turn by that turn's input and output (`then`), so
only those are ever scanned. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from shieldes.providers.signed_reasoning import own_reasoning
from shieldes.providers.tool_ids import RESPONSES, answered_calls
from shieldes.responses.compaction import made_here
from shieldes.responses.objects import Body
from shieldes.usage.tokens import prompt_bytes


@dataclass(frozen=True, slots=True)
class History:
    items: list[Body]  # read-only: callers build new lists from it
    size: int  # prompt bytes (usage.tokens.prompt_bytes) of the items' JSON, as admission counts them
    # the call_id of every call item, when every call_id fits a native upstream's rule (RESPONSES)
    # and every output answers a call before it; None when not (a turn after it reads it whole)
    calls: frozenset[str] | None
    plain: bool  # no reasoning or compaction item this gateway made (a native upstream gets it as it is)

    @staticmethod
    def of(items: list[Body]) -> History:
        return NONE.then(items)

    @property
    def checked(self) -> bool:
        """Whether a turn after it may check only its own items: nothing in it needs a change or
        an error (see upstream.respond)."""
        return self.calls is not None and self.plain

    def then(self, items: list[Body]) -> History:
        """This history followed by `items` (only they are read): the same History as `of` finds
        reading them all (`History.of(a).then(b) == History.of(a + b)`), so a history extended turn
        by turn admits and checks a turn exactly as one read whole."""
        if not items:
            return self
        calls = self.calls
        if calls is not None:  # (as input_bytes reads the items of a turn sent as bytes)
            made = answered_calls([(item.get("type"), item.get("call_id")) for item in items
                                   if item.__class__ is dict], RESPONSES, calls)
            calls = None if made is None else frozenset(made)
        plain = self.plain and not any(own_reasoning(item) or made_here(item) for item in items)
        # (the JSON of a + b is a's without its `]` and b's with a comma for its `[`: one byte less)
        joined = 1 if self.items else 0
        return History(self.items + items, self.size + prompt_bytes(orjson.dumps(items)) - joined, calls, plain)


NONE = History([], 0, frozenset(), True)
