"""A fake Amazon Bedrock runtime over real HTTP: Converse (`POST /model/{id}/converse`),
ConverseStream (`/converse-stream`, AWS event-stream binary frames made by `frame()` below, which a
unit test checks against botocore's decoder) and InvokeModel for Titan embeddings (`/invoke`).
Every request must carry a SigV4 `Authorization` header that the fake re-computes with botocore's
signer from the known test credentials (or a Bedrock API key as a bearer token).
Token counts: prompt = words of all text in messages and system; the reply is `reply_words` words;
prompt caching as Bedrock does it: the blocks before the last `cachePoint` are written, then read.
Claude offered several tools calls the first two at once (parallel tool use) unless the request
turns that off: Converse's toolConfig cannot say it, Claude's own `tool_choice` in
`additionalModelRequestFields` can, merged over the toolChoice Converse builds (so it needs its
`type` only without one, and may not name another); other models refuse the field.
Every Converse, ConverseStream and CountTokens body is checked against the service model botocore
ships (tests/bedrock_shape.py: no undeclared field at any depth, required ones, one member per
union, enums), InvokeModel bodies against the model's own fields (_invoke_problem), refused with
Bedrock's ValidationException as Bedrock refuses them.
Errors use Bedrock's shape: `{"message"}` plus the `x-amzn-ErrorType` header."""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import json
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests import bedrock_shape
from tests import fake_wire as wire

WORDS = ("Hello", "from", "the", "fake", "Bedrock", "model", "with", "counted", "tokens", "today")
ACCESS_KEY, SECRET_KEY, SESSION_TOKEN = "AKIDFAKEBEDROCK", "fake/secret+key", "fake-session-token"


@contextlib.contextmanager
def aws_credentials() -> Iterator[None]:
    """The fake's credentials in this process's environment, where botocore's default chain (the
    node's Bedrock signer) finds them; the environment as it was afterwards."""
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_EC2_METADATA_DISABLED")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_SESSION_TOKEN=SESSION_TOKEN,
                      AWS_EC2_METADATA_DISABLED="true")
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
_AUTH = re.compile(r"^AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/bedrock/aws4_request, "
                   r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$")
_ERRORS = {400: "ValidationException", 403: "AccessDeniedException", 424: "ModelErrorException",
           429: "ThrottlingException",
           500: "InternalServerException", 503: "ServiceUnavailableException"}


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (total length, headers length, CRC32), string-typed
    headers, payload, message CRC32."""
    encoded = b"".join(struct.pack(">B", len(k)) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode()
                       for k, v in headers.items())
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    head = prelude + struct.pack(">I", binascii.crc32(prelude)) + encoded + payload
    return head + struct.pack(">I", binascii.crc32(head))


def event(kind: str, body: dict[str, Any]) -> bytes:
    return frame({":event-type": kind, ":content-type": "application/json", ":message-type": "event"},
                 json.dumps(body).encode())


def exception(kind: str, message: str, **fields: Any) -> bytes:
    """An exception frame; `fields` are the exception's other members (modelStreamErrorException:
    originalStatusCode, originalMessage)."""
    return frame({":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"},
                 json.dumps({"message": message, **fields}).encode())


_words = wire.word_counter("text", "content", "messages", "system")


def _output_schema(body: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(schema, validation error) of Converse structured output, `outputConfig.textFormat`, as the
    service model declares it: the schema is a JSON string under `structure.jsonSchema.schema`."""
    if "outputConfig" not in body:
        return None, None
    fmt = (body["outputConfig"] or {}).get("textFormat") or {}
    schema = ((fmt.get("structure") or {}).get("jsonSchema") or {}).get("schema")
    if fmt.get("type") != "json_schema" or not isinstance(schema, str):
        return None, "outputConfig.textFormat needs type json_schema and structure.jsonSchema.schema (a string)"
    try:
        return json.loads(schema), None
    except ValueError:
        return None, "outputConfig.textFormat.structure.jsonSchema.schema is not valid JSON"


_TAG = re.compile(r"[a-zA-Z0-9\s._:/=+$@-]{0,256}")


def _fragments(args: str) -> list[str]:
    """A tool call's argument JSON as ConverseStream sends it, in pieces (none: one empty piece);
    long arguments in three, so a piece can end inside a string value."""
    if len(args) > 40:
        return [args[:5], args[5:len(args) // 2], args[len(args) // 2:]]
    return [args[:5], args[5:]] if args else [""]


def _request_problem(body: dict[str, Any]) -> str | None:
    """Converse's validation of serviceTier, requestMetadata and cachePoint blocks."""
    points = [b["cachePoint"] for b in list((body.get("toolConfig") or {}).get("tools") or []) + list(
        body.get("system") or []) + [
        b for m in body.get("messages") or [] for b in m.get("content") or []] if "cachePoint" in b]
    if any(p.get("type") != "default" or p.get("ttl", "5m") not in ("5m", "1h") or set(p) - {"type", "ttl"}
           for p in points):
        return ("1 validation error detected: Value at 'cachePoint' failed to satisfy constraint: type must be "
                "default, ttl one of [5m, 1h]")
    tier = body.get("serviceTier")
    if tier is not None and (not isinstance(tier, dict) or tier.get("type") not in ("priority", "default", "flex",
                                                                                     "reserved")):
        return ("1 validation error detected: Value at 'serviceTier.type' failed to satisfy constraint: Member must "
                "satisfy enum value set: [priority, default, flex, reserved]")
    tags = body.get("requestMetadata")
    if tags is not None and (not isinstance(tags, dict) or not 0 < len(tags) <= 16 or not all(
            isinstance(k, str) and k and isinstance(v, str) and _TAG.fullmatch(k) and _TAG.fullmatch(v)
            for k, v in tags.items())):
        return ("1 validation error detected: Value at 'requestMetadata' failed to satisfy constraint: Map keys and "
                "values must satisfy regular expression pattern: [a-zA-Z0-9\\s._:/=+$@-]{0,256}")
    return None


# InvokeModel bodies of Titan text embeddings: v1 takes the text only
_TITAN_FIELDS = {"amazon.titan-embed-text-v1": {"inputText"},
                 "amazon.titan-embed-text-v2:0": {"inputText", "dimensions", "normalize", "embeddingTypes"},
                 "amazon.titan-embed-image-v1": {"inputText", "inputImage", "embeddingConfig"}}


def _invoke_problem(model: str, body: Any) -> str | None:
    """What InvokeModel answers to a body the model does not take: Titan embeddings' own fields
    (v2's `dimensions` one of 256, 512, 1024), Claude's Messages body with
    `anthropic_version: bedrock-2023-05-31` and neither `model` nor `stream` (the model is in the
    path, streaming is InvokeModelWithResponseStream)."""
    if not isinstance(body, dict):
        return "Malformed input request: #: expected type: JSONObject, please reformat your input and try again."
    if "anthropic." in model:
        known = {"anthropic_version", "anthropic_beta", "messages", "system", "max_tokens", "temperature", "top_p",
                 "top_k", "stop_sequences", "tools", "tool_choice", "thinking", "metadata", "output_config",
                 "context_management"}
        if body.get("anthropic_version") != "bedrock-2023-05-31":
            return "Malformed input request: #: required key [anthropic_version] not found, please reformat your input"
    else:
        known = next((f for name, f in _TITAN_FIELDS.items() if model.startswith(name)), set(body))
        if "dimensions" in body and body["dimensions"] not in (256, 512, 1024):
            return "Malformed input request: #/dimensions: " + str(body["dimensions"]) + " is not a valid enum value"
    extra = next((k for k in body if k not in known), None)
    return bedrock_shape.extraneous("#", extra) if extra else None


def _tool_ids(messages: list[dict[str, Any]]) -> str | None:
    """Converse's own check of tool ids: `toolUseId` matches [a-zA-Z0-9_-]+, 1 to 64 characters, and
    every toolResult answers a toolUse of the turn before."""
    asked: set[str] = set()
    for i, msg in enumerate(messages):
        answered: set[str] = set()
        for j, block in enumerate(msg.get("content") or []):
            for kind in [k for k in ("toolUse", "toolResult") if k in block]:
                ident = (block[kind] or {}).get("toolUseId")
                if not isinstance(ident, str) or not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", ident):
                    return (f"1 validation error detected: Value at 'messages.{i + 1}.member.content.{j + 1}.member."
                            f"{kind}.toolUseId' failed to satisfy constraint: Member must satisfy regular expression "
                            "pattern: [a-zA-Z0-9_-]+")
                if kind == "toolResult":
                    answered.add(str(ident))
        if answered - asked:
            return ("The toolResult blocks at messages." + str(i) + ".content do not match the toolUse "
                    "blocks of the previous turn")
        asked = {b["toolUse"]["toolUseId"] for b in msg.get("content") or [] if "toolUse" in b}
    return None


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeBedrock:
    region: str = "us-east-1"
    api_key: str = "bedrock-api-key"
    reply_words: int = 5
    max_prompt: int = 1000  # a longer prompt is a 400
    # set: Claude's context window; an answer that would pass it stops at its end with stopReason
    # model_context_window_exceeded (Claude 4.5 and later)
    context_window: int | None = None
    output_cap: int | None = None  # set: a larger inferenceConfig.maxTokens is a 400, in Converse's words
    tool_text: str | None = None  # set: a call's arguments fit the tool's schema, strings holding it
    tool_script: wire.ToolScript | None = None  # set: tool calls follow it, answers quote the last result
    requests: list[Seen] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)  # HTTP statuses for the next calls
    stream_exceptions: list[str] = field(default_factory=list)  # exception events for the next streams
    answers: list[wire.Answer] = field(default_factory=list)  # given instead of the next calls' own answers
    # the next stream sent broken this way (fake_wire.mangled; its garbage: a frame whose CRC is wrong,
    # "prelude": a frame whose prelude CRC is wrong)
    mangle: str | None = None
    # after this many text deltas, the next stream ends with a modelStreamErrorException frame (no
    # messageStop, no metadata: as ConverseStream reports a model failing midway)
    exception_after: int | None = None
    stop_reasons: list[str] = field(default_factory=list)  # the stop reasons of the next answers (malformed_tool_use)
    cached_prefixes: set[str] = field(default_factory=set)  # prompt prefixes written to the cache
    signatures: set[str] = field(default_factory=set)  # signatures given to Claude's reasoning blocks
    # the tier answers say served them (`serviceTier`, in Converse's answer and the stream's metadata
    # event): the one asked for, else `default`; None: no serviceTier in answers
    served_tier: str | None = "asked"
    # set: a stream waits for it before its messageStop (every content block sent), as a model
    # still working on its answer would
    hold: asyncio.Event | None = None
    url: str = ""
    _runner: web.AppRunner | None = None

    async def __aenter__(self) -> FakeBedrock:
        app = web.Application()
        app.router.add_post("/model/{model}/{action}", self._handle)
        self._runner, self.url = await wire.serve(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def last(self) -> Seen:
        return self.requests[-1]

    def _prompt_cache(self, body: dict[str, Any]) -> tuple[int, int, int]:
        """(cache read, cache write, of those writes the ones kept an hour) input tokens as Bedrock
        prompt caching counts them: the system and message blocks before the last `cachePoint`
        are read when an earlier request wrote the same prefix, else written, for an hour when
        that cachePoint says `ttl: 1h`."""
        blocks = list(body.get("system") or []) + [b for m in body.get("messages") or [] for b in m["content"]]
        points = [i for i, b in enumerate(blocks) if "cachePoint" in b]
        if not points:
            return 0, 0, 0
        prefix = blocks[: points[-1]]
        key = json.dumps(prefix, sort_keys=True)
        if key in self.cached_prefixes:
            return _words(prefix), 0, 0
        self.cached_prefixes.add(key)
        return 0, _words(prefix), _words(prefix) if blocks[points[-1]]["cachePoint"].get("ttl") == "1h" else 0

    def check_signature(self, request: web.Request, raw: bytes) -> str | None:
        """None if the Authorization header is botocore's SigV4 signature of this very request."""
        auth = request.headers.get("Authorization", "")
        if auth == "Bearer " + self.api_key:
            return None
        m = _AUTH.match(auth)
        if m is None:
            return "missing or malformed SigV4 Authorization header"
        key, _day, region, signed, signature = m.groups()
        if key != ACCESS_KEY or region != self.region:
            return f"unknown access key {key} or wrong region {region}"
        names = signed.split(";")
        headers = {n: request.headers[n] for n in names if n != "host" and n in request.headers}
        resigned = AWSRequest(method=request.method, url=f"http://{request.host}{request.raw_path}", data=raw,
                              headers=headers)
        resigned.context["timestamp"] = request.headers.get("X-Amz-Date", "")
        signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN), "bedrock", self.region)
        expected = signer.signature(signer.string_to_sign(resigned, signer.canonical_request(resigned)), resigned)
        if expected != signature or request.headers.get("X-Amz-Security-Token") != SESSION_TOKEN:
            return "The request signature we calculated does not match the signature you provided."
        return None

    def _thinking_problem(self, model: str, body: dict[str, Any]) -> str | None:
        """Claude's extended-thinking rules as Bedrock passes them on: signed reasoning blocks only,
        a budget of at least 1024 under maxTokens, and a tool call continued only with the assistant
        turn starting with its reasoning."""
        messages = body.get("messages") or []
        for i, msg in enumerate(messages):
            for b in msg.get("content") or []:
                text = (b.get("reasoningContent") or {}).get("reasoningText")
                if text is not None and text.get("signature") not in self.signatures:
                    return f"The model returned the following errors: messages.{i}.content: Invalid `signature`"
        thinking = (body.get("additionalModelRequestFields") or {}).get("thinking")
        if not isinstance(thinking, dict) or thinking.get("type") != "enabled":
            return None
        if not model.startswith(("anthropic.", "us.anthropic.", "eu.anthropic.")):
            return "The model does not support the additional field thinking"
        budget, most = thinking.get("budget_tokens"), (body.get("inferenceConfig") or {}).get("maxTokens")
        if not isinstance(budget, int) or budget < 1024 or not isinstance(most, int) or budget >= most:
            return "The model returned the following errors: `max_tokens` must be greater than `budget_tokens`"
        if (body.get("inferenceConfig") or {}).get("temperature", 1) != 1:
            return "The model returned the following errors: temperature may only be set to 1 when thinking is enabled."
        continued = any("toolResult" in b for b in messages[-1].get("content") or [])
        if continued and len(messages) > 1 and "reasoningContent" not in (messages[-2]["content"] or [{}])[0]:
            return ("The model returned the following errors: " +
                    wire.THINKING_FIRST.format(i=len(messages) - 2, kind="tool_use"))
        return None

    @staticmethod
    def _tool_choice(model: str, body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """Claude's tool_choice: Converse's toolChoice with `additionalModelRequestFields.tool_choice`
        merged over it, or what Bedrock answers to a field the model does not take."""
        extra = (body.get("additionalModelRequestFields") or {}).get("tool_choice")
        given = (body.get("toolConfig") or {}).get("toolChoice") or {}
        built: dict[str, Any] = ({"type": "any"} if "any" in given else {"type": "auto"} if "auto" in given else
                                 {"type": "tool", "name": given["tool"]["name"]} if "tool" in given else {})
        if extra is None:
            return built, None
        if "anthropic." not in model:
            return built, "Malformed input request: extraneous key [tool_choice] is not permitted, please reformat"
        if "toolConfig" not in body:
            return built, "The model returned the following errors: tool_choice may only be specified with tools"
        if built and "type" in extra and extra["type"] != built["type"]:
            return built, ("The value at toolConfig.toolChoice conflicts with the tool_choice in "
                           "additionalModelRequestFields")
        merged = {**built, **extra}
        if "type" not in merged:
            return merged, "The model returned the following errors: tool_choice.type: Field required"
        return merged, None

    @staticmethod
    def error(status: int, message: str) -> web.Response:
        kind = _ERRORS.get(status, "InternalServerException")
        return web.json_response({"message": message}, status=status,
                                 headers={"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/"})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw)
        self.requests.append(Seen(request.raw_path, dict(request.headers), body))
        problem = self.check_signature(request, raw)
        if problem:
            return web.json_response({"message": problem}, status=403,
                                     headers={"x-amzn-ErrorType": "InvalidSignatureException:"})
        if self.answers:
            return self.answers.pop(0).response()
        if self.failures:
            status = self.failures.pop(0)
            return self.error(status, "Too many requests, please wait before trying again." if status == 429
                              else f"injected failure {status}")
        model, action = request.match_info["model"], request.match_info["action"]
        operation = {"converse": "Converse", "converse-stream": "ConverseStream", "count-tokens": "CountTokens"}
        shape_problem = bedrock_shape.problem(operation[action], body) if action in operation else \
            _invoke_problem(model, body) if action == "invoke" else None
        if shape_problem:
            return self.error(400, shape_problem)
        if action == "count-tokens":  # CountTokens: what Converse would count as input, nothing generated
            converse = (body.get("input") or {}).get("converse")
            if not isinstance(converse, dict) or not isinstance(converse.get("messages"), list):
                return self.error(400, "Malformed input request, please reformat your input and try again.")
            if "anthropic." not in model:
                return self.error(400, "The provided model doesn't support counting tokens.")
            return web.json_response({"inputTokens": _words(converse["messages"]) + _words(converse.get("system"))})
        if action == "invoke":
            if not model.startswith("amazon.titan-embed"):
                return self.error(400, "Malformed input request")
            text = body["inputText"]
            return web.json_response({"embedding": [0.5, float(_words(text))],
                                      "inputTextTokenCount": _words(text)})
        problem = _tool_ids(body.get("messages") or []) or self._thinking_problem(model, body)
        if not problem and "toolConfig" not in body and any(
                "toolUse" in b or "toolResult" in b for m in body.get("messages") or [] for b in m["content"]):
            problem = "The toolConfig field must be defined when using toolUse and toolResult content blocks."
        problem = problem or _beta_problem(model, body)
        choice, problem = self._tool_choice(model, body) if not problem else ({}, problem)
        problem = problem or _request_problem(body)
        asked = (body.get("inferenceConfig") or {}).get("maxTokens")
        if not problem and self.output_cap is not None and isinstance(asked, int) and asked > self.output_cap:
            problem = (f"The maximum tokens you requested exceeds the model limit of {self.output_cap}. Try again "
                       f"with a maximum tokens value that is lower than {self.output_cap}.")
        if problem:
            return self.error(400, problem)
        thinks = ((body.get("additionalModelRequestFields") or {}).get("thinking") or {}).get("type") == "enabled"
        prompt = _words(body.get("messages")) + _words(body.get("system"))
        if prompt > self.max_prompt:
            return self.error(400, "Input is too long for requested model.")
        last = body["messages"][-1]["content"]
        tools = [t for t in (body.get("toolConfig") or {}).get("tools") or [] if "toolSpec" in t]  # (not cachePoints)
        calls: list[dict[str, Any]] = []
        results = [b["toolResult"].get("content") for m in body["messages"] for b in m["content"] if "toolResult" in b]
        scripted = self.tool_script.call([t["toolSpec"]["name"] for t in tools if "toolSpec" in t], bool(results)) \
            if self.tool_script is not None else None
        if scripted is not None:
            calls.append({"toolUseId": f"tooluse_{len(self.requests)}", "name": scripted[0], "input": scripted[1]})
        elif tools and self.tool_script is None and not any("toolResult" in b for b in last):
            forced = ((body["toolConfig"].get("toolChoice") or {}).get("tool") or {}).get("name")
            names = [forced] if forced else [t["toolSpec"]["name"] for t in tools[:2]]
            if "anthropic." not in model or choice.get("disable_parallel_tool_use"):
                names = names[:1]
            for k, name in enumerate(names):
                spec = next(t["toolSpec"] for t in tools if t["toolSpec"]["name"] == name)
                # a tool declared without parameters (empty `properties`) is called without arguments
                arguments = {} if spec["inputSchema"]["json"].get("properties") == {} else {"city": "Paris"}
                if self.tool_text is not None:
                    arguments = wire.sample(spec["inputSchema"]["json"], self.tool_text) or {}
                calls.append({"toolUseId": f"tooluse_{len(self.requests)}" + (f"_{k}" if k else ""), "name": name,
                              "input": arguments})
        call = calls[0] if calls else None
        max_out = (body.get("inferenceConfig") or {}).get("maxTokens")
        words = [WORDS[i % len(WORDS)] for i in range(self.reply_words)]
        if self.tool_script is not None and results:
            words += wire.result_text(results[-1]).split()[:40]
        stop = "end_turn"
        if isinstance(max_out, int) and max_out < len(words):
            words, stop = words[:max_out], "max_tokens"
        window = self.context_window
        if window is not None and "anthropic." in model and prompt + len(words) > window:
            words, stop = words[:max(window - prompt, 0)], "model_context_window_exceeded"
        extra: dict[str, Any] = {}
        matched = next((i for i, w in enumerate(words)
                        if w in ((body.get("inferenceConfig") or {}).get("stopSequences") or [])), None)
        if matched is not None:  # the answer ends before the sequence; Claude can say which one it was
            stop, sequence, words = "stop_sequence", words[matched], words[:matched]
            if "/stop_sequence" in (body.get("additionalModelResponseFieldPaths") or []) and model.startswith(
                    "anthropic."):
                extra["additionalModelResponseFields"] = {"stop_sequence": sequence}
        schema, problem = _output_schema(body)
        if problem:
            return self.error(400, problem)
        if schema is not None and not call:  # structured output: JSON fitting the schema
            words = json.dumps(wire.sample(schema)).split(" ")
        if "BLOCKME" in json.dumps(body["messages"]):
            words, stop = ["Sorry,", "blocked."], "guardrail_intervened"
        if call:
            stop = "tool_use"
        if self.stop_reasons:
            stop = self.stop_reasons.pop(0)
        if self.served_tier is not None:
            served = (body.get("serviceTier") or {}).get("type", "default") if self.served_tier == "asked" \
                else self.served_tier
            extra["serviceTier"] = {"type": served}
        read, written, hour = self._prompt_cache(body)
        usage: dict[str, Any] = {
            "inputTokens": prompt - read - written, "cacheReadInputTokens": read, "cacheWriteInputTokens": written,
            "outputTokens": self.reply_words if call else len(words),
            "totalTokens": prompt + (self.reply_words if call else len(words))}
        if written:  # the writes by TTL, 1h before 5m
            usage["cacheDetails"] = [{"ttl": ttl, "inputTokens": n} for ttl, n in (("1h", hour), ("5m", written - hour))
                                     if n]
        reasoning: dict[str, Any] | None = None
        if thinks:  # Claude's extended thinking comes first, signed
            reasoning = {"text": "Let me think.", "signature": f"sig{len(self.requests)}"}
            self.signatures.add(reasoning["signature"])
        if action == "converse":
            content: list[dict[str, Any]] = [{"toolUse": c} for c in calls] if call else [{"text": " ".join(words)}]
            if reasoning:
                content.insert(0, {"reasoningContent": {"reasoningText": reasoning}})
            return web.json_response({"output": {"message": {"role": "assistant", "content": content}},
                                      "stopReason": stop, "usage": usage, "metrics": {"latencyMs": 12}, **extra})
        if action != "converse-stream":
            return self.error(400, f"unknown operation {action}")
        resp = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream"})
        await resp.prepare(request)
        if self.stream_exceptions:
            await resp.write(exception(self.stream_exceptions.pop(0), "Too many tokens, please wait."))
            await resp.write_eof()
            return resp
        frames = [event("messageStart", {"role": "assistant"})]
        at = 0  # the answer's content block
        if reasoning:
            frames += [event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": t}}})
                       for t in ("Let me ", "think.")]
            frames += [event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {
                "signature": reasoning["signature"]}}}), event("contentBlockStop", {"contentBlockIndex": 0})]
            at = 1
        for k, c in enumerate(calls):
            if k:
                frames.append(event("contentBlockStop", {"contentBlockIndex": at}))
                at += 1
            args = json.dumps(c["input"]) if c["input"] else ""  # no arguments: one empty fragment
            frames += [event("contentBlockStart", {"contentBlockIndex": at, "start": {"toolUse": {
                "toolUseId": c["toolUseId"], "name": c["name"]}}})]
            frames += [event("contentBlockDelta", {"contentBlockIndex": at, "delta": {"toolUse": {"input": part}}})
                       for part in _fragments(args)]
        if not calls:
            frames += [event("contentBlockDelta", {"contentBlockIndex": at,
                                                   "delta": {"text": w if i == 0 else " " + w}})
                       for i, w in enumerate(words)]
        frames += [event("contentBlockStop", {"contentBlockIndex": at}),
                   event("messageStop", {"stopReason": stop, **{k: v for k, v in extra.items() if k != "serviceTier"}}),
                   event("metadata", {"usage": usage, "metrics": {"latencyMs": 12},
                                      **{k: v for k, v in extra.items() if k == "serviceTier"}})]
        if self.exception_after is not None:
            deltas = [i for i, f in enumerate(frames) if b"contentBlockDelta" in f]
            frames = frames[:deltas[self.exception_after] if self.exception_after < len(deltas) else len(frames)]
            frames.append(exception("modelStreamErrorException", "Received error from the model: overloaded",
                                    originalStatusCode=529, originalMessage="Overloaded"))
            self.exception_after = None
        drop = False
        if self.mangle:
            how, self.mangle = self.mangle, None
            frames, drop = wire.mangled(frames, "garbage" if how == "prelude" else how, _corrupt(frames[1], how))
        stop_at = next((i for i, f in enumerate(frames) if b"messageStop" in f), len(frames))
        for k, part in enumerate((frames[:stop_at], frames[stop_at:])):
            if k and self.hold is not None:
                await self.hold.wait()
            blob = b"".join(part)
            for i in range(0, len(blob), 37):  # frames split across reads, as the network does
                await resp.write(blob[i:i + 37])
        if drop and request.transport is not None:
            request.transport.abort()
            return resp
        await resp.write_eof()
        return resp


def _corrupt(good: bytes, how: str) -> bytes:
    """A frame whose prelude CRC ("prelude") or message CRC (otherwise) is wrong."""
    at = 8 if how == "prelude" else len(good) - 1
    return good[:at] + bytes([good[at] ^ 0xFF]) + good[at + 1:]


# The `anthropic_beta` values Bedrock's Claude takes (its user guide); any other fails the call.
BEDROCK_BETAS = frozenset({
    "computer-use-2024-10-22", "computer-use-2025-01-24", "computer-use-2025-11-24",
    "token-efficient-tools-2025-02-19", "interleaved-thinking-2025-05-14", "output-128k-2025-02-19",
    "dev-full-thinking-2025-05-14", "context-1m-2025-08-07", "context-management-2025-06-27",
    "effort-2025-11-24", "tool-search-tool-2025-10-19", "tool-examples-2025-10-29",
})


def _beta_problem(model: str, body: dict[str, Any]) -> str | None:
    """What Bedrock answers to `additionalModelRequestFields.anthropic_beta` it does not take."""
    betas = (body.get("additionalModelRequestFields") or {}).get("anthropic_beta")
    if betas is None:
        return None
    if "anthropic." not in model:
        return "Malformed input request: extraneous key [anthropic_beta] is not permitted, please reformat"
    if not isinstance(betas, list) or not all(b in BEDROCK_BETAS for b in betas):
        return "invalid beta flag"
    if "effort-2025-11-24" in betas and "opus-4-5" not in model:  # (a beta of some models only)
        return "invalid beta flag"
    return None
