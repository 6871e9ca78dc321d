"""Pure translation between the OpenAI chat/embeddings format and Amazon Bedrock's Converse API
(every chat model family on Bedrock: Anthropic, Llama, Mistral, Nova, ...) and Titan's
InvokeModel embeddings. No I/O, no clock."""

from __future__ import annotations

import re
from typing import Any

import orjson

from shieldes.errors import InvalidRequest
from shieldes.providers import bedrock_betas
from shieldes.providers.base import CONTEXT_LENGTH, MALFORMED_OUTPUT, THROTTLED, Body, TokenUsage, UpstreamFailure
from shieldes.providers.chat_answers import Chunks, chat_response, usage_dict
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
from shieldes.providers.tiers import from_bedrock, stamped
from shieldes.providers.tool_ids import BEDROCK, fit_chat_ids

_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
           "guardrail_intervened": "content_filter", "content_filtered": "content_filter",
           # an answer cut at the end of the context window (Claude 4.5 and later): cut, as by maxTokens
           "model_context_window_exceeded": "length"}
# Stop reasons of a turn the model could not finish well-formed: its output was not valid, or a
# tool call's input not JSON fitting the tool's schema. Retrying may well succeed (another attempt)
_MALFORMED = {"malformed_model_output": "its answer was not well-formed",
              "malformed_tool_use": "a tool call's input was not valid for the tool"}
_IMAGE_FORMATS = ("png", "jpeg", "gif", "webp")
# Converse stream exception events (`:exception-type`) -> (HTTP status they stand for, code).
_STREAM_EXCEPTIONS: dict[str, tuple[int, str | None]] = {
    "throttlingException": (429, THROTTLED), "serviceUnavailableException": (503, None),
    "modelStreamErrorException": (502, None), "internalServerException": (500, None),
    "validationException": (400, None),
}


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


def bedrock_reported(usage: Any) -> bool:
    """Whether a Converse `usage` reports its counts (input and output tokens, whole numbers): one
    of the wrong types is none at all, and the gateway bills its estimate instead."""
    return isinstance(usage, dict) and type(usage.get("inputTokens")) is int \
        and type(usage.get("outputTokens")) is int


def usage_from_bedrock(usage: Any, tier: str | None = None) -> tuple[TokenUsage, Body]:
    """Cache reads and writes are input tokens too (billed at their own rates upstream); `tier`:
    the one the response says served it (from_bedrock)."""
    usage = usage if isinstance(usage, dict) else {}
    cached = _count(usage.get("cacheReadInputTokens"))
    written = _count(usage.get("cacheWriteInputTokens"))
    prompt = _count(usage.get("inputTokens")) + cached + written
    details = usage.get("cacheDetails")  # the writes by TTL, when a cachePoint asked for 1h
    hour = sum(_count(d.get("inputTokens")) for d in details if isinstance(d, dict) and d.get("ttl") == "1h") \
        if isinstance(details, list) else 0
    tokens = TokenUsage(prompt, _count(usage.get("outputTokens")), cache_read_tokens=cached,
                        cache_write_tokens=written, cache_write_1h_tokens=min(hour, written), service_tier=tier)
    return tokens, usage_dict(tokens)


def _count(value: Any) -> int:
    # (a decoded JSON number is an int or a float, never a subclass: the type is the check, bools out)
    return value if type(value) is int and value > 0 else 0


def stop_sequences(request: Body) -> tuple[str, ...]:
    """The stop sequences a Converse request asked for."""
    config = request.get("inferenceConfig")
    stops = config.get("stopSequences") if isinstance(config, dict) else None
    return tuple(stops) if isinstance(stops, list) else ()


def converse_to_chat(resp: Body, model: str, created: int, stops: tuple[str, ...] = (),
                     rid: str = "bedrock") -> tuple[Body, TokenUsage | None]:
    content = resp["output"]["message"]["content"]  # (an answer without them is the upstream's fault)
    texts = [b["text"] for b in content if isinstance(b.get("text"), str)]
    thinking = [_thinking(b["reasoningContent"]) for b in content if isinstance(b.get("reasoningContent"), dict)]
    uses = [b["toolUse"] for b in content if isinstance(b.get("toolUse"), dict)]
    answers = [orjson.dumps(u.get("input") or {}).decode() for u in uses if u.get("name") == JSON_TOOL]
    calls = [ToolCall(u["toolUseId"], u["name"], u.get("input") or {}) for u in uses if u.get("name") != JSON_TOOL]
    usage, shown = usage_from_bedrock(resp.get("usage"), from_bedrock(resp))
    failure = malformed(resp.get("stopReason"))
    if failure is not None:
        raise failure
    finish = _FINISH.get(str(resp.get("stopReason")), "stop")
    if answers:  # json_object mode: the forced tool's input is the answer
        texts, finish = answers, "stop" if finish == "tool_calls" else finish
    chat = chat_response(rid, model, created, "".join(texts), calls, finish, shown,
                         "".join(t.text for t in thinking), [t for t in thinking if t.signature or t.redacted])
    sequence = matched_stop(resp, stops)
    if sequence is not None:
        chat["choices"][0]["stop_reason"] = sequence
    if not bedrock_reported(resp.get("usage")):  # the gateway's estimate, billed and said in its place
        del chat["usage"]
        return stamped(chat, from_bedrock(resp)), None
    return stamped(chat, from_bedrock(resp)), usage


def _thinking(block: Body) -> Thinking:
    """A Converse reasoningContent block: reasoning text with the signature Claude gives it (other
    models, DeepSeek R1, give none), or Claude's redacted reasoning."""
    if isinstance(block.get("redactedContent"), str):
        return Thinking("", "", block["redactedContent"])
    text = block.get("reasoningText")
    text = text if isinstance(text, dict) else {}
    return Thinking(str(text.get("text") or ""), str(text.get("signature") or ""))


def matched_stop(event: Body, stops: tuple[str, ...] = ()) -> str | None:
    """The stop sequence that ended a Converse answer (or its messageStop event): the one the
    model reported in `additionalModelResponseFields` (Claude models), or, when Converse says
    `stopReason: stop_sequence` without naming it, the request's only stop sequence. With several
    and no name, which one matched is not known: None (never a guess). It travels in the chat
    choice as `stop_reason`, the field vLLM uses for it, so a Messages client gets `stop_sequence`."""
    if event.get("stopReason") != "stop_sequence":
        return None
    fields = event.get("additionalModelResponseFields")
    sequence = fields.get("stop_sequence") if isinstance(fields, dict) else None
    if isinstance(sequence, str) and sequence:
        return sequence
    return stops[0] if len(stops) == 1 else None


def malformed(stop_reason: Any) -> UpstreamFailure | None:
    """The failure a turn ended on a malformed answer stands for (None for any other stop reason)."""
    why = _MALFORMED.get(str(stop_reason))
    if why is None:
        return None
    return UpstreamFailure(f"the model ended its turn with stop reason {stop_reason} ({why}); send the request "
                           "again", status=None, retryable=True, code=MALFORMED_OUTPUT)


def stream_exception(kind: str, payload: Body) -> UpstreamFailure:
    status, code = _STREAM_EXCEPTIONS.get(kind, (502, None))
    message = str(payload.get("message") or payload.get("Message") or kind)
    if status == 400 and "too long" in message.lower():
        code = CONTEXT_LENGTH
    return UpstreamFailure(f"{kind}: {message}", status=status, retryable=status != 400, body=payload, code=code)


class ConverseStreamTranslator:
    """ConverseStream events (event type, payload), one at a time, into OpenAI chunks. The stream
    ends with `metadata` (usage) after `messageStop`."""

    def __init__(self, model: str, created: int, stops: tuple[str, ...] = (), rid: str = "bedrock") -> None:
        self.chunks = Chunks(rid, model, created)
        self._stops = stops  # the request's stop sequences
        self.usage: TokenUsage | None = None
        self.done = False
        self._tools: dict[int, int] = {}  # contentBlockIndex -> OpenAI tool_calls index
        self._with_args: set[int] = set()  # OpenAI tool_calls indexes whose arguments had any text
        self._answers: set[int] = set()  # contentBlockIndex of json_object answers (JSON_TOOL)
        # reasoning blocks being streamed by contentBlockIndex: their text so far and signature
        self._thinking: dict[int, tuple[list[str], list[str]]] = {}
        self._finish = "stop"
        self._closing: Body | None = None  # messageStop's finish chunk, sent with the metadata after it
        self._malformed: UpstreamFailure | None = None  # a malformed turn's, raised once its usage came

    def _without_args(self, block: int) -> bool:
        """Whether contentBlockIndex `block` is a tool call whose arguments streamed no text."""
        tool = self._tools.get(block)
        return tool is not None and tool not in self._with_args

    def feed(self, kind: str, event: Body) -> list[Body]:
        if kind == "messageStart":
            return [self.chunks.role()]
        if kind == "contentBlockStart":
            tool = (event.get("start") or {}).get("toolUse")
            if isinstance(tool, dict) and tool.get("name") == JSON_TOOL:
                self._answers.add(int(event.get("contentBlockIndex") or 0))
                return []
            if isinstance(tool, dict):
                index, chunk = self.chunks.tool_start(tool["toolUseId"], tool["name"])
                self._tools[int(event.get("contentBlockIndex") or 0)] = index
                return [chunk]
            return []
        if kind == "contentBlockDelta":
            delta = event.get("delta") or {}
            if isinstance(delta.get("text"), str):
                return [self.chunks.text(delta["text"])] if delta["text"] else []
            tool = delta.get("toolUse")
            block = int(event.get("contentBlockIndex") or 0)
            if isinstance(tool, dict) and block in self._answers:  # json_object answer: its input as text
                return [self.chunks.text(str(tool.get("input") or ""))] if tool.get("input") else []
            at = self._tools.get(block)
            if isinstance(tool, dict) and at is not None:
                if tool.get("input"):
                    self._with_args.add(at)
                return [self.chunks.tool_args(at, str(tool.get("input") or ""))]
            reasoning = delta.get("reasoningContent")
            if isinstance(reasoning, dict):
                return self._reasoning(block, reasoning)
            return []  # future delta kinds
        if kind == "messageStop":
            self._malformed = malformed(event.get("stopReason"))
            self._finish = _FINISH.get(str(event.get("stopReason")), "stop")
            if self._answers and not self._tools and self._finish == "tool_calls":
                self._finish = "stop"
            chunk = self.chunks.finish(self._finish)
            sequence = matched_stop(event, self._stops)
            if sequence is not None:
                chunk["choices"][0]["stop_reason"] = sequence
            # held for the metadata event right after it, which says the tier that served the answer
            self._closing = chunk
            return []
        if kind == "metadata":
            self.done = True
            tier = from_bedrock(event)
            reported = bedrock_reported(event.get("usage"))
            usage, shown = usage_from_bedrock(event.get("usage"), tier)
            self.usage = usage if reported else None  # (None: the gateway's estimate)
            if self._malformed is not None:  # the turn ends in error, its usage known (and billed)
                raise self._malformed
            closing = [] if self._closing is None else [stamped(self._closing, tier)]
            return [*closing, *([stamped(self.chunks.usage(shown), tier)] if reported else [])]
        if kind == "contentBlockStop" and self._without_args(int(event.get("contentBlockIndex") or 0)):
            # a call without arguments streams none (or ""): OpenAI's text for it is "{}", which
            # clients parse as JSON
            return [self.chunks.tool_args(self._tools[int(event.get("contentBlockIndex") or 0)], "{}")]
        if kind == "contentBlockStop":
            # a reasoning block is whole once its signature came: given to the client to send back
            done = self._thinking.pop(int(event.get("contentBlockIndex") or 0), None)
            if done is None or not "".join(done[1]):
                return []
            return [self.chunks.thinking(Thinking("".join(done[0]), "".join(done[1])))]
        return []

    def _reasoning(self, block: int, delta: Body) -> list[Body]:
        if isinstance(delta.get("redactedContent"), str):
            return [self.chunks.thinking(Thinking("", "", delta["redactedContent"]))]
        text, signature = self._thinking.setdefault(block, ([], []))
        if isinstance(delta.get("signature"), str):
            signature.append(delta["signature"])
        if isinstance(delta.get("text"), str) and delta["text"]:
            text.append(delta["text"])
            return [self.chunks.reasoning(delta["text"])]
        return []


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
