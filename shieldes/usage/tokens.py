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

from typing import Any

import orjson

BYTES_PER_TOKEN = 4
MEDIA_TOKENS = 1600
MESSAGE_OVERHEAD = 4
REQUEST_OVERHEAD = 3


MEDIA_BYTES = MEDIA_TOKENS * BYTES_PER_TOKEN


def prompt_bytes(raw: bytes) -> int:
    """The bytes of a request body that stand for its input tokens, at BYTES_PER_TOKEN each, as
    admission estimates them before any upstream counts: every byte, except that a base64 run of
    media counts as at most MEDIA_BYTES (an image is about 1600 tokens whatever its size; at one
    token per 4 bytes a 2 MB screenshot would count 500,000 and no tokens-per-minute limit would
    admit it). Never more than len(raw). The media is found where clients put it: a data URL
    (OpenAI image_url, Responses input_image and input_file) or the `data` string of an Anthropic
    base64 source (one with no space and no \\u escape: not text). Byte searches only, no scan
    in Python: a 20 MB body costs a few passes of memchr."""
    size = len(raw)
    if b"base64" not in raw:
        return size
    for marker in (b";base64,", b'"data":'):
        at = raw.find(marker)
        while at >= 0:
            start = at + len(marker)
            if marker == b'"data":':  # JSON allows spaces before the string
                while raw[start:start + 1] == b" ":
                    start += 1
                if raw[start:start + 1] != b'"':
                    at = raw.find(marker, start)
                    continue
                start += 1
            end = raw.find(b'"', start)  # base64 holds no quote: the string's end
            if end < 0:
                break
            if end - start > MEDIA_BYTES and (marker == b";base64," or (
                    raw.find(b" ", start, end) < 0 and raw.find(b"\\u", start, end) < 0)):
                size -= end - start - MEDIA_BYTES
            at = raw.find(marker, end)
    return size


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
