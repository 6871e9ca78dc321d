"""A fake Google upstream over real HTTP: the Gemini API (`/v1beta/models/{m}:generateContent`,
`:streamGenerateContent?alt=sse`, `:embedContent`, `:batchEmbedContents`, key in `x-goog-api-key`) and
Vertex AI (`/v1/projects/{p}/locations/{l}/publishers/google/models/{m}:...`, `:predict` embeddings
too) with a service-account OAuth token endpoint (`POST /token`, JWT-bearer grant, RS256 checked
against the test's public key). Token counts: prompt = words of all text in `contents` and the system
instruction; the reply is `reply_words` words. A prompt containing BLOCKME is blocked for SAFETY;
one longer than `max_prompt` words is refused as too long, in Google's words.
generateContent refuses a field it does not know at the top or in `generationConfig` (its
`thinkingConfig` too), `contents` and their `parts` (google-genai's types of them list the fields).
`generationConfig.candidateCount` N answers N candidates (candidate k's words start k words on),
`candidatesTokenCount` their sum, as Google reports it; a stream sends them interleaved, one
candidate per event, with the `index` of candidate 0 left out (a proto default).

Claude on Vertex (`.../publishers/anthropic/models/{m}:rawPredict`, `:streamRawPredict`,
`count-tokens:rawPredict`) answers as tests/fake_upstream.py answers `/v1/messages` (the same
checks, counts, tool calls and event stream), after Vertex's own checks: a body naming no `model`
(a count names it) and carrying `anthropic_version: vertex-2023-10-16`, no field Anthropic's API
does not take (tests/fake_fields.py), none of the fields and
`anthropic-beta` values Vertex refuses (claude_refusal, answered in Anthropic's error shape as
Vertex answers them), a model enabled in the project (`claude_enabled`; others are not found, in
Google's words)."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import pydantic
from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from google.genai import types as genai_types

from tests import fake_fields
from tests import fake_wire as wire
from tests.fake_upstream import FakeUpstream

WORDS = ("Hello", "from", "the", "fake", "Gemini", "model", "with", "counted", "tokens", "today")
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


# What Claude on Vertex refuses that Anthropic's API takes, answered in Anthropic's error shape (as
# Vertex answers them, with req_vrtx_ request ids): fields documented for Anthropic's API only, and
# beta values Vertex does not take (some of those Claude Code and the Agent SDK were refused)
VERTEX_REFUSED_FIELDS = ("service_tier", "inference_geo", "mcp_servers", "speed", "diagnostics")
VERTEX_REFUSED_BETAS = frozenset({"effort-2025-11-24", "mcp-client-2025-11-20", "prompt-caching-scope-2026-01-05",
                                  "advisor-tool-2026-03-01", "fast-mode-2026-02-01", "web-fetch-2025-09-10",
                                  "files-api-2025-04-14", "skills-2025-10-02", "code-execution-2025-08-25",
                                  "advanced-tool-use-2025-11-20"})  # (tool search: tool-search-tool-2025-10-19)


def claude_refusal(body: dict[str, Any], beta: str) -> str | None:
    """Vertex's answer to a Messages body or `anthropic-beta` header it does not take."""
    refused = [v.strip() for v in beta.split(",") if v.strip() in VERTEX_REFUSED_BETAS]
    if refused:
        return (f"Unexpected value(s) {', '.join(f'`{v}`' for v in refused)} for the `anthropic-beta` header. "
                "Please consult our documentation at docs.anthropic.com or try again without the header.")
    field = next((f for f in VERTEX_REFUSED_FIELDS if f in body), None)
    if field is None and "task_budget" in (body.get("output_config") or {}):
        field = "output_config.task_budget"
    blocks = [("system", i, b) for i, b in enumerate(body.get("system") if isinstance(body.get("system"), list)
                                                      else [])]
    blocks += [("tools", i, b) for i, b in enumerate(body.get("tools") or [])]
    blocks += [(f"messages.{i}.content", j, b) for i, m in enumerate(body.get("messages") or [])
               for j, b in enumerate(m.get("content") if isinstance(m.get("content"), list) else [])]
    scoped = next((f"{at}.{i}.cache_control.scope" for at, i, b in blocks
                   if "scope" in (b.get("cache_control") or {})), None)
    field = field or scoped
    if field is None and "tool-search-tool-2025-10-19" not in beta:  # deferred tools need tool search's beta
        field = next((f"tools.{i}.defer_loading" for i, t in enumerate(body.get("tools") or [])
                      if isinstance(t, dict) and "defer_loading" in t), None)
    return f"{field}: Extra inputs are not permitted" if field else None


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    raw: bytes = b""  # the body's bytes as they came


# GenerateContentRequest's fields (the Gemini API's and Vertex's; proto JSON takes either spelling)
_GENERATE_FIELDS = frozenset(("contents", "tools", "toolConfig", "tool_config", "safetySettings", "safety_settings",
                              "systemInstruction", "system_instruction", "generationConfig", "generation_config",
                              "cachedContent", "cached_content", "labels", "model"))


def _proto_names(model: type[pydantic.BaseModel]) -> frozenset[str]:
    """A google-genai wire type's fields in both spellings proto JSON takes (snake and camel case)."""
    snake = set(model.model_fields)
    return frozenset(snake | {n.split("_")[0] + "".join(w.title() for w in n.split("_")[1:]) for n in snake})


# The nested messages checked as Google's parser checks them: (body path, its message's fields)
_NESTED = (("generationConfig", _proto_names(genai_types.GenerationConfig)),
           ("generationConfig.thinkingConfig", _proto_names(genai_types.ThinkingConfig)),
           ("contents[]", _proto_names(genai_types.Content)), ("contents[].parts[]", _proto_names(genai_types.Part)))


def _at(value: Any, path: str) -> list[Any]:
    """The values at a dotted path (`[]`: each item of a list), either spelling of each name."""
    found = [value]
    for step in path.split("."):
        name, many = step.removesuffix("[]"), step.endswith("[]")
        snake = "".join("_" + c.lower() if c.isupper() else c for c in name)
        found = [v.get(name, v.get(snake)) for v in found if isinstance(v, dict)]
        found = [i for v in found if isinstance(v, list) for i in v] if many else found
    return [v for v in found if isinstance(v, dict)]


def unknown_field(body: Any, extra: frozenset[str] = frozenset()) -> str | None:
    """Google's 400 for a generateContent field it does not know (`extra`: a test's own extension
    fields, taken besides), at the top or in the generation config, the turns and their parts (the
    fields of google-genai's types of them), as its JSON parser words it."""
    if not isinstance(body, dict):
        return None
    name = next((k for k in body if k not in _GENERATE_FIELDS and k not in extra), None)
    if name is not None:
        return f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
    for path, known in _NESTED:
        for value in _at(body, path):
            name = next((k for k in value if k not in known), None)
            if name is not None:
                at = path.replace("[]", "").replace("generationConfig", "generation_config")
                return f'Invalid JSON payload received. Unknown name "{name}" at \'{at}\': Cannot find field.'
    return None


def google_error(status: int, message: str, details: list[dict[str, Any]] | None = None) -> web.Response:
    error: dict[str, Any] = {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}
    if details:
        error["details"] = details
    return web.json_response({"error": error}, status=status)


def quota_error(retry_delay: str) -> web.Response:
    """The Gemini API's 429 for a spent quota: the wait is in a RetryInfo detail, with no
    Retry-After header."""
    return google_error(429, "You exceeded your current quota, please check your plan and billing details.", [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaValue": "10"}]},
        {"@type": "type.googleapis.com/google.rpc.Help", "links": [{
            "description": "Learn more about Gemini API quotas", "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}]},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}])


_words = wire.word_counter("text", "parts", "contents", "content")
AUDIO_PART_TOKENS = 96  # the tokens of one audio part of a prompt (Gemini: 32 a second, 3 s)


# The fields of Google's Schema message (its OpenAPI subset); as a proto message, it refuses others
_SCHEMA_FIELDS = frozenset({"type", "format", "title", "description", "nullable", "enum", "maxItems", "minItems",
                            "properties", "required", "minProperties", "maxProperties", "minLength", "maxLength",
                            "pattern", "example", "anyOf", "propertyOrdering", "default", "items", "minimum",
                            "maximum"})


def declaration_problem(declaration: Any, index: int) -> str | None:
    """Google's answer to a function declaration whose parameters are an object without properties."""
    params = declaration.get("parameters") if isinstance(declaration, dict) else None
    if isinstance(params, dict) and params.get("type") in ("object", "OBJECT") and not params.get("properties"):
        return (f"* GenerateContentRequest.tools[0].function_declarations[{index}].parameters.properties: "
                "should be non-empty for OBJECT type")
    return schema_problem(params, f"tools[0].function_declarations[{index}].parameters")


def schema_problem(schema: Any, at: str) -> str | None:
    """Google's answer to a schema with a field its Schema message lacks ($ref, additionalProperties...)."""
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    for key in ("properties", "required"):  # (Google checks these by the node's own type)
        if key in schema and not (isinstance(kind, str) and kind.upper() == "OBJECT"):
            return f"* GenerateContentRequest.{at}.{key}: only allowed for OBJECT type"
    for i, name in enumerate(schema.get("required") or []):
        if name not in (schema.get("properties") or {}):
            return f"* GenerateContentRequest.{at}.required[{i}]: property is not defined"
    for key, sub in schema.items():
        if key not in _SCHEMA_FIELDS:
            return f'Invalid JSON payload received. Unknown name "{key}" at \'{at}\': Cannot find field.'
        if key == "type" and not isinstance(sub, str):
            return f"Invalid JSON payload received. Proto field is not repeating, cannot start list at '{at}.type'."
        if key == "format" and schema.get("type") == "string" and sub not in ("enum", "date-time"):
            return f"* GenerateContentRequest.{at}.format: only 'enum' and 'date-time' are supported for STRING type"
        subs = (list(sub.items()) if key == "properties" and isinstance(sub, dict) else
                [(str(i), s) for i, s in enumerate(sub)] if key == "anyOf" and isinstance(sub, list) else
                [("", sub)] if key == "items" else [])
        for name, s in subs:
            problem = schema_problem(s, f"{at}.{key}[{name}].value" if name else f"{at}.{key}")
            if problem:
                return problem
    return None


def _label_ok(text: str, key: bool) -> bool:
    """Google's label rules: 1 (key) or 0 (value) to 63 lowercase letters (international ones too),
    digits, `_` and `-`; a key starts with a letter."""
    fits = all(c in "_-" or c.isdecimal() or (c.isalpha() and not c.isupper()) for c in text)
    return fits and len(text) <= 63 and (not key or (bool(text) and text[0].isalpha() and not text[0].isupper()))


def labels_problem(labels: Any) -> str | None:
    """Vertex's answer to labels that break its rules (up to 64 of them)."""
    if not isinstance(labels, dict) or len(labels) > 64:
        return "* GenerateContentRequest.labels: at most 64 labels"
    for k, v in labels.items():
        if not isinstance(v, str) or not _label_ok(k, True) or not _label_ok(v, False):
            return (f"* GenerateContentRequest.labels: label key {k!r} with value {v!r} must be lowercase letters, "
                    "numeric characters, underscores and dashes, at most 63 characters, the key starting with a letter")
    return None


# Vertex's tier headers (Provisioned Throughput required or bypassed; Flex and Priority PayGo)
REQUEST_TYPE, SHARED_REQUEST_TYPE = "X-Vertex-AI-LLM-Request-Type", "X-Vertex-AI-LLM-Shared-Request-Type"


def service_account(private: rsa.RSAPrivateKey, token_uri: str) -> dict[str, Any]:
    """A service-account key file's JSON (for project proj-1) whose tokens come from `token_uri`
    (a fake's `/token`, made with the public half of `private`)."""
    return {
        "type": "service_account", "project_id": "proj-1", "private_key_id": "k1",
        "private_key": private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode(),
        "client_email": "gw@proj-1.iam.gserviceaccount.com", "client_id": "1", "token_uri": token_uri,
    }


def _camel(fields: dict[str, Any]) -> dict[str, Any]:
    """Field names as Google reads them: lowerCamelCase or snake_case (as the google-genai SDK
    sends some nested config fields)."""
    return {k.split("_")[0] + "".join(w.title() for w in k.split("_")[1:]): v for k, v in fields.items()}


def _config(body: dict[str, Any]) -> dict[str, Any]:
    return _camel(body.get("generationConfig") or body.get("generation_config") or {})


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))


@dataclass
class FakeGoogle:
    api_key: str = "gm-key"
    reply_words: int = 5
    max_prompt: int = 1000
    tool_text: str | None = None  # set: a call's arguments fit the declared parameters, strings holding it
    tool_script: wire.ToolScript | None = None  # set: calls follow it, answers quote the last function response
    public_key: rsa.RSAPublicKey | None = None  # set: Vertex calls need a token from /token
    requests: list[Seen] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)  # statuses to answer the next calls with
    retry_delay: str = "36.5s"  # the wait a Gemini API 429 asks for (its RetryInfo)
    parallel_calls: bool = False  # True: offered two functions or more, the model calls the first two at once
    tokens: set[str] = field(default_factory=set)
    implicit_cache: bool = False  # True: prompts repeating a prefix report cachedContentTokenCount
    seen_prefixes: set[str] = field(default_factory=set)
    signatures: set[str] = field(default_factory=set)  # thoughtSignatures given to function calls (gemini-3*)
    # Vertex: the project has Provisioned Throughput, which serves requests first unless one says
    # `X-Vertex-AI-LLM-Request-Type: shared`; its answers say so in usageMetadata.trafficType
    provisioned: bool = False
    # set: the most output tokens its models write; a request asking more is refused as Google does
    output_cap: int | None = None
    finish_reasons: list[str] = field(default_factory=list)  # the finishReason of the next text answers
    claude_enabled: tuple[str, ...] | None = None  # the Claude models enabled in Model Garden (None: all)
    # set (n, how): a stream breaks after n events, by a cut connection ("cut") or Google's error object
    # as an event ("error", status 503)
    break_stream: tuple[int, str] | None = None
    answers: list[wire.Answer] = field(default_factory=list)  # given instead of the next calls' own answers
    mangle: str | None = None  # the next stream sent broken this way (fake_wire.mangled)
    sent: list[bytes] = field(default_factory=list)  # the bytes of each generateContent answer's body
    extra_fields: frozenset[str] = frozenset()  # generateContent fields taken besides Google's own (unknown_field)
    token_hold: asyncio.Event | None = None  # set: /token answers only once this event is set
    url: str = ""
    claude: FakeUpstream = field(default_factory=lambda: FakeUpstream(record=False))  # answers Claude calls
    _runner: web.AppRunner | None = None

    async def __aenter__(self) -> FakeGoogle:
        app = web.Application()
        app.router.add_post("/v1beta/models/{call}", self._gemini)
        app.router.add_post("/v1/projects/{project}/locations/{location}/publishers/google/models/{call}", self._vertex)
        app.router.add_post("/v1/projects/{project}/locations/{location}/publishers/anthropic/models/{call}",
                            self._anthropic)
        app.router.add_post("/token", self._token)
        self._runner, self.url = await wire.serve(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def last(self) -> Seen:
        return [r for r in self.requests if r.path != "/token"][-1]

    def signed(self, signature: str) -> bool:
        """Whether a signature is one given out: its bytes, in either base64 alphabet (as Google
        reads proto bytes; the google-genai SDK sends them back URL-safe)."""
        given = {base64.b64decode(s) for s in self.signatures}
        return base64.urlsafe_b64decode(signature.replace("+", "-").replace("/", "_")) in given

    def _unsigned(self, contents: list[dict[str, Any]]) -> str | None:
        """Gemini 3's check: the first function call of every model turn carries the signature it
        was given (or the documented skip value)."""
        for i, turn in enumerate(contents):
            calls = [p for p in turn.get("parts") or [] if "functionCall" in p]
            if turn.get("role") != "model" or not calls:
                continue
            signature = calls[0].get("thoughtSignature")
            if signature is None:
                return ("Function call is missing a thought_signature in functionCall parts. This is required for "
                        f"tools to work correctly. Additional data, function call {calls[0]['functionCall']['name']}"
                        f", position {i}.")
            if not self.signed(signature) and signature != "skip_thought_signature_validator":
                return "Invalid thought signature."
        return None

    # --- OAuth (service account JWT bearer grant) --------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.requests.append(Seen(request.path, dict(request.query), dict(request.headers), dict(form)))
        if self.token_hold is not None:
            await self.token_hold.wait()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        header, payload, signature = str(form.get("assertion", "")).encode().split(b".")
        assert self.public_key is not None
        try:
            self.public_key.verify(_b64url(signature), header + b"." + payload, padding.PKCS1v15(), hashes.SHA256())
        except Exception:
            return web.json_response({"error": "invalid_grant", "error_description": "bad signature"}, status=400)
        claims = json.loads(_b64url(payload))
        if "cloud-platform" not in claims.get("scope", "") or claims.get("exp", 0) < time.time():
            return web.json_response({"error": "invalid_scope"}, status=400)
        token = "ya29." + secrets.token_urlsafe(16)
        self.tokens.add(token)
        return web.json_response({"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    # --- generateContent -----------------------------------------------------------------------

    async def _gemini(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("x-goog-api-key") != self.api_key:
            return google_error(400, "API key not valid. Please pass a valid API key.")
        return await self._serve(request, vertex=False)

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        """Vertex's answer to a call without a token from /token."""
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return google_error(401, "Request had invalid authentication credentials.")
        return None

    async def _begin(self, request: web.Request) -> tuple[Any, web.Response | None]:
        """The call's body, recorded, and the injected failure it gets, if any."""
        raw = await request.read()
        body = json.loads(raw)
        self.requests.append(Seen(request.path, dict(request.query), dict(request.headers), body, raw))
        if self.answers:
            return body, self.answers.pop(0).response()
        if not self.failures:
            return body, None
        status = self.failures.pop(0)
        if status == 429 and request.path.startswith("/v1beta/"):
            return body, quota_error(self.retry_delay)
        return body, google_error(status, "Resource has been exhausted (e.g. check quota)." if status == 429
                                  else f"injected failure {status}")

    async def _vertex(self, request: web.Request) -> web.StreamResponse:
        return self._unauthorized(request) or await self._serve(request, vertex=True)

    async def _anthropic(self, request: web.Request) -> web.StreamResponse:
        refused = self._unauthorized(request)
        if refused:
            return refused
        body, failure = await self._begin(request)
        if failure:
            return failure
        model, _, method = request.match_info["call"].partition(":")
        self.claude.tool_script, self.claude.completion_tokens = self.tool_script, self.reply_words
        if body.get("anthropic_version") != "vertex-2023-10-16":
            return wire.error(400, "anthropic_version: Input should be 'vertex-2023-10-16'", True)
        problem = claude_refusal(body, request.headers.get("anthropic-beta", ""))
        if problem:
            return wire.error(400, problem, True)
        fields = {k: v for k, v in body.items() if k != "anthropic_version"}
        counts = model == "count-tokens"
        # the Messages fields Anthropic's API takes (tests/fake_fields.py), and `stream`'s absence on a count
        unknown = fake_fields.unknown("/v1/messages/count_tokens" if counts else "/v1/messages", fields)
        if unknown:
            return wire.error(400, f"{unknown[0]}: Extra inputs are not permitted", True)
        if model == "count-tokens" and method == "rawPredict":
            return self.claude.count(fields)
        if method not in ("rawPredict", "streamRawPredict"):
            return google_error(404, f"method {method} not found")
        if "model" in body:
            return wire.error(400, "model: Extra inputs are not permitted", True)
        if self.claude_enabled is not None and model not in self.claude_enabled:
            where = request.match_info
            return google_error(404, f"Publisher Model `projects/{where['project']}/locations/{where['location']}/"
                                     f"publishers/anthropic/models/{model}` was not found or your project does not "
                                     "have access to it. Please ensure you are using a valid model version.")
        if bool(body.get("stream")) != (method == "streamRawPredict"):
            return wire.error(400, f"stream: {method} takes stream={method == 'streamRawPredict'}", True)
        message = self.claude.message(dict(fields, model=model), request.headers.get("anthropic-beta", ""))
        if isinstance(message, web.Response):
            return message
        if method == "rawPredict":
            return web.json_response(message)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await resp.prepare(request)
        frames, drop = self._mangled(wire.message_frames(message))
        for frame in frames:
            await resp.write(frame)
        if drop and request.transport is not None:
            request.transport.abort()
            return resp
        await resp.write_eof()
        return resp

    def _mangled(self, frames: list[bytes]) -> tuple[list[bytes], bool]:
        how, self.mangle = self.mangle, None
        return wire.mangled(frames, how, wire.SSE_GARBAGE) if how else (frames, False)

    async def _serve(self, request: web.Request, vertex: bool) -> web.StreamResponse:
        body, failure = await self._begin(request)
        if failure:
            return failure
        model, _, method = request.match_info["call"].partition(":")
        generates = method in ("generateContent", "streamGenerateContent")
        unknown = unknown_field(body, self.extra_fields) if generates else None
        if unknown:
            return google_error(400, unknown)
        traffic, problem = self._traffic(request, body, vertex) if generates else (None, None)
        if problem:
            return google_error(400 if "labels" in problem or "header" in problem else 429, problem)
        if method == "batchEmbedContents":  # Vertex serves it for Gemini embedding models too
            if any(r.get("model", f"models/{model}") != f"models/{model}" for r in body["requests"]):
                return google_error(400, "* BatchEmbedContentsRequest.model: each request's model must be the "
                                         f"batch's, models/{model}")
            return web.json_response({"embeddings": [{"values": [0.5, -0.25, float(_words(r["content"]))]}
                                                     for r in body["requests"]]})
        if method == "embedContent":
            return web.json_response({"embedding": {"values": [0.5, -0.25, float(_words(body["content"]))]}})
        if method == "predict" and vertex:
            return web.json_response({"predictions": [
                {"embeddings": {"values": [0.5, -0.25, float(_words(i["content"]))],
                                "statistics": {"token_count": _words(i["content"]), "truncated": False}}}
                for i in body["instances"]]})
        if method == "countTokens":  # the Gemini API wants a system instruction and tools in a whole request
            counted = body if vertex else body.get("generateContentRequest") or {"contents": body.get("contents")}
            if not isinstance(counted, dict) or not counted.get("contents") or (
                    not vertex and any(k in body for k in ("systemInstruction", "tools"))):
                return google_error(400, "* CountTokensRequest: contents is not specified, or systemInstruction "
                                         "and tools are outside generateContentRequest")
            return web.json_response({"totalTokens": _words(counted["contents"])
                                      + _words(counted.get("systemInstruction", {}))})
        if method not in ("generateContent", "streamGenerateContent"):
            return google_error(404, f"method {method} not found")
        if "contents" not in body or not body["contents"]:
            return google_error(400, "* GenerateContentRequest.contents: contents is not specified")
        for i, content in enumerate(body["contents"] if isinstance(body["contents"], list) else [None]):
            parts = content.get("parts") if isinstance(content, dict) else None
            if not isinstance(parts, list) or not parts or not all(isinstance(part, dict) for part in parts):
                return google_error(400, f"* GenerateContentRequest.contents[{i}].parts: contents.parts must not "
                                         "be empty.")
        prompt = _words(body["contents"]) + _words(body.get("systemInstruction", {}))
        if prompt > self.max_prompt:
            return google_error(400, f"The input token count ({prompt}) exceeds the maximum number of tokens "
                                     f"allowed ({self.max_prompt}).")
        if "BLOCKME" in json.dumps(body["contents"]):
            blocked = {"promptFeedback": {"blockReason": "SAFETY"},
                       "usageMetadata": {"promptTokenCount": prompt, "totalTokenCount": prompt}}
            return web.json_response(blocked) if method == "generateContent" else await self._sse(request, [blocked])
        gen = _config(body)
        asked_out = gen.get("maxOutputTokens")
        if self.output_cap is not None and isinstance(asked_out, int) and asked_out > self.output_cap:
            return google_error(400, f"Unable to submit request because it has a maxOutputTokens value of {asked_out} "
                                     f"but the supported range is from 1 (inclusive) to {self.output_cap + 1} "
                                     "(exclusive). Update the value and try again.")
        problem = schema_problem(gen.get("responseSchema"), "generation_config.response_schema") or next(
            (p for t in body.get("tools") or [] for i, f in enumerate(t.get("functionDeclarations") or [])
             if (p := declaration_problem(f, i))), None)
        if problem:
            return google_error(400, problem)
        signing = model.startswith("gemini-3")  # signs its function calls, checks the signatures sent back
        problem = self._unsigned(body["contents"]) if signing else None
        if problem:
            return google_error(400, problem)
        last = body["contents"][-1]["parts"]
        tools = body.get("tools") or []
        mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode", "AUTO")
        call = None
        functions = [f for t in tools for f in t.get("functionDeclarations") or t.get("function_declarations") or []]
        # Google's own search tool: the answer carries its grounding
        grounding = {"groundingMetadata": {"webSearchQueries": ["fake query"]}} if any(
            "googleSearch" in t or "google_search" in t for t in tools) else {}
        call = None
        results = [p["functionResponse"].get("response") for c in body["contents"] for p in c.get("parts") or []
                   if "functionResponse" in p]
        if self.tool_script is not None:
            offered = [f["name"] for t in tools for f in t.get("functionDeclarations") or []]
            scripted = self.tool_script.call(offered, bool(results))
            call = {"name": scripted[0], "args": scripted[1]} if scripted else None
        elif functions and mode != "NONE" and not any("functionResponse" in p for p in last):
            allowed = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("allowedFunctionNames")
            fn = next((f for f in functions if f["name"] in allowed), functions[0]) if allowed else functions[0]
            args = {"city": "Paris"} if self.tool_text is None else wire.sample(fn.get("parameters") or {},
                                                                                  self.tool_text) or {}
            call = {"name": fn["name"], "args": args}
        max_out = gen.get("maxOutputTokens")
        words = [WORDS[i % len(WORDS)] for i in range(self.reply_words)]
        finish = "STOP"
        if isinstance(max_out, int) and max_out < len(words):
            words, finish = words[:max_out], "MAX_TOKENS"
        if self.finish_reasons:
            finish = self.finish_reasons.pop(0)
        count = int(gen.get("candidateCount") or 1)
        out_tokens = (self.reply_words if call else len(words)) * count
        # each audio part (inlineData audio/*) is AUDIO_PART_TOKENS tokens of the prompt, counted by
        # modality in promptTokensDetails as Gemini does (text beside it)
        inline = [p.get("inlineData") or p.get("inline_data") or {} for c in body["contents"]
                  for p in c.get("parts") or []]  # Google takes either spelling of each key
        audio = AUDIO_PART_TOKENS * sum(1 for d in inline
                                        if str(d.get("mimeType") or d.get("mime_type")).startswith("audio/"))
        details = [{"modality": "TEXT", "tokenCount": prompt}] + (
            [{"modality": "AUDIO", "tokenCount": audio}] if audio else [])
        prompt += audio
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": out_tokens - 1, "thoughtsTokenCount": 1,
                 "totalTokenCount": prompt + out_tokens, "promptTokensDetails": details,
                 "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": out_tokens - 1}],
                 **({"trafficType": traffic} if traffic else {})}
        if self.implicit_cache:
            prefix = [body.get("systemInstruction"), body["contents"][:-1]]
            cached = wire.implicit_cache(prefix, _words(prefix[1]) + _words(prefix[0] or {}), self.seen_prefixes)
            if cached:
                usage["cachedContentTokenCount"] = cached
        rid = "resp-" + secrets.token_hex(4)
        called: list[dict[str, Any]] = [{"functionCall": call}]
        if call and self.parallel_calls and len(functions) > 1 and self.tool_script is None:
            called.append({"functionCall": {"name": functions[1]["name"], "args": call["args"]}})
        if call and signing:  # standard base64 (with + / =), as the API sends the signature's bytes; calls
            # made together are signed once, on the first
            called[0]["thoughtSignature"] = base64.b64encode(b"\xfb\xff" + secrets.token_bytes(42)).decode()
            self.signatures.add(called[0]["thoughtSignature"])
        # thinking with its thoughts returned (thinkingConfig.includeThoughts): a thought part comes first
        thoughts = bool(_camel(gen.get("thinkingConfig") or {}).get("includeThoughts"))
        thought = [{"text": "Thinking it over.", "thought": True}] if thoughts else []
        if "responseSchema" in gen and not call:  # structured output: JSON fitting the schema
            words = [json.dumps(wire.sample(gen["responseSchema"]))]
        # candidate k's words start k words on (a structured-output answer is the same JSON for each)
        texts = [[WORDS[(i + k) % len(WORDS)] for i in range(len(words))] if words and words[0] in WORDS else words
                 for k in range(count)]
        if self.tool_script is not None and results and not call:
            quoted = wire.result_text(results[-1]).split()[:40]
            words, texts = words + quoted, [t + quoted for t in texts]
        if method == "generateContent":
            answer = json.dumps({"candidates": [
                {"content": {"role": "model", "parts": thought + (called if call else [{"text": " ".join(t)}])},
                 "finishReason": finish, "index": k, **grounding} for k, t in enumerate(texts)],
                "usageMetadata": usage, "modelVersion": model, "responseId": rid}).encode()
            self.sent.append(answer)
            return web.Response(body=answer, content_type="application/json")
        if request.query.get("alt") != "sse":
            return google_error(400, "streaming without alt=sse answers a JSON array; send alt=sse")
        events: list[dict[str, Any]] = []

        def candidate(k: int, parts: list[dict[str, Any]], end: bool) -> dict[str, Any]:
            cand: dict[str, Any] = {"content": {"role": "model", "parts": parts}, **({"index": k} if k else {})}
            return {**cand, "finishReason": finish if not call else "STOP"} if end else cand
        for k in range(count):
            if thought:
                events.append({"candidates": [candidate(k, thought, False)]})
        if call:
            events.extend({"candidates": [candidate(k, called, True)]} for k in range(count))
        else:
            for i in range(len(words)):
                for k, t in enumerate(texts):
                    piece = t[i] if i == 0 else " " + t[i]
                    events.append({"candidates": [candidate(k, [{"text": piece}], i == len(words) - 1)],
                                   "usageMetadata": {"promptTokenCount": prompt}})
        for e in events:
            e.update(modelVersion=model, responseId=rid)
        events[-1]["usageMetadata"] = usage
        if grounding:
            events[-1]["candidates"][0].update(grounding)
        return await self._sse(request, events)

    def _traffic(self, request: web.Request, body: dict[str, Any], vertex: bool) -> tuple[str | None, str | None]:
        """The trafficType a generateContent call is served with (Vertex only; the Gemini API reports
        none and has no `labels` field), or why it is refused."""
        if not vertex:
            if "labels" in body:
                return None, 'Invalid JSON payload received. Unknown name "labels": Cannot find field.'
            return None, None
        problem = labels_problem(body["labels"]) if "labels" in body else None
        if problem:
            return None, problem
        kind, shared = request.headers.get(REQUEST_TYPE), request.headers.get(SHARED_REQUEST_TYPE)
        if kind not in (None, "dedicated", "shared") or shared not in (None, "flex", "priority"):
            return None, f"unsupported header value {kind or shared!r}"
        if kind == "dedicated":
            return ("PROVISIONED_THROUGHPUT", None) if self.provisioned else (
                None, "Resource exhausted: no Provisioned Throughput for this request")
        if self.provisioned and kind is None:
            return "PROVISIONED_THROUGHPUT", None
        return {"flex": "ON_DEMAND_FLEX", "priority": "ON_DEMAND_PRIORITY"}.get(shared or "", "ON_DEMAND"), None

    async def _sse(self, request: web.Request, events: list[dict[str, Any]]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        frames, drop = self._mangled([b"data: " + json.dumps(e).encode() + b"\r\n\r\n" for e in events])
        broken, how = self.break_stream or (len(frames), "")
        if broken < len(frames) and how == "error":
            error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
            frames = [*frames[:broken], b"data: " + json.dumps(error).encode() + b"\r\n\r\n"]
        self.sent.append(b"".join(frames[:broken] if how == "cut" else frames))
        for frame in frames[:broken] if how == "cut" else frames:
            await resp.write(frame)
        if (how == "cut" or drop) and request.transport is not None:
            request.transport.abort()  # no terminating chunk: the client sees a broken stream
            return resp
        await resp.write_eof()
        return resp
