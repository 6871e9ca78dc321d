"""Input-token estimate for a Messages request when no upstream counts it (count_tokens answered
for a model served by a non-Anthropic deployment). No tokenizer is downloaded or shipped, so it is
a documented rule, not a model's count:

* text (system prompt, message text, tool results, text documents, tool-use inputs as JSON, tool
  definitions as JSON): one token per 4 UTF-8 bytes, rounded up, per piece;
* each image or non-text document (PDF): 1600 tokens (what Anthropic charges for an image at its
  largest default size);
* each message: 4 tokens of framing; the request: 3 more.

English prose and code tokenize at roughly 3.5-4.5 bytes per token in current tokenizers, so the
estimate is in the right range for them and overestimates dense non-Latin text less than a word
count would. It is deterministic and never 0 for a request with content."""

from __future__ import annotations

from typing import Any

import orjson

BYTES_PER_TOKEN = 4
MEDIA_TOKENS = 1600
MESSAGE_OVERHEAD = 4
REQUEST_OVERHEAD = 3


def _text_tokens(text: str) -> int:
    return -(-len(text.encode()) // BYTES_PER_TOKEN)


def _json_tokens(value: Any) -> int:
    return _text_tokens(orjson.dumps(value).decode()) if value else 0


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return _text_tokens(content)
    if not isinstance(content, list):
        return 0
    total = 0
    for block in content:
        if isinstance(block, str):
            total += _text_tokens(block)
            continue
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text" or (kind is None and isinstance(block.get("text"), str)):
            total += _text_tokens(str(block.get("text") or ""))
        elif kind in ("image", "image_url", "input_image"):
            total += MEDIA_TOKENS
        elif kind == "document":
            found = block.get("source")
            source: dict[str, Any] = found if isinstance(found, dict) else {}
            if source.get("type") == "text" and isinstance(source.get("data"), str):
                total += _text_tokens(source["data"])
            elif source.get("type") == "content":
                total += _content_tokens(source.get("content"))
            else:
                total += MEDIA_TOKENS
        elif kind == "tool_use":
            total += _text_tokens(str(block.get("name") or "")) + _json_tokens(block.get("input"))
        elif kind == "tool_result":
            total += _content_tokens(block.get("content"))
        elif kind in ("thinking", "redacted_thinking"):
            continue  # earlier turns' reasoning is not input to the model
        else:
            total += _json_tokens(block)
    return total


def estimate_input_tokens(body: dict[str, Any]) -> int:
    """Estimated input tokens of an Anthropic Messages request body."""
    total = REQUEST_OVERHEAD + _content_tokens(body.get("system"))
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else []:
        if isinstance(message, dict):
            total += MESSAGE_OVERHEAD + _content_tokens(message.get("content"))
    tools = body.get("tools")
    if isinstance(tools, list):
        total += sum(_json_tokens(tool) for tool in tools)
    return total
