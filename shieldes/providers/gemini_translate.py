"""Pure translation between the OpenAI chat/embeddings format and Google's generateContent API
(the same bodies serve the Gemini API and Vertex AI). No I/O, no clock."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from shieldes.errors import InvalidRequest
from shieldes.providers.base import CONTENT_FILTER, MALFORMED_OUTPUT, Body, TokenUsage, UpstreamFailure
from shieldes.providers.chat_answers import Chunks, answer_id, chat_answer, chat_choice, usage_dict
from shieldes.providers.chat_parts import (
    CacheMark,
    Chat,
    Document,
    Image,
    Part,
    Thinking,
    ToolCall,
    ToolResult,
    check_chat_request,
    read_chat,
    read_top_k,
    system_text,
)
from shieldes.providers.gemini_schema import gemini_schema
from shieldes.providers.hosted_tools import gemini_grounding, with_searches
from shieldes.providers.modalities import gemini_modal
from shieldes.providers.reasoning import gemini_thinking
from shieldes.providers.tiers import from_vertex, stamped

_FINISH = {
    "STOP": "stop", "MAX_TOKENS": "length", "SAFETY": "content_filter", "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter", "PROHIBITED_CONTENT": "content_filter", "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter", "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter", "MODEL_ARMOR": "content_filter",  # Vertex's Model Armor templates
}
# Finish reasons of a turn the model ended on a call it could not make well-formed (a malformed or
# undeclared function call, too many calls in a row): an error-ended turn, not a finished answer
_MALFORMED = frozenset({"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"})
# Gemini 3 signs its function calls (`thoughtSignature` on the part) and refuses a later request
# whose history does not send each signature back. Chat, Messages and Responses clients all echo a
# call's id, so the signature travels in it (URL-safe, after this marker). A model turn whose calls
# carry none (it came from another model) gets the value Google documents for skipping the check.
_SIGNED = "__ts__"
SKIP_SIGNATURE = "skip_thought_signature_validator"
_SIGNING_MODEL = re.compile(r"gemini-([3-9]|\d{2,})")
def minted_id(response_id: str | None, index: int, candidate: int = 0) -> str:
    """The id of a function call Google sent without one (Gemini 2.x never sends one): unique to
    the response, the candidate (choice) and the call's place in it, so the calls of later turns
    do not repeat `call_0` (Anthropic and Bedrock refuse a history whose tool ids repeat)."""
    place = f"{index}" if candidate == 0 else f"{candidate}.{index}"
    if not response_id:
        return f"call_{place}"
    return "call_" + hashlib.sha256(f"{response_id}:{place}".encode()).hexdigest()[:24]


def call_id(base: str, signature: Any) -> str:
    """The id a function call is given to clients: its own, with its signature if it has one."""
    if not isinstance(signature, str) or not signature:
        return base
    return base + _SIGNED + signature.replace("+", "-").replace("/", "_").rstrip("=")


def _signature(call: str) -> str | None:
    _, marked, signature = call.partition(_SIGNED)
    if not marked or not signature:
        return None
    signature = signature.replace("-", "+").replace("_", "/")
    return signature + "=" * (-len(signature) % 4)


def _part(p: Part) -> Body:
    if isinstance(p, str):
        return {"text": p}
    if isinstance(p, Image):
        if p.data is not None:
            return {"inlineData": {"mimeType": p.mime, "data": p.data}}
        return {"fileData": {"mimeType": p.mime, "fileUri": p.url}}
    if isinstance(p, Document):
        return {"inlineData": {"mimeType": p.mime, "data": p.data}}
    if isinstance(p, ToolCall):
        signature = _signature(p.id)
        return {"functionCall": {"name": p.name, "args": p.arguments},
                **({"thoughtSignature": signature} if signature else {})}
    assert isinstance(p, ToolResult)
    return {"functionResponse": {"name": p.name, "response": {"content": p.content}}}


def _parts(parts: list[Part]) -> list[Body]:
    """A turn's parts as Gemini parts. A functionResponse holds JSON only: the images of tool
    results follow as inlineData or fileData parts at the end of the turn, so its functionResponse
    parts stay together (one for each call of the turn before)."""
    images = [image for p in parts if isinstance(p, ToolResult) for image in p.images]
    return [*map(_part, parts), *map(_part, images)]


def _declaration(tool: Body, index: int) -> Body:
    """A chat tool as a function declaration. A function without parameters is declared without
    `parameters`: Google refuses an object schema with no properties there."""
    declared: Body = {"name": tool["name"], "description": tool["description"]}
    parameters = gemini_schema(tool["parameters"], f"tools[{index}].function.parameters")
    if parameters.get("properties") or parameters.get("type") != "object":
        declared["parameters"] = parameters
    return declared


def _generation_config(body: Body, chat: Chat, model: str) -> Body:
    gen: Body = {}
    for ours, theirs in (("temperature", "temperature"), ("top_p", "topP"), ("seed", "seed"),
                         ("presence_penalty", "presencePenalty"), ("frequency_penalty", "frequencyPenalty")):
        if body.get(ours) is not None:
            gen[theirs] = body[ours]
    top_k = read_top_k(body.get("top_k"))
    if top_k is not None:
        gen["topK"] = top_k
    if chat.max_tokens is not None:
        gen["maxOutputTokens"] = chat.max_tokens
    if chat.stop:
        gen["stopSequences"] = chat.stop
    if isinstance(body.get("n"), int) and body["n"] > 1:
        gen["candidateCount"] = body["n"]  # one candidate per choice
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        gen["responseMimeType"] = "application/json"
        schema = (fmt.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            gen["responseSchema"] = gemini_schema(schema, "response_format.json_schema.schema")
    thinking = gemini_thinking(body, model)
    if thinking is not None:
        gen["thinkingConfig"] = thinking
    return gen


def _sign_unsigned(contents: list[Body]) -> None:
    """A model turn with function calls but no signature gets the documented skip value on its first call."""
    for turn in contents:
        calls = [p for p in turn["parts"] if "functionCall" in p]
        if turn["role"] == "model" and calls and not any("thoughtSignature" in p for p in calls):
            calls[0]["thoughtSignature"] = SKIP_SIGNATURE


def chat_to_gemini(body: Body, model: str = "") -> Body:
    """An OpenAI chat request as a generateContent request for `model`."""
    check_chat_request(body, choices=True)
    chat = read_chat(body)
    # Gemini caches prompt prefixes implicitly: cache breakpoints have nothing to map to
    out: Body = {"contents": [{"role": "user" if t.role == "user" else "model",
                               # Gemini takes back no thinking but its signatures (in call ids)
                               "parts": _parts([p for p in t.parts if not isinstance(p, CacheMark | Thinking)])}
                              for t in chat.turns]}
    if _SIGNING_MODEL.search(model):
        _sign_unsigned(out["contents"])
    if chat.system:
        out["systemInstruction"] = {"parts": [{"text": system_text(chat.system)}]}
    gen = _generation_config(body, chat, model)
    if gen:
        out["generationConfig"] = gen
    if chat.tools:
        out["tools"] = [{"functionDeclarations": [_declaration(t, i) for i, t in enumerate(chat.tools)]}]
    if chat.tool_choice is not None:
        mode = {"auto": "AUTO", "required": "ANY", "none": "NONE"}.get(chat.tool_choice)
        config: Body = {"mode": mode or "ANY"}
        if mode is None:
            config["allowedFunctionNames"] = [chat.tool_choice]
        out["toolConfig"] = {"functionCallingConfig": config}
    return out


def usage_from_gemini(meta: Any) -> tuple[TokenUsage, Body]:
    """Thinking tokens are output tokens (billed as such); cached tokens are part of the prompt; audio
    and image tokens by modality (providers/modalities.py)."""
    meta = meta if isinstance(meta, dict) else {}
    prompt = _count(meta.get("promptTokenCount")) + _count(meta.get("toolUsePromptTokenCount"))
    thoughts = _count(meta.get("thoughtsTokenCount"))
    cached = min(_count(meta.get("cachedContentTokenCount")), prompt)
    usage = TokenUsage(prompt, _count(meta.get("candidatesTokenCount")) + thoughts, cache_read_tokens=cached,
                       service_tier=from_vertex(meta), modal=gemini_modal(meta), reasoning_tokens=thoughts or None)
    return usage, usage_dict(usage)


_COUNTS = ("promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount", "cachedContentTokenCount",
           "toolUsePromptTokenCount")


def gemini_reported(meta: Any) -> bool:
    """Whether a usageMetadata reports counts (the prompt's or the answer's, each count it holds a
    whole number): one with a count of the wrong type is none at all, and the gateway bills its
    estimate instead of 0."""
    if not isinstance(meta, dict) or ("promptTokenCount" not in meta and "candidatesTokenCount" not in meta):
        return False
    return all(type(meta[k]) is int for k in _COUNTS if k in meta)


def _count(value: Any) -> int:
    # (a decoded JSON number is an int or a float, never a subclass: the type is the check, bools out)
    return value if type(value) is int and value > 0 else 0


def blocked(resp: Body) -> UpstreamFailure | None:
    """A prompt refused by Google's safety system comes back as 200 with `promptFeedback.blockReason`."""
    feedback = resp.get("promptFeedback")
    if not isinstance(feedback, dict) or not feedback.get("blockReason"):
        return None
    message = f"the prompt was blocked ({feedback['blockReason']})"
    if feedback.get("blockReasonMessage"):
        message += f": {feedback['blockReasonMessage']}"
    return UpstreamFailure(message, status=400, retryable=False, body=resp, code=CONTENT_FILTER)


def _candidates(resp: Body, streamed: bool) -> list[tuple[int, list[Body], str | None]]:
    """Each candidate's (index, parts, finish reason). Google's JSON leaves out an `index` of 0 (a
    proto default): a whole answer lists its candidates in order, a stream's
    event may carry any of them, so there a missing index is 0."""
    out = []
    for position, cand in enumerate(resp.get("candidates") or []):
        content = cand.get("content") or {}
        index = cand.get("index", 0 if streamed else position)
        out.append((int(index), list(content.get("parts") or []), cand.get("finishReason")))
    return out


def _finish(reason: str | None, calls: bool) -> str:
    finish = _FINISH.get(reason or "STOP", "stop")
    return "tool_calls" if calls and finish == "stop" else finish


def malformed(reasons: Any) -> UpstreamFailure | None:
    """The failure a candidate's malformed end stands for (None when every one ended well)."""
    bad = next((str(r) for r in reasons if r in _MALFORMED), None)
    if bad is None:
        return None
    return UpstreamFailure(f"the model ended its turn with finishReason {bad} (a function call it could not make "
                           "well-formed); send the request again", status=None, retryable=True, code=MALFORMED_OUTPUT)


def gemini_to_chat(resp: Body, model: str, created: int) -> tuple[Body, TokenUsage | None]:
    failure = blocked(resp) or malformed(reason for _, _, reason in _candidates(resp, False))
    if failure is not None:
        raise failure
    if not isinstance(resp.get("candidates"), list):  # (a blocked prompt, the one answer without, was raised)
        raise ValueError("no candidates")
    given = str(resp["responseId"]) if resp.get("responseId") else None
    # one choice per candidate (candidateCount for `n`); an answer without any is an empty choice
    choices = [_choice(index, parts, reason, given) for index, parts, reason in _candidates(resp, False)]
    usage, shown = usage_from_gemini(resp.get("usageMetadata"))
    usage = with_searches(usage, gemini_grounding(resp))
    rid = given or answer_id()
    body = chat_answer(rid, str(resp.get("modelVersion") or model), created,
                       choices or [_choice(0, [], None, given)], shown)
    if not gemini_reported(resp.get("usageMetadata")):  # the gateway's estimate, billed and said in its place
        del body["usage"]
        return stamped(body, from_vertex(resp.get("usageMetadata"))), None
    return stamped(body, from_vertex(resp.get("usageMetadata"))), usage


def _choice(index: int, parts: list[Body], reason: str | None, given: str | None) -> Body:
    texts = [p["text"] for p in parts if isinstance(p.get("text"), str) and not p.get("thought")]
    thoughts = [p["text"] for p in parts if isinstance(p.get("text"), str) and p.get("thought")]
    calls = [ToolCall(call_id(str(p["functionCall"].get("id") or minted_id(given, i, index)),
                              p.get("thoughtSignature")),
                      p["functionCall"]["name"], p["functionCall"].get("args") or {})
             for i, p in enumerate(parts) if isinstance(p.get("functionCall"), dict)]
    return chat_choice(index, "".join(texts), calls, _finish(reason, bool(calls)), "".join(thoughts))


class GeminiStreamTranslator:
    """streamGenerateContent SSE payloads, one at a time, into OpenAI chunks. Each payload carries
    the usage so far; the last one counts. `end()` gives the closing chunks. Several candidates
    (candidateCount for `n`) stream as choices by their `index`, each closed by its own finish."""

    def __init__(self, model: str, created: int) -> None:
        self.chunks = Chunks(answer_id(), model, created)  # the answer's responseId replaces it
        self.usage: TokenUsage | None = None
        self._shown: Body | None = None
        self._started = False
        self._choices: dict[int, Chunks] = {0: self.chunks}
        self._finish: dict[int, str | None] = {0: None}
        self._meta: Any = None
        self._searches = 0  # grounding searches (the events that carry groundingMetadata say them)
        self._response_id: str | None = None
        self.tier: str | None = None  # the tier Vertex's usageMetadata says serves the answer

    def _choice(self, index: int, out: list[Body]) -> Chunks:
        """The chunks of choice `index`, its role chunk sent when it first appears."""
        chunks = self._choices.get(index)
        if chunks is None:
            chunks = self._choices[index] = Chunks(self.chunks.rid, self.chunks.model, self.chunks.created, index)
            self._finish[index] = None
            out.append(chunks.role())
        return chunks

    def feed(self, resp: Body) -> list[Body]:
        if "promptFeedback" in resp:
            failure = blocked(resp)
            if failure is not None:
                raise failure
        out: list[Body] = []
        if not self._started:
            self._started = True
            self._response_id = str(resp["responseId"]) if resp.get("responseId") else None
            self.chunks.rid = self._response_id or self.chunks.rid
            out.append(self.chunks.role())
        for index, parts, reason in _candidates(resp, True):
            chunks = self._choice(index, out)
            for p in parts:
                if isinstance(p.get("text"), str) and p["text"]:
                    out.append(chunks.reasoning(p["text"]) if p.get("thought") else chunks.text(p["text"]))
                elif isinstance(p.get("functionCall"), dict):
                    fc = p["functionCall"]
                    minted = minted_id(self._response_id, chunks.tools, index)
                    _, chunk = chunks.tool_start(call_id(str(fc.get("id") or minted), p.get("thoughtSignature")),
                                                 fc["name"], orjson.dumps(fc.get("args") or {}).decode())
                    out.append(chunk)
            if reason:
                self._finish[index] = reason
        self._searches = max(self._searches, gemini_grounding(resp))
        meta = resp.get("usageMetadata")
        if meta:
            self._meta = meta  # cumulative: only the last one counts, read at the end
            # Vertex says the tier in the usage, which may come only with the last payload: the
            # chunks from then on say it
            self.tier = from_vertex(meta) or self.tier
        return [stamped(c, self.tier) for c in out]

    @property
    def started(self) -> bool:
        return self._started

    @property
    def finished(self) -> bool:
        """Whether every candidate got its finishReason (a stream's last event says it)."""
        return self._started and all(self._finish.values())

    def end(self) -> list[Body]:
        if not self._started:
            return []
        if gemini_reported(self._meta):
            self.usage, self._shown = usage_from_gemini(self._meta)
            self.usage = with_searches(self.usage, self._searches)
        failure = malformed(self._finish.values())
        if failure is not None:  # the turn ends in error, its usage known (and billed)
            raise failure
        out = [chunks.finish(_finish(self._finish[index], chunks.tools > 0))
               for index, chunks in sorted(self._choices.items())]
        if self._shown is not None:
            out.append(self.chunks.usage(self._shown))
        return [stamped(c, self.tier) for c in out]


# --- embeddings ---------------------------------------------------------------------------------


def embedding_inputs(body: Body) -> list[str]:
    value = body.get("input")
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(i, str) and i for i in items):
        raise InvalidRequest("`input` must be a non-empty string or list of non-empty strings for this "
                             "provider (token arrays are not supported)", param="input")
    return items


def embeddings_request(body: Body, model: str) -> Body:
    """batchEmbedContents (Gemini API)."""
    requests = []
    for text in embedding_inputs(body):
        r: Body = {"model": f"models/{model}", "content": {"parts": [{"text": text}]}}
        if isinstance(body.get("dimensions"), int):
            r["outputDimensionality"] = body["dimensions"]
        requests.append(r)
    return {"requests": requests}


def vertex_embeddings_request(body: Body) -> Body:
    """`:predict` (Vertex AI text embedding models), which reports token counts."""
    out: Body = {"instances": [{"content": t} for t in embedding_inputs(body)]}
    if isinstance(body.get("dimensions"), int):
        out["parameters"] = {"outputDimensionality": body["dimensions"]}
    return out
