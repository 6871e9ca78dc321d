"""The conversation that comes before a Responses turn's own input (a previous response's, from a
WebSocket's memory, the stored responses or a conversation), with what the turn's checks need to
know of it, found once as it was put together: its size in prompt bytes, the call ids it made,
whether its call ids fit a native upstream's rule, whether every output in it answers a call, and
whether it holds items only this gateway reads (its reasoning and compaction items).

A turn then checks only its own items: an agent's history is tens of kB, and every turn scanned
and encoded all of it again before its own few items (about 60 us of CPU a turn at 66 kB). A
WebSocket's memory extends the history of each turn by that turn's input and output (`then`), so
only those are ever scanned. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from shieldes.providers.signed_reasoning import own_reasoning
from shieldes.providers.tool_ids import CALL_KINDS, OUTPUT_KINDS, RESPONSES
from shieldes.responses.compaction import made_here
from shieldes.responses.objects import Body
from shieldes.usage.tokens import prompt_bytes


@dataclass(frozen=True, slots=True)
class History:
    items: list[Body]  # read-only: callers build new lists from it
    size: int  # prompt bytes (usage.tokens.prompt_bytes) of the items' JSON, as admission counts them
    calls: frozenset[str]  # the call_id of every call item
    ids_fit: bool  # every call_id of its call and output items fits a native upstream's rule (RESPONSES)
    answered: bool  # every output item answers a call before it
    plain: bool  # no reasoning or compaction item this gateway made (a native upstream gets it as it is)

    @staticmethod
    def of(items: list[Body]) -> History:
        return NONE.then(items)

    @property
    def checked(self) -> bool:
        """Whether a turn after it may check only its own items: nothing in it needs a change or
        an error (see upstream.respond)."""
        return self.answered and self.plain

    def then(self, items: list[Body]) -> History:
        """This history followed by `items` (only they are read)."""
        if not items:
            return self
        calls = set(self.calls)
        fits = RESPONSES.fits
        ids_fit, answered, plain = self.ids_fit, self.answered, self.plain
        for item in items:
            if item.__class__ is not dict:
                continue
            kind = item.get("type")
            if kind in CALL_KINDS:
                call_id = item.get("call_id")
                if isinstance(call_id, str):
                    calls.add(call_id)
                    ids_fit = ids_fit and fits(call_id)
            elif kind in OUTPUT_KINDS:
                call_id = item.get("call_id")
                answered = answered and call_id in calls
                ids_fit = ids_fit and isinstance(call_id, str) and fits(call_id)
            elif kind == "reasoning" or kind == "compaction":
                plain = plain and not own_reasoning(item) and not made_here(item)
        return History(self.items + items, self.size + prompt_bytes(orjson.dumps(items)), frozenset(calls),
                       ids_fit, answered, plain)


NONE = History([], 0, frozenset(), True, True, True)
