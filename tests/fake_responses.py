"""The OpenAI Responses API of the fake upstream (tests/fake_upstream.py): POST /v1/responses as
JSON or as its typed event stream, in the wire format OpenAI sends (event names, sequence
numbers, snapshots of the response object, usage with token details).

Behaviour: a function call of the first (or the `tool_choice`-named) function tool (one inside a
`namespace` tool too, its call naming the namespace as OpenAI's do) unless the last
input item is a function_call_output or tool_choice is "none"; JSON matching the schema for
`text.format` json_schema; otherwise the fake's usual words. Input tokens are the words of
`instructions` and every input item's text."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from tests import fake_wire as wire

_TIERS = ("default", "flex", "priority", "scale")  # what a response says served it when asked for

_words = wire.word_counter("content", "text", "output", "arguments")


def input_tokens(body: dict[str, Any]) -> int:
    return _words(body.get("instructions")) + _words(body.get("input"))


Refusal = tuple[int, str, str | None]  # status, message, code


def problem(body: Any) -> Refusal | None:
    """What OpenAI's own validation would refuse, as far as a gateway could get it wrong."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return 400, "Missing required parameter: 'model'.", None
    if not isinstance(body.get("input"), str | list):
        return 400, "Missing required parameter: 'input'.", None
    for key in ("messages", "stream_options", "max_tokens"):
        if key in body:
            return 400, f"Unknown parameter: '{key}'.", None
    calls: set[str] = set()
    for i, item in enumerate(body["input"] if isinstance(body["input"], list) else []):
        if not isinstance(item, dict):
            continue
        call_id = item.get("call_id")
        if isinstance(call_id, str) and len(call_id) > 64:
            return 400, (f"Invalid 'input[{i}].call_id': string too long. Expected a string with maximum length "
                         f"64, but got a string with length {len(call_id)} instead."), None
        if item.get("type") in ("function_call", "custom_tool_call"):
            calls.add(str(call_id))
        elif item.get("type") in ("function_call_output", "custom_tool_call_output") and call_id not in calls:
            what = "function call" if item["type"] == "function_call_output" else "custom tool call"
            return 400, f"No tool call found for {what} output with call_id {call_id}.", None
        elif item.get("type") == "reasoning":
            return reasoning_refusal(item)
    return None


def reasoning_refusal(item: dict[str, Any]) -> Refusal:
    """OpenAI's answer to a reasoning input item it did not make (this fake makes none and stores
    nothing): an encrypted_content it cannot verify is a 400, and without one the item is looked up
    by its id among stored items, a 404."""
    if item.get("encrypted_content") is not None:
        return 400, f"The encrypted content for item {item.get('id')} could not be verified.", \
            "invalid_encrypted_content"
    return 404, (f"Item with id '{item.get('id')}' not found. Items are not persisted when `store` is set to "
                 "false. Try again with `store` set to true, or remove this item from your input."), None


def tool_results(body: dict[str, Any]) -> list[Any]:
    """The outputs of the function calls in a request's input, in order."""
    items = body["input"] if isinstance(body["input"], list) else []
    return [i.get("output") for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"]


def function_tools(body: dict[str, Any]) -> list[tuple[dict[str, Any], str | None]]:
    """The function tools offered, each with the namespace it came inside (None at the top level):
    Codex offers an MCP server's tools as a `namespace` tool, and a call of one names it again."""
    out: list[tuple[dict[str, Any], str | None]] = []
    for t in body.get("tools") or []:
        if t.get("type") == "function":
            out.append((t, None))
        elif t.get("type") == "namespace":
            out += [(inner, t.get("name")) for inner in t.get("tools") or [] if inner.get("type") == "function"]
    return out


Call = tuple[str, dict[str, Any], str | None]  # name, arguments, namespace


def pick_call(body: dict[str, Any], script: wire.ToolScript | None = None) -> Call | None:
    offered = function_tools(body)
    namespaces = {t["name"]: ns for t, ns in reversed(offered)}  # (the first tool of a name wins)
    call = _pick(body, [t for t, _ in offered], script)
    return None if call is None else (call[0], call[1], namespaces.get(call[0]))


def _pick(body: dict[str, Any], tools: list[dict[str, Any]], script: wire.ToolScript | None) \
        -> tuple[str, dict[str, Any]] | None:
    if script is not None:
        return script.call([t["name"] for t in tools], bool(tool_results(body)))
    items = body["input"] if isinstance(body["input"], list) else []
    answered = bool(items) and items[-1].get("type") == "function_call_output"
    choice = body.get("tool_choice")
    chat_tools = [{"function": {"name": t["name"], "parameters": t.get("parameters")}} for t in tools]
    named = {"function": {"name": choice["name"]}} if isinstance(choice, dict) and "name" in choice else choice
    return wire.pick_tool(chat_tools, named, answered)


def hosted_items(body: dict[str, Any], item_id: str) -> list[dict[str, Any]]:
    """The hosted tool calls OpenAI runs before it answers, one per hosted tool the request offers:
    a web search, a file search, a code interpreter call (in the container the tool names by id, else
    a new one named after the response)."""
    out: list[dict[str, Any]] = []
    for i, tool in enumerate(t for t in body.get("tools") or [] if isinstance(t, dict)):
        kind, tid = tool.get("type"), f"{item_id[4:20]}{i:02d}"
        if kind in ("web_search", "web_search_preview"):
            out.append({"id": f"ws_{tid}", "type": "web_search_call", "status": "completed",
                        "action": {"type": "search", "query": "weather today"}})
        elif kind == "file_search":
            out.append({"id": f"fs_{tid}", "type": "file_search_call", "status": "completed",
                        "queries": ["weather"], "results": None})
        elif kind == "code_interpreter":  # an existing container named by id, else a new one
            named = tool.get("container")
            container = named if isinstance(named, str) else f"cntr_{item_id[4:28]}"
            out.append({"id": f"ci_{tid}", "type": "code_interpreter_call", "status": "completed",
                        "code": "print(1 + 1)", "container_id": container, "outputs": None})
    return out


def response_body(body: dict[str, Any], rid: str, item_id: str, call_id: str, text: str,
                  tokens: int, finish: str, script: wire.ToolScript | None = None) -> dict[str, Any]:
    call = pick_call(body, script)
    fmt = (body.get("text") or {}).get("format") or {}
    items = body.get("input")
    compacting = isinstance(items, list) and bool(items) and items[-1] == {"type": "compaction_trigger"}
    if call is None and fmt.get("type") == "json_schema":
        text = json.dumps(wire.sample(fmt.get("schema") or {}))
        tokens = len(text.split())
    if compacting:  # OpenAI's compaction: the conversation so far as one opaque item
        digest = hashlib.sha256(json.dumps(items[:-1], sort_keys=True).encode()).hexdigest()
        output: dict[str, Any] = {"id": item_id.replace("msg_", "cmp_"), "type": "compaction",
                                  "encrypted_content": "gAAAAB" + digest}
        tokens = 40
    elif call is not None:
        output = {"id": item_id.replace("msg_", "fc_"), "type": "function_call", "status": "completed",
                  "arguments": json.dumps(call[1]), "call_id": call_id, "name": call[0],
                  **({"namespace": call[2]} if call[2] else {})}
        tokens = 5
    else:
        output = {"id": item_id, "type": "message", "status": "completed", "role": "assistant",
                  "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": text}]}
    incomplete = finish == "length" and call is None
    prompt = input_tokens(body)
    now = int(time.time())
    return {
        "id": rid, "object": "response", "created_at": now, "status": "incomplete" if incomplete else "completed",
        "background": False, "completed_at": None if incomplete else now, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None, "model": body["model"] + "-2024-08-06",
        "output": [*hosted_items(body, item_id), output],
        "parallel_tool_calls": body.get("parallel_tool_calls", True), "previous_response_id": None,
        "prompt_cache_key": None, "reasoning": {"effort": None, "summary": None}, "safety_identifier": None,
        "service_tier": body.get("service_tier") if body.get("service_tier") in _TIERS else "default",
        "store": body.get("store", True), "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [], "top_logprobs": 0,
        "top_p": body.get("top_p", 1.0), "truncation": "disabled", "user": None, "metadata": body.get("metadata") or {},
        "presence_penalty": 0.0, "frequency_penalty": 0.0,
        "usage": {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                  "output_tokens": tokens, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": prompt + tokens},
    }


def frames(final: dict[str, Any]) -> list[bytes]:
    """The event stream OpenAI sends for a one-item response."""
    seq = iter(range(10_000))

    def ev(kind: str, **fields: Any) -> bytes:
        return wire.event(kind, {"type": kind, "sequence_number": next(seq), **fields})

    pending = {**final, "status": "in_progress", "output": [], "usage": None, "completed_at": None,
               "incomplete_details": None}
    out = [ev("response.created", response=pending), ev("response.in_progress", response=pending)]
    *hosted, item = final["output"]
    for at, call in enumerate(hosted):
        out.append(ev("response.output_item.added", output_index=at, item={**call, "status": "in_progress"}))
        out.append(ev("response.output_item.done", output_index=at, item=call))
    at = len(hosted)
    ids = {"item_id": item["id"], "output_index": at}
    if item["type"] == "compaction":
        out.append(ev("response.output_item.added", output_index=at, item=item))
    elif item["type"] == "function_call":
        out.append(ev("response.output_item.added", output_index=at,
                      item={**item, "arguments": "", "status": "in_progress"}))
        out += [ev("response.function_call_arguments.delta", **ids, delta=d) for d in wire.split(item["arguments"])]
        out.append(ev("response.function_call_arguments.done", **ids, arguments=item["arguments"]))
    else:
        text = item["content"][0]["text"]
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
        out.append(ev("response.output_item.added", output_index=at,
                      item={**item, "content": [], "status": "in_progress"}))
        out.append(ev("response.content_part.added", **ids, content_index=0, part=part))
        out += [ev("response.output_text.delta", **ids, content_index=0, delta=d, logprobs=[])
                for d in wire.pieces(text)]
        out.append(ev("response.output_text.done", **ids, content_index=0, text=text, logprobs=[]))
        out.append(ev("response.content_part.done", **ids, content_index=0, part={**part, "text": text}))
    out.append(ev("response.output_item.done", output_index=at, item=item))
    out.append(ev(f"response.{final['status']}", response=final))
    return out
