"""A Responses request's input items read off the client's bytes: whether a coding agent's turn
(its whole conversation as `input`, tens to hundreds of kB) goes to a native upstream exactly as
the client sent it, decided without decoding the items into Python objects. A typed msgspec read
keeps of each item its `type`, its `call_id` and the first bytes of the fields that tell an item
this gateway made; contents and outputs are skipped. Pure: no I/O, no state."""

from __future__ import annotations

import msgspec

from shieldes.providers.signed_reasoning import ITEM_MARK, MARK
from shieldes.providers.tool_ids import RESPONSES, answered_calls
from shieldes.responses.compaction import SEAL

_NULL = msgspec.Raw(b"null")
_SEAL = SEAL.encode()


class _Item(msgspec.Struct, gc=False):
    type: str
    content: msgspec.Raw = _NULL
    call_id: str | None = None
    id: msgspec.Raw = _NULL
    encrypted_content: msgspec.Raw = _NULL


_ITEMS = msgspec.json.Decoder(list[_Item])
_QUOTE = ord('"')


def _may_start_with(value: msgspec.Raw, prefix: bytes) -> bool:
    """Whether the JSON value `value` may be a string starting with `prefix` (an escape among its
    first bytes counts as may: the decoded text could)."""
    head = bytes(memoryview(value)[:1 + len(prefix)])
    return head == b'"' + prefix or (head[:1] == b'"' and b"\\" in head)


def input_as_sent(items: bytes | memoryview) -> bool:
    """Whether the input `items` (their JSON bytes, already checked to be valid JSON) go to a native
    upstream as the client sent them, which is what the decoded path would decide too: every item
    an object with a string `type` and no message's content a bare string (the gateway would
    normalize either), every call_id fitting a native upstream's rule and every output answering
    a call before it (else the ids are fitted or the request refused, in the gateway's words), no
    reasoning or compaction item this gateway made (those are opened or left out). False sends the
    caller to the decoded path, which does each of these exactly."""
    return calls_made(items) is not None


def calls_made(items: bytes | memoryview, before: frozenset[str] = frozenset()) -> frozenset[str] | None:
    """input_as_sent, for items that come after others which passed and made the calls `before`:
    the call ids made by them all when these pass too, else None."""
    try:
        decoded = _ITEMS.decode(items)
    except msgspec.ValidationError:
        return None
    calls: list[tuple[str, str | None]] = []
    for item in decoded:
        kind = item.type
        if kind == "message":
            if bytes(memoryview(item.content)[:1]) == b'"':  # text content: normalized into a part
                return None
        elif kind == "reasoning":
            if _may_start_with(item.encrypted_content, MARK) or _may_start_with(item.id, ITEM_MARK):
                return None
        elif kind == "compaction":
            if _may_start_with(item.encrypted_content, _SEAL):
                return None
        else:
            calls.append((kind, item.call_id))
    if not calls:
        return before
    made = answered_calls(calls, RESPONSES, before)
    return None if made is None else frozenset(made)
