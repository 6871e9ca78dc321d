"""Claude's signed thinking in a Responses `reasoning` item's `encrypted_content`, for the Responses
translation to Anthropic and Bedrock: a client (Codex, the Agents SDK) sends the item back on its
next turn, and the blocks go back first in that assistant turn, so a tool call continues with
thinking on. Pure.

The value is `shd-thinking-v1.` and the base64 of the JSON list of blocks, as chat's
`thinking_blocks` carries them (chat_parts.thinking_block). It is not sealed by the gateway: Claude
signs each block and refuses one that was altered (a redacted block is Anthropic's own ciphertext),
so a forged value is refused upstream as a forged chat `thinking_blocks` is, and no key has to be
shared by every node of a cluster or kept across key rotations for conversations to go on.
Anything else (OpenAI's own encrypted reasoning, a truncated or altered value) reads as no blocks.

A native Responses upstream (OpenAI, Azure) refuses an `encrypted_content` it did not make (400),
and a reasoning item without one that it does not hold (404): the items that carry such a value
are left out of the input sent there (`without_own_reasoning`)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from shieldes.providers.chat_parts import Thinking, read_thinking_blocks, thinking_block

PREFIX = "shd-thinking-v1."
MARK = PREFIX.encode()
DROPPED = "input.reasoning"  # named in x-shieldes-dropped when such items are left out


def encrypted_content(blocks: list[Thinking]) -> str:
    """The blocks as a reasoning item's `encrypted_content` (opaque to the client)."""
    data = orjson.dumps([thinking_block(b) for b in blocks])
    return PREFIX + base64.b64encode(data).decode("ascii")


def thinking_of(value: Any) -> list[Thinking]:
    """The signed blocks an `encrypted_content` carries: none for a value this gateway did not make
    or that does not decode whole (never an error: the turn goes on with what it has)."""
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return []
    try:  # (a2b_base64 takes the str as it is; a non-ASCII one is a ValueError, as bad JSON is)
        blocks = orjson.loads(binascii.a2b_base64(value[len(PREFIX):]))
    except (binascii.Error, ValueError):
        return []
    return read_thinking_blocks(blocks)


def own_reasoning(item: Any) -> bool:
    """Whether an input item is a reasoning item whose `encrypted_content` this gateway made."""
    if item.__class__ is not dict or item.get("type") != "reasoning":  # (the common case, checked first)
        return False
    value = item.get("encrypted_content")
    return isinstance(value, str) and value.startswith(PREFIX)


def without_own_reasoning(body: dict[str, Any]) -> dict[str, Any] | None:
    """`body` without the reasoning items that carry this gateway's `encrypted_content`, for a
    native Responses upstream; None when it has none (the body goes as it is, the client's bytes
    too). The whole item goes: OpenAI refuses one stripped of it as well (it looks the id up among
    stored items, 404), and the reasoning it carried is Claude's, of no use to another model."""
    items = body.get("input")
    if not isinstance(items, list) or not any(map(own_reasoning, items)):
        return None
    return dict(body, input=[item for item in items if not own_reasoning(item)])
