"""The tools of a Responses request as chat completions tools, for upstreams that only speak chat
completions: function tools and custom tools (responses_custom), also inside `namespace` tools, the
tool choice, and OpenAI's hosted tools, which a chat server cannot run (left out, and named in a
response header). Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from shieldes.errors import InvalidRequest
from shieldes.providers.responses_custom import custom_function
from shieldes.responses.objects import Body


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param)


# Tools the upstream would run itself (OpenAI's hosted tools): a chat server cannot, so they are
# left out (and named in a response header); forcing one with tool_choice is refused.
HOSTED_TOOLS = frozenset({"web_search", "web_search_preview", "file_search", "code_interpreter",
                          "image_generation", "computer_use_preview", "mcp", "local_shell", "tool_search"})


def _function(tool: Body, where: str) -> Body:
    if not isinstance(tool.get("name"), str):
        raise _bad(f"{where} needs a `name`", f"{where}.name")
    fn: Body = {"name": tool["name"]}
    for key in ("description", "parameters", "strict"):
        if tool.get(key) is not None:
            fn[key] = tool[key]
    return {"type": "function", "function": fn}


# The tool types a chat server is offered, as the function tools that stand for them
_OFFERED = MappingProxyType({"function": _function, "custom": custom_function})


def _tools(tools: Any) -> list[Body]:
    """Function and custom tools, and those inside `namespace` tools, as chat tools."""
    if not isinstance(tools, list):
        raise _bad("field 'tools' must be a list of tool objects", "tools")
    out = []
    for i, tool in enumerate(tools):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if isinstance(kind, str) and kind in _OFFERED:
            out.append(_OFFERED[kind](tool, f"tools[{i}]"))
        elif kind == "namespace" and isinstance(tool.get("tools"), list):
            out += [_OFFERED[t["type"]](t, f"tools[{i}].tools[{j}]") for j, t in enumerate(tool["tools"])
                    if isinstance(t, dict) and t.get("type") in _OFFERED]
        elif kind not in HOSTED_TOOLS:
            raise _bad(f"tools[{i}] of type {kind!r} is not supported by this deployment (it speaks chat "
                       "completions): use function tools {\"type\": \"function\", \"name\": ..., \"parameters\": ...} "
                       "or custom tools {\"type\": \"custom\", \"name\": ...}", f"tools[{i}].type")
    return out


def dropped_tools(body: Body) -> list[str]:
    """The hosted tools of a request that translation leaves out."""
    tools = body.get("tools")
    return sorted({str(t["type"]) for t in tools if isinstance(t, dict) and t.get("type") in HOSTED_TOOLS}) \
        if isinstance(tools, list) else []


def tool_namespaces(body: Body) -> dict[str, str]:
    """Function name -> its namespace, for the tools that came inside `namespace` tools (their calls
    name the namespace again on the way back)."""
    out: dict[str, str] = {}
    for tool in body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("type") == "namespace" and isinstance(tool.get("name"), str):
            for inner in tool.get("tools") or []:
                if isinstance(inner, dict) and isinstance(inner.get("name"), str):
                    out[inner["name"]] = tool["name"]
    return out


def custom_tools(body: Body) -> frozenset[str]:
    """The names of a request's custom tools (also inside `namespace` tools): the model's calls of
    the functions standing for them come back as custom tool calls."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return frozenset()
    inner = [t for ns in tools if isinstance(ns, dict) and ns.get("type") == "namespace"
             and isinstance(ns.get("tools"), list) for t in ns["tools"]]
    return frozenset(t["name"] for t in [*tools, *inner]
                     if isinstance(t, dict) and t.get("type") == "custom" and isinstance(t.get("name"), str))


@dataclass(frozen=True, slots=True)
class CallKinds:
    """What the request's tools say about the calls that come back: the namespace of a tool that
    came inside a `namespace` tool, and the names of the functions standing for custom tools."""

    namespaces: dict[str, str] = field(default_factory=dict)
    custom: frozenset[str] = frozenset()


def call_kinds(body: Body) -> CallKinds:
    return CallKinds(tool_namespaces(body), custom_tools(body))


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise _bad("field 'tool_choice' must be auto, none, required or {\"type\": \"function\", \"name\": ...}",
                       "tool_choice")
        return choice
    if isinstance(choice, dict) and choice.get("type") in _OFFERED and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        return "required" if choice.get("mode") == "required" else "auto"
    if isinstance(choice, dict) and choice.get("type") in HOSTED_TOOLS:
        raise _bad(f"tool_choice forces the hosted tool {choice['type']!r}, which this deployment (it speaks "
                   "chat completions) cannot run; route the model to a provider with --responses native", "tool_choice")
    raise _bad("field 'tool_choice' must be auto, none, required or {\"type\": \"function\", \"name\": ...}",
               "tool_choice")


def _allowed(tools: list[Body], choice: Any) -> list[Body]:
    """The tools a tool_choice of type allowed_tools lets a chat upstream (which has no such choice) see."""
    if not (isinstance(choice, dict) and choice.get("type") == "allowed_tools"):
        return tools
    allowed = choice.get("tools")
    if not isinstance(allowed, list):
        raise _bad("tool_choice allowed_tools needs `tools`: a list of {\"type\": \"function\", \"name\": ...}",
                   "tool_choice.tools")
    names = {t.get("name") for t in allowed if isinstance(t, dict) and t.get("type") in _OFFERED}
    kept = [t for t in tools if t["function"]["name"] in names]
    if not kept and choice.get("mode") == "required":
        raise _bad("tool_choice allowed_tools with mode required names no function of `tools`; name one",
                   "tool_choice.tools")
    return kept


def chat_tools(body: Body) -> tuple[list[Body], Any]:
    """(chat tools, chat tool_choice or None) of a Responses request."""
    tools = _allowed(_tools(body["tools"]) if body.get("tools") else [], body.get("tool_choice"))
    choice = _tool_choice(body["tool_choice"]) if body.get("tool_choice") is not None else None
    if choice == "required" and not tools and body.get("tools"):  # (no tools at all: request.check_tool_choice)
        raise _bad(f"tool_choice 'required' forces a tool call, but the request's only tools are hosted ones "
                   f"({', '.join(dropped_tools(body)) or 'none this deployment can call'}), which this deployment "
                   "(it speaks chat completions) cannot run: add function tools, leave tool_choice out, or route "
                   "the model to a provider with --responses native", "tool_choice")
    return tools, (choice if tools else None)  # checked even with no tool left (a hosted one forced)
