"""Pure translation of OpenAI chat and embeddings requests into Amazon Bedrock's: the Converse API
(every chat model family on Bedrock: Anthropic, Llama, Mistral, Nova, ...) and Titan's InvokeModel
embeddings. Converse's answers back into chat are bedrock_answers'. No I/O, no clock."""

from __future__ import annotations

import re
from typing import Any

import orjson

from shieldes.errors import InvalidRequest
from shieldes.providers import bedrock_betas
from shieldes.providers.base import Body
from shieldes.providers.chat_parts import (
    CacheMark,
    Document,
    Image,
    Part,
    Thinking,
    ToolCall,
    ToolResult,
    check_chat_request,
    read_chat,
    read_top_k,
)
from shieldes.providers.dropped import JSON_OBJECT, METADATA, PARALLEL_OFF, THINKING, Outbound, dropped_fields
from shieldes.providers.reasoning import DROPPED as DROPPED_EFFORT
from shieldes.providers.reasoning import ClaudeThinking, claude_thinking, claude_thinking_field, visible
from shieldes.providers.tool_ids import BEDROCK, fit_chat_ids

_IMAGE_FORMATS = ("png", "jpeg", "gif", "webp")


def _cache_point(mark: CacheMark) -> Body:
    """A Converse cachePoint; a mark asking for an hour (`ttl: 1h`) keeps it, as Converse takes it
    (five minutes is Converse's default, so another ttl goes unsaid)."""
    return {"cachePoint": {"type": "default", **({"ttl": "1h"} if mark.ttl == "1h" else {})}}
_STOP_SEQUENCE_PATH = "/stop_sequence"
# json_object mode: Converse has no schema-less JSON output, so the model is made to call this tool
# (any object as input) and its input comes back as the answer's text. The name is what the
# answer is recognized by, so it must not be one a client would give its own tool.
JSON_TOOL = "shieldes_json_answer"
_JSON_TOOL_CONFIG: Body = {
    "tools": [{"toolSpec": {"name": JSON_TOOL, "description": "Give your answer as this tool's input: a JSON object.",
                            "inputSchema": {"json": {"type": "object"}}}}],
    "toolChoice": {"tool": {"name": JSON_TOOL}},
}


_NAME_OUTSIDE = re.compile(r"[^A-Za-z0-9\s()\[\]-]+")


def document_name(filename: str | None) -> str:
    """A Converse document's `name`, which may hold only letters, digits, single spaces, hyphens,
    parentheses and brackets: the file name without its extension, other characters as hyphens."""
    stem = (filename or "").rsplit(".", 1)[0] if (filename or "").lower().endswith(".pdf") else filename or ""
    name = " ".join(_NAME_OUTSIDE.sub("-", stem).split())
    return name or "document"


def _name_documents_apart(messages: list[Body]) -> None:
    """Documents of one request named alike (two PDFs without a file name, or the same name twice)
    get a number, `(2)`, `(3)`...: Converse tells documents apart by name."""
    seen: dict[str, int] = {}
    blocks = [b for m in messages for b in m["content"]]
    for block in [*blocks, *(c for b in blocks for c in (b.get("toolResult") or {}).get("content", ()))]:
        document = block.get("document")
        if document is None:
            continue
        name = document["name"]
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            document["name"] = f"{name} ({seen[name]})"


def _block(p: Part) -> Body:
    if isinstance(p, str):
        return {"text": p}
    if isinstance(p, CacheMark):
        return _cache_point(p)
    if isinstance(p, Image):
        fmt = p.mime.partition("/")[2]
        if p.data is None or fmt not in _IMAGE_FORMATS:
            raise InvalidRequest("Bedrock takes images as base64 data URLs (png, jpeg, gif or webp), not links; "
                                 "send data:image/png;base64,...", param="messages")
        return {"image": {"format": fmt, "source": {"bytes": p.data}}}
    if isinstance(p, Document):
        return {"document": {"format": "pdf", "name": document_name(p.name), "source": {"bytes": p.data}}}
    if isinstance(p, ToolCall):
        return {"toolUse": {"toolUseId": p.id, "name": p.name, "input": p.arguments}}
    if isinstance(p, Thinking):
        if p.redacted is not None:
            return {"reasoningContent": {"redactedContent": p.redacted}}
        return {"reasoningContent": {"reasoningText": {"text": p.text, "signature": p.signature}}}
    assert isinstance(p, ToolResult)
    content = [{"text": p.content}] if p.content or not p.images else []  # Converse refuses empty text
    return {"toolResult": {"toolUseId": p.id, "content": [*content, *map(_block, p.images)],
                           "status": "error" if p.error else "success"}}


def chat_to_converse(body: Body, model: str = "") -> Body:
    """An OpenAI chat request as a Converse request (the model id, `model`, goes in the URL)."""
    return converse_request(body, model).request


def converse_request(body: Body, model: str = "") -> Outbound:
    """An OpenAI chat request as a Converse request (the model id, `model`, goes in the URL); tool
    call ids Converse would refuse are replaced, pairs kept (tool_ids). What it leaves out:
    ANSWER_FIELDS but a `reasoning_effort` carried as Claude's extended thinking, and a json_object
    response format where the model cannot be made to answer through a tool."""
    check_chat_request(body)
    chat = read_chat(fit_chat_ids(body, BEDROCK))
    if chat.turns[0].role != "user":
        raise InvalidRequest("Bedrock needs the conversation to start with a user message", param="messages")
    plan = _thinking_plan(body, chat.turns, chat.max_tokens, model)
    thinking = claude_thinking_field(plan)
    out: Body = {"messages": [{"role": t.role, "content": [_block(p) for p in visible(t.parts, thinking is not None)]}
                              for t in chat.turns]}
    _name_documents_apart(out["messages"])
    if chat.system:
        out["system"] = [{"text": s} if isinstance(s, str) else _cache_point(s) for s in chat.system if s]
    config: Body = {}
    if chat.max_tokens is not None or thinking is not None:
        config["maxTokens"] = plan.max_tokens
    if body.get("temperature") is not None:
        config["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        config["topP"] = body["top_p"]
    if chat.stop:
        config["stopSequences"] = chat.stop
    if config:
        out["inferenceConfig"] = config
    if thinking is not None:  # Claude's own request field, which Converse passes on
        out["additionalModelRequestFields"] = {"thinking": thinking}
    top_k = read_top_k(body.get("top_k"))
    # Claude's own request field, which Converse passes on; Claude refuses it while thinking
    top_k_carried = top_k is not None and _claude(model) and thinking is None
    if top_k_carried:
        out.setdefault("additionalModelRequestFields", {})["top_k"] = top_k
    betas, betas_dropped = bedrock_betas.split(body.get(bedrock_betas.FIELD), _claude(model))
    if betas:  # Claude's own, which Converse passes on
        out.setdefault("additionalModelRequestFields", {})["anthropic_beta"] = betas
    if body.get("service_tier") in TIERS:  # Bedrock's tiers: standard (`default`), priority, flex
        out["serviceTier"] = {"type": body["service_tier"]}
    tags = request_metadata(body.get("metadata"))
    if tags:
        out["requestMetadata"] = tags
    if chat.stop:  # which sequence matched (Claude reports it; other models ignore the path)
        out["additionalModelResponseFieldPaths"] = [_STOP_SEQUENCE_PATH]
    if chat.tools:
        tools = []
        for t in chat.tools:
            spec: Body = {"name": t["name"], "inputSchema": {"json": t["parameters"]}}
            if t["description"]:
                spec["description"] = t["description"]
            tools.append({"toolSpec": spec})
            if "cache" in t:  # a breakpoint after this tool (Converse caches tools before the system prompt)
                tools.append(_cache_point(t["cache"]))
        tool_config: Body = {"tools": tools}
        choice = chat.tool_choice
        if choice == "required":
            tool_config["toolChoice"] = {"any": {}}
        elif choice == "auto":
            tool_config["toolChoice"] = {"auto": {}}
        elif choice not in (None, "none"):
            tool_config["toolChoice"] = {"tool": {"name": choice}}
        if choice != "none" or holds_tool_use(body):
            # Converse has no "none": the tools are left out, unless the history holds tool use,
            # which Converse refuses without a toolConfig (then the choice is named as dropped)
            out["toolConfig"] = tool_config
            if body.get("parallel_tool_calls") is False and _claude(model):
                out.setdefault("additionalModelRequestFields", {})["tool_choice"] = _one_call(tool_config)
    text_format = _text_format(body.get("response_format"))
    if text_format is not None:
        out["outputConfig"] = {"textFormat": text_format}
    elif _json_object(body) and not chat.tools and forces_tools(model):
        out["toolConfig"] = _JSON_TOOL_CONFIG
    carried = (({JSON_OBJECT} if forces_tools(model) else set())
               | (set() if plan.dropped else {DROPPED_EFFORT, THINKING}))
    if "tool_choice" in out.get("additionalModelRequestFields", {}):
        carried.add(PARALLEL_OFF)
    if tags:
        carried.add(METADATA)
    dropped = dropped_fields(body, carried, TIERS) + betas_dropped
    if top_k is not None and not top_k_carried:  # (Converse's inferenceConfig has no top_k)
        dropped.append("top_k")
    return Outbound(out, [*dropped, "tool_choice.none"] if tool_choice_dropped(body) else dropped)


def holds_tool_use(body: Body) -> bool:
    """Whether a chat request's history holds tool calls or results."""
    messages = body.get("messages")
    return isinstance(messages, list) and any(
        isinstance(m, dict) and (m.get("tool_calls") or m.get("role") == "tool") for m in messages)


def tool_choice_dropped(body: Body) -> bool:
    """Whether `tool_choice: "none"` cannot reach Converse: tools offered and tool use in the history."""
    return body.get("tool_choice") == "none" and bool(body.get("tools")) and holds_tool_use(body)


# What Converse gives Claude when a request names no maxTokens (thinking then needs one above its budget).
_DEFAULT_MAX_TOKENS = 4096


def _thinking_plan(body: Body, turns: list[Any], max_tokens: int | None, model: str) -> ClaudeThinking:
    json_tool = _json_object(body) and not body.get("tools") and forces_tools(model)  # JSON_TOOL is forced
    return claude_thinking(body, turns, model, max_tokens, _DEFAULT_MAX_TOKENS, forced_tool=json_tool)


TIERS = ("default", "priority", "flex")
# requestMetadata's keys and values (tags for finding the call in Bedrock's invocation logs)
_TAG = re.compile(r"[a-zA-Z0-9\s._:/=+$@-]{0,256}")


def request_metadata(metadata: Any) -> dict[str, str] | None:
    """A chat request's `metadata` (up to 16 string tags, for finding the request again) as
    Converse's requestMetadata, which means the same for its invocation logs, when every tag fits
    Bedrock's rules (up to 16, keys of 1 to 256 and values of up to 256 letters, digits, spaces
    and `._:/=+$@-`); a tag that does not fit leaves it out (named as dropped)."""
    if not isinstance(metadata, dict) or not metadata or len(metadata) > 16:
        return None
    if not all(isinstance(k, str) and k and isinstance(v, str) and _TAG.fullmatch(k) and _TAG.fullmatch(v)
               for k, v in metadata.items()):
        return None
    return dict(metadata)


def _claude(model: str) -> bool:
    """Whether a Bedrock model id (maybe with a region prefix, or an ARN) is one of Anthropic's."""
    return "anthropic." in model


def _one_call(tool_config: Body) -> Body:
    """`parallel_tool_calls: false` for Claude: Converse's toolConfig has no such switch, but Bedrock
    merges Claude's own `tool_choice` (additionalModelRequestFields) over the one it builds from
    toolConfig.toolChoice. With a toolChoice the field adds only the switch (a `type` of its own
    would conflict with a forced choice); without one it says `auto`, which Claude requires."""
    if "toolChoice" in tool_config:
        return {"disable_parallel_tool_use": True}
    return {"type": "auto", "disable_parallel_tool_use": True}


def forces_tools(model: str) -> bool:
    """Whether the model family takes a Converse `toolChoice` naming a tool (Claude, Mistral Large,
    Nova); others refuse the field. Model ids may carry a region prefix or be ARNs."""
    return any(family in model for family in ("anthropic.", "mistral.mistral-large", "amazon.nova"))


def _json_object(body: Body) -> bool:
    fmt = body.get("response_format")
    return isinstance(fmt, dict) and fmt.get("type") == "json_object"


def _text_format(response_format: Any) -> Body | None:
    """A json_schema `response_format` as Converse structured output (`outputConfig.textFormat`),
    which takes the schema as a JSON string."""
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(spec, dict) or not isinstance(schema, dict):
        raise InvalidRequest("response_format of type json_schema needs `json_schema.schema`: a JSON Schema object",
                             param="response_format.json_schema.schema")
    definition: Body = {"schema": orjson.dumps(schema).decode(), "name": str(spec.get("name") or "response")}
    if isinstance(spec.get("description"), str) and spec["description"]:
        definition["description"] = spec["description"]
    return {"type": "json_schema", "structure": {"jsonSchema": definition}}


# --- embeddings (Titan through InvokeModel) ----------------------------------------------------


def titan_requests(body: Body, model: str) -> list[bytes]:
    """One InvokeModel body per input: Titan embeds one text per call."""
    if not model.startswith("amazon.titan-embed"):
        raise InvalidRequest(f"Bedrock embeddings are served for Amazon Titan embedding models, not {model!r}",
                             param="model")
    value = body.get("input")
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) and i for i in items):
        raise InvalidRequest("`input` must be a non-empty string or list of non-empty strings for Bedrock "
                             "(token arrays are not supported)", param="input")
    extra = _titan_size(body.get("dimensions"), model)
    return [orjson.dumps({"inputText": text, **extra}) for text in items]


# The sizes each Titan embedding model takes: (its request field for it, the sizes); the others
# (Titan Text Embeddings v1, G1 Text) have one size and refuse any field for it
_TITAN_SIZES = {"amazon.titan-embed-text-v2": ("dimensions", (256, 512, 1024)),
                "amazon.titan-embed-image-v1": ("embeddingConfig", (256, 384, 1024))}


def _titan_size(dimensions: Any, model: str) -> Body:
    """A request's `dimensions` as the Titan model takes it (v2 `dimensions`, the multimodal model
    `embeddingConfig.outputEmbeddingLength`), refused with the sizes it takes: Bedrock's own refusal
    ("extraneous key [dimensions] is not permitted") does not say them."""
    if dimensions is None:
        return {}
    field, sizes = next((v for k, v in _TITAN_SIZES.items() if model.startswith(k)), ("", ()))
    if not sizes:
        raise InvalidRequest(f"{model} has one size: leave `dimensions` out (amazon.titan-embed-text-v2:0 takes "
                             "256, 512 or 1024)", param="dimensions")
    if dimensions not in sizes or isinstance(dimensions, bool):
        raise InvalidRequest(f"{model} takes `dimensions` {', '.join(map(str, sizes))}, not {dimensions!r}: send one "
                             "of those, or leave it out", param="dimensions")
    return {"dimensions": dimensions} if field == "dimensions" else {field: {"outputEmbeddingLength": dimensions}}
