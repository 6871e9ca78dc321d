"""Pure reading of a POST /v1/responses body: validation with errors that say what to send, the
request's own input as stored items, and the body sent upstream (conversation expanded)."""

from __future__ import annotations

import hashlib
import math
import operator
from dataclasses import dataclass
from typing import Any

import orjson

from shieldes.errors import InvalidRequest
from shieldes.responses.objects import Body

MAX_MODEL_NAME = 256
# Fields the gateway serves itself; never sent upstream.
_GATEWAY_FIELDS = frozenset(("previous_response_id", "conversation", "stream", "stream_options", "background"))
_CONTINUING = _GATEWAY_FIELDS - {"stream"}  # what makes a turn more than its own input (input_sent_as_is)
# The optional fields parse_request checks the type of.
_OPTIONAL = frozenset(("max_output_tokens", "temperature", "top_p", "instructions", "tools", "tool_choice",
                       "parallel_tool_calls", "text", "reasoning", "include", "metadata", "store", "background",
                       "stream"))
_NONE = type(None)
# The JSON types each optional field may have (None: as if absent). A body whose fields all have
# one of them is checked only for its values; another goes through the checks in their order (a
# subclass of a type passes there), which say what is wrong.
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "max_output_tokens": (int, _NONE), "temperature": (int, float, _NONE), "top_p": (int, float, _NONE),
    "instructions": (str, list, _NONE), "tools": (list, _NONE), "tool_choice": (str, dict, _NONE),
    "parallel_tool_calls": (bool, _NONE), "text": (dict, _NONE), "reasoning": (dict, _NONE),
    "include": (list, _NONE), "metadata": (dict, _NONE), "store": (bool, _NONE), "background": (bool, _NONE),
    "stream": (bool, _NONE),
}
_UNSUPPORTED = {
    "prompt": "stored prompt templates are not supported; send `instructions` and `input` instead",
}


@dataclass(slots=True)
class ResponsesRequest:
    """A POST /v1/responses body's fields the gateway decides on. (Not frozen: one is made per
    request, and a frozen field costs its __init__ a call of object.__setattr__.)"""

    model: str
    streaming: bool
    store: bool
    previous_response_id: str | None
    conversation: str | None  # a conversation id (conv_...)
    max_output_tokens: int | None
    # this request's own input items, normalized; empty when they go upstream as the client's bytes,
    # not decoded (input_sent_as_is: nothing of the turn is kept)
    input: list[Body]
    background: bool = False  # run by the node after the create is answered (store is true then)


def _typed(body: Body, name: str, types: type | tuple[type, ...], what: str) -> Any:
    value = body.get(name)
    if value is None:
        return None
    allowed = types if isinstance(types, tuple) else (types,)
    if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
        raise InvalidRequest(f"field {name!r} has the wrong type: {what}", param=name)
    return value


def _number(body: Body, name: str, low: float, high: float) -> None:
    value = _typed(body, name, (int, float), f"a number from {low} to {high}")
    if value is not None and not (low <= value <= high and math.isfinite(value)):
        raise InvalidRequest(f"field {name!r} must be a number from {low} to {high}", param=name)


def normalize_item(item: Any, index: int) -> Body:
    """Input item `index` as the API defines it (a bare `role` item is a message, string content a
    text part). An item already in that form is returned as it is: it is this request's own parsed
    JSON, and a coding agent's turn carries hundreds of them."""
    if not isinstance(item, dict):
        raise InvalidRequest(f"input[{index}] must be an input item object, e.g. "
                             "{\"role\": \"user\", \"content\": \"...\"}", param=f"input[{index}]")
    out: Body = item
    if "type" not in out and "role" in out:
        out = {"type": "message", **out}
    kind = out.get("type")
    if kind == "message" and isinstance(out.get("content"), str):
        part = "output_text" if out.get("role") == "assistant" else "input_text"
        content: Body = {"type": part, "text": out["content"]}
        if part == "output_text":
            content["annotations"] = []
        out = {**out, "content": [content]}
    if not isinstance(kind, str):
        raise InvalidRequest(f"input[{index}] needs a `type` (message, function_call, function_call_output, ...)",
                             param=f"input[{index}].type")
    return out


def normalize_input(value: Any) -> list[Body]:
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}]
    if isinstance(value, list):
        return [normalize_item(item, i) for i, item in enumerate(value)]
    if value is None:
        raise InvalidRequest("field 'input' is required: a string or a list of input items", param="input")
    raise InvalidRequest("field 'input' has the wrong type: a string or a list of input items", param="input")


def check_metadata(metadata: Body) -> None:
    if len(metadata) > 16 or not all(isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
                                     for k, v in metadata.items()):
        raise InvalidRequest("field 'metadata' must hold at most 16 string values (keys up to 64 "
                             "characters, values up to 512)", param="metadata")


def conversation_id(value: Any) -> str | None:
    """The `conversation` of a Responses request: an id string or {"id": ...}."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("id")
    if not isinstance(value, str) or not value:
        raise InvalidRequest("field 'conversation' must be a conversation id (conv_...) or {\"id\": \"conv_...\"}",
                             param="conversation")
    return value


def _tool_names(tools: list[Any]) -> list[str]:
    """The names of a request's function and custom tools, also those inside `namespace` tools."""
    inner = [t for ns in tools if isinstance(ns, dict) and ns.get("type") == "namespace"
             and isinstance(ns.get("tools"), list) for t in ns["tools"]]
    return [t["name"] for t in [*tools, *inner]
            if isinstance(t, dict) and t.get("type") in ("function", "custom") and isinstance(t.get("name"), str)]


def check_tool_choice(body: Body) -> None:
    """A `tool_choice` that forces a tool the request does not offer is refused, as OpenAI refuses
    it (400, param tool_choice), before any upstream: `required` without `tools`, or a function or
    custom tool named that is not among them (a translated deployment would pass it on unchecked,
    and the upstream would fail or ignore it). `tools` is each request's own: a continuation
    (previous_response_id, conversation) does not carry the tools of the turns before it."""
    choice, tools = body.get("tool_choice"), body.get("tools")
    tools = tools if isinstance(tools, list) else []
    if choice == "required" and not tools:
        raise InvalidRequest("tool_choice 'required' forces a tool call but the request has no `tools` (tools are "
                             "not carried over from earlier turns): send the tools the model may call with each "
                             "request, or leave tool_choice out", param="tool_choice")
    if not (isinstance(choice, dict) and choice.get("type") in ("function", "custom")):
        return
    name = choice.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"tool_choice of type {choice['type']} needs the `name` of one of the request's "
                             f"{choice['type']} tools, e.g. {{\"type\": \"{choice['type']}\", \"name\": ...}}",
                             param="tool_choice")
    names = _tool_names(tools)
    if name not in names:
        offered = ("the request offers " + ", ".join(repr(n) for n in names[:20]) + (", ..." if len(names) > 20
                                                                                    else "")) if names \
            else "the request has no function or custom tools"
        raise InvalidRequest(f"tool_choice names the tool {name[:100]!r}, which is not in `tools` ({offered}; tools "
                             "are not carried over from earlier turns): add it to `tools`, or name one of them",
                             param="tool_choice")


def parse_request(body: Body, *, as_sent_input: bool = False) -> ResponsesRequest:
    """`as_sent_input`: the input stays the client's bytes (input_sent_as_is): `body` is every other
    field, and the request's `input` is left empty."""
    # (a field of JSON's type for it is taken as it is; _typed says what is wrong with another)
    model = body.get("model")
    if type(model) is not str:
        model = _typed(body, "model", str, "a model name string, e.g. \"gpt-4o\"")
    if model is None or not model.strip() or len(model) > MAX_MODEL_NAME:
        raise InvalidRequest("field 'model' is required: a model name (see GET /v1/models)", param="model")
    if not body.keys().isdisjoint(_UNSUPPORTED):
        for name, why in _UNSUPPORTED.items():
            if body.get(name):
                raise InvalidRequest(why, param=name)
    previous = body.get("previous_response_id")
    if previous is not None and type(previous) is not str:
        previous = _typed(body, "previous_response_id", str, "the id of a stored response (resp_...)")
    conversation = body.get("conversation")
    if conversation is not None:
        conversation = conversation_id(conversation)
    if previous is not None and conversation is not None:
        raise InvalidRequest("Mutually exclusive parameters: Ensure you are only providing one of: "
                             "'previous_response_id' or 'conversation'.", code="mutually_exclusive_parameters",
                             param="conversation")
    items: list[Body] = []
    if not as_sent_input:
        if "input" not in body and previous is None:
            raise InvalidRequest("field 'input' is required: a string or a list of input items", param="input")
        items = normalize_input(body["input"]) if body.get("input") is not None else []
        if not items and previous is None:
            raise InvalidRequest("field 'input' is empty: send a string or at least one input item", param="input")
    present = body.keys() & _OPTIONAL
    for name in present:
        if type(body[name]) not in _JSON_TYPES[name]:
            max_out = _checked_optional(body, present)  # (says what is wrong)
            break
    else:
        # (the common case) only the values left to check, in _checked_optional's order, which
        # says what is wrong with the first that fails
        max_out = body.get("max_output_tokens")
        if (max_out is not None and max_out < 1) \
                or ("temperature" in present and not _in_range(body["temperature"], 0, 2)) \
                or ("top_p" in present and not _in_range(body["top_p"], 0, 1)):
            _checked_optional(body, present)
        if "tool_choice" in present:
            check_tool_choice(body)
        metadata = body.get("metadata")
        if metadata is not None:
            check_metadata(metadata)
        if "background" in present and body["background"] and body.get("store") is False:
            _checked_optional(body, present)
    return ResponsesRequest(
        model=model,
        streaming="stream" in present and bool(body["stream"]),
        store=body.get("store") is not False,
        previous_response_id=previous,
        conversation=conversation,
        max_output_tokens=max_out,
        input=items,
        background="background" in present and bool(body["background"]),
    )


def _in_range(value: Any, low: float, high: float) -> bool:
    return value is None or (low <= value <= high and math.isfinite(value))


def _checked_optional(body: Body, present: set[str]) -> int | None:
    """The optional fields' checks (`present`: those the body has) in this order whatever order they
    came in, each only when the body has it (an absent field reads as None, which every check
    passes); the request's max_output_tokens."""
    max_out = _typed(body, "max_output_tokens", int, "a positive integer") \
        if "max_output_tokens" in present else None
    if max_out is not None and max_out < 1:
        raise InvalidRequest("field 'max_output_tokens' must be a positive integer", param="max_output_tokens")
    if "temperature" in present:
        _number(body, "temperature", 0, 2)
    if "top_p" in present:
        _number(body, "top_p", 0, 1)
    if "instructions" in present:
        _typed(body, "instructions", (str, list), "a string")
    if "tools" in present:
        _typed(body, "tools", list, "a list of tool objects")
    if "tool_choice" in present:
        _typed(body, "tool_choice", (str, dict), "auto, none, required or {\"type\": \"function\", \"name\": ...}")
    if "parallel_tool_calls" in present:
        _typed(body, "parallel_tool_calls", bool, "true or false")
    if "tool_choice" in present:  # (without one there is nothing to check)
        check_tool_choice(body)
    if "text" in present:
        _typed(body, "text", dict, "an object such as {\"format\": {\"type\": \"json_schema\", ...}}")
    if "reasoning" in present:
        _typed(body, "reasoning", dict, "an object such as {\"effort\": \"low\"}")
    if "include" in present:
        _typed(body, "include", list, "a list of strings")
    metadata = _typed(body, "metadata", dict, "an object of up to 16 string values") if "metadata" in present else None
    if metadata is not None:
        check_metadata(metadata)
    store = _typed(body, "store", bool, "true or false") if "store" in present else None
    background = "background" in present and bool(_typed(body, "background", bool, "true or false"))
    if background and store is False:
        raise InvalidRequest("Background mode requires the response to be stored: send background: true with "
                             "store: true (or without store), or leave background out", param="store")
    if "stream" in present:
        _typed(body, "stream", bool, "true or false")
    return max_out


def upstream_body(body: Body, history: list[Body], own_input: list[Body]) -> Body:
    """The request as a deployment gets it: the whole conversation as `input`, no gateway fields."""
    out = upstream_fields(body)
    out["input"] = history + own_input
    return out


def upstream_fields(body: Body) -> Body:
    """The request's fields a deployment gets (upstream_body without `input`), in their order."""
    out = dict(body)
    for name in body.keys() & _GATEWAY_FIELDS:  # (the one or two a body has: no look at each of its fields)
        del out[name]
    return out


def input_sent_as_is(fields: Body, input_shape: str, over_websocket: bool) -> bool:
    """Whether a request's input may go upstream as the client's bytes, never decoded: no
    conversation comes before it or is appended to (no `previous_response_id`, no `conversation`,
    not over a WebSocket, whose connection remembers each turn's items), no gateway field but
    `stream` (no `background`), and the input is a non-empty list (`input_shape`, TopLevel.shape's).
    A stored response keeps that input as the same bytes. `fields`: the body's top-level fields but
    `input`. The items themselves are then read off their bytes (input_bytes.input_as_sent)."""
    return input_shape == "list" and not over_websocket and fields.keys().isdisjoint(_CONTINUING)


def forwards_as_sent(body: Body, own_input: list[Body]) -> bool:
    """Whether the client's bytes of `body` are the request a deployment gets (upstream_body): no
    conversation to prepend, no gateway field but `stream` (no `background`), and the input items as
    they were sent (a list the gateway took as it is). Then they can go upstream without being encoded again."""
    sent = body.get("input")
    return ("previous_response_id" not in body and "conversation" not in body and "stream_options" not in body
            and "background" not in body and isinstance(sent, list)
            and len(sent) == len(own_input) and all(map(operator.is_, sent, own_input)))


def item_id(response_id: str, index: int, item: Body) -> str:
    """Input items listed by GET .../input_items carry ids; items sent without one get a stable one."""
    given = item.get("id")
    if isinstance(given, str) and given:
        return given
    digest = hashlib.sha256(f"{response_id}:{index}".encode()).hexdigest()[:48]
    return ("msg_" if item.get("type") == "message" else "item_") + digest


def estimate_input_tokens(chat: Body) -> int:
    """Input tokens of a chat request without a tokenizer: UTF-8 bytes of every text / 4 (rounded
    up), plus 4 per message and the JSON of tool definitions / 4. Close for English text with
    GPT-style tokenizers; an estimate, not a count."""
    total = 0
    for message in chat.get("messages") or []:
        total += 4
        content = message.get("content")
        parts = [content] if isinstance(content, str) else [
            p.get("text", "") for p in content or [] if isinstance(p, dict)]
        for call in message.get("tool_calls") or []:
            parts.append(orjson.dumps(call).decode())
        total += sum(math.ceil(len(str(p).encode()) / 4) for p in parts)
    if chat.get("tools"):
        total += math.ceil(len(orjson.dumps(chat["tools"])) / 4)
    return total
