"""Claude's signed thinking in a Responses `reasoning` item's `encrypted_content`, for the Responses
translation to Anthropic and Bedrock: a client (Codex, the Agents SDK) sends the item back on its
next turn, and the blocks go back first in that assistant turn, so a tool call continues with
thinking on. Pure.

The value is `shd-thinking-v1.` and the base64 of the JSON list of blocks, as chat's
`thinking_blocks` carries them (chat_parts.thinking_block). It is not sealed by the gateway: Claude
signs each block and refuses one that was altered (a redacted block is Anthropic's own ciphertext),
so a forged value is refused upstream as a forged chat `thinking_blocks` is, and no key has to be
shared by every node of a cluster or kept across key rotations for conversations to go on.
Anything else (OpenAI's own encrypted reasoning, a truncated or altered value) reads as no blocks."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson

from shieldes.providers.chat_parts import Thinking, read_thinking_blocks, thinking_block

PREFIX = "shd-thinking-v1."


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
