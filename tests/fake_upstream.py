"""The one fake in the test suite: a real aiohttp server speaking the OpenAI wire format
(/v1/chat/completions JSON and SSE, /v1/completions, /v1/embeddings, /v1/models, Azure-style
/openai/deployments/{name}/... with api-version), OpenAI's media and moderation endpoints
(tests/fake_media.py: multipart uploads recorded as parsed form fields) and the Anthropic Messages
API (/v1/messages JSON and event stream), with deterministic token counts, tool calls, failure injection and a record
of every request.

    async with FakeUpstream(completion_tokens=5) as up:
        up.url                                  # "http://127.0.0.1:<port>"
        up.inject("/v1/chat/completions", status=500, times=2)
        ...
        up.last("/v1/chat/completions").body    # what was sent upstream

Token counts: prompt tokens = whitespace-separated words of all input text (system, messages,
tool results, prompt, embedding input); completion tokens = words of the reply, which is
`completion_tokens` words long (cut by max_tokens or a stop sequence), or of `reply` if given.
Run standalone for benchmarks: python -m tests.fake_upstream --port 9100
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import random
import string
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests import fake_fields, fake_responses
from tests import fake_wire as wire
from tests.fake_media import MediaRoutes, form_fields

WORDS = ("Hello", "from", "the", "fake", "upstream", "model", "with", "deterministic", "tokens", "today")
OPENAI_PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models")
MESSAGES_PATH = "/v1/messages"
# How a frame carrying generated text starts, in each API: a real upstream sends these as the model
# writes them; the frames around them (role, usage, the end) follow without a wait.
_TEXT_DELTAS = (b'"delta":{"content":"', b'"type":"text_delta"', b'"type":"response.output_text.delta"')
RESPONSES_PATH = "/v1/responses"
_TIERS = ("default", "flex", "priority", "scale")


@dataclass
class Fault:
    """What to do to the next `times` requests of a path (times=None: until cleared)."""

    status: int | None = None  # answer with this HTTP error status (in the path's error shape)
    times: int | None = 1
    delay: float = 0.0  # seconds before answering at all (headers included)
    chunk_delay: float = 0.0  # seconds before each stream frame
    token_delay: float = 0.0  # seconds before each stream frame carrying generated text (see _TEXT_DELTAS)
    disconnect_after: int | None = None  # drop the connection after this many stream frames
    stall_after: int | None = None  # go silent (for 30 s) after this many stream frames
    stream_error: str | None = None  # answer 200 with an event stream holding only this error type
    error_after: int | None = None  # after this many stream frames, an error frame (type from stream_error)
    finish_reason: Any = None  # send this (of any JSON type) as the chat stream's finish_reason
    message: str | None = None
    retry_after: float | None = None
    code: str | None = None  # the error body's `code` (e.g. content_filter, context_length_exceeded)
    param: str | None = None  # the error's `param`, the request field it names (OpenAI's shape)
    filtered: str | None = None  # Azure paths: a 400 of Azure's content filter, refused for this category
    rate: float = 1.0  # the share of matching requests `status` applies to, spread evenly (0.2: every 5th)
    page: str | None = None  # answer 200 with this text/html page (a base URL that points at a web UI)
    answer: wire.Answer | None = None  # answer this instead (a non-JSON 200, an HTML 502, JSON of the wrong shape)
    mangle: str | None = None  # a stream sent broken this way (fake_wire.mangled: cut, garbage, unfinished)
    # a stream whose `endless_after`th frame is one line of this many bytes and no newline (an event that
    # never ends), in 16 KiB writes, until the reader hangs up; then it ends the stream
    endless_line: int | None = None
    endless_after: int = 0
    hold_after: int | None = None  # after this many stream frames, wait until `release` is set
    release: threading.Event = field(default_factory=threading.Event)
    holding: int = 0  # streams that reached the hold
    dropped: int = 0  # streams whose client closed the connection while held (the call was stopped)
    _matched: int = 0


    def strikes(self) -> bool:
        """Whether `status` applies to this request: `rate` of them, evenly (deterministic)."""
        self._matched += 1
        return int(self._matched * self.rate) > int((self._matched - 1) * self.rate)


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any
    raw: bytes = b""  # the body's bytes as received
    peer: str = ""  # the client's address and port: one value per TCP connection
    at: float = field(default_factory=time.time)  # when it arrived (wall clock)


async def _held(request: web.Request, fault: Fault) -> bool:
    """Hold a stream until the test releases it; False if the client closed it meanwhile."""
    fault.holding += 1
    while not fault.release.is_set():
        if request.transport is None or request.transport.is_closing():
            fault.dropped += 1
            return False
        await asyncio.sleep(0.01)
    return True


def peer_of(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return f"{peer[0]}:{peer[1]}" if peer else ""


@dataclass
class _Reply:
    text: str
    tokens: int
    finish: str  # OpenAI finish_reason
    stop_sequence: str | None = None


count_words = wire.word_counter("content", "text", "system")
AUDIO_PART_TOKENS = 120  # the audio tokens of one `input_audio` part of a chat prompt
AUDIO_PER_WORD = 4  # the audio tokens of one spoken word of a reply


class FakeUpstream:
    def __init__(
        self,
        *,
        completion_tokens: int = 5,
        reply: str | None = None,
        api_key: str | None = None,
        models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small"),
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 7,
        reject_stream_options: bool = False,
        responses_usage: bool = True,
        json_usage: bool = True,
        call_tools: bool = True,
        implicit_cache: bool = False,
        rpm: int | None = None,
        reasoning: str | None = None,
        parallel_calls: int = 1,
        calls_at_index_zero: bool = False,
        tool_id_pattern: str = r".{1,40}",
        object_arguments: bool = False,
        tool_text: str = "test",
        tool_script: wire.ToolScript | None = None,
        record: bool = True,
        context_window: int | None = None,
        output_caps: dict[str, int] | None = None,
        extra_fields: tuple[str, ...] | None = (),
    ) -> None:
        # A real API refuses a top-level field it does not know (tests/fake_fields.py): these are
        # taken besides, as an OpenAI-compatible server (vLLM, Ollama) takes its own; None takes any
        self.extra_fields = None if extra_fields is None else frozenset(extra_fields)
        # model -> the most completion tokens it writes: a chat request asking for more is a 400
        # in OpenAI's words (gpt-4o: 16384, where Claude Code asks for 32000), a Messages one in Anthropic's
        self.output_caps = output_caps or {}
        # Claude's context window (Messages API): a prompt past it is a 400; a prompt that fits but
        # leaves less room than max_tokens asks gets an answer cut at the window's end with
        # stop_reason model_context_window_exceeded, as Claude 4.5 and later answer
        self.context_window = context_window
        self.tool_script = tool_script  # set: tool calls follow the script instead of the first offered tool
        self.tool_text = tool_text  # what the string arguments of the model's tool calls hold
        # tool call arguments as a JSON object instead of its text, as Ollama and some vLLM builds send them
        self.object_arguments = object_arguments
        # tool call ids the chat endpoint takes in a history (OpenAI: at most 40 characters)
        self.tool_id_pattern = tool_id_pattern
        self.completion_tokens = completion_tokens
        self.reasoning = reasoning  # chat answers carry it as `reasoning_content` (vLLM, DeepSeek, Ollama)
        self.parallel_calls = parallel_calls  # chat tool calls per answer (the same tool, each with its own id)
        self.calls_at_index_zero = calls_at_index_zero  # stream every call at index 0, as Ollama does
        self.reply = reply
        self.api_key = api_key
        self.models = models
        self.reject_stream_options = reject_stream_options  # like older Azure api-versions
        # False: /v1/responses answers and events carry `usage: null` (a Responses server that counts nothing)
        self.responses_usage = responses_usage
        # False: JSON (non-streamed) chat, completions, embeddings and Messages answers carry no `usage`
        # (some OpenAI-compatible servers omit it)
        self.json_usage = json_usage
        self.call_tools = call_tools  # False: always answer with text, even when tools are offered
        self.record = record  # False (standalone, for benchmarks): keep no requests or answers
        self.requests: list[Recorded] = []
        self.rpm = rpm  # a provider's own quota: past it in any 60 s, answer 429 like the real ones
        self.throttled = 0  # requests answered 429 for being past `rpm`
        self._admitted: list[float] = []  # monotonic times of requests counted against `rpm`
        self.sent: list[bytes] = []  # the body bytes of every answer, stream frames joined
        self.prompt_cache: set[str] = set()  # prefixes marked with cache_control (prompt caching)
        self.implicit_cache = implicit_cache  # True: chat prompts repeating a prefix report cached_tokens
        self.seen_prefixes: set[str] = set()
        self.thinking_signatures: set[str] = set()  # signatures given to thinking blocks (Anthropic)
        # True: the account has Anthropic's Priority Tier, which serves (and says so in usage.service_tier)
        # a Messages request whose service_tier is `auto`, the default; `standard_only` stays standard
        self.anthropic_priority = False
        self.faults: dict[str, list[Fault]] = {}
        self._host, self._port = host, port
        self._rand = random.Random(seed)
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- lifecycle -------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post(MESSAGES_PATH, self._messages)
        app.router.add_post(RESPONSES_PATH, self._responses)
        app.router.add_post(RESPONSES_PATH + "/input_tokens", self._input_tokens)
        app.router.add_post(MESSAGES_PATH + "/count_tokens", self._count_tokens)
        app.router.add_post("/openai/v1/responses", self._responses)  # Azure's v1 surface
        app.router.add_post("/openai/v1/responses/input_tokens", self._input_tokens)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._chat)
        app.router.add_post("/openai/deployments/{deployment}/completions", self._completions)
        app.router.add_post("/openai/deployments/{deployment}/embeddings", self._embeddings)
        MediaRoutes(self).add(app)
        return app

    async def start(self) -> FakeUpstream:
        self._runner, self.url = await wire.serve(self.app(), self._host, self._port)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeUpstream:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- test controls ---------------------------------------------------------------------------

    def inject(self, path: str, **fault: Any) -> Fault:
        """Queue a Fault for `path` (a request path such as "/v1/messages", or "*" for any)."""
        f = Fault(**fault)
        self.faults.setdefault(path, []).append(f)
        return f

    def clear_faults(self) -> None:
        self.faults.clear()

    def requests_to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def last(self, path: str | None = None) -> Recorded:
        found = self.requests_to(path) if path else self.requests
        assert found, f"no request to {path or 'any path'} was received"
        return found[-1]

    def _take_fault(self, path: str) -> Fault | None:
        for key in (path, "*"):
            queue = self.faults.get(key)
            if queue:
                fault = queue[0]
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        queue.pop(0)
                return fault
        return None

    # --- shared machinery ------------------------------------------------------------------------

    def _id(self, prefix: str, n: int) -> str:
        return prefix + "".join(self._rand.choices(string.ascii_letters + string.digits, k=n))

    async def _begin(
        self, request: web.Request, anthropic: bool
    ) -> tuple[Any, Fault | None, web.Response | None]:
        """Record the request, apply a fault's delay/status, check auth and JSON."""
        raw = await request.read()
        try:
            if request.content_type == "multipart/form-data":
                body = form_fields(raw, request.headers["Content-Type"])
            else:
                body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        if self.record:
            headers = {k.lower(): v for k, v in request.headers.items()}
            self.requests.append(Recorded(request.method, request.path, dict(request.query), headers, body, raw,
                                          peer_of(request)))
        if self.rpm is not None:
            now = time.monotonic()
            self._admitted = [t for t in self._admitted if t > now - 60]
            if len(self._admitted) >= self.rpm:
                self.throttled += 1
                return body, None, wire.error(429, f"Rate limit reached: {self.rpm} requests per minute",
                                              anthropic, {"retry-after": "20"})
            self._admitted.append(now)
        fault = self._take_fault(request.path)
        if fault and fault.delay:
            await asyncio.sleep(fault.delay)
        if fault and fault.status and fault.strikes():
            headers = {"retry-after": str(fault.retry_after)} if fault.retry_after is not None else None
            return (
                body,
                fault,
                wire.error(
                    fault.status, fault.message or f"injected failure {fault.status}", anthropic, headers,
                    code=fault.code, param=fault.param,
                ),
            )
        if fault and fault.filtered is not None and fault.strikes():
            return body, fault, wire.azure_filter_error(fault.filtered)
        if fault and fault.page is not None:
            return body, fault, web.Response(text=fault.page, content_type="text/html")
        if fault and fault.answer is not None:
            return body, fault, fault.answer.response()
        if request.path.startswith("/openai/deployments/") and "api-version" not in request.query:
            return body, fault, wire.error(404, "Resource not found", anthropic)
        if anthropic and "anthropic-version" not in request.headers:
            return body, fault, wire.error(400, "anthropic-version: header is required", True)
        if self.api_key is not None:
            given = (
                request.headers.get("x-api-key")
                if anthropic
                else request.headers.get("api-key") or request.headers.get("authorization", "")[7:]
            )
            if given != self.api_key:
                return (
                    body,
                    fault,
                    wire.error(401, "Incorrect API key provided", anthropic, code="invalid_api_key"),
                )
        if request.method == "POST" and not isinstance(body, dict):
            return (
                body,
                fault,
                wire.error(400, "We could not parse the JSON body of your request.", anthropic),
            )
        refused = None if self.extra_fields is None else fake_fields.refusal(request.path, body, self.extra_fields)
        return body, fault, refused

    def _reply(self, max_tokens: Any, stops: Any, results: list[Any] | None = None) -> _Reply:
        """The answer's words; with a tool script, the last tool result is quoted after them."""
        words = (
            self.reply.split()
            if self.reply is not None
            else [WORDS[i % len(WORDS)] for i in range(self.completion_tokens)]
        )
        if self.tool_script is not None and results:
            words += wire.result_text(results[-1]).split()[:40]
        finish = "stop"
        if isinstance(max_tokens, int) and max_tokens < len(words):
            words, finish = words[:max_tokens], "length"
        text = " ".join(words)
        stop_list = [stops] if isinstance(stops, str) else stops or []
        hits = [(text.find(s), s) for s in stop_list if isinstance(s, str) and s and s in text]
        if hits:
            at, seq = min(hits)
            text = text[:at]
            return _Reply(text, len(text.split()), "stop", seq)
        return _Reply(text, len(words), finish)

    async def _sse(
        self, request: web.Request, fault: Fault | None, frames: list[bytes]
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
        )
        await resp.prepare(request)
        sent: list[bytes] = []
        if fault and fault.error_after is not None:
            error = {"type": fault.stream_error or "server_error", "message": fault.message or "Overloaded"}
            anthropic = request.path == MESSAGES_PATH
            last = (wire.event("error", {"type": "error", "error": error}) if anthropic
                    else wire.data({"error": {**error, "code": None, "param": fault.param}}))
            frames = [*frames[: fault.error_after], last]
        elif fault and fault.stream_error:
            # How upstreams report overload after the 200 is out: an error as the first event.
            error = {"type": fault.stream_error, "message": fault.message or "Overloaded"}
            anthropic = request.path == MESSAGES_PATH
            frames = [
                wire.event("error", {"type": "error", "error": error})
                if anthropic
                else wire.event("error", {"type": "error", "sequence_number": 0, "code": error["type"],
                                          "message": error["message"], "param": fault.param})
                if request.path == RESPONSES_PATH
                else wire.data({"error": {**error, "code": None, "param": fault.param}})
            ]
        drop = False
        if fault and fault.mangle:
            frames, drop = wire.mangled(frames, fault.mangle, wire.SSE_GARBAGE)
        if fault and fault.endless_line:
            try:
                for frame in frames[:fault.endless_after]:
                    await resp.write(frame)
                await resp.write(b'data: {"choices": [{"index": 0, "delta": {"content": "')
                for _ in range(fault.endless_line // 16384):
                    await resp.write(b"a" * 16384)
                await resp.write_eof()
            except ConnectionError:  # the reader stopped reading it
                pass
            return resp
        for i, frame in enumerate(frames):
            if fault and fault.hold_after is not None and i == fault.hold_after and not await _held(request, fault):
                return resp
            if fault and fault.stall_after is not None and i == fault.stall_after:
                await asyncio.sleep(30)
            if fault and fault.disconnect_after is not None and i >= fault.disconnect_after:
                assert request.transport is not None
                request.transport.abort()  # no terminating chunk: the client sees a broken stream
                return resp
            if fault and fault.chunk_delay:
                await asyncio.sleep(fault.chunk_delay)
            if fault and fault.token_delay and any(marker in frame for marker in _TEXT_DELTAS):
                await asyncio.sleep(fault.token_delay)
            await resp.write(frame)
            sent.append(frame)
        if drop and request.transport is not None:
            request.transport.abort()  # no terminating chunk: the client sees a broken stream
            return resp
        await resp.write_eof()
        if self.record:
            self.sent.append(b"".join(sent))
        return resp

    # --- OpenAI ----------------------------------------------------------------------------------

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, fault, error = await self._begin(request, anthropic=False)
        if error:
            return error
        if self.reject_stream_options and "stream_options" in body:
            return wire.error(400, "Unrecognized request argument supplied: stream_options", False)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not isinstance(body.get("model"), str):
            return wire.error(400, "'messages' and 'model' are required properties", False)
        problem = wire.check_chat_history(messages, self.tool_id_pattern)
        if problem:
            return wire.error(400, problem, False)
        cap = self.output_caps.get(body["model"])
        asked = next(((k, body[k]) for k in ("max_completion_tokens", "max_tokens") if isinstance(body.get(k), int)),
                     None)
        if cap is not None and asked is not None and asked[1] > cap:
            return wire.error(400, f"{asked[0]} is too large: {asked[1]}. This model supports at most {cap} "
                              f"completion tokens, whereas you provided {asked[1]}.", False, code="invalid_value")
        prompt = count_words(messages)
        results = [m.get("content") for m in messages if m.get("role") == "tool"]
        if self.tool_script is not None:
            offered = [t["function"]["name"] for t in body.get("tools") or [] if "function" in t]
            tool = self.tool_script.call(offered, bool(results))
        else:
            tool = wire.pick_tool(body.get("tools"), body.get("tool_choice"),
                                  messages[-1].get("role") == "tool" or not self.call_tools, self.tool_text)
        reply = self._reply(body.get("max_completion_tokens") or body.get("max_tokens"), body.get("stop"), results)
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema" and tool is None:  # structured output: JSON fitting the schema
            text = json.dumps(wire.sample(fmt["json_schema"].get("schema") or {}))
            reply = _Reply(text, len(text.split()), "stop")
        base = {
            "id": self._id("chatcmpl-", 29),
            "created": int(time.time()),
            "model": body["model"],
            # the tier that served the request: the one asked for, as OpenAI reports it ("auto" -> default)
            "service_tier": body.get("service_tier") if body.get("service_tier") in _TIERS else "default",
            "system_fingerprint": "fp_fake0001",
        }
        cached = wire.implicit_cache(messages[:-1], count_words(messages[:-1]), self.seen_prefixes) \
            if self.implicit_cache else 0
        # audio models: each `input_audio` part is AUDIO_PART_TOKENS audio tokens of the prompt; asked
        # for audio out (`modalities` with "audio"), the reply is spoken too, AUDIO_PER_WORD tokens a word
        audio_in = AUDIO_PART_TOKENS * sum(1 for m in messages if isinstance(m.get("content"), list)
                                           for part in m["content"] if part.get("type") == "input_audio")
        spoken = "audio" in (body.get("modalities") or []) and tool is None
        audio_out = AUDIO_PER_WORD * reply.tokens if spoken else 0
        usage = wire.openai_usage(prompt + audio_in, (reply.tokens if tool is None else self.completion_tokens)
                                  + audio_out, cached, audio_in, audio_out)
        fn = None if tool is None else {"name": tool[0],
                                        "arguments": tool[1] if self.object_arguments else json.dumps(tool[1])}
        calls = [] if fn is None else [
            {"id": self._id("call_", 24), "type": "function", "function": fn} for _ in range(self.parallel_calls)]
        top_logprobs = int(body.get("top_logprobs") or 0) if body.get("logprobs") else None
        logprobs = None if top_logprobs is None or calls else {
            "content": wire.token_logprobs(wire.pieces(reply.text), top_logprobs), "refusal": None}
        if not body.get("stream"):
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None if calls else reply.text,
                "refusal": None,
                "annotations": [],
            }
            if calls:
                message["tool_calls"] = calls
            if self.reasoning is not None:
                message["reasoning_content"] = self.reasoning
            if spoken:
                message["audio"] = {"id": self._id("audio_", 24), "data": base64.b64encode(b"RIFF fake").decode(),
                                    "expires_at": int(time.time()) + 3600, "transcript": reply.text}
            return web.json_response(
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "logprobs": logprobs,
                            "finish_reason": "tool_calls" if calls else reply.finish,
                        }
                    ],
                    **({"usage": usage} if self.json_usage else {}),
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        finish = fault.finish_reason if fault and fault.finish_reason is not None else reply.finish
        frames = wire.chat_frames(base, reply.text, calls, finish, usage if include_usage else None, self.reasoning,
                                  self.calls_at_index_zero, top_logprobs)
        if request.path.startswith("/openai/deployments/"):  # Azure: the prompt's filter results come first
            frames.insert(0, wire.data({"choices": [], "created": 0, "id": "", "model": "", "object": "",
                                        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {
                                            "hate": {"filtered": False, "severity": "safe"}}}]}))
        return await self._sse(request, fault, frames)

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body, fault, error = await self._begin(request, anthropic=False)
        if error:
            return error
        if "prompt" not in body or not isinstance(body.get("model"), str):
            return wire.error(400, "'prompt' and 'model' are required properties", False)
        reply = self._reply(body.get("max_tokens", 16), body.get("stop"))
        base = {
            "id": self._id("cmpl-", 29),
            "object": "text_completion",
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_fake0001",
        }
        usage = wire.openai_usage(count_words(body["prompt"]), reply.tokens)
        if not body.get("stream"):
            return web.json_response(
                {
                    **base,
                    "choices": [
                        {"text": reply.text, "index": 0, "logprobs": None, "finish_reason": reply.finish}
                    ],
                    **({"usage": usage} if self.json_usage else {}),
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        frames = [
            wire.data({**base, "choices": [{"text": p, "index": 0, "logprobs": None, "finish_reason": None}]})
            for p in wire.pieces(reply.text)
        ]
        frames.append(
            wire.data(
                {
                    **base,
                    "choices": [{"text": "", "index": 0, "logprobs": None, "finish_reason": reply.finish}],
                }
            )
        )
        if include_usage:
            frames.append(wire.data({**base, "choices": [], "usage": usage}))
        frames.append(b"data: [DONE]\n\n")
        return await self._sse(request, fault, frames)

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body, _fault, error = await self._begin(request, anthropic=False)
        if error:
            return error
        inputs = body.get("input")
        if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            return wire.error(400, "'input' is a required property", False)
        data = []
        for i, item in enumerate(inputs):
            digest = hashlib.sha256(json.dumps(item).encode()).digest()
            vector = [b / 255 for b in digest[: int(body.get("dimensions") or 8)]]
            value: Any = vector
            if body.get("encoding_format") == "base64":
                value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": i, "embedding": value})
        tokens = sum(len(x) if isinstance(x, list) else count_words(x) for x in inputs)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model"),
                **({"usage": {"prompt_tokens": tokens, "total_tokens": tokens}} if self.json_usage else {}),
            }
        )

    async def _models(self, request: web.Request) -> web.StreamResponse:
        _body, _fault, error = await self._begin(request, anthropic=False)
        if error:
            return error
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 1686935002, "owned_by": "fake-upstream"}
                    for m in self.models
                ],
            }
        )

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body, fault, error = await self._begin(request, anthropic=False)
        if error:
            return error
        problem = fake_responses.problem(body)
        if problem:
            status, message, code = problem
            return wire.error(status, message, False, code=code)
        reply = self._reply(body.get("max_output_tokens"), None, fake_responses.tool_results(body))
        asked = body if self.call_tools else {**body, "tool_choice": "none"}
        final = fake_responses.response_body(asked, self._id("resp_", 48), self._id("msg_", 48),
                                             self._id("call_", 24), reply.text, reply.tokens, reply.finish,
                                             self.tool_script)
        if not self.responses_usage:
            final["usage"] = None
        if not body.get("stream"):
            return web.json_response(final)
        return await self._sse(request, fault, fake_responses.frames(final))

    async def _input_tokens(self, request: web.Request) -> web.StreamResponse:
        body, _fault, error = await self._begin(request, anthropic=False)
        if error:
            return error
        problem = fake_responses.problem(body)
        if problem:
            status, message, code = problem
            return wire.error(status, message, False, code=code)
        return web.json_response({"object": "response.input_tokens",
                                  "input_tokens": fake_responses.input_tokens(body)})

    # --- Anthropic -------------------------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body, fault, error = await self._begin(request, anthropic=True)
        if error:
            return error
        message = self.message(body, request.headers.get("anthropic-beta", ""))
        if isinstance(message, web.Response):
            return message
        if not body.get("stream"):
            return self._json(message if self.json_usage else {k: v for k, v in message.items() if k != "usage"})
        frames = wire.message_frames(message)
        return await self._sse(request, fault, frames)

    def message(self, body: dict[str, Any], beta: str = "") -> dict[str, Any] | web.Response:
        """The Messages API's answer to `body` (checked as Anthropic checks it; `beta`: the
        anthropic-beta header): the message, or the error response."""
        problem = wire.check_messages(body, "mid-conversation-system" in beta) \
            or wire.check_thinking(body, self.thinking_signatures)
        if problem:
            return wire.error(400, problem, True)
        cap, asked = self.output_caps.get(str(body.get("model"))), body.get("max_tokens")
        if cap is not None and isinstance(asked, int) and asked > cap:
            return wire.error(400, f"max_tokens: {asked} > {cap}, which is the maximum allowed number of output "
                              f"tokens for {body['model']}", True)
        messages = body["messages"]
        last = messages[-1].get("content")
        answered = isinstance(last, list) and any(b.get("type") == "tool_result" for b in last)
        choice = body.get("tool_choice") or {}
        results = [b.get("content") for m in messages if isinstance(m.get("content"), list)
                   for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]
        # Anthropic's own web search tool runs upstream: one search, reported in usage.server_tool_use
        searches = sum(1 for t in body.get("tools") or [] if str(t.get("type", "")).startswith("web_search_"))
        client_tools = [t for t in body.get("tools") or [] if not str(t.get("type", "")).startswith("web_search_")]
        tool = self.tool_script.call_messages(wire.loaded_tools(client_tools, messages), wire.deferred_named(messages),
                                              wire.answered_calls(messages)) \
            if self.tool_script is not None else wire.pick_tool(
            [
                {"type": "function", "function": {"name": t["name"], "parameters": t.get("input_schema")}}
                for t in client_tools
            ],
            "none"
            if choice.get("type") == "none"
            else {"function": {"name": choice["name"]}}
            if choice.get("type") == "tool"
            else None,
            answered or not self.call_tools,
            self.tool_text,
        )
        reply = self._reply(body["max_tokens"], body.get("stop_sequences"), results)
        input_tokens = count_words(body.get("system")) + count_words(messages)
        if self.context_window is not None:
            if input_tokens > self.context_window:
                return wire.error(400, f"prompt is too long: {input_tokens} tokens > {self.context_window} maximum",
                                  True)
            room = self.context_window - input_tokens
            if room < reply.tokens:
                cut = reply.text.split()[:room]
                reply = _Reply(" ".join(cut), len(cut), "model_context_window_exceeded")
        fmt = (body.get("output_config") or {}).get("format") or {}
        if fmt.get("type") == "json_schema" and not tool:  # structured output: JSON fitting the schema
            text = json.dumps(wire.sample(fmt.get("schema") or {}))
            reply = _Reply(text, len(text.split()), "stop")
        cache_read, cache_write, cache_write_1h = wire.prompt_cache(body, self.prompt_cache)
        output_tokens = self.completion_tokens if tool else reply.tokens
        if tool:
            stop_reason = "tool_use"
            content: list[dict[str, Any]] = [
                {"type": "tool_use", "id": self._id("toolu_01", 22), "name": tool[0], "input": tool[1]}
            ]
        else:
            window = "model_context_window_exceeded"
            stop_reason = {"length": "max_tokens", window: window}.get(
                reply.finish, "stop_sequence" if reply.stop_sequence else "end_turn"
            )
            content = [{"type": "text", "text": reply.text}]
        if (body.get("thinking") or {}).get("type") == "enabled":
            signature = base64.b64encode(self._id("sig", 24).encode()).decode()
            self.thinking_signatures.add(signature)
            content.insert(0, {"type": "thinking", "thinking": "Let me think.", "signature": signature})
        message = {
            "id": self._id("msg_01", 22),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": reply.stop_sequence,
            "usage": {
                "input_tokens": input_tokens - cache_read - cache_write,
                "cache_creation_input_tokens": cache_write,
                "cache_read_input_tokens": cache_read,
                # the writes by how long they are kept, as the API reports them
                "cache_creation": {"ephemeral_5m_input_tokens": cache_write - cache_write_1h,
                                   "ephemeral_1h_input_tokens": cache_write_1h},
                "output_tokens": output_tokens,
                "service_tier": "priority" if self.anthropic_priority and body.get("service_tier", "auto") == "auto"
                else "standard",
                **({"server_tool_use": {"web_search_requests": searches}} if searches else {}),
            },
        }
        return message

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        body, _fault, error = await self._begin(request, anthropic=True)
        if error:
            return error
        return self.count(body)

    def count(self, body: dict[str, Any]) -> web.Response:
        """The Messages API's count_tokens answer to `body`."""
        if not isinstance(body.get("model"), str) or not isinstance(body.get("messages"), list):
            return wire.error(400, "model and messages: Field required", True)
        return self._json({"input_tokens": count_words(body.get("system")) + count_words(body["messages"])})

    def _json(self, obj: Any) -> web.Response:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        if self.record:
            self.sent.append(raw)
        return web.Response(body=raw, content_type="application/json")


def main() -> None:
    parser = argparse.ArgumentParser(description="fake OpenAI/Anthropic upstream for benchmarks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--completion-tokens", type=int, default=20)
    parser.add_argument("--chunk-delay", type=float, default=0.0,
                        help="seconds before each frame of a chat stream (long-running streams)")
    parser.add_argument("--token-delay", type=float, default=0.0,
                        help="seconds before each frame carrying generated text, in every API's streams "
                             "(chat, Messages, Responses), as real upstreams send tokens as the model writes them")
    args = parser.parse_args()
    # Nothing reads the record of a standalone fake; kept, it grows with every request of a long
    # benchmark and the collector's pauses show up in the latencies measured through it.
    fake = FakeUpstream(completion_tokens=args.completion_tokens, record=False)
    if args.chunk_delay:
        fake.inject("/v1/chat/completions", chunk_delay=args.chunk_delay, times=None)
    if args.token_delay:
        for path in ("/v1/chat/completions", MESSAGES_PATH, RESPONSES_PATH):
            fake.inject(path, token_delay=args.token_delay, times=None)
    web.run_app(fake.app(), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
