"""Claude's signed thinking in a Responses `reasoning` item's `encrypted_content`, for the Responses
translation to Anthropic and Bedrock: a client (Codex, the Agents SDK) sends the item back on its
next turn, and the blocks go back first in that assistant turn, so a tool call continues with
thinking on. Pure.

The value is `shd-thinking-v1.` and the base64 of the JSON list of blocks, as chat's
`thinking_blocks` carries them (chat_parts.thinking_block), but with each block's signature (a
redacted block's data) lifted out: the JSON holds its length in its place, and the value goes on
with `.` and the signature as it is, one after another. A signature is opaque base64 text already
and the bulk of a block (Claude 4 puts the whole thinking in it, kB of it): encoded in base64 again
it cost about 3.5 ns of CPU a character to decode, on every turn a client sends the item back
(Codex sends its whole history), where splitting it off costs a copy. A signature holding a `.`
stays in the JSON; values made before signatures were lifted out (no `.` after the prefix) read as
they always did. Each lifted signature must be as long as the JSON says and every one must be
used, so a value cut short or spliced reads as no blocks.

It is not sealed by the gateway: Claude signs each block and refuses one that was altered (a
redacted block is Anthropic's own ciphertext), so a forged value is refused upstream as a forged
chat `thinking_blocks` is, and no key has to be shared by every node of a cluster or kept across
key rotations for conversations to go on.
Anything else (OpenAI's own encrypted reasoning, a truncated or altered value) reads as no blocks.

A native Responses upstream (OpenAI, Azure) refuses an `encrypted_content` it did not make (400),
and a reasoning item without one that it does not hold (404). The gateway's reasoning items are
told by their value, or, without one (the client did not ask for `reasoning.encrypted_content`, or
the reasoning came from a chat upstream as text), by their id, which the gateway makes with its own
prefix (`rs_shd_`, never an OpenAI id: those are hex after `rs_`); they are left out of the input
sent there (`without_own_reasoning`). An item with another `encrypted_content` is the upstream's
own, whatever its id."""

from __future__ import annotations

import base64
import binascii
from itertools import islice
from typing import Any

import orjson

from shieldes.providers.base import Body
from shieldes.providers.chat_parts import Thinking, read_thinking_blocks, thinking_block

PREFIX = "shd-thinking-v1."
MARK = PREFIX.encode()
ITEM_PREFIX = "rs_shd"  # the gateway's reasoning item ids: ITEM_PREFIX, `_` and random hex (new_id)
_ITEM_MARK = ITEM_PREFIX + "_"
ITEM_MARK = _ITEM_MARK.encode()
DROPPED = "input.reasoning"  # named in x-shieldes-dropped when such items are left out
_KINDS = ("thinking", "redacted_thinking")


_SEPARATOR = "."


def _opaque_field(block: Body) -> str:
    return "data" if block["type"] == "redacted_thinking" else "signature"


def encrypted_content(blocks: list[Thinking]) -> str:
    """The blocks as a reasoning item's `encrypted_content` (opaque to the client)."""
    heads: list[Body] = []
    lifted: list[str] = []
    for block in map(thinking_block, blocks):
        name = _opaque_field(block)
        opaque = block[name]
        if opaque and _SEPARATOR not in opaque:
            block[name] = len(opaque)
            lifted.append(opaque)
        heads.append(block)
    head = base64.b64encode(orjson.dumps(heads)).decode("ascii")
    return _SEPARATOR.join([PREFIX + head, *lifted])


def thinking_of(value: Any) -> list[Thinking]:
    """The signed blocks an `encrypted_content` carries: none for a value this gateway did not make
    or that does not decode whole (never an error: the turn goes on with what it has)."""
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return []
    head, *lifted = value[len(PREFIX):].split(_SEPARATOR)
    try:  # (a2b_base64 takes the str as it is; a non-ASCII one is a ValueError, as bad JSON is)
        blocks = orjson.loads(binascii.a2b_base64(head, strict_mode=True))
    except (binascii.Error, ValueError):
        return []
    return read_thinking_blocks(blocks) if _put_back(blocks, lifted) else []


def _put_back(blocks: Any, lifted: list[str]) -> bool:
    """Put each lifted signature back in its block (in place); False when the value was cut or
    spliced: a length that does not match, a signature left over or missing."""
    if not isinstance(blocks, list):
        return False
    taken = 0
    for block in blocks:
        if not isinstance(block, dict) or block.get("type") not in _KINDS:
            continue  # (read_thinking_blocks leaves it out)
        name = _opaque_field(block)
        size = block.get(name)
        if isinstance(size, int) and not isinstance(size, bool):
            if taken == len(lifted) or len(lifted[taken]) != size:
                return False
            block[name] = lifted[taken]
            taken += 1
    return taken == len(lifted)


def own_reasoning(item: Any) -> bool:
    """Whether an input item is a reasoning item this gateway made: its `encrypted_content` is the
    gateway's, or it has none and its id is the gateway's."""
    if item.__class__ is not dict or item.get("type") != "reasoning":  # (the common case, checked first)
        return False
    value = item.get("encrypted_content")
    if isinstance(value, str) and value:
        return value.startswith(PREFIX)
    given = item.get("id")
    return isinstance(given, str) and given.startswith(_ITEM_MARK)


def without_own_reasoning(body: dict[str, Any], start: int = 0) -> dict[str, Any] | None:
    """`body` without the reasoning items this gateway made, for a native Responses upstream; None
    when it has none (the body goes as it is, the client's bytes too). The whole item goes: OpenAI
    refuses one stripped of its `encrypted_content` as well (it looks the id up among stored items,
    404), and the reasoning it carried is another model's, of no use to this one. Its input is
    looked at from `start` on (the items before it are known to hold none)."""
    items = body.get("input")
    if not isinstance(items, list) or not any(map(own_reasoning, islice(items, start, None))):
        return None
    return dict(body, input=[item for item in items if not own_reasoning(item)])
