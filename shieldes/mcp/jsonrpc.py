"""MCP's JSON-RPC messages as the gateway reads them: what a POST asks for, the errors it answers
in the protocol's own shape, and the rewrite of a tools/list answer to the tools a key may call.
Pure functions over plain values (no I/O)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from shieldes.errors import ShieldesError
from shieldes.mcp.access import allows_method, allows_tool, filter_tools

Message = dict[str, Any]

# JSON-RPC error codes: the spec's own, then the server-defined range (-32000..-32099) for the gateway's refusals
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
INTERNAL_ERROR = -32603
REFUSED = -32001  # the key may not do this (unknown or revoked key, server or tool not allowed)
RATE_LIMITED = -32002
UPSTREAM_FAILED = -32003
# an HTTP method /mcp/{name} does not take: the code the TypeScript MCP SDK's servers answer it with
# (clients act on the HTTP status, 405, and `Allow`)
UNSUPPORTED_METHOD = -32000
# methods named in metrics as they are; any other is "other" (the label set stays bounded)
KNOWN_METHODS = frozenset({
    "initialize", "ping", "tools/list", "tools/call", "resources/list", "resources/read",
    "resources/templates/list", "resources/subscribe", "resources/unsubscribe", "prompts/list", "prompts/get",
    "completion/complete", "logging/setLevel", "notifications/initialized", "notifications/cancelled",
    "notifications/progress", "notifications/roots/list_changed",
})


class McpRefused(ShieldesError):
    """A message the gateway answers itself (never sent upstream): a JSON-RPC error for `ids`."""

    status = 200
    type = "mcp_error"
    code = "mcp_refused"

    def __init__(self, message: str, *, code: str, rpc_code: int = REFUSED, status: int = 200,
                 ids: tuple[Any, ...] = (None,)) -> None:
        super().__init__(message, code=code)
        self.rpc_code, self.status, self.ids = rpc_code, status, ids


@dataclass(frozen=True)
class Posted:
    """What one POST carries: its messages, whether as a batch, and what the request log and
    metrics name it by (the first request's method and, for tools/call, the tool)."""

    messages: tuple[Message, ...]
    batch: bool
    method: str | None
    tool: str | None
    tools_list_ids: tuple[Any, ...]  # ids of tools/list requests (their answers get filtered)
    tool_calls: int


def error_body(ids: tuple[Any, ...], rpc_code: int, message: str, data: dict[str, Any] | None = None, *,
               batch: bool = False) -> bytes:
    """JSON-RPC error response(s): one object for a single message, an array for a batch (a batch of
    one too: JSON-RPC answers a batch with an array, which clients match by id)."""
    errors = [{"jsonrpc": "2.0", "id": i, "error": {"code": rpc_code, "message": message,
                                                    **({"data": data} if data else {})}} for i in ids]
    return orjson.dumps(errors if batch or len(errors) != 1 else errors[0])


def http_refusal(status: int, code: str, message: str) -> bytes:
    """A refusal made before any MCP route ran (no such path, a method the transport does not take,
    a failure of the node) as the JSON-RPC error MCP clients read: id null, as for a message that
    could not be read, and the gateway's code in `data.code`."""
    rpc = UNSUPPORTED_METHOD if status == 405 else INTERNAL_ERROR if status >= 500 else INVALID_REQUEST
    return error_body((None,), rpc, message, {"code": code})


def _request_ids(messages: tuple[Message, ...]) -> tuple[Any, ...]:
    return tuple(m["id"] for m in messages if "method" in m and "id" in m) or (None,)


def parse_post(raw: bytes) -> Posted:
    """The POST body: one JSON-RPC message or a batch (an array, protocol 2025-03-26)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise McpRefused(f"the body is not JSON ({str(exc)[:120]}): send one JSON-RPC message",
                         code="invalid_json", rpc_code=PARSE_ERROR, status=400) from None
    batch = isinstance(data, list)
    items = data if batch else [data]
    if not items or not all(isinstance(m, dict) and m.get("jsonrpc") == "2.0" for m in items):
        raise McpRefused("the body is not a JSON-RPC 2.0 message: send an object with \"jsonrpc\": \"2.0\"",
                         code="invalid_request", rpc_code=INVALID_REQUEST, status=400)
    messages = tuple(items)
    method = tool = None
    list_ids: list[Any] = []
    calls = 0
    for m in messages:
        name = m.get("method")
        if not isinstance(name, str):
            continue  # a response or error the client sends back (to a server request)
        if method is None:
            method = name
        if name == "tools/list" and "id" in m:
            list_ids.append(m["id"])
        if name == "tools/call":
            calls += 1
            params = m.get("params")
            called = params.get("name") if isinstance(params, dict) else None
            if not isinstance(called, str) or not called:
                raise McpRefused("tools/call needs params.name, the tool to call", code="invalid_request",
                                 rpc_code=-32602, ids=_request_ids((m,)))
            tool = tool or called
    return Posted(messages, batch, method, tool, tuple(list_ids), calls)


def check_access(posted: Posted, entries: tuple[str, ...] | None, server: str, key_name: str) -> None:
    """Refuses (as McpRefused, answered without reaching the server) a message the key may not
    send: a tools/call of a tool outside its allow-list, or a feature beyond its tools."""
    for m in posted.messages:
        name = m.get("method")
        if not isinstance(name, str):
            continue
        if name == "tools/call":
            tool = m["params"]["name"]
            if not allows_tool(entries, server, tool):
                raise McpRefused(
                    f"key {key_name!r} may not call tool {tool!r} of MCP server {server!r}; allow it with "
                    f"`shieldes key update {key_name} --mcp ...,{server}/{tool}` (or {server} for all its tools)",
                    code="tool_not_allowed", ids=_request_ids(posted.messages))
        elif not allows_method(entries, server, name):
            raise McpRefused(
                f"key {key_name!r} may use only some tools of MCP server {server!r}, not {name}; allow the whole "
                f"server with `shieldes key update {key_name} --mcp ...,{server}`",
                code="method_not_allowed", ids=_request_ids(posted.messages))


def filtered(message: Any, list_ids: tuple[Any, ...], entries: tuple[str, ...] | None, server: str) -> Any:
    """`message` from the server with a tools/list result cut to the key's tools (others as they are)."""
    if isinstance(message, list):
        return [filtered(m, list_ids, entries, server) for m in message]
    if not (isinstance(message, dict) and "result" in message and message.get("id") in list_ids):
        return message
    result = message["result"]
    if not isinstance(result, dict) or not isinstance(result.get("tools"), list):
        return message
    return {**message, "result": {**result, "tools": filter_tools(entries, server, result["tools"])}}


def rewrite_json(body: bytes, change: Callable[[Any], Any]) -> bytes:
    """A JSON body with `change` applied; a body that is not JSON is left as it is."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    return orjson.dumps(change(data))
