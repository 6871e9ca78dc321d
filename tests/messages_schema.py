"""A Messages API event stream checked the way Anthropic sends it and the anthropic SDK's
accumulator reads it: `message_start` first (an empty assistant message, usage with its input
counts), `ping` anywhere, content blocks one at a time with indexes 0, 1, 2... (each started,
given deltas of its own type, stopped before the next starts), a tool call's `input_json_delta`
fragments joining into a JSON object, thinking blocks ending with a signature, then one
`message_delta` (the stop reason, `stop_sequence` set exactly when that is the reason, usage with
output tokens) and `message_stop` last; or an `error` event in Anthropic's shape, which ends it.
check_stream returns the message the events built, as the SDK's get_final_message would."""

from __future__ import annotations

import json
from typing import Any

STOP_REASONS = frozenset({"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal",
                          "model_context_window_exceeded"})
# each block type and the delta types it takes
_DELTAS = {"text": {"text_delta", "citations_delta"}, "tool_use": {"input_json_delta"},
           "thinking": {"thinking_delta", "signature_delta"}, "redacted_thinking": set()}


class StreamError(AssertionError):
    """The stream ended with an error event (its body)."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(f"error event: {body}")
        self.body = body


def _usage(usage: Any, where: str) -> dict[str, Any]:
    assert isinstance(usage, dict), f"{where}: usage must be an object"
    for name in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        value = usage.get(name)
        assert value is None or (isinstance(value, int) and value >= 0), f"{where}: usage.{name} = {value!r}"
    return usage


def check_stream(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """`events`: (SSE event name, data) in the order received."""
    assert events, "an empty stream"
    message: dict[str, Any] | None = None
    open_block: int | None = None
    fragments: dict[int, list[str]] = {}
    delta_seen = stopped = False
    for n, (name, data) in enumerate(events):
        kind = data.get("type")
        assert kind == name, f"event {n}: the `event:` name {name!r} is not the data's type {kind!r}"
        assert not stopped, f"event {n}: {kind} after message_stop"
        if kind == "error":
            error = data.get("error")
            assert isinstance(error, dict) and isinstance(error.get("type"), str) and error.get("message"), data
            assert n == len(events) - 1, "an error event ends the stream"
            raise StreamError(data)
        if kind == "ping":
            continue
        if message is None:
            assert kind == "message_start", f"event {n}: {kind} before message_start"
            message = dict(data["message"])
            assert message["type"] == "message" and message["role"] == "assistant", message
            assert message["content"] == [] and message["stop_reason"] is None, message
            assert isinstance(message["id"], str) and message["id"], message
            _usage(message.get("usage"), "message_start")
            message["usage"] = dict(message["usage"])
            continue
        assert kind != "message_start", f"event {n}: a second message_start"
        blocks: list[dict[str, Any]] = message["content"]
        if kind == "content_block_start":
            assert not delta_seen, f"event {n}: a block after message_delta"
            assert open_block is None, f"event {n}: block {data['index']} starts before block {open_block} stopped"
            assert data["index"] == len(blocks), f"event {n}: block index {data['index']}, expected {len(blocks)}"
            block = dict(data["content_block"])
            assert block.get("type") in _DELTAS, f"event {n}: unknown block type {block.get('type')!r}"
            if block["type"] == "tool_use":
                assert block.get("id") and block.get("name") and block.get("input") == {}, block
                fragments[data["index"]] = []
            if block["type"] == "thinking":
                assert "signature" in block, block
            blocks.append(block)
            open_block = data["index"]
        elif kind == "content_block_delta":
            assert open_block == data["index"], f"event {n}: a delta for block {data['index']}, open: {open_block}"
            block, delta = blocks[open_block], data["delta"]
            assert delta["type"] in _DELTAS[block["type"]], f"event {n}: {delta['type']} in a {block['type']} block"
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "input_json_delta":
                fragments[open_block].append(delta["partial_json"])
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
        elif kind == "content_block_stop":
            assert open_block == data["index"], f"event {n}: stop of block {data['index']}, open: {open_block}"
            block = blocks[open_block]
            if block["type"] == "tool_use":
                text = "".join(fragments[open_block])
                block["input"] = json.loads(text) if text else {}
                assert isinstance(block["input"], dict), f"event {n}: a tool call's input is not an object: {text}"
            open_block = None
        elif kind == "message_delta":
            assert open_block is None, f"event {n}: message_delta with block {open_block} open"
            assert not delta_seen, f"event {n}: a second message_delta"
            delta_seen = True
            reason, sequence = data["delta"].get("stop_reason"), data["delta"].get("stop_sequence")
            assert reason in STOP_REASONS, f"event {n}: stop_reason {reason!r}"
            assert (reason == "stop_sequence") == isinstance(sequence, str), f"event {n}: {data['delta']}"
            usage = _usage(data.get("usage"), "message_delta")
            assert isinstance(usage.get("output_tokens"), int), f"event {n}: message_delta without output_tokens"
            message.update(stop_reason=reason, stop_sequence=sequence)
            message["usage"].update({k: v for k, v in usage.items() if v is not None})
            if reason == "tool_use":
                assert any(b["type"] == "tool_use" for b in blocks), "stop_reason tool_use without a tool_use block"
        elif kind == "message_stop":
            assert delta_seen, f"event {n}: message_stop without message_delta"
            stopped = True
        else:
            raise AssertionError(f"event {n}: unknown event type {kind!r}")
    assert message is not None and stopped, "the stream ended without message_stop"
    return message


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The (event name, data) pairs of an SSE body as Anthropic frames it."""
    out: list[tuple[str, dict[str, Any]]] = []
    for chunk in raw.decode().replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in chunk.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if data:
            out.append((name, json.loads("\n".join(data))))
    return out
