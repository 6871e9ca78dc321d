"""Token estimates when no upstream counts them: the input tokens of a Messages request
(count_tokens answered for a model served by a non-Anthropic deployment), and the output tokens of
a non-streamed answer whose upstream reported no usage (what is billed, and told to the client, for
it). No tokenizer is downloaded or shipped, so it is a documented rule, not a model's count:

* text (system prompt, message text, tool results, text documents, tool-use inputs as JSON, tool
  definitions as JSON): one token per 4 UTF-8 bytes, rounded up, per piece;
* each image or non-text document (PDF): 1600 tokens (what Anthropic charges for an image at its
  largest default size); in the byte count that admission holds a request to (`prompt_bytes`), a
  base64 run of media counts as at most that many tokens' worth of bytes;
* each message: 4 tokens of framing; the request: 3 more;
* an answer's output: its text (message content, refusal, tool call names and arguments, reasoning
  text; completions' text; Anthropic text, thinking and tool-use blocks; Responses output text,
  function calls and reasoning), one token per 4 UTF-8 bytes, rounded up, per piece.

English prose and code tokenize at roughly 3.5-4.5 bytes per token in current tokenizers, so the
estimate is in the right range for them and overestimates dense non-Latin text less than a word
count would. It is deterministic and never 0 for a request or an answer with content."""

from __future__ import annotations

import re
from typing import Any

import orjson

BYTES_PER_TOKEN = 4
MEDIA_TOKENS = 1600
MESSAGE_OVERHEAD = 4
REQUEST_OVERHEAD = 3


MEDIA_BYTES = MEDIA_TOKENS * BYTES_PER_TOKEN
# Any run of more than MEDIA_BYTES without a space holds a whole window of this size, tiled from
# wherever the search stands: only windows without a space are looked at closer (one memchr each).
_WINDOW = MEDIA_BYTES // 2
_DATA_KEY = b'"data":'
_BASE64 = re.compile(rb"[A-Za-z0-9+/=]{64}")


def prompt_bytes(raw: bytes) -> int:
    """The bytes of a request body that stand for its input tokens, at BYTES_PER_TOKEN each, as
    admission estimates them before any upstream counts: every byte, except that base64 media
    counts as at most MEDIA_BYTES (an image is about 1600 tokens whatever its size; at one token
    per 4 bytes a 2 MB screenshot would count 500,000 and no tokens-per-minute limit would admit
    it). Never more than len(raw). Media is a JSON string where clients put it (media_string): a
    data URL (OpenAI image_url, Responses input_image and input_file) or the `data` of an Anthropic
    base64 source. Searched for with memchr in windows, never a scan in Python and no multi-byte
    search: a 73 kB agent turn without media costs about 20 window checks, a 20 MB body a few ms."""
    size = n = len(raw)
    at = 0
    while at + _WINDOW <= n:
        if raw.find(b" ", at, at + _WINDOW) >= 0:
            at += _WINDOW
            continue
        start = raw.rfind(b'"', 0, at) + 1  # the JSON string this window is in, if it is in one
        end = raw.find(b'"', at)
        if end < 0:
            break
        if end - start > MEDIA_BYTES and media_string(raw, start, end):
            size -= end - start - MEDIA_BYTES
        at = end + 1
    return size


def media_string(raw: bytes, start: int, end: int) -> bool:
    """Whether raw[start:end], the inside of a JSON string, is base64 media: a `data:...;base64,`
    URL or the value of a `data` key, holding base64 (JSON may write its slashes as \\/) and no
    space or \\u escape (text)."""
    head = raw[start:start + 100]
    if head.startswith(b"data:"):
        comma = head.find(b";base64,")
        if comma < 0:
            return False
        start += comma + len(b";base64,")
    elif not raw[max(0, start - 16):start - 1].rstrip(b" ").endswith(_DATA_KEY):
        return False
    if _BASE64.match(raw[start:start + 64].replace(b"\\/", b"/").ljust(64, b"=")) is None:
        return False
    slash = raw.find(b"\\", start, end)
    return (slash < 0 or raw[slash + 1:slash + 2] == b"/") and raw.find(b" ", start, end) < 0


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


def _reasoning_tokens(message: dict[str, Any]) -> int:
    """A chat server's reasoning text (vLLM, DeepSeek, Ollama: `reasoning_content`; others `reasoning`)."""
    for key in ("reasoning_content", "reasoning"):
        if isinstance(message.get(key), str):
            return _text_tokens(message[key])
    return 0


def _arguments_tokens(arguments: Any) -> int:
    """Tool call arguments: JSON text as OpenAI sends it, or an object (Ollama, Anthropic input)."""
    return _text_tokens(arguments) if isinstance(arguments, str) else _json_tokens(arguments)


def _openai_choice_tokens(choice: dict[str, Any]) -> int:
    if isinstance(choice.get("text"), str):  # completions
        return _text_tokens(choice["text"])
    message = choice.get("message")
    if not isinstance(message, dict):
        return 0
    total = _content_tokens(message.get("content")) + _reasoning_tokens(message)
    if isinstance(message.get("refusal"), str):
        total += _text_tokens(message["refusal"])
    calls = message.get("tool_calls")
    legacy = message.get("function_call")
    for call in [*(calls if isinstance(calls, list) else []), *([{"function": legacy}] if legacy else [])]:
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            total += _text_tokens(str(fn.get("name") or "")) + _arguments_tokens(fn.get("arguments"))
    return total


def _anthropic_block_tokens(block: dict[str, Any]) -> int:
    kind = block.get("type")
    if kind == "text":
        return _text_tokens(str(block.get("text") or ""))
    if kind == "thinking":
        return _text_tokens(str(block.get("thinking") or ""))
    if kind in ("tool_use", "server_tool_use"):
        return _text_tokens(str(block.get("name") or "")) + _json_tokens(block.get("input"))
    return 0


def _responses_item_tokens(item: dict[str, Any]) -> int:
    kind = item.get("type")
    if kind == "message":
        parts = item.get("content")
        return sum(_text_tokens(str(p.get("text") or p.get("refusal") or ""))
                   for p in parts if isinstance(p, dict)) if isinstance(parts, list) else 0
    if kind in ("function_call", "custom_tool_call"):
        return _text_tokens(str(item.get("name") or "")) + _arguments_tokens(item.get("arguments", item.get("input")))
    if kind == "reasoning":
        pieces = [*(item.get("summary") or []), *(item.get("content") or [])]
        return sum(_text_tokens(str(p.get("text") or "")) for p in pieces if isinstance(p, dict))
    return 0


def estimate_output_tokens(answer: dict[str, Any]) -> int:
    """Estimated output tokens of a non-streamed answer: an OpenAI chat.completion or
    text_completion (`choices`), an Anthropic message (`content` blocks) or a Responses response
    (`output` items). 0 only when no text came back (an embeddings answer, an empty reply)."""
    choices, content, output = answer.get("choices"), answer.get("content"), answer.get("output")
    if isinstance(choices, list):
        return sum(_openai_choice_tokens(c) for c in choices if isinstance(c, dict))
    if isinstance(content, list):
        return sum(_anthropic_block_tokens(b) for b in content if isinstance(b, dict))
    if isinstance(output, list):
        return sum(_responses_item_tokens(i) for i in output if isinstance(i, dict))
    return 0
