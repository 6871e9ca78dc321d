"""Pure translation of Amazon Bedrock's Converse answers into the OpenAI chat format: a whole
answer (`converse_to_chat`), a stream's events (`ConverseStreamTranslator`), their usage, stop
reasons and exceptions. The requests are bedrock_translate's. No I/O, no clock."""

from __future__ import annotations

from typing import Any

import orjson

from shieldes.providers.base import CONTEXT_LENGTH, MALFORMED_OUTPUT, THROTTLED, Body, TokenUsage, UpstreamFailure
from shieldes.providers.bedrock_translate import JSON_TOOL
from shieldes.providers.chat_answers import Chunks, chat_response, usage_dict
from shieldes.providers.chat_parts import Thinking, ToolCall
from shieldes.providers.tiers import from_bedrock, stamped

_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
           "guardrail_intervened": "content_filter", "content_filtered": "content_filter",
           # an answer cut at the end of the context window (Claude 4.5 and later): cut, as by maxTokens
           "model_context_window_exceeded": "length"}
# Stop reasons of a turn the model could not finish well-formed: its output was not valid, or a
# tool call's input not JSON fitting the tool's schema. Retrying may well succeed (another attempt)
_MALFORMED = {"malformed_model_output": "its answer was not well-formed",
              "malformed_tool_use": "a tool call's input was not valid for the tool"}
# Converse stream exception events (`:exception-type`) -> (HTTP status they stand for, code).
_STREAM_EXCEPTIONS: dict[str, tuple[int, str | None]] = {
    "throttlingException": (429, THROTTLED), "serviceUnavailableException": (503, None),
    "modelStreamErrorException": (502, None), "internalServerException": (500, None),
    "validationException": (400, None),
}


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
