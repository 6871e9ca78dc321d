"""Compaction of a conversation where the upstream cannot do it. OpenAI's Responses API compacts
a conversation into one opaque `compaction` item (a turn whose input ends with a
`compaction_trigger` item, or POST /v1/responses/compact), which later turns send back in place of
the history; Codex relies on it. A native deployment on OpenAI does that itself. Any other
deployment gets, instead, a request for a handoff summary of the conversation; the summary comes
back sealed in a compaction item of this gateway (`encrypted_content` beginning with `shd1.`), and
wherever such an item comes back in a later turn's input, any deployment gets the summary as a user
message. Sealed, not encrypted: the client holds its own conversation anyway, and every node can
open it. Pure: no I/O."""

from __future__ import annotations

import base64
import binascii
import zlib
from itertools import islice
from typing import Any

from shieldes.errors import InvalidRequest
from shieldes.responses.objects import new_id

Body = dict[str, Any]

TRIGGER = {"type": "compaction_trigger"}
SEAL = "shd1."
MAX_SUMMARY_BYTES = 1 << 20  # an opened seal is at most this much text
SUMMARY_REQUEST = (
    "Compact this conversation so the work can go on in a fresh context. Write a handoff summary for "
    "yourself: the user's goals and constraints, what has been done and decided, the current state "
    "of the work (files, commands and their results), open questions and the next steps. Be "
    "complete on facts and brief in words. Write only the summary, with no tool calls."
)
SUMMARY_HEADING = "Summary of the conversation so far (it was compacted):"


def compacting(body: Body) -> bool:
    """Whether a Responses request asks for a compaction: its input ends with the trigger item."""
    items = body.get("input")
    return isinstance(items, list) and bool(items) and items[-1] == TRIGGER


def summary_request(body: Body) -> Body:
    """The compaction request as an ordinary turn: the conversation, then the ask for its summary,
    answered in text (tools stay defined, for the calls in the history, but are not to be called)."""
    items = body["input"][:-1]
    ask = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": SUMMARY_REQUEST}]}
    out = {k: v for k, v in body.items() if k not in ("text", "tool_choice", "parallel_tool_calls")}
    out["input"] = [*items, ask]
    if body.get("tools"):
        out["tool_choice"] = "none"
    return out


def seal(summary: str) -> str:
    return SEAL + base64.urlsafe_b64encode(zlib.compress(summary.encode())).decode()


def compaction_item(summary: str) -> Body:
    return {"type": "compaction", "id": new_id("cmp"), "encrypted_content": seal(summary)}


def made_here(item: Any) -> bool:
    """A compaction item this gateway sealed."""
    return isinstance(item, dict) and item.get("type") == "compaction" and \
        isinstance(item.get("encrypted_content"), str) and item["encrypted_content"].startswith(SEAL)


def opened(item: Body, index: int) -> Body:
    """A compaction item of this gateway as the user message that carries its summary."""
    try:
        data = base64.b64decode(item["encrypted_content"][len(SEAL):], altchars=b"-_", validate=True)
        inflate = zlib.decompressobj()
        text = inflate.decompress(data, MAX_SUMMARY_BYTES).decode()
        if not inflate.eof and not inflate.unconsumed_tail:  # (a tail left: the summary's first MiB is kept)
            raise ValueError("the compressed summary is cut")
    except (binascii.Error, ValueError, zlib.error, UnicodeDecodeError):
        raise InvalidRequest(f"input[{index}] is a compaction item whose encrypted_content was changed or cut: "
                             "send it back exactly as it came", param=f"input[{index}].encrypted_content") from None
    text = f"{SUMMARY_HEADING}\n\n{text}"
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def with_summaries(body: Body, start: int = 0) -> Body | None:
    """`body` with each compaction item of this gateway replaced by its summary; None when it holds
    none (the request goes as it is). Its input is looked at from `start` on (the items before it
    are known to hold none)."""
    items = body.get("input")
    if not isinstance(items, list) or not any(map(made_here, islice(items, start, None))):
        return None
    return dict(body, input=[opened(item, i) if made_here(item) else item for i, item in enumerate(items)])


def compacted_output(items: list[Any], compaction: Body) -> list[Body]:
    """What POST /v1/responses/compact answers: the input's user messages, then the compaction
    item (as OpenAI's does: the user's own words stay as they were)."""
    users = [item for item in items if isinstance(item, dict) and item.get("type", "message") == "message"
             and item.get("role") == "user"]
    return [*users, compaction]
